"""Apache Arrow and Parquet in and out of :class:`~fastmf.data.ratings.Ratings`.

* :func:`ratings_from_arrow`: a ``pyarrow.Table``, ``RecordBatch``,
  ``RecordBatchReader`` or an iterable of record batches -> ``Ratings``;
* :func:`read_parquet_ratings`: a Parquet file -> ``Ratings`` (what
  :func:`fastmf.data.movielens.load_ratings_file` uses for ``.parquet``);
* :func:`ratings_to_parquet`: ``Ratings`` -> a Parquet file, written atomically.

Columns are chosen as in a CSV header (:func:`fastmf.data.movielens.load_ratings_file`):
``columns=(user, item, rating[, timestamp])`` or the first of ``userId,movieId,rating``,
``user,item,rating``, ``user_id,item_id,rating``, ``user_id,movie_id,rating``,
``UserID,MovieID,Rating`` present (with its timestamp column when there is one).
Only those columns are read: a Parquet file is column-projected, record batches are
projected batch by batch, so the one extra copy of the data is the Arrow columns
handed to :class:`Ratings` (which copies into its own canonical arrays).

:func:`ratings_to_parquet` writes the columns ``user, item, rating[, timestamp]``
with the raw ids (integer ids keep their integer type, string ids are strings), the
ratings in the ``Ratings``' dtype (float32 or float64) and int64 timestamps;
reading that file back with ``dtype=None`` gives equal ``Ratings`` (users or items
without any rating are not stored, as in any triplet file).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._io import atomic_open
from .._validation import check_dtype
from .movielens import _COLS, _choose_columns, _table_to_ratings
from .ratings import Ratings

__all__ = ["ratings_from_arrow", "read_parquet_ratings", "ratings_to_parquet"]

_WANT = "data must be a pyarrow Table, RecordBatch, RecordBatchReader or an iterable of RecordBatch"
ArrowData = pa.Table | pa.RecordBatch | pa.RecordBatchReader | Iterable[pa.RecordBatch]


def _rating_dtype(dtype, rating_type: pa.DataType) -> np.dtype:
    """``dtype`` checked, or (None) the rating column's own float32/float64, else float32."""
    if dtype is not None:
        return check_dtype(dtype)
    if pa.types.is_float32(rating_type):
        return np.dtype(np.float32)
    if pa.types.is_float64(rating_type):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _check_column(col: pa.ChunkedArray, role: str, name: str, source) -> pa.ChunkedArray:
    """Decode dictionaries, refuse nulls and wrong types; errors name ``source`` and the column."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if col.null_count:
        first = pc.index(col.is_null(), True).as_py()
        raise ValueError(f"{source}: column {name!r} ({role}) has {col.null_count} missing values "
                         f"(first at row {first})")
    t = col.type
    if role in ("user", "item"):
        ok = pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_floating(t)
        want = "integers or strings"
    elif role == "rating":
        ok = pa.types.is_integer(t) or pa.types.is_floating(t)
        want = "numbers"
    else:
        ok = pa.types.is_integer(t) or pa.types.is_timestamp(t)
        want = "integers (seconds) or timestamps"
    if not ok:
        raise TypeError(f"{source}: column {name!r} ({role}) must hold {want}, not {t}")
    if pa.types.is_large_string(t):
        col = col.cast(pa.string())
    return col


def _projected_to_ratings(table: pa.Table, chosen: tuple[str, ...], source, *, dtype, rating_scale,
                          duplicates, name) -> Ratings:
    """``table`` holds exactly the ``chosen`` columns, in that order."""
    if table.num_rows == 0:
        raise ValueError(f"{source}: no ratings")
    roles = _COLS[:len(chosen)]
    dt = _rating_dtype(dtype, table.column(chosen[2]).type)
    cols = [_check_column(table.column(i), role, c, source) for i, (role, c) in enumerate(zip(roles, chosen))]
    renamed = pa.table(cols, names=list(roles))
    return _table_to_ratings(renamed, dtype=dt, rating_scale=rating_scale, name=name, duplicates=duplicates)


def ratings_from_arrow(data: ArrowData, *, columns: tuple[str, ...] | None = None, dtype=None,
                       rating_scale: tuple[float, float] | None = None, duplicates: str = "error",
                       name: str | None = None) -> Ratings:
    """Build :class:`Ratings` from Arrow data.

    Parameters
    ----------
    data : pyarrow.Table, pyarrow.RecordBatch, pyarrow.RecordBatchReader or iterable of RecordBatch
        Record batches are projected onto the chosen columns one by one, so
        other columns are never gathered.
    columns : tuple of str, optional
        Names of the user, item, rating (and optionally timestamp) columns.
        Default: guessed as for a CSV header (see the module docstring).
    dtype : {None, np.float32, np.float64}
        Storage dtype of the ratings; ``None`` (default) keeps a float32 or
        float64 rating column's type (float32 for integer ratings).
    rating_scale, duplicates
        As in :meth:`Ratings.from_arrays`.
    name : str, optional

    Returns
    -------
    Ratings
        Raw ids are the column's values (integers or strings).

    Raises
    ------
    TypeError
        ``data`` is not Arrow data; a column of the wrong type.
    ValueError
        No user/item/rating columns found, a named column missing, missing
        values, no rows, or any bad rating (see :meth:`Ratings.from_arrays`).
    """
    source = "Arrow data"
    if isinstance(data, pa.Table):
        chosen = _choose_columns(data.column_names, columns, source)
        table = data.select(list(chosen))
    else:
        if isinstance(data, pa.RecordBatch):
            schema, batches = data.schema, iter([data])
        elif isinstance(data, pa.RecordBatchReader):
            schema, batches = data.schema, iter(data)
        elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
            batches = iter(data)
            first = next(batches, None)
            if first is None:
                raise ValueError(f"{source}: no record batches")
            if not isinstance(first, pa.RecordBatch):
                raise TypeError(f"{_WANT}, got a {type(data).__name__} of {type(first).__name__}")
            schema = first.schema
            batches = _chain(first, batches)
        else:
            raise TypeError(f"{_WANT}, got {type(data).__name__}")
        chosen = _choose_columns(schema.names, columns, source)
        projected = []
        for b in batches:
            if not isinstance(b, pa.RecordBatch):
                raise TypeError(f"{_WANT}, got a record batch followed by a {type(b).__name__}")
            if b.schema != schema:
                raise ValueError(f"{source}: record batches with different schemas:\n{schema}\nand\n{b.schema}")
            projected.append(b.select(list(chosen)))
        table = pa.Table.from_batches(projected, schema=pa.schema([schema.field(c) for c in chosen]))
    return _projected_to_ratings(table, chosen, source, dtype=dtype, rating_scale=rating_scale,
                                 duplicates=duplicates, name=name)


def _chain(first, rest):
    yield first
    yield from rest


def read_parquet_ratings(path: str | os.PathLike, *, columns: tuple[str, ...] | None = None, dtype=None,
                         rating_scale: tuple[float, float] | None = None, duplicates: str = "error",
                         name: str | None = None) -> Ratings:
    """Read a Parquet ratings file, only its user/item/rating[/timestamp] columns.

    Parameters
    ----------
    path : path
    columns, dtype, rating_scale, duplicates
        As in :func:`ratings_from_arrow`.
    name : str, optional
        Defaults to the file name.

    Returns
    -------
    Ratings

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a Parquet file; columns not found (the message names the file and
        the columns); missing values; any bad rating.
    TypeError
        A column of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ratings file not found: {path}")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file: {exc}") from exc
    with pf:
        chosen = _choose_columns(pf.schema_arrow.names, columns, path)
        try:
            table = pf.read(columns=list(chosen), use_threads=True)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{path}: cannot read the Parquet columns {list(chosen)}: {exc}") from exc
    return _projected_to_ratings(table, chosen, path, dtype=dtype, rating_scale=rating_scale,
                                 duplicates=duplicates, name=path.name if name is None else name)


