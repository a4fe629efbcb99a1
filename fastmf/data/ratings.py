"""``Ratings``: the one container for explicit rating data.

Storage (DESIGN §2)
-------------------
Canonical COO triplets sorted by ``(user, item)``:

* ``users``  int32 codes in ``[0, n_users)``, non-decreasing,
* ``items``  int32 codes in ``[0, n_items)``, increasing within a user,
* ``values`` float32 or float64 ratings,
* ``timestamps`` int64 or ``None``.

Because of that order the triplets *are* CSR by user: ``user_indptr`` (int64,
``n_users + 1``) delimits each user's run and ``items`` are its column indices.

The item-major copy (CSR by item) is built lazily, once, in O(nnz) by a counting
sort and kept: ``item_indptr`` (int64), ``item_users`` (int32), ``item_values``
and ``item_perm`` (int64 positions of each item-major entry in the canonical
arrays).  It costs 4 + itemsize + 8 bytes a rating; streaming it is much faster
than gathering through ``item_perm`` in the item-side kernels.

Raw ids (ints or strings) are mapped to dense codes at the boundary:
``user_ids[code]`` is the raw id of a code and :meth:`Ratings.user_codes` maps raw
ids to codes (likewise for items).  Codes follow the sorted order of the raw ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

from .._lazy import is_dataframe, is_sparse
from .._validation import as_1d, check_dtype, check_rating_scale, check_ratings_values, check_raw_ids
from ._layout import first_unsorted, indptr_from_sorted, item_major
from ._sort import PARALLEL_MIN_IDS, factorize_int, gather, rank_table, sort_by_rank_tables, sort_by_user_item
from .ids import IdIndex, as_id_array

if TYPE_CHECKING:  # pandas and scipy are imported only by the methods that use them
    import pandas as pd
    import scipy.sparse as sp

__all__ = ["Ratings"]

DuplicatePolicy = Literal["error", "last", "mean"]
_DUPLICATE_POLICIES = ("error", "last", "mean")
DEFAULT_MAX_DENSE = 50_000_000

_DATAFRAME_COLUMN_GUESSES = (
    ("user", "item", "rating"),
    ("userId", "movieId", "rating"),
    ("user_id", "item_id", "rating"),
    ("user_id", "movie_id", "rating"),
)


def _factorize(raw: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes (int32) of ``raw`` and its sorted unique ids (see :meth:`IdIndex.factorize`).

    Integer ids in a range not much wider than their number are coded by a presence
    table (:func:`fastmf.data._sort.factorize_int`, the same codes); others by
    :meth:`IdIndex.factorize`.
    """
    fast = factorize_int(raw)
    if fast is not None:
        return fast
    codes, index = IdIndex.factorize(raw, name)
    return codes, index.ids


def _canonical_order(ucodes, icodes, vals, ts, user_ids, item_ids, duplicates):
    """Codes, values and timestamps sorted by (user, item), duplicates handled per ``duplicates``.

    Two stable counting sorts (:func:`fastmf.data._sort.sort_by_user_item`): the order
    is that of a stable argsort of ``user * n_items + item``, so ties keep input order.
    """
    sorted_ = sort_by_user_item(ucodes, icodes, len(user_ids), len(item_ids), vals)
    return _after_sort(*sorted_, vals, ts, lambda b: (user_ids[ucodes[b]], item_ids[icodes[b]]), duplicates)


def _after_sort(users, items, order, n_dup, sorted_vals, vals, ts, raw_pair, duplicates):
    """The canonical arrays from a sort's output: timestamps gathered, duplicates handled.

    ``raw_pair(row)`` gives the raw (user, item) ids of an input row, for the duplicate error.
    """
    if not n_dup:
        return users, items, sorted_vals, None if ts is None else gather(ts, order)
    dup = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
    if duplicates == "error":
        pos = np.flatnonzero(dup) + 1
        j = pos[np.argmin(order[pos])]
        a, b = sorted((int(order[j - 1]), int(order[j])))
        raw_user, raw_item = raw_pair(b)
        raise ValueError(
            f"duplicate (user, item) pair ({_py(raw_user)!r}, {_py(raw_item)!r}) "
            f"at rows {a} and {b}; pass duplicates='last' or 'mean' to combine duplicates"
        )
    # Runs of equal keys: keep the last position of each run (the sort is stable).
    last = np.append(~dup, True)
    if duplicates == "mean":
        starts = np.flatnonzero(np.insert(~dup, 0, True))
        sums = np.add.reduceat(sorted_vals.astype(np.float64), starts)
        counts = np.diff(np.append(starts, len(order)))
        vals = (sums / counts).astype(vals.dtype)
        ts = None if ts is None else np.maximum.reduceat(gather(ts, order), starts)
    else:  # "last"
        keep = order[last]
        vals = vals[keep]
        ts = None if ts is None else ts[keep]
    return users[last], items[last], vals, ts


