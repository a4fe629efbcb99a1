r"""Fold-in: factors of a new user from that user's ratings alone, on a :class:`FactorModel`.

With :math:`Q`, :math:`c` and :math:`\mu` fixed, a new user's row of the training
objective is solved exactly:

.. math::

    \min_{p, b}\ \tfrac12 \sum_{i} (r_i - \mu - c_i - b - p\cdot q_i)^2
        + \tfrac12 \lambda_f w \|p\|^2 + \tfrac12 \lambda_b w b^2

(:math:`w = n^{\alpha}` the row weight of the user's ``n`` ratings under the
model's ``reg_weighting``; no :math:`b` and no :math:`c_i` without biases), i.e.
the :math:`(k+1)\times(k+1)` normal equations

.. math::

    (\tilde Q^\top \tilde Q + \mathrm{diag}(\lambda_f w I, \lambda_b w))\,[p; b]
    = \tilde Q^\top (r - \mu - c), \qquad \tilde Q = [Q_I, 1],

in float64.  This is the step ALS takes for a user; no retraining happens.

The penalty (:math:`\lambda_f`, :math:`\lambda_b`, the weighting) and the solver
are those the model was **fitted** with (stored in the ``FactorModel``), not the
current parameters of an estimator: changing ``reg`` with ``set_params`` after a
fit does not change the objective the factors minimise, so it must not change
fold-in either.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._validation import check_choice
from ._weights import row_weights
from .fitted import FactorModel, UnknownIdWarning
from .serving import UNKNOWN_POLICIES, _py, check_n, rare_items, top_n

__all__ = ["fold_in", "predict_new_user", "recommend_new_user"]


def fold_in_input(fm: FactorModel, items, ratings, *, stacklevel: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Item codes and float64 ratings of a new user's ratings; unknown items dropped with a warning."""
    it = np.atleast_1d(np.asarray(items))
    r = np.atleast_1d(np.asarray(ratings))
    if it.ndim != 1 or r.ndim != 1:
        raise ValueError("items and ratings must be 1-D")
    if it.shape[0] != r.shape[0]:
        raise ValueError(f"items and ratings have different lengths: {it.shape[0]} and {r.shape[0]}")
    if it.shape[0] == 0:
        raise ValueError("fold-in needs at least one rating")
    if r.dtype.kind not in "iuf":
        raise TypeError(f"ratings must be numeric, got dtype {r.dtype}")
    r = r.astype(np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError("ratings contain NaN or inf")
    codes = fm.items.codes(it, "ignore")
    known = codes >= 0
    if not known.all():
        if not known.any():
            raise ValueError("none of the rated items is known to the model")
        warnings.warn(
            f"fold-in ignores {int((~known).sum())} rating(s) of item(s) unknown to the model",
            UnknownIdWarning, stacklevel=stacklevel,
        )
        codes, r = codes[known], r[known]
    if np.unique(codes).shape[0] != codes.shape[0]:
        raise ValueError("items contain duplicates: give each rated item once")
    return codes, r


def fold_in(fm: FactorModel, items, ratings, *, stacklevel: int = 2) -> tuple[np.ndarray, float]:
    """Factors ``(p, b)`` of a new user (see the module docstring for the problem solved).

    Parameters
    ----------
    fm : FactorModel
    items : 1-D array-like of raw item ids
        Items the new user rated (no duplicates).  Items unknown to the model
        are ignored (with an :class:`UnknownIdWarning`).
    ratings : 1-D array-like of float
        The ratings, same length.

    Returns
    -------
    p : ndarray of float64, shape (k,)
    b : float
        The user bias (0.0 without biases).

    Raises
    ------
    ValueError
        A ``solver="gibbs"`` model, length mismatch, duplicate items, non-finite
        ratings, no known item, or a singular system (``reg = 0`` with too few ratings).
    """
    if fm.solver == "gibbs":
        raise ValueError("fold-in solves the MAP row problem, which a solver='gibbs' model (stacked posterior "
                         "draws, no penalty) does not have: refit with the new user's ratings")
    codes, r = fold_in_input(fm, items, ratings, stacklevel=stacklevel + 1)
    Q = fm.Q[codes].astype(np.float64)
    k = Q.shape[1]
    y = r - fm.mu
    w = float(row_weights([codes.shape[0]], fm.reg_weighting)[0])
    lam = float(fm.reg)
    lam_b = fm.reg_bias_value
    if fm.b is not None:
        y = y - fm.c[codes].astype(np.float64)
        A = np.hstack([Q, np.ones((Q.shape[0], 1))])
        reg = np.concatenate([np.full(k, lam * w), [lam_b * w]])
    else:
        A = Q
        reg = np.full(k, lam * w)
    M = A.T @ A + np.diag(reg)
    rhs = A.T @ y
    try:
        z = np.linalg.solve(M, rhs)
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            f"fold-in system is singular ({codes.shape[0]} known ratings, rank {k}, reg={lam}); "
            "use reg > 0 or give more ratings"
        ) from exc
    if not np.all(np.isfinite(z)):
        raise ValueError("fold-in produced non-finite factors (singular system); use reg > 0")
    if fm.b is not None:
        return z[:k].copy(), float(z[k])
    return z, 0.0


