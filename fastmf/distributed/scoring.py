"""Batch scoring of Dask collections with a fitted :class:`fastmf.MatrixFactorization`.

Both functions are lazy: they return Dask collections computed partition by partition
with the model's own in-process methods (:meth:`MatrixFactorization.predict`,
:meth:`MatrixFactorization.recommend`), so the scores equal the in-process ones.  The
model is shipped to the workers once per computation (its factors are
``(m + n)(k + 1)`` floats plus the seen-items arrays).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["predict", "recommend"]


def _check_model(model) -> None:
    if getattr(model, "user_factors_", None) is None:
        raise ValueError("the model is not fitted: fit it (or use fastmf.distributed.to_model) first")


def _predict_part(df: pd.DataFrame, model, unknown, clip) -> pd.Series:
    out = model.predict(df["user"].to_numpy(), df["item"].to_numpy(), unknown=unknown, clip=clip)
    return pd.Series(np.asarray(out, dtype=np.float64), index=df.index, name="prediction")


def predict(model, users, items, *, unknown: str | None = None, clip: bool | None = None):
    """Predicted ratings for pairs of raw ids given as Dask Series (same partitioning).

    Parameters
    ----------
    model : MatrixFactorization (fitted)
    users, items : dask.dataframe.Series
        Raw ids, aligned partition by partition (e.g. two columns of one frame).
    unknown, clip
        As :meth:`MatrixFactorization.predict`.

    Returns
    -------
    dask.dataframe.Series of float64 named ``"prediction"``, with the index of ``users``.
    """
    import dask.dataframe as dd

    _check_model(model)
    if not isinstance(users, dd.Series) or not isinstance(items, dd.Series):
        raise TypeError("users and items must be dask Series (for in-memory arrays use model.predict)")
    if users.npartitions != items.npartitions:
        raise ValueError(f"users and items have {users.npartitions} and {items.npartitions} partitions")
    frame = dd.concat([users.rename("user"), items.rename("item")], axis=1)
    return frame.map_partitions(_predict_part, model, unknown, clip, meta=pd.Series([], dtype="f8", name="prediction"))


def _recommend_part(s, model, n, exclude_seen, min_ratings) -> pd.DataFrame:
    users = pd.unique(np.asarray(s))
    if len(users) == 0:
        return pd.DataFrame({"user": np.asarray(s)[:0], "rank": np.zeros(0, np.int32),
                             "item": model.item_ids_[:0], "score": np.zeros(0)})
    items, scores = model.recommend(users, n=n, exclude_seen=exclude_seen, min_ratings=min_ratings)
    items = np.asarray(items).reshape(len(users), -1)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(users), -1)
    nn = items.shape[1]
    return pd.DataFrame({"user": np.repeat(users, nn), "rank": np.tile(np.arange(1, nn + 1, dtype=np.int32),
                                                                       len(users)),
                         "item": items.ravel(), "score": scores.ravel()})


def recommend(model, users, n: int = 10, exclude_seen: bool = True, *, min_ratings: int | None = None):
    """Top-``n`` items of every user in a Dask collection, as a Dask DataFrame.

    Parameters
    ----------
    model : MatrixFactorization (fitted)
    users : dask.dataframe.Series or Index
        Raw user ids (each partition is scored as one batch; repeats inside a partition
        are scored once).
    n, exclude_seen, min_ratings
        As :meth:`MatrixFactorization.recommend`.

    Returns
    -------
    dask.dataframe.DataFrame with columns ``user, rank`` (1 = best), ``item, score``;
    ``n`` rows per user, best first.
    """
    import dask.dataframe as dd

    _check_model(model)
    if not isinstance(users, (dd.Series, dd.Index)):
        raise TypeError("users must be a dask Series or Index (for in-memory ids use model.recommend)")
    meta = pd.DataFrame({"user": pd.Series([], dtype=model.user_ids_.dtype), "rank": pd.Series([], dtype="i4"),
                         "item": pd.Series([], dtype=model.item_ids_.dtype), "score": pd.Series([], dtype="f8")})
    return users.map_partitions(_recommend_part, model, n, exclude_seen, min_ratings, meta=meta,
                                enforce_metadata=False)
