"""Distributed id coding: raw user and item ids of a Dask DataFrame to dense codes.

Codes follow the sorted order of the raw ids, as in process
(:meth:`fastmf.Ratings.from_arrays`): the distinct ids of each column are collected
per partition, merged and sorted once on the client, and every partition is then
coded by ``searchsorted`` against that sorted array.  The codes of a rating therefore
depend only on the set of ids, never on how the frame is partitioned.

Every partition is validated as in process (:func:`fastmf._validation.check_raw_ids`,
:func:`fastmf._validation.check_ratings_values`); an error names the partition and
the row inside it.  Duplicates are detected later, when the ratings of a user block are
sorted on their worker (:mod:`fastmf.distributed.blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import check_dtype, check_raw_ids, check_ratings_values

__all__ = ["CodedRatings", "code_frame", "read_input", "PARTITION_COLUMN", "ROW_COLUMN"]

PARTITION_COLUMN = "_partition"
ROW_COLUMN = "_row"


@dataclass
class CodedRatings:
    """A coded Dask DataFrame and the global facts gathered while coding it.

    Attributes
    ----------
    frame : dask.dataframe.DataFrame
        Columns ``user, item`` (int32 codes), ``rating`` (``dtype``), ``_partition``
        (int32) and ``_row`` (int64, the row inside its source partition).
    user_ids, item_ids : ndarray
        Raw id of each code (sorted).
    user_counts, item_counts : ndarray of int64
        Ratings per user and per item.
    value_sum : float
        Sum of the ratings (float64, summed per partition, then in partition order).
    nnz : int
    dtype : numpy dtype
    rating_scale : (float, float)
        The declared scale, else the observed ``(min, max)`` (as ``MatrixFactorization.fit``).
    """

    frame: object
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_counts: np.ndarray
    item_counts: np.ndarray
    value_sum: float
    nnz: int
    dtype: np.dtype
    rating_scale: tuple[float, float] | None

    @property
    def global_mean(self) -> float:
        return self.value_sum / self.nnz


def read_input(data, columns: tuple[str, str, str] | None = None):
    """A Dask DataFrame with the three columns ``user, item, rating`` (renamed).

    Parameters
    ----------
    data : dask.dataframe.DataFrame, str or os.PathLike
        A Dask frame, or a Parquet path or glob read with ``dask.dataframe.read_parquet``.
    columns : (user, item, rating) column names, optional
        Default: the first of ``("user", "item", "rating")``, ``("userId", "movieId",
        "rating")``, ``("user_id", "item_id", "rating")`` present.
    """
    import dask.dataframe as dd

    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        data = dd.read_parquet(str(data) if not isinstance(data, bytes) else data.decode())
    if not isinstance(data, dd.DataFrame):
        raise TypeError(f"data must be a dask DataFrame or a Parquet path, got {type(data).__name__}")
    if columns is None:
        for guess in (("user", "item", "rating"), ("userId", "movieId", "rating"), ("user_id", "item_id", "rating")):
            if all(c in data.columns for c in guess):
                columns = guess
                break
        else:
            raise ValueError(
                f"cannot find user, item and rating columns in {list(data.columns)}: pass columns=(user, item, rating)"
            )
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the frame's columns {list(data.columns)}")
    u, i, r = columns
    return data[[u, i, r]].rename(columns={u: "user", i: "item", r: "rating"})


def _checked_partition(df: pd.DataFrame, partition_info=None, dtype=np.float32, rating_scale=None) -> pd.DataFrame:
    """Validate one partition; raw ids are normalised (float ids to int64)."""
    part = -1 if partition_info is None else int(partition_info["number"])
    try:
        u = check_raw_ids(df["user"].to_numpy(), "user ids")
        i = check_raw_ids(df["item"].to_numpy(), "item ids")
        r = check_ratings_values(df["rating"].to_numpy(), dtype, rating_scale)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"partition {part}: {exc}") from exc
    return pd.DataFrame({"user": u, "item": i, "rating": r,
                         PARTITION_COLUMN: np.full(len(df), part, dtype=np.int32),
                         ROW_COLUMN: np.arange(len(df), dtype=np.int64)})


def _uniques(s: pd.Series) -> pd.Series:
    return pd.Series(pd.unique(s.to_numpy()))


def _sorted_ids(parts: list, name: str) -> np.ndarray:
    allv = np.concatenate([np.asarray(p) for p in parts]) if parts else np.array([], dtype=np.int64)
    try:
        codes, uniques = pd.factorize(allv, sort=True)
    except TypeError as exc:
        raise TypeError(f"{name} mix types that cannot be ordered (e.g. strings and ints): {exc}") from exc
    if len(uniques) > np.iinfo(np.int32).max:
        raise ValueError(f"{name}: {len(uniques)} distinct ids exceed the int32 code range")
    return np.asarray(uniques)


def _code_partition(df: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    out = df.copy()
    out["user"] = np.searchsorted(user_ids, df["user"].to_numpy()).astype(np.int32)
    out["item"] = np.searchsorted(item_ids, df["item"].to_numpy()).astype(np.int32)
    return out


def _partition_stats(df: pd.DataFrame, m: int, n: int) -> dict:
    return {"uc": np.bincount(df["user"].to_numpy(), minlength=m).astype(np.int64),
            "ic": np.bincount(df["item"].to_numpy(), minlength=n).astype(np.int64),
            "sum": float(np.sum(df["rating"].to_numpy(), dtype=np.float64)), "nnz": len(df),
            "min": float(df["rating"].min()) if len(df) else np.inf,
            "max": float(df["rating"].max()) if len(df) else -np.inf}


def code_frame(frame, client, *, dtype=np.float32, rating_scale=None) -> CodedRatings:
    """Validate and code a ``user, item, rating`` Dask DataFrame (see the module docstring).

    Two passes over the data: one for the distinct ids, one for the per-partition
    counts and sums of the coded frame (which stays lazy; it is materialised when the
    blocks are built).  The caller's frame is not modified.
    """
    import dask

    dt = check_dtype(dtype)
    checked = frame.map_partitions(_checked_partition, dtype=dt, rating_scale=rating_scale,
                                   meta={"user": "i8", "item": "i8", "rating": dt, PARTITION_COLUMN: "i4",
                                         ROW_COLUMN: "i8"})
    # distinct ids: per partition, then merged and sorted once here
    delayed_parts = checked.to_delayed()
    uniq = [dask.delayed(lambda d: (pd.unique(d["user"].to_numpy()), pd.unique(d["item"].to_numpy())))(p)
            for p in delayed_parts]
    got = client.compute(uniq, sync=True)
    user_ids = _sorted_ids([g[0] for g in got], "user ids")
    item_ids = _sorted_ids([g[1] for g in got], "item ids")
    if len(user_ids) == 0:
        raise ValueError("no ratings: the frame is empty")
    coded = checked.map_partitions(_code_partition, user_ids, item_ids,
                                   meta={"user": "i4", "item": "i4", "rating": dt, PARTITION_COLUMN: "i4",
                                         ROW_COLUMN: "i8"})
    m, n = len(user_ids), len(item_ids)
    stats = client.compute([dask.delayed(_partition_stats)(p, m, n) for p in coded.to_delayed()], sync=True)
    uc = np.zeros(m, dtype=np.int64)
    ic = np.zeros(n, dtype=np.int64)
    total = 0.0
    nnz = 0
    lo, hi = np.inf, -np.inf
    for s in stats:  # partition order
        lo, hi = min(lo, s["min"]), max(hi, s["max"])
        uc += s["uc"]
        ic += s["ic"]
        total += s["sum"]
        nnz += s["nnz"]
    return CodedRatings(frame=coded, user_ids=user_ids, item_ids=item_ids, user_counts=uc, item_counts=ic,
                        value_sum=total, nnz=nnz, dtype=dt,
                        rating_scale=(lo, hi) if rating_scale is None else (float(rating_scale[0]),
                                                                             float(rating_scale[1])))