def predict_new_user(fm: FactorModel, items, ratings, target_items, *, unknown: str = "mean",
                     clip: tuple[float, float] | None = None, stacklevel: int = 2):
    r"""Predictions for a new user (folded in from ``items``/``ratings``) on ``target_items``.

    :math:`\hat r_i = \mu + b + c_i + p \cdot q_i` with ``(p, b)`` from :func:`fold_in`;
    unknown target items follow ``unknown`` (``"mean"``: :math:`\mu + b`).  Clipped
    to ``clip`` when given.  A float for a scalar ``target_items``.
    """
    p, bu = fold_in(fm, items, ratings, stacklevel=stacklevel + 1)
    policy = check_choice(unknown, "unknown", UNKNOWN_POLICIES)
    scalar = np.ndim(target_items) == 0
    t = np.atleast_1d(np.asarray(target_items))
    codes = fm.items.codes(t, "ignore")
    known = codes >= 0
    if not known.all():
        if policy == "raise":
            raise KeyError(f"unknown item id {_py(t[np.flatnonzero(~known)[0]])!r}")
        warnings.warn(f"{int((~known).sum())} unknown target item(s) (unknown={policy!r})",
                      UnknownIdWarning, stacklevel=stacklevel)
    out = np.full(t.shape[0], np.nan if policy == "nan" else fm.mu + bu)
    kc = codes[known]
    val = fm.mu + bu + fm.Q[kc].astype(np.float64) @ p
    if fm.c is not None:
        val += fm.c[kc]
    out[known] = val
    if clip is not None:
        np.clip(out, clip[0], clip[1], out=out)
    return float(out[0]) if scalar else out


def recommend_new_user(fm: FactorModel, items, ratings, n: int = 10, exclude_seen: bool = True, *,
                       min_ratings: int | None = None, stacklevel: int = 2):
    """Top-``n`` items (raw ids, unclipped scores) for a new user folded in from its ratings.

    ``exclude_seen`` leaves out the items the user rated; ``min_ratings`` as in
    :func:`fastmf.serving.recommend`.
    """
    n = check_n(fm, n)
    p, bu = fold_in(fm, items, ratings, stacklevel=stacklevel + 1)
    S = (fm.Q.astype(np.float64) @ p + fm.mu + bu)[None, :]
    if fm.c is not None:
        S += fm.c
    if exclude_seen:
        codes = fm.items.codes(np.atleast_1d(np.asarray(items)), "ignore")
        S[0, codes[codes >= 0]] = -np.inf
    rare = rare_items(fm, min_ratings)
    if rare is not None:
        S[0, rare] = -np.inf
    idx, val = top_n(S, n)
    return fm.item_ids[idx[0]], val[0]