def ratings_to_parquet(ratings: Ratings, path: str | os.PathLike, *, compression: str | None = "zstd") -> Path:
    """Write ``ratings`` to a Parquet file, atomically.

    Columns ``user``, ``item`` (raw ids: integers keep their type, strings are
    strings), ``rating`` (float32 or float64, the ``Ratings``' dtype) and, when
    present, ``timestamp`` (int64), in canonical (user, item) order.  The file is
    written to a temporary sibling and moved over ``path`` with ``os.replace``:
    an error leaves an existing ``path`` untouched.

    Parameters
    ----------
    ratings : Ratings
    path : path
        Destination; its folder must exist.
    compression : str or None
        Parquet codec (``"zstd"``, ``"snappy"``, ``None``...).

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(ratings, Ratings):
        raise TypeError(f"expected Ratings, got {type(ratings).__name__}")
    path = Path(path)
    cols = {
        "user": _id_array(ratings.user_ids, ratings.users, "user"),
        "item": _id_array(ratings.item_ids, ratings.items, "item"),
        "rating": pa.array(ratings.values),
    }
    if ratings.timestamps is not None:
        cols["timestamp"] = pa.array(ratings.timestamps, type=pa.int64())
    table = pa.table(cols)
    with atomic_open(path, "wb") as fh:
        pq.write_table(table, fh, compression=compression)
    return path


def _id_array(ids: np.ndarray, codes: np.ndarray, what: str) -> pa.Array:
    """Raw ids of ``codes`` as an Arrow array: dictionary-gathered, never through Python objects for ints."""
    if ids.dtype.kind in "iu":
        return pa.array(ids[codes])
    if ids.dtype.kind in "OU":
        dictionary = pa.array(ids, type=pa.string())  # raises on non-string objects
        return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), dictionary).cast(pa.string())
    raise TypeError(f"cannot write {what} ids of dtype {ids.dtype} to Parquet")
