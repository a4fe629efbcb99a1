"""Prediction kernel shared by the solvers (validation RMSE) and the estimator.

``r̂ = mu + b[u] + c[i] + P[u] · Q[i]`` for arrays of (user, item) codes.  Each
``prange`` iteration writes only its own output slot, so the kernel is race-free
and deterministic; the dot product accumulates in the factors' dtype.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["predict_codes", "rmse_codes"]


@numba.njit(parallel=True, cache=True, nogil=True)
def _predict(users, items, P, Q, b, c, mu, use_biases, out):
    k = P.shape[1]
    for j in numba.prange(users.shape[0]):
        u = users[j]
        i = items[j]
        acc = 0.0
        for f in range(k):
            acc += P[u, f] * Q[i, f]
        if use_biases:
            acc += b[u] + c[i]
        out[j] = mu + acc


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
    use_biases = b is not None
    if not use_biases:
        b = np.zeros(1, dtype=P.dtype)
        c = np.zeros(1, dtype=P.dtype)
    _predict(users, items, P, Q, b, c, float(mu), use_biases, out)
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
