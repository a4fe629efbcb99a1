"""A fitted :class:`fastmf.MatrixFactorization` from a distributed fit's result."""

from __future__ import annotations

import time

import numpy as np

from .._packing import unpack

__all__ = ["to_model"]


def to_model(result, model=None, *, eval_dropped: int = 0):
    """Set the fitted attributes of ``model`` (default: a new ``MatrixFactorization``
    with the result's rank and biases) from :func:`fit_als` / :func:`fit_newton`'s result.

    The factors are already on the client; nothing else is fetched.  This mirrors the
    attribute block of ``MatrixFactorization.fit`` (kept in one place to follow its changes).
    """
    from ..model import MatrixFactorization

    k, biases = int(result["rank"]), bool(result["biases"])
    if model is None:
        model = MatrixFactorization(rank=k, biases=biases)
    m, n = len(result["user_ids"]), len(result["item_ids"])
    x = np.asarray(result["x"])
    P, Q, b, c = unpack(x, m, n, k, biases)
    dt = x.dtype
    model.user_factors_ = np.array(P, dtype=dt, copy=True)
    model.item_factors_ = np.array(Q, dtype=dt, copy=True)
    model.user_biases_ = None if b is None else np.array(b, dtype=dt, copy=True)
    model.item_biases_ = None if c is None else np.array(c, dtype=dt, copy=True)
    model.global_mean_ = float(result["mu"])
    model.user_ids_ = np.asarray(result["user_ids"])
    model.item_ids_ = np.asarray(result["item_ids"])
    scale = result.get("rating_scale")
    model.rating_scale_ = None if scale is None else (float(scale[0]), float(scale[1]))
    model.item_titles_ = None
    model.seen_indptr_ = result["seen_indptr"]
    model.seen_items_ = result["seen_items"]
    model.result_ = result
    model.history_ = [dict(rec) for rec in (result.get("history") or [])]
    model.n_iter_ = int(result.get("nit", len(model.history_)))
    model.n_eval_dropped_ = int(eval_dropped)
    model.dataset_name_ = None
    model._user_index = None
    model._item_index = None
    model.fit_time_ = float(result.get("elapsed", 0.0))
    return model