def _check_timestamps(ts: np.ndarray) -> np.ndarray:
    """int64 copy of integer (or datetime64) timestamps; anything else is a ``TypeError``."""
    if ts.dtype.kind not in "iu":
        if ts.dtype.kind == "M":
            return ts.astype("datetime64[s]").astype(np.int64)
        raise TypeError(f"timestamps must be integers (seconds), got dtype {ts.dtype}")
    return np.array(ts, dtype=np.int64, copy=True)


def _py(x):
    """A numpy scalar as a plain Python value, for readable messages."""
    return x.item() if isinstance(x, np.generic) else x


def _checked_codes(users, items, ratings, n_users, n_items, timestamps, user_ids, item_ids, dtype, duplicates,
                   rating_scale) -> tuple:
    """:meth:`Ratings.from_codes`'s arguments checked (errors name the argument and row), before any work."""
    dt = check_dtype(dtype)
    if duplicates not in _DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {_DUPLICATE_POLICIES}, got {duplicates!r}")
    check_rating_scale(rating_scale)  # before any work
    u = as_1d(users, "users")
    i = as_1d(items, "items")
    r = as_1d(ratings, "ratings")
    lengths = {"users": len(u), "items": len(i), "ratings": len(r)}
    if timestamps is not None:
        lengths["timestamps"] = len(timestamps)
    if len(set(lengths.values())) != 1:
        raise ValueError(f"input arrays have mismatched lengths: {lengths}")
    if len(r) == 0:
        raise ValueError("no ratings: the input arrays are empty")
    for arr, nm in ((u, "user codes"), (i, "item codes")):
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{nm} must be integers, got dtype {arr.dtype}")
    if user_ids is not None:
        user_ids = np.asarray(user_ids)
        n_users = len(user_ids) if n_users is None else n_users
    if item_ids is not None:
        item_ids = np.asarray(item_ids)
        n_items = len(item_ids) if n_items is None else n_items
    n_users = int(u.max()) + 1 if n_users is None else int(n_users)
    n_items = int(i.max()) + 1 if n_items is None else int(n_items)
    for arr, nm, n in ((u, "user codes", n_users), (i, "item codes", n_items)):
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{nm} must lie in [0, {n}): first out of range at row {row} (value {arr[row]})")
    if user_ids is None:
        user_ids = np.arange(n_users, dtype=np.int64)
    elif len(user_ids) != n_users:
        raise ValueError(f"user_ids has {len(user_ids)} entries, n_users is {n_users}")
    if item_ids is None:
        item_ids = np.arange(n_items, dtype=np.int64)
    elif len(item_ids) != n_items:
        raise ValueError(f"item_ids has {len(item_ids)} entries, n_items is {n_items}")
    vals = check_ratings_values(r, dt, rating_scale)
    ts = None if timestamps is None else _check_timestamps(as_1d(timestamps, "timestamps"))
    return u, i, vals, ts, user_ids, item_ids


