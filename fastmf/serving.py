r"""Serving a :class:`~fastmf.fitted.FactorModel`: predictions, evaluation, top-n lists.

Every function takes the fitted model first and raw ids (coded through its
:class:`~fastmf.data.ids.IdIndex`).  Scores are

.. math::

    \hat r_{ui} = \mu + b_u + c_i + p_u \cdot q_i .

Unknown ids (``unknown=``): ``"mean"`` scores :math:`\mu` plus whatever bias is
known (no factor term), ``"nan"`` gives NaN, ``"raise"`` raises :class:`KeyError`;
a fallback is reported by one :class:`~fastmf.fitted.UnknownIdWarning` per call.

Top-n lists are computed in blocks of users (or items) so that memory is
``O(block_size)`` floats plus the output, never an ``n_users x n_items`` array.

``stacklevel`` arguments attribute warnings to the right caller: 2 (the default)
is the caller of the function; a wrapper that delegates adds one per level.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._threading import thread_limit
from ._validation import check_choice, check_positive_int
from .data.convert import raw_triplets
from .fitted import FactorModel, UnknownIdWarning
from .kernels.predict import predict_codes

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "UNKNOWN_POLICIES",
    "evaluate",
    "predict",
    "recommend",
    "similar_items",
    "top_n",
]

#: Default budget (number of floats) of one block of scores in recommend / similar_items.
DEFAULT_BLOCK_SIZE = 1 << 22
#: Policies for unknown ids.
UNKNOWN_POLICIES = ("mean", "nan", "raise")


def _py(x):
    return x.item() if isinstance(x, np.generic) else x


def _raw_id_array(x) -> np.ndarray:
    """Raw ids as an array for lookup; a sequence numpy would turn into strings stays object.

    ``np.asarray([1, "a"])`` is ``["1", "a"]``: the int ``1`` would then miss its row.
    Lookups are exact (:meth:`fastmf.data.ids.IdIndex.codes`), so an object array
    keeps each id's own type.
    """
    arr = np.atleast_1d(np.asarray(x))
    if not isinstance(x, np.ndarray) and np.ndim(x) == 1 and arr.dtype.kind in "US":
        arr = np.array(list(x), dtype=object)
    return arr


# ---------------------------------------------------------------------------- predictions
def predict_known_or_fallback(fm: FactorModel, ucodes: np.ndarray, icodes: np.ndarray, policy: str,
                              raw_u, raw_i, *, n_threads=None, stacklevel: int = 2) -> np.ndarray:
    """Unclipped float64 predictions for codes (``-1`` = unknown), with the ``policy`` fallback."""
    known = (ucodes >= 0) & (icodes >= 0)
    n_unknown = int(known.size - np.count_nonzero(known))
    if n_unknown and policy == "raise":
        j = int(np.flatnonzero(~known)[0])
        what, val = ("user", raw_u[j]) if ucodes[j] < 0 else ("item", raw_i[j])
        raise KeyError(f"unknown {what} id {_py(val)!r} ({n_unknown} predictions with an unknown id)")
    out = np.empty(ucodes.shape[0], dtype=np.float64)
    P, Q, b, c, mu = fm.P, fm.Q, fm.b, fm.c, fm.mu
    if n_unknown == 0:
        with thread_limit(n_threads):
            out[:] = predict_codes(ucodes.astype(np.int32), icodes.astype(np.int32), P, Q, b, c, mu)
        return out
    sel = np.flatnonzero(known)
    if sel.size:
        with thread_limit(n_threads):
            out[sel] = predict_codes(ucodes[sel].astype(np.int32), icodes[sel].astype(np.int32), P, Q, b, c, mu)
    rest = np.flatnonzero(~known)
    if policy == "nan":
        out[rest] = np.nan
    else:  # "mean": mu plus whatever bias is known
        fb = np.full(rest.size, mu, dtype=np.float64)
        if b is not None:
            uk = ucodes[rest] >= 0
            fb[uk] += b[ucodes[rest][uk]]
            ik = icodes[rest] >= 0
            fb[ik] += c[icodes[rest][ik]]
        out[rest] = fb
    warnings.warn(
        f"{n_unknown} of {ucodes.shape[0]} predictions involve an unknown user or item id "
        f"(unknown={policy!r}: {'global mean plus known biases' if policy == 'mean' else 'NaN'})",
        UnknownIdWarning,
        stacklevel=stacklevel,
    )
    return out


def predict(fm: FactorModel, users, items, *, unknown: str = "mean",
            clip: tuple[float, float] | None = None, n_threads=None, stacklevel: int = 2):
    r"""Predicted ratings :math:`\hat r = \mu + b_u + c_i + p_u \cdot q_i` for raw ids.

    Parameters
    ----------
    fm : FactorModel
    users, items : raw id or 1-D array-like of raw ids
        Pairs to predict (same length; a scalar is broadcast against an array).
    unknown : {"mean", "nan", "raise"}
        Unknown-id policy.
    clip : (low, high), optional
        Clip the predictions to this range.
    n_threads : int, optional
        Threads of the prediction kernel during the call.

    Returns
    -------
    float or ndarray of float64
        A float when both arguments are scalars.
    """
    policy = check_choice(unknown, "unknown", UNKNOWN_POLICIES)
    scalar = np.ndim(users) == 0 and np.ndim(items) == 0
    u = _raw_id_array(users)
    i = _raw_id_array(items)
    if u.ndim != 1 or i.ndim != 1:
        raise ValueError(f"users and items must be scalars or 1-D, got shapes {u.shape} and {i.shape}")
    if u.shape[0] != i.shape[0]:
        if u.shape[0] == 1:
            u = np.repeat(u, i.shape[0])
        elif i.shape[0] == 1:
            i = np.repeat(i, u.shape[0])
        else:
            raise ValueError(f"users and items have different lengths: {u.shape[0]} and {i.shape[0]}")
    out = predict_known_or_fallback(fm, fm.users.codes(u, "ignore"), fm.items.codes(i, "ignore"), policy, u, i,
                                    n_threads=n_threads, stacklevel=stacklevel + 1)
    if clip is not None:
        np.clip(out, clip[0], clip[1], out=out)
    return float(out[0]) if scalar else out


def evaluate(fm: FactorModel, X, *, unknown: str = "mean", clip: tuple[float, float] | None = None,
             n_threads=None) -> dict[str, Any]:
    """RMSE and MAE of the predictions on ratings ``X`` (any form :func:`raw_triplets` takes).

    Pairs whose prediction is NaN (``unknown="nan"``) are excluded and counted.

    Returns
    -------
    dict
        ``rmse``, ``mae``, ``n`` (pairs scored), ``n_unknown`` (pairs with an
        unknown user or item, scored by the policy unless it is ``"nan"``).
    """
    from .metrics import mae, rmse

    u, i, r = raw_triplets(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownIdWarning)
        pred = predict(fm, u, i, unknown=unknown, clip=clip, n_threads=n_threads)
    n_unknown = int(np.count_nonzero((fm.users.codes(u, "ignore") < 0) | (fm.items.codes(i, "ignore") < 0)))
    ok = ~np.isnan(pred)
    if not ok.any():
        raise ValueError("no rating of X can be scored: every user or item is unknown and unknown='nan'")
    r = np.asarray(r, dtype=np.float64)
    return {"rmse": rmse(r[ok], pred[ok]), "mae": mae(r[ok], pred[ok]), "n": int(ok.sum()), "n_unknown": n_unknown}


# ---------------------------------------------------------------------------- top-n helpers
def block_rows(block_size, n_cols: int) -> int:
    """Rows per block so that a block of scores holds about ``block_size`` floats."""
    budget = DEFAULT_BLOCK_SIZE if block_size is None else check_positive_int(block_size, "block_size")
    return max(1, budget // max(n_cols, 1))


def top_n(S: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` columns of each row of ``S``, best first; among equal scores the lower
    column comes first (also at the selection boundary, e.g. for ``-inf`` padding).

    O(rows * cols) time and a few block-sized temporaries: a partition finds each
    row's n-th largest value ``v``; everything above ``v`` is taken, then the first
    (lowest-column) entries equal to ``v`` fill the row.
    """
    rows, n_cols = S.shape
    if n < n_cols:
        v = np.partition(S, n_cols - n, axis=1)[:, n_cols - n][:, None]
        gt = S > v
        eq = S == v
        need = n - gt.sum(axis=1, keepdims=True)
        sel = gt | (eq & (np.cumsum(eq, axis=1) <= need))
        idx = np.nonzero(sel)[1].reshape(rows, n)
    else:
        idx = np.broadcast_to(np.arange(n_cols), S.shape).copy()
    vals = np.take_along_axis(S, idx, axis=1)
    order = np.lexsort((idx, -vals), axis=-1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


def seen_mask_indices(fm: FactorModel, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, item code) of every training rating of the users ``codes`` (>= 0)."""
    starts = fm.seen_indptr[codes]
    lens = fm.seen_indptr[codes + 1] - starts
    total = int(lens.sum())
    rows = np.repeat(np.arange(codes.shape[0]), lens)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    pos = offsets + np.arange(total)
    return rows, fm.seen_items[pos]


def rare_items(fm: FactorModel, min_ratings) -> np.ndarray | None:
    """Codes of items with fewer than ``min_ratings`` training ratings (None: no filter)."""
    if min_ratings is None:
        return None
    k = check_positive_int(min_ratings, "min_ratings", minimum=0)
    rare = np.flatnonzero(fm.item_counts() < k)
    return rare if rare.size else None


def check_n(fm: FactorModel, n, limit: int | None = None, what: str = "items") -> int:
    """``n`` as a positive int of at most ``limit`` (default: the number of items)."""
    n = check_positive_int(n, "n")
    limit = fm.n_items if limit is None else limit
    if n > limit:
        raise ValueError(f"n={n} exceeds the number of {what} ({limit})")
    return n


# ---------------------------------------------------------------------------- recommend
def _user_scores(fm: FactorModel, cb: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Scores (users ``cb`` x all items) of one block; unknown users (-1) get ``base``."""
    P, Q, b = fm.P, fm.Q, fm.b
    kn = cb >= 0
    if kn.all():  # the usual case: one block-sized array, updated in place
        S = P[cb] @ Q.T
        S += base
        if b is not None:
            S += b[cb][:, None]
        return S
    S = np.empty((cb.shape[0], Q.shape[0]), dtype=P.dtype)
    S[:] = base
    if kn.any():
        S[kn] += P[cb[kn]] @ Q.T
        if b is not None:
            S[kn] += b[cb[kn]][:, None]
    return S


def recommend(fm: FactorModel, users, n: int = 10, exclude_seen: bool = True, *, unknown: str = "mean",
              min_ratings: int | None = None, block_size: int | None = None, n_threads=None,
              stacklevel: int = 2):
    r"""Top-``n`` items for each user, by predicted score :math:`\mu + b_u + c_i + p_u\cdot q_i`.

    Users are scored in blocks of ``block_size // n_items`` users (at least
    one), so memory stays at ``O(block_size + n_users_requested * n)``
    whatever the number of users and items.

    Parameters
    ----------
    fm : FactorModel
    users : raw id or 1-D array-like of raw ids
    n : int >= 1
        Number of items per user; at most the number of items.
    exclude_seen : bool
        Leave out the items each user rated in training.  When a user has
        fewer than ``n`` unseen items, the list is padded with seen items
        whose score is ``-inf``.
    unknown : {"mean", "nan", "raise"}
        ``"mean"`` ranks unknown users by :math:`\mu + c_i` (the non-personalised
        ranking, with an :class:`UnknownIdWarning`); ``"nan"`` and ``"raise"``
        raise ``KeyError``.
    min_ratings : int, optional
        Only recommend items with at least this many training ratings (others
        only appear as ``-inf`` padding).
    block_size : int, optional
        Floats per block of scores (default 4,194,304).
    n_threads : int, optional
        BLAS threads during the call.

    Returns
    -------
    items : ndarray, shape (n_users, n) or (n,) for a single user
        Raw item ids, best first (ties: the lower item code first).
    scores : ndarray of float64, same shape
        Unclipped predicted ratings (``-inf`` for padding).
    """
    n = check_n(fm, n)
    if not isinstance(exclude_seen, (bool, np.bool_)):
        raise TypeError(f"exclude_seen must be a bool, got {exclude_seen!r}")
    scalar = np.ndim(users) == 0
    raw = _raw_id_array(users)
    codes = fm.users.codes(raw, "ignore")
    unknown_rows = codes < 0
    if unknown_rows.any():
        if unknown != "mean":
            raise KeyError(
                f"unknown user id {_py(raw[np.flatnonzero(unknown_rows)[0]])!r} "
                f"({int(unknown_rows.sum())} unknown in all; unknown={unknown!r})"
            )
        warnings.warn(
            f"{int(unknown_rows.sum())} unknown user(s): recommended by mu + item bias (non-personalised)",
            UnknownIdWarning, stacklevel=stacklevel,
        )
    base = np.full(fm.n_items, fm.mu, dtype=fm.P.dtype)
    if fm.c is not None:
        base += fm.c
    rare = rare_items(fm, min_ratings)
    if rare is not None:
        base[rare] = -np.inf
    rows_per_block = block_rows(block_size, fm.n_items)
    out_idx = np.empty((raw.shape[0], n), dtype=np.int64)
    out_val = np.empty((raw.shape[0], n), dtype=np.float64)
    with thread_limit(n_threads):
        for start in range(0, raw.shape[0], rows_per_block):
            cb = codes[start:start + rows_per_block]
            S = _user_scores(fm, cb, base)
            kn = cb >= 0
            if exclude_seen and kn.any():
                r, it = seen_mask_indices(fm, cb[kn])
                S[np.flatnonzero(kn)[r], it] = -np.inf
            idx, val = top_n(S, n)
            out_idx[start:start + cb.shape[0]] = idx
            out_val[start:start + cb.shape[0]] = val
    items = fm.item_ids[out_idx]
    if scalar:
        return items[0], out_val[0]
    return items, out_val


def similar_items(fm: FactorModel, items, n: int = 10, *, min_ratings: int | None = None,
                  block_size: int | None = None, n_threads=None):
    r"""The ``n`` items most similar to each item, by cosine similarity of the item factors.

    :math:`s(i, j) = q_i \cdot q_j / (\|q_i\| \|q_j\|)` (0 when a factor is
    zero); the item itself is excluded, and so are items with fewer than
    ``min_ratings`` training ratings (they then only appear as ``-inf``
    padding).  Blocked like :func:`recommend`.

    Returns
    -------
    items : ndarray, shape (n_queries, n) or (n,) for a single item
        Raw item ids, most similar first.
    similarities : ndarray of float64, same shape

    Raises
    ------
    KeyError
        An unknown item id (there is no factor to compare).
    """
    n = check_n(fm, n, fm.n_items - 1, "other items")
    scalar = np.ndim(items) == 0
    codes = np.atleast_1d(fm.items.codes(items, "raise", "item"))
    Q = fm.Q
    norms = np.linalg.norm(Q.astype(np.float64), axis=1)
    Qn = (Q / np.where(norms > 0, norms, 1.0)[:, None]).astype(Q.dtype)
    rare = rare_items(fm, min_ratings)
    rows_per_block = block_rows(block_size, Q.shape[0])
    out_idx = np.empty((codes.shape[0], n), dtype=np.int64)
    out_val = np.empty((codes.shape[0], n), dtype=np.float64)
    with thread_limit(n_threads):
        for start in range(0, codes.shape[0], rows_per_block):
            cb = codes[start:start + rows_per_block]
            S = Qn[cb] @ Qn.T
            S[np.arange(cb.shape[0]), cb] = -np.inf
            if rare is not None:
                S[:, rare] = -np.inf
            idx, val = top_n(S, n)
            out_idx[start:start + cb.shape[0]] = idx
            out_val[start:start + cb.shape[0]] = val
    ids = fm.item_ids[out_idx]
    if scalar:
        return ids[0], out_val[0]
    return ids, out_val
