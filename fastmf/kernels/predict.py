"""Predictions, residuals and squared errors of arrays of ratings: one kernel family.

Every routine here computes the prediction of a rating the same way,
:func:`_prediction`: ``r̂ = mu + (Σ_f P[u, f] Q[i, f] + b[u] + c[i])``, each product in
the factors' dtype and the sum in float64 (strict IEEE order: no fastmath, so a
prediction does not depend on the caller).  Users of it:

* :func:`predict_codes` / :func:`rmse_codes`: predictions for the estimator and the
  solvers' validation RMSE;
* :func:`residuals_codes`: the residual of every rating (``MFObjective.residuals``);
* :func:`squared_error_segments`: per-segment sums of squared errors, for an exact
  training loss whose total does not depend on the thread count (SGD's
  ``train_loss="exact"``; re-exported by :mod:`fastmf.kernels.sgd`).

The loss-and-gradient passes of :mod:`fastmf.kernels.coo`, :mod:`~fastmf.kernels.csr`
and :mod:`~fastmf.kernels.tiled` compute residuals fused with their other work, in the
factors' dtype; they do not use this module.

Each ``prange`` iteration writes only its own output slot, so the kernels are
race-free and deterministic.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["predict_codes", "rmse_codes", "residuals_codes", "squared_error_segments"]

_OPTS = {"cache": True, "nogil": True}


@numba.njit(inline="always", **_OPTS)
def _prediction(P, Q, b, c, mu, use_biases, u, i):
    """``mu + (P[u] . Q[i] + b[u] + c[i])`` in float64 (products in the factors' dtype)."""
    acc = 0.0
    for f in range(P.shape[1]):
        acc += P[u, f] * Q[i, f]
    if use_biases:
        acc += b[u] + c[i]
    return mu + acc


#: :func:`predict_codes` runs on the calling thread below this many predictions: each one is
#: independent, so the values are the same, and a validation set of a few thousand ratings
#: scored every iteration of a small fit does not compile a ``prange`` kernel (about 1 s).
PREDICT_PARALLEL_MIN = 1 << 16


@numba.njit(parallel=True, **_OPTS)
def _predict(users, items, P, Q, b, c, mu, use_biases, out):
    for j in numba.prange(users.shape[0]):
        out[j] = _prediction(P, Q, b, c, mu, use_biases, users[j], items[j])


@numba.njit(**_OPTS)
def _predict_serial(users, items, P, Q, b, c, mu, use_biases, out):
    for j in range(users.shape[0]):
        out[j] = _prediction(P, Q, b, c, mu, use_biases, users[j], items[j])


@numba.njit(parallel=True, **_OPTS)
def residuals_codes(users, items, vals, P, Q, b, c, mu, use_biases, out):
    """``out[j] = vals[j] - r̂_j`` (cast to ``out``'s dtype), ``prange`` over ratings.

    ``mu`` is a float; without biases pass any length-1 arrays for ``b, c``.
    """
    for j in numba.prange(users.shape[0]):
        out[j] = np.float64(vals[j]) - _prediction(P, Q, b, c, mu, use_biases, users[j], items[j])


@numba.njit(parallel=True, **_OPTS)
def squared_error_segments(bu, bi, bv, seg_ptr, P, Q, b, c, mu, use_biases, out):
    """``out[s] = Σ (r - r̂)²`` (float64) over the ratings ``seg_ptr[s]:seg_ptr[s + 1]``.

    Sum ``out`` in order (or with ``math.fsum``) for a total that does not depend on
    the thread count.
    """
    for s in numba.prange(seg_ptr.shape[0] - 1):
        acc = 0.0
        for j in range(seg_ptr[s], seg_ptr[s + 1]):
            e = np.float64(bv[j]) - _prediction(P, Q, b, c, mu, use_biases, bu[j], bi[j])
            acc += e * e
        out[s] = acc


def _bias_args(P, b, c):
    if b is None:
        return False, np.zeros(1, dtype=P.dtype), np.zeros(1, dtype=P.dtype)
    return True, b, c


def predict_codes(users, items, P, Q, b=None, c=None, mu: float = 0.0) -> np.ndarray:
    """Predictions (float64) for code arrays ``users``, ``items`` (already validated).

    Parameters
    ----------
    users, items : ndarray of int
        Codes in range of ``P`` and ``Q`` rows.
    P, Q : ndarray, shape (m, k), (n, k)
    b, c : ndarray or None
        User and item biases (both or neither).
    mu : float
        Global offset.
    """
    out = np.empty(users.shape[0], dtype=np.float64)
    use_biases, b, c = _bias_args(P, b, c)
    kernel = _predict if users.shape[0] >= PREDICT_PARALLEL_MIN else _predict_serial
    kernel(users, items, P, Q, b, c, float(mu), use_biases, out)
    return out


def rmse_codes(users, items, ratings, P, Q, b=None, c=None, mu: float = 0.0, clip=None) -> float:
    """Root mean squared error of the predictions against ``ratings``.

    ``clip=(low, high)`` clips predictions to the rating scale first.
    """
    pred = predict_codes(users, items, P, Q, b, c, mu)
    if clip is not None:
        np.clip(pred, clip[0], clip[1], out=pred)
    diff = pred - ratings
    return float(np.sqrt(np.dot(diff, diff) / max(diff.shape[0], 1)))