class Ratings:
    """Explicit ratings of ``n_users`` users on ``n_items`` items, stored sparse.

    Build one with :meth:`from_arrays`, :meth:`from_dataframe`,
    :meth:`from_scipy`, :meth:`from_codes` or a reader such as
    :func:`fastmf.load_movielens`; the plain constructor is internal.

    Attributes
    ----------
    users, items : ndarray of int32, shape (nnz,)
        Codes of the canonical triplets, sorted by (user, item).
    values : ndarray of float32 or float64, shape (nnz,)
        The ratings.
    timestamps : ndarray of int64, shape (nnz,), or None
    user_indptr : ndarray of int64, shape (n_users + 1,)
        CSR-by-user row pointer of the canonical arrays.
    user_ids, item_ids : ndarray
        Raw id of each code (``user_ids[code]``).
    rating_scale : tuple of float or None
        Declared ``(low, high)`` rating scale, if any.
    item_titles : dict or None
        Raw item id -> title, where the data set has titles.
    name : str or None
        Data set name, for display.
    """

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        values: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        timestamps: np.ndarray | None = None,
        rating_scale: tuple[float, float] | None = None,
        item_titles: dict | None = None,
        name: str | None = None,
        _item_major: tuple | None = None,
    ):
        # Internal: arrays are assumed canonical, validated and owned by this object.
        self.users = users
        self.items = items
        self.values = values
        self.timestamps = timestamps
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.rating_scale = rating_scale
        self.item_titles = item_titles
        self.name = name
        self.user_indptr = indptr_from_sorted(users, len(user_ids))
        self._item_major = _item_major
        # IdIndex caches (see _id_index): built on first lookup, rebuilt if user_ids is replaced
        self._user_idindex: IdIndex | None = None
        self._item_idindex: IdIndex | None = None
        self._astype_cache: dict = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        users: Sequence[Any] | np.ndarray,
        items: Sequence[Any] | np.ndarray,
        ratings: Sequence[float] | np.ndarray,
        timestamps: Sequence[int] | np.ndarray | None = None,
        *,
        dtype=np.float32,
        duplicates: DuplicatePolicy = "error",
        rating_scale: tuple[float, float] | None = None,
        name: str | None = None,
    ) -> "Ratings":
        """Build from three parallel arrays of raw user ids, raw item ids and ratings.

        Parameters
        ----------
        users, items : array-like of int or str, shape (nnz,)
            Raw ids, checked by :func:`fastmf.data.ids.raw_ids`: non-negative
            integers representable in int64 (whole float ids up to ``2**53``) or
            strings, never both in one array.
        ratings : array-like of float, shape (nnz,)
            Finite ratings; inside ``rating_scale`` if one is given.
        timestamps : array-like of int, optional
        dtype : {np.float32, np.float64}
            Storage dtype of the ratings.
        duplicates : {"error", "last", "mean"}
            What to do with repeated (user, item) pairs: raise (default), keep the
            last one in input order, or average them (timestamps: the latest).
        rating_scale : (low, high), optional
            Declared scale; ratings outside it are an error.

        Raises
        ------
        TypeError
            Wrong dtypes (non-numeric ratings, boolean ids, dtype not float32/64).
        ValueError
            Empty input, length mismatch, NaN/inf ratings or ratings that overflow
            ``dtype``, ids that cannot be represented exactly (negative, fractional,
            float above ``2**53``, unsigned above int64, mixed strings and numbers),
            a malformed ``rating_scale`` or ratings outside it, duplicates under
            ``"error"``.
        """
        dt = check_dtype(dtype)
        if duplicates not in _DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {_DUPLICATE_POLICIES}, got {duplicates!r}")
        check_rating_scale(rating_scale)  # before any work
        u = as_id_array(users, "users")  # lists become object arrays: [1, "a"] stays mixed
        i = as_id_array(items, "items")
        r = as_1d(ratings, "ratings")
        lengths = {"users": len(u), "items": len(i), "ratings": len(r)}
        ts = None
        if timestamps is not None:
            ts = as_1d(timestamps, "timestamps")
            lengths["timestamps"] = len(ts)
        if len(set(lengths.values())) != 1:
            raise ValueError(f"input arrays have mismatched lengths: {lengths}")
        if len(r) == 0:
            raise ValueError("no ratings: the input arrays are empty")
        u = check_raw_ids(u, "user ids")
        i = check_raw_ids(i, "item ids")
        vals = check_ratings_values(r, dt, rating_scale)
        if ts is not None:
            ts = _check_timestamps(ts)
        # Large integer ids: rank tables, and when the input needs sorting the radix sort reads
        # the codes from the tables, so the 2 x nnz int32 codes of the unsorted order are never
        # stored (fresh memory is the cost on the 2-core machine).  Codes are ranks of the raw
        # ids, so the raw ids are sorted exactly when the codes are.  Same result as below.
        ut = rank_table(u) if len(u) >= PARALLEL_MIN_IDS else None
        it = rank_table(i) if ut is not None else None
        if ut is not None and it is not None and first_unsorted(u, i) >= 0:
            res = sort_by_rank_tables(u, i, ut, it, vals)
            if res is not None:
                s_users, s_items, order, n_dup, s_vals = res
                users, items, vals, ts = _after_sort(s_users, s_items, order, n_dup, s_vals, vals, ts,
                                                     lambda b: (u[b], i[b]), duplicates)
                return cls._build(users, items, vals, ts, ut.uniques, it.uniques, rating_scale, name)
        ucodes, user_ids = (ut.codes(u), ut.uniques) if ut is not None else _factorize(u, "user ids")
        icodes, item_ids = (it.codes(i), it.uniques) if it is not None else _factorize(i, "item ids")
        return cls._canonicalize(
            ucodes, icodes, vals, ts, user_ids, item_ids, duplicates, rating_scale, name
        )

    @classmethod
    def from_codes(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        n_users: int | None = None,
        n_items: int | None = None,
        timestamps: np.ndarray | None = None,
        *,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        dtype=np.float32,
        duplicates: DuplicatePolicy = "error",
        rating_scale: tuple[float, float] | None = None,
        name: str | None = None,
    ) -> "Ratings":
        """Build from integer codes already in ``[0, n_users)`` and ``[0, n_items)``.

        Users or items with no rating are kept (their codes exist, their rows are
        empty).  ``user_ids``/``item_ids`` default to ``arange(n)``.
        """
        u, i, vals, ts, user_ids, item_ids = _checked_codes(
            users, items, ratings, n_users, n_items, timestamps, user_ids, item_ids, dtype, duplicates, rating_scale)
        return cls._canonicalize(
            u.astype(np.int32), i.astype(np.int32), vals, ts, user_ids, item_ids,
            duplicates, rating_scale, name,
        )

    @classmethod
    def _from_owned_codes(cls, users, items, values, timestamps, user_ids, item_ids, *, dtype=np.float32,
                          duplicates: DuplicatePolicy = "error", rating_scale=None, name=None) -> "Ratings":
        """:meth:`from_codes` for arrays fastmf has just built (internal: the readers).

        ``users``/``items`` are int32 codes in range by construction (a factorization of the
        raw ids), ``timestamps`` int64 (or None), and all of them belong to the caller, so
        :meth:`from_codes`'s defensive copies and code-range checks are skipped: 12 bytes a
        rating of fresh memory (30 % of the 25M-row reader's conversion time).  The values
        are checked and cast as everywhere else.
        """
        dt = check_dtype(dtype)
        if duplicates not in _DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {_DUPLICATE_POLICIES}, got {duplicates!r}")
        if users.dtype != np.int32 or items.dtype != np.int32:
            raise TypeError("internal: codes must be int32")
        if timestamps is not None and timestamps.dtype != np.int64:
            raise TypeError("internal: timestamps must be int64")
        if not (len(users) == len(items) == len(values)) or len(values) == 0:
            raise ValueError("internal: empty or unequal columns")
        vals = check_ratings_values(values, dt, rating_scale)
        return cls._canonicalize(users, items, vals, timestamps, np.asarray(user_ids), np.asarray(item_ids),
                                 duplicates, rating_scale, name)

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        user_col: str | None = None,
        item_col: str | None = None,
        rating_col: str | None = None,
        timestamp_col: str | None = None,
        **kwargs,
    ) -> "Ratings":
        """Build from a DataFrame with user, item and rating columns.

        Column names default to the first of ``("user", "item", "rating")``,
        ``("userId", "movieId", "rating")``, ``("user_id", "item_id", "rating")``
        found in ``df``; a ``"timestamp"`` column is used when present.  Other
        keyword arguments go to :meth:`from_arrays`.
        """
        if not is_dataframe(df):
            raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
        if user_col is None and item_col is None and rating_col is None:
            for guess in _DATAFRAME_COLUMN_GUESSES:
                if all(c in df.columns for c in guess):
                    user_col, item_col, rating_col = guess
                    break
            else:
                raise ValueError(
                    f"cannot find user/item/rating columns in {list(df.columns)}; "
                    "pass user_col=, item_col=, rating_col="
                )
        for col, what in ((user_col, "user_col"), (item_col, "item_col"), (rating_col, "rating_col")):
            if col is None:
                raise ValueError(f"{what} must be given when any column name is given")
            if col not in df.columns:
                raise ValueError(f"{what}={col!r} is not a column of the DataFrame (columns: {list(df.columns)})")
        if timestamp_col is None and "timestamp" in df.columns:
            timestamp_col = "timestamp"
        if timestamp_col is not None and timestamp_col not in df.columns:
            raise ValueError(f"timestamp_col={timestamp_col!r} is not a column of the DataFrame")
        ts = None if timestamp_col is None else df[timestamp_col].to_numpy()
        return cls.from_arrays(
            df[user_col].to_numpy(), df[item_col].to_numpy(), df[rating_col].to_numpy(), ts, **kwargs
        )

    @classmethod
    def from_arrow(cls, data, **kwargs) -> "Ratings":
        """Ratings from Arrow data (a ``pyarrow.Table``, ``RecordBatch``, ``RecordBatchReader``
        or an iterable of batches), with the column rules of a CSV header.

        Keyword arguments (``columns``, ``dtype``, ``rating_scale``, ``duplicates``, ``name``)
        are those of :func:`fastmf.data.arrow.ratings_from_arrow`.
        """
        from .arrow import ratings_from_arrow  # arrow.py imports this module

        return ratings_from_arrow(data, **kwargs)

    def to_parquet(self, path, **kwargs):
        """Write the ratings to a Parquet file, atomically; returns its ``Path``.

        Raw ids, ratings (their dtype kept) and timestamps round-trip through
        :meth:`from_arrow` / :func:`fastmf.load_ratings_file`.  Keyword arguments
        (``compression``) are those of :func:`fastmf.data.arrow.ratings_to_parquet`.
        """
        from .arrow import ratings_to_parquet

        return ratings_to_parquet(self, path, **kwargs)

    @classmethod
    def from_scipy(cls, matrix, **kwargs) -> "Ratings":
        """Build from a scipy sparse matrix or array (users x items), COO or CSR (or any format).

        Every *stored* entry is a rating, explicit zeros included; duplicate stored
        entries follow the ``duplicates`` policy instead of scipy's summing.  Row
        and column indices become the raw ids, and empty rows/columns are kept.
        """
        if not is_sparse(matrix):
            raise TypeError(f"expected a scipy.sparse matrix or array, got {type(matrix).__name__}")
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise ValueError(f"empty matrix of shape {matrix.shape}")
        if matrix.format == "csr":
            indptr = matrix.indptr
            rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(indptr))
            cols = matrix.indices
            data = matrix.data
        else:
            coo = matrix.tocoo(copy=False)
            rows, cols, data = coo.row, coo.col, coo.data
        return cls.from_codes(rows, cols, data, matrix.shape[0], matrix.shape[1], **kwargs)

    @classmethod
    def _canonicalize(cls, ucodes, icodes, vals, ts, user_ids, item_ids, duplicates, rating_scale, name):
        if first_unsorted(ucodes, icodes) >= 0:
            ucodes, icodes, vals, ts = _canonical_order(ucodes, icodes, vals, ts, user_ids, item_ids, duplicates)
        return cls._build(ucodes, icodes, vals, ts, user_ids, item_ids, rating_scale, name)

    @classmethod
    def _build(cls, ucodes, icodes, vals, ts, user_ids, item_ids, rating_scale, name):
        """The object from canonical (sorted, duplicate-free) arrays."""
        return cls(
            np.ascontiguousarray(ucodes, dtype=np.int32),
            np.ascontiguousarray(icodes, dtype=np.int32),
            np.ascontiguousarray(vals),
            user_ids,
            item_ids,
            timestamps=ts,
            rating_scale=None if rating_scale is None else (float(rating_scale[0]), float(rating_scale[1])),
            name=name,
        )

    # ------------------------------------------------------------------ derived data
    @property
    def n_users(self) -> int:
        """Number of users (codes), including users with no rating."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items (codes), including items with no rating."""
        return len(self.item_ids)

    @property
    def nnz(self) -> int:
        """Number of ratings."""
        return self.values.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def density(self) -> float:
        """``nnz / (n_users * n_items)``."""
        return self.nnz / (self.n_users * self.n_items)

    @property
    def global_mean(self) -> float:
        """Mean rating, accumulated in float64."""
        return float(np.mean(self.values, dtype=np.float64))

    @property
    def user_counts(self) -> np.ndarray:
        """Ratings per user (int64, length ``n_users``)."""
        return np.diff(self.user_indptr)

    @property
    def item_counts(self) -> np.ndarray:
        """Ratings per item (int64, length ``n_items``)."""
        return np.diff(self.item_indptr)

    def _ensure_item_major(self):
        if self._item_major is None:
            self._item_major = item_major(self.users, self.items, self.values, self.n_items)
        return self._item_major

    @property
    def item_indptr(self) -> np.ndarray:
        """CSR-by-item row pointer (int64, ``n_items + 1``); built lazily once."""
        return self._ensure_item_major()[0]

    @property
    def item_users(self) -> np.ndarray:
        """User codes in item-major order (int32)."""
        return self._ensure_item_major()[1]

    @property
    def item_values(self) -> np.ndarray:
        """Ratings in item-major order (a copy, streamed by item-side kernels)."""
        return self._ensure_item_major()[2]

    @property
    def item_perm(self) -> np.ndarray:
        """Positions (int64) of the item-major entries in the canonical arrays."""
        return self._ensure_item_major()[3]

    # ------------------------------------------------------------------ id maps
    def _id_index(self, which: str) -> IdIndex:
        """The cached :class:`IdIndex` of ``user_ids`` or ``item_ids``.

        ``user_ids``/``item_ids`` are public attributes: the cache is keyed on the
        identity of the array, so an assigned new array gets a new index.
        """
        attr = f"_{which}_idindex"
        ids = getattr(self, f"{which}_ids")
        idx = getattr(self, attr, None)
        if idx is None or idx.ids is not ids:
            idx = IdIndex(ids)
            setattr(self, attr, idx)
        return idx

    @property
    def user_id_index(self) -> IdIndex:
        """:class:`~fastmf.data.ids.IdIndex` of the raw user ids (position = code)."""
        return self._id_index("user")

    @property
    def item_id_index(self) -> IdIndex:
        """:class:`~fastmf.data.ids.IdIndex` of the raw item ids (position = code)."""
        return self._id_index("item")

    @property
    def user_index(self) -> pd.Index:
        """pandas Index of raw user ids (position = code)."""
        return self.user_id_index.index

    @property
    def item_index(self) -> pd.Index:
        """pandas Index of raw item ids (position = code)."""
        return self.item_id_index.index

    def user_codes(self, raw_ids, missing: Literal["raise", "ignore"] = "raise") -> np.ndarray:
        """Codes (int64) of raw user ids; unknown ids raise ``KeyError`` or, with
        ``missing="ignore"``, come back as ``-1`` (see :meth:`IdIndex.codes`)."""
        return self.user_id_index.codes(raw_ids, missing, "user")

    def item_codes(self, raw_ids, missing: Literal["raise", "ignore"] = "raise") -> np.ndarray:
        """Codes (int64) of raw item ids; see :meth:`user_codes`."""
        return self.item_id_index.codes(raw_ids, missing, "item")

    # ------------------------------------------------------------------ conversions
    def astype(self, dtype) -> "Ratings":
        """The same ratings stored as ``dtype`` (self if already so; cached otherwise).

        Index arrays, id maps and the item-major structure are shared, not copied.
        """
        dt = check_dtype(dtype)
        if dt == self.values.dtype:
            return self
        if dt not in self._astype_cache:
            im = None
            if self._item_major is not None:
                ip, iu, iv, perm = self._item_major
                im = (ip, iu, iv.astype(dt), perm)
            self._astype_cache[dt] = Ratings(
                self.users, self.items, self.values.astype(dt), self.user_ids, self.item_ids,
                timestamps=self.timestamps, rating_scale=self.rating_scale,
                item_titles=self.item_titles, name=self.name, _item_major=im,
            )
        return self._astype_cache[dt]

    def subset(self, rows) -> "Ratings":
        """A new ``Ratings`` with the canonical rows selected by a boolean mask or
        sorted index array, sharing this object's id maps (codes keep their meaning)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (self.nnz,):
                raise ValueError(f"boolean mask must have shape ({self.nnz},), got {rows.shape}")
        else:
            if rows.ndim != 1 or rows.dtype.kind not in "iu":
                raise TypeError("rows must be a boolean mask or a 1-D integer index array")
            if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= self.nnz):
                raise ValueError("index array must be strictly increasing and within [0, nnz)")
        users = self.users[rows]
        if users.size == 0:
            raise ValueError("subset selects no ratings")
        return Ratings(
            users, self.items[rows], self.values[rows], self.user_ids, self.item_ids,
            timestamps=None if self.timestamps is None else self.timestamps[rows],
            rating_scale=self.rating_scale, item_titles=self.item_titles, name=self.name,
        )

    def to_scipy(self) -> sp.csr_matrix:
        """CSR matrix (users x items) of the ratings (copies of the arrays)."""
        import scipy.sparse as sp

        return sp.csr_matrix(
            (self.values.copy(), self.items.copy(), self.user_indptr.copy()), shape=self.shape
        )

    def to_dataframe(self, raw_ids: bool = True) -> pd.DataFrame:
        """DataFrame with ``user, item, rating`` (and ``timestamp``) columns."""
        data = {
            "user": self.user_ids[self.users] if raw_ids else self.users,
            "item": self.item_ids[self.items] if raw_ids else self.items,
            "rating": self.values,
        }
        if self.timestamps is not None:
            data["timestamp"] = self.timestamps
        import pandas as pd

        return pd.DataFrame(data)

    def to_dense(self, fill_value: float = np.nan, max_elements: int = DEFAULT_MAX_DENSE) -> np.ndarray:
        """Dense ``(n_users, n_items)`` array, ``fill_value`` where unrated.

        Only for small data (the dense reference and plots): refuses with a
        ``ValueError`` above ``max_elements`` cells.
        """
        cells = self.n_users * self.n_items
        if cells > max_elements:
            raise ValueError(
                f"to_dense would allocate {self.n_users} x {self.n_items} = {cells:,} cells, above "
                f"max_elements={max_elements:,}; use to_scipy() or raise max_elements"
            )
        out = np.full(self.shape, fill_value, dtype=self.values.dtype)
        out[self.users, self.items] = self.values
        return out

    def mask(self, max_elements: int = DEFAULT_MAX_DENSE) -> np.ndarray:
        """Dense boolean mask of observed cells (same size limit as :meth:`to_dense`)."""
        cells = self.n_users * self.n_items
        if cells > max_elements:
            raise ValueError(f"mask would allocate {cells:,} cells, above max_elements={max_elements:,}")
        out = np.zeros(self.shape, dtype=bool)
        out[self.users, self.items] = True
        return out

    # ------------------------------------------------------------------ display
    def describe(self) -> dict:
        """Summary statistics (counts, density, rating range and mean, activity quantiles)."""
        uc, ic = self.user_counts, self.item_counts
        return {
            "name": self.name,
            "n_ratings": self.nnz,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "density": self.density,
            "rating_min": float(self.values.min()),
            "rating_max": float(self.values.max()),
            "global_mean": self.global_mean,
            "ratings_per_user_median": float(np.median(uc)),
            "ratings_per_user_max": int(uc.max()),
            "ratings_per_item_median": float(np.median(ic)),
            "ratings_per_item_max": int(ic.max()),
            "users_without_ratings": int((uc == 0).sum()),
            "items_without_ratings": int((ic == 0).sum()),
            "dtype": str(self.dtype),
            "has_timestamps": self.timestamps is not None,
        }

    def __len__(self) -> int:
        return self.nnz

    def __repr__(self) -> str:
        nm = f"{self.name!r}, " if self.name else ""
        return (
            f"Ratings({nm}n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz}, "
            f"density={self.density:.4g}, dtype={self.dtype})"
        )

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_astype_cache"] = {}  # IdIndex does not pickle its pandas Index
        return state
