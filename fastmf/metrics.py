r"""Accuracy and ranking metrics.

Rating accuracy, over :math:`N` (rating, prediction) pairs:

.. math::

    \mathrm{RMSE} = \sqrt{\tfrac1N \sum (r - \hat r)^2} \qquad
    \mathrm{MAE} = \tfrac1N \sum |r - \hat r|

Top-:math:`k` ranking metrics, per user, with :math:`R_k` the first :math:`k`
recommended items and :math:`T` the user's relevant (held-out) items, binary
relevance:

.. math::

    \mathrm{precision@k} = \frac{|R_k \cap T|}{k} \qquad
    \mathrm{recall@k} = \frac{|R_k \cap T|}{|T|} \qquad
    \mathrm{nDCG@k} = \frac{\sum_{j=1}^{k} [R_k^{(j)} \in T] / \log_2(j + 1)}
                          {\sum_{j=1}^{\min(k, |T|)} 1 / \log_2(j + 1)}

Each is averaged over the users that have at least one relevant item (users
without any are skipped, as in most evaluation toolkits; the count of users
scored is returned by :func:`ranking_metrics`).  Precision divides by ``k`` even
when a user's list is shorter.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._validation import check_positive_int

__all__ = [
    "rmse",
    "mae",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "ranking_metrics",
    "relevant_items",
]


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D, got shapes {t.shape} and {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {t.shape[0]} and {p.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty")
    for arr, name in ((t, "y_true"), (p, "y_pred")):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"{name} contains NaN or inf: first at position {int(np.flatnonzero(bad)[0])}")
    return t, p


def rmse(y_true, y_pred) -> float:
    """Root mean squared error (accumulated in float64).

    Raises
    ------
    ValueError
        Different lengths, empty input, or non-finite values.
    """
    t, p = _pair(y_true, y_pred)
    d = t - p
    return float(np.sqrt(np.dot(d, d) / d.shape[0]))


def mae(y_true, y_pred) -> float:
    """Mean absolute error (accumulated in float64); same checks as :func:`rmse`."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


# ---------------------------------------------------------------------------- ranking
def _lists(recommended, relevant, k) -> tuple[list, list, int]:
    k = check_positive_int(k, "k")
    if isinstance(recommended, np.ndarray) and recommended.ndim != 2:
        raise ValueError(
            f"recommended must be 2-D (one row of item ids per user), got shape {recommended.shape}; "
            "wrap a single user's list as [items]"
        )
    rec = list(recommended)
    rel = list(relevant)
    if len(rec) != len(rel):
        raise ValueError(f"recommended has {len(rec)} users but relevant has {len(rel)}")
    if not rec:
        raise ValueError("no users to score")
    return rec, rel, k


def _per_user(recommended, relevant, k):
    """Yield ``(hits, n_relevant, n_listed)`` for each user with a relevant item."""
    for r, t in zip(recommended, relevant):
        truth = set(np.asarray(list(t) if isinstance(t, (set, frozenset)) else t).ravel().tolist())
        if not truth:
            continue
        top = np.asarray(r)[:k].tolist()
        hits = np.array([x in truth for x in top], dtype=bool)
        yield hits, len(truth)


def precision_at_k(recommended: Sequence, relevant: Sequence, k: int = 10) -> float:
    """Mean precision@k over users with at least one relevant item.

    Parameters
    ----------
    recommended : 2-D array or list of sequences
        Recommended item ids per user, best first (e.g. the items returned by
        :meth:`fastmf.model.MatrixFactorization.recommend`).
    relevant : list of sets or sequences
        Relevant item ids per user, same order as ``recommended``.
    k : int >= 1

    Returns
    -------
    float
        NaN when no user has a relevant item.
    """
    rec, rel, k = _lists(recommended, relevant, k)
    vals = [h.sum() / k for h, _ in _per_user(rec, rel, k)]
    return float(np.mean(vals)) if vals else float("nan")


def recall_at_k(recommended: Sequence, relevant: Sequence, k: int = 10) -> float:
    """Mean recall@k over users with at least one relevant item (see :func:`precision_at_k`)."""
    rec, rel, k = _lists(recommended, relevant, k)
    vals = [h.sum() / n for h, n in _per_user(rec, rel, k)]
    return float(np.mean(vals)) if vals else float("nan")


def ndcg_at_k(recommended: Sequence, relevant: Sequence, k: int = 10) -> float:
    """Mean binary-relevance nDCG@k over users with at least one relevant item."""
    rec, rel, k = _lists(recommended, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    vals = []
    for h, n in _per_user(rec, rel, k):
        dcg = float(discounts[: h.shape[0]][h].sum())
        idcg = float(discounts[: min(n, k)].sum())
        vals.append(dcg / idcg)
    return float(np.mean(vals)) if vals else float("nan")


def relevant_items(ratings, threshold: float | None = 4.0) -> dict:
    """Relevant items per user of a ratings set: raw user id -> array of raw item ids.

    Parameters
    ----------
    ratings : Ratings
        Held-out ratings.
    threshold : float or None
        An item is relevant when rated ``>= threshold``; ``None`` makes every
        held-out item relevant.
    """
    from .data.ratings import Ratings

    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    keep = np.ones(ratings.nnz, dtype=bool) if threshold is None else ratings.values >= threshold
    users = ratings.users[keep]
    items = ratings.items[keep]
    out: dict = {}
    if users.size == 0:
        return out
    bounds = np.flatnonzero(np.diff(users)) + 1
    for seg_u, seg_i in zip(np.split(users, bounds), np.split(items, bounds)):
        raw = ratings.user_ids[seg_u[0]]
        out[raw.item() if isinstance(raw, np.generic) else raw] = ratings.item_ids[seg_i]
    return out


def ranking_metrics(model, test, k: int = 10, threshold: float | None = 4.0,
                    exclude_seen: bool = True) -> dict[str, Any]:
    """precision@k, recall@k and nDCG@k of a fitted model's recommendations on held-out ratings.

    Users of ``test`` unknown to the model are skipped (counted in
    ``n_users_unknown``).  Recommendations exclude the items each user rated in
    training (``exclude_seen``), so held-out items can be found.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``ndcg``, ``k``, ``n_users`` (users scored)
        and ``n_users_unknown``.
    """
    k = check_positive_int(k, "k")
    truth = relevant_items(test, threshold)
    users = list(truth)
    known = model.user_codes(np.asarray(users), missing="ignore") >= 0 if users else np.zeros(0, bool)
    users_known = [u for u, ok in zip(users, known) if ok]
    out = {"k": k, "n_users": len(users_known), "n_users_unknown": len(users) - len(users_known)}
    if not users_known:
        out.update(precision=float("nan"), recall=float("nan"), ndcg=float("nan"))
        return out
    rec_items, _ = model.recommend(np.asarray(users_known), n=k, exclude_seen=exclude_seen)
    rel = [truth[u] for u in users_known]
    out["precision"] = precision_at_k(rec_items, rel, k)
    out["recall"] = recall_at_k(rec_items, rel, k)
    out["ndcg"] = ndcg_at_k(rec_items, rel, k)
    return out
