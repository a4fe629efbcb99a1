"""``IdIndex``: the one map between raw ids (ints or strings) and dense codes.

Every place in fastmf that turns raw user or item ids into codes goes through
:meth:`IdIndex.codes` (``Ratings.user_codes``, the fitted model's ``predict``,
``recommend``, fold-in, the conversion of evaluation data into a training code
space).  Tightening id validation later therefore means changing one routine.

Raw ids of *training* data go through :func:`raw_ids` (called by
:meth:`fastmf.data.Ratings.from_arrays` and hence by every input form): the one
place that decides which raw ids are acceptable.

Rules (issue #15: never merge two distinct ids, never silently change an id's type)
-----------------------------------------------------------------------------------
An id is either a **non-negative integer representable in int64** or a **string**;
all the ids of one array are of one of these two kinds.  :func:`raw_ids` refuses,
with a ``ValueError`` naming the row and the value:

* float ids that are not whole, not finite, negative or above ``2**53`` (beyond
  ``2**53`` a float64 no longer tells neighbouring integers apart);
* unsigned ids above ``2**63 - 1`` (int64 is the id type of model files and of the
  integer index; ``uint64`` ids that fit are converted to int64);
* Python integers (in lists or object arrays) outside ``[0, 2**63 - 1]``;
* mixed kinds in any container (a list, an object array, a pandas object column):
  strings together with numbers, or anything that is neither (bytes, tuples...);
* missing values (``None``, NaN, ``pd.NA``).

Boolean ids are a ``TypeError`` (as before).  Lists and other sequences are read
as object arrays, so ``[1, "a"]`` is seen as mixed instead of being turned into the
strings ``"1", "a"`` by numpy.

Codes
-----
* Code ``j`` is the position of a raw id in :attr:`IdIndex.ids` (sorted unique ids
  when built by :meth:`IdIndex.factorize`; whatever order was given otherwise).
* At lookup time (:meth:`IdIndex.codes`: predict, recommend, fold-in, evaluation)
  an id is matched *exactly* or not at all: integers (of any dtype), whole floats up
  to ``2**53`` and Python ints match integer ids of the same value; strings match
  string ids.  Anything else (a string in an integer index, ``2.5``, ``1e19``, a
  ``uint64`` above int64, a bool, ``None``) is an **unknown id** (code ``-1``), which
  the caller's ``unknown=`` policy handles (``"raise"`` makes it an error).  Lookups
  never raise ``TypeError`` and never coerce one id into another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .._lazy import is_pandas_1d
from .._validation import check_choice

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["IdIndex", "as_id_array", "raw_ids"]

Missing = Literal["raise", "ignore"]

#: Largest float id accepted: every integer up to 2**53 is exactly a float64.
MAX_FLOAT_ID = 2**53
_INT64_MAX = int(np.iinfo(np.int64).max)


def _py(x):
    """A numpy scalar as a plain Python value, for readable messages."""
    return x.item() if isinstance(x, np.generic) else x


# ---------------------------------------------------------------------------- raw ids
def as_id_array(values, name: str = "ids") -> np.ndarray:
    """``values`` as a 1-D numpy array, without any lossy conversion.

    An ndarray is returned as is; a pandas Series/Index as its ``to_numpy()``; any
    other sequence becomes an **object** array, so that numpy does not silently
    turn ``[1, "a"]`` into strings or ``[True, 2]`` into integers.

    Raises
    ------
    ValueError
        Not one-dimensional.
    """
    if isinstance(values, np.ndarray):
        arr = values
    elif is_pandas_1d(values):
        arr = values.to_numpy()
    else:
        arr = np.asarray(values) if np.ndim(values) == 0 else np.array(values, dtype=object)
        if arr.ndim == 0:
            arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (1-D), got shape {arr.shape}")
    return arr


def _kind(x) -> str:
    """``"str"``, ``"int"``, ``"float"`` or ``"other"`` for one Python/numpy value."""
    if isinstance(x, str):
        return "str"
    if isinstance(x, (bool, np.bool_)):
        return "other"
    if isinstance(x, (int, np.integer)):
        return "int"
    if isinstance(x, (float, np.floating)):
        return "float"
    return "other"


_NAN = "contain NaN or inf: first"
_FRACTION = "must be whole numbers: first non-integer id"
_NEGATIVE = "must be non-negative: first negative id"
_BIG_FLOAT = "above 2**53 cannot be represented exactly as floats (pass integers or strings): first such id"
_BIG_INT = "must fit in int64 (at most 2**63 - 1; pass larger ids as strings): first too large id"


def _bad(name: str, row: int, value, why: str) -> ValueError:
    return ValueError(f"{name} {why} at row {row} (value {_py(value)!r})")


def _exact_int(x, kind: str):
    """The int64-representable non-negative integer of ``x``, or a reason why not."""
    if kind == "float":
        x = float(x)
        if not np.isfinite(x):
            return None, _NAN
        if x != np.floor(x):
            return None, _FRACTION
        if x > MAX_FLOAT_ID:
            return None, _BIG_FLOAT
        x = int(x)
    else:
        x = int(x)
    if x < 0:
        return None, _NEGATIVE
    if x > _INT64_MAX:
        return None, _BIG_INT
    return x, None


def _object_ids(arr: np.ndarray, name: str) -> np.ndarray:
    """Ids of an object array: all strings (kept) or all numbers (-> int64), nothing else."""
    import pandas as pd  # object ids only: integer ids never import pandas

    missing = np.asarray(pd.isna(arr), dtype=bool)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        if not any(isinstance(x, str) for x in arr[~missing][:1]):  # among numbers: a NaN
            raise ValueError(f"{name} contain NaN or inf: first at row {row} (a missing value)")
        raise ValueError(f"{name} contain a missing value (None/NaN): first at row {row}")
    inferred = pd.api.types.infer_dtype(arr, skipna=False)
    if inferred == "string":
        return arr
    if inferred == "boolean":
        raise TypeError(f"{name} must be integers or strings, got booleans")
    values = arr.tolist()
    kinds = [_kind(x) for x in values]
    first = "str" if kinds and kinds[0] == "str" else "number"
    for row, (x, k) in enumerate(zip(values, kinds)):
        if k == "other":
            raise _bad(name, row, x, f"must be integers or strings: first {type(x).__name__} id")
        if (k == "str") != (first == "str"):
            raise _bad(name, row, x, f"mix strings and numbers (row 0 is a {type(values[0]).__name__}): first other id")
    out = np.empty(len(values), dtype=np.int64)
    for row, (x, k) in enumerate(zip(values, kinds)):
        v, why = _exact_int(x, k)
        if why is not None:
            raise _bad(name, row, x, why)
        out[row] = v
    return out


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def raw_ids(values, name: str = "ids") -> np.ndarray:
    """Validated raw ids, ready to factorize: **the** rule for acceptable ids.

    Parameters
    ----------
    values : 1-D array-like
        Raw user or item ids (ndarray, pandas Series/Index, list...).
    name : str
        Name of the ids in error messages (``"user ids"``).

    Returns
    -------
    ndarray
        Signed integer ids as given; unsigned, float and object-number ids as
        int64; string ids as given (``<U`` or object of ``str``).

    Raises
    ------
    TypeError
        Boolean ids or an unsupported dtype.
    ValueError
        Any id that cannot be represented exactly (see the module docstring),
        naming the first offending row and its value.
    """
    arr = as_id_array(values, name)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} must be integers or strings, got booleans")
    if kind == "i":
        if arr.size and arr.min() < 0:
            row = _first(arr < 0)
            raise _bad(name, row, arr[row], _NEGATIVE)
        return arr
    if kind == "u":
        if arr.size and arr.max() > _INT64_MAX:
            row = _first(arr > _INT64_MAX)
            raise _bad(name, row, arr[row], _BIG_INT)
        return arr.astype(np.int64)
    if kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            row = _first(~finite)
            raise _bad(name, row, arr[row], _NAN)
        checks = ((arr != np.floor(arr), _FRACTION), (arr < 0, _NEGATIVE), (arr > MAX_FLOAT_ID, _BIG_FLOAT))
        for bad, why in checks:
            if bad.any():
                row = _first(bad)
                raise _bad(name, row, arr[row], why)
        return arr.astype(np.int64)
    if kind == "U":
        return arr
    if kind == "O":
        return _object_ids(arr, name)
    raise TypeError(f"{name} must be integers or strings, got dtype {arr.dtype}")


def _integer_lookup_keys(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, ok)``: int64 keys of the ids that are exactly integers, and which ones are."""
    kind = arr.dtype.kind
    n = arr.shape[0]
    if kind == "i":
        return arr.astype(np.int64, copy=False), np.ones(n, dtype=bool)
    if kind == "u":
        ok = arr <= _INT64_MAX
        return np.where(ok, arr, 0).astype(np.int64), ok
    if kind == "f":
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(arr) & (arr == np.floor(arr)) & (np.abs(arr) <= MAX_FLOAT_ID)
        return np.where(ok, arr, 0).astype(np.int64), ok
    if kind == "O":
        keys = np.zeros(n, dtype=np.int64)
        ok = np.zeros(n, dtype=bool)
        for j, x in enumerate(arr.tolist()):
            k = _kind(x)
            if k in ("int", "float"):
                if k == "float" and not (np.isfinite(x) and x == np.floor(x) and abs(x) <= MAX_FLOAT_ID):
                    continue
                v = int(x)
                if -_INT64_MAX <= v <= _INT64_MAX:
                    keys[j], ok[j] = v, True
        return keys, ok
    return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)  # strings, bools, bytes...


def _string_lookup_keys(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, ok)``: the ids that are strings (as an object array), and which ones are."""
    if arr.dtype.kind == "U":
        return arr, np.ones(arr.shape[0], dtype=bool)
    if arr.dtype.kind == "O":
        ok = np.fromiter((isinstance(x, str) for x in arr.tolist()), dtype=bool, count=arr.shape[0])
        return np.where(ok, arr, ""), ok
    return arr, np.zeros(arr.shape[0], dtype=bool)


class IdIndex:
    """Raw ids of the codes ``0 .. len - 1`` and the reverse lookup.

    Parameters
    ----------
    ids : array-like, 1-D
        Raw id of each code (``ids[code]``); kept as given (no copy of an ndarray).

    Notes
    -----
    The :class:`pandas.Index` used for lookups is built lazily, once, and is not
    pickled (it is rebuilt on first use), so an ``IdIndex`` is cheap to create
    and to ship to another process.
    """

    __slots__ = ("_ids", "_index", "_sorted")

    def __init__(self, ids):
        if isinstance(ids, IdIndex):
            ids = ids.ids
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
        self._ids = arr
        self._index: pd.Index | None = None
        self._sorted: bool | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def factorize(cls, raw: np.ndarray, name: str) -> tuple[np.ndarray, "IdIndex"]:
        """Codes (int32) of ``raw`` in the index of its sorted unique values.

        Parameters
        ----------
        raw : ndarray, 1-D
            Validated raw ids (see :func:`raw_ids`).
        name : str
            Name of the ids in error messages (``"user ids"``).

        Raises
        ------
        TypeError
            Ids of types that cannot be ordered together (strings and ints).
        ValueError
            More distinct ids than int32 codes.
        """
        try:
            import pandas as pd  # the generic path (strings, sparse integer ranges)

            codes, uniques = pd.factorize(raw, sort=True)
        except TypeError as exc:
            raise TypeError(f"{name} mix types that cannot be ordered (e.g. strings and ints): {exc}") from exc
        if len(uniques) > np.iinfo(np.int32).max:
            raise ValueError(f"{name}: {len(uniques)} distinct ids exceed the int32 code range")
        return codes.astype(np.int32), cls(np.asarray(uniques))

    # ------------------------------------------------------------------ data
    @property
    def ids(self) -> np.ndarray:
        """Raw id of each code (the array given, not a copy)."""
        return self._ids

    @property
    def index(self) -> pd.Index:
        """:class:`pandas.Index` of the raw ids (position = code), built once."""
        if self._index is None:
            import pandas as pd

            self._index = pd.Index(self._ids)
        return self._index

    def __len__(self) -> int:
        return self._ids.shape[0]

    @property
    def is_integer(self) -> bool:
        """True when the raw ids are integers (their "kind", as opposed to strings)."""
        return self._ids.dtype.kind in "iu"

    # ------------------------------------------------------------------ lookups
    def codes(self, raw, missing: Missing = "raise", what: str = "id"):
        """Codes (int64) of raw ids: **the** routine that codes ids in fastmf.

        Parameters
        ----------
        raw : scalar or 1-D array-like of raw ids
        missing : {"raise", "ignore"}
            Unknown ids raise :class:`KeyError` (naming the first one and the count)
            or come back as ``-1``.  Matching is exact: an id that cannot equal any
            id of the index (a string in an integer index, ``2.5``, a float above
            ``2**53``, a ``uint64`` above int64, a bool, ``None``) is unknown; it is
            never converted into another id.
        what : str
            ``"user"`` or ``"item"``, for the error message.

        Returns
        -------
        int or ndarray of int64
            A scalar for a scalar ``raw``.

        Raises
        ------
        ValueError
            ``raw`` is not a scalar or 1-D, or ``missing`` is not a known policy.
        KeyError
            An unknown id with ``missing="raise"``.
        """
        check_choice(missing, "missing", ("raise", "ignore"))
        scalar = np.ndim(raw) == 0
        arr = np.asarray(raw).reshape(1) if scalar else as_id_array(raw, "ids" if what == "id" else f"{what} ids")
        codes = self._lookup(arr)
        if missing == "raise" and (codes < 0).any():
            bad = np.flatnonzero(codes < 0)
            raise KeyError(f"unknown {what} id {_py(arr[bad[0]])!r} ({bad.size} unknown in all)")
        return codes[0] if scalar else codes

    def _lookup(self, arr: np.ndarray) -> np.ndarray:
        """Codes (int64, -1 when unknown) of a numpy array of raw ids: exact matches only."""
        if arr.ndim != 1:
            raise ValueError(f"ids must be a scalar or 1-D, got shape {arr.shape}")
        if self._ids.dtype.kind == "i" and self._strictly_increasing():
            return self._sorted_lookup(arr)
        idx = self.index
        if idx.dtype.kind in "iu":
            keys, ok = _integer_lookup_keys(arr)
        elif self._ids.dtype.kind in "UO":
            keys, ok = _string_lookup_keys(arr)
        else:
            keys, ok = arr, np.ones(arr.shape[0], dtype=bool)
        out = np.full(arr.shape[0], -1, dtype=np.int64)
        if ok.any():
            try:
                found = idx.get_indexer(keys[ok] if not ok.all() else keys)
            except (TypeError, ValueError):
                return out  # ids of a type the index cannot compare with are unknown ids
            out[ok] = found
        return out

    def _strictly_increasing(self) -> bool:
        if self._sorted is None:
            ids = self._ids
            self._sorted = bool(np.all(ids[1:] > ids[:-1]))
        return self._sorted

    def _sorted_lookup(self, arr: np.ndarray) -> np.ndarray:
        """:meth:`_lookup` for sorted unique signed-integer ids, by binary search.

        The ids of every reader and of :meth:`factorize` are sorted, so a lookup (scoring a
        test set, ``predict``) needs no :class:`pandas.Index` and does not import pandas.
        The same exact-match rule as the Index path: ``_integer_lookup_keys`` decides which
        ids can be integers at all.
        """
        ids = self._ids
        keys, ok = _integer_lookup_keys(arr)
        out = np.full(arr.shape[0], -1, dtype=np.int64)
        if ids.shape[0] == 0 or not ok.any():
            return out
        k = keys[ok] if not ok.all() else keys
        pos = np.searchsorted(ids, k)
        np.minimum(pos, ids.shape[0] - 1, out=pos)
        out[ok] = np.where(ids[pos] == k, pos, -1)
        return out

    # ------------------------------------------------------------------ comparisons
    def same_as(self, other: "IdIndex | np.ndarray") -> bool:
        """True when both hold the same raw ids in the same order (hence the same codes).

        Integer ids never equal string ids (``1`` vs ``"1"``); incomparable ids are
        simply different.
        """
        a = self._ids
        b = other.ids if isinstance(other, IdIndex) else np.asarray(other)
        if a is b:
            return True
        if a.shape != b.shape or (a.dtype.kind in "iu") != (b.dtype.kind in "iu"):
            return False
        try:
            return bool(np.array_equal(a, b))
        except TypeError:
            return False

    def __eq__(self, other) -> bool:
        if not isinstance(other, IdIndex):
            return NotImplemented
        return self.same_as(other)

    __hash__ = None  # mutable-array content: not hashable

    def union(self, other: "IdIndex") -> "IdIndex":
        """The sorted union of both sets of ids (the code space of a warm start).

        Raises
        ------
        TypeError
            The ids are not of the same kind (integers vs strings), which numpy
            would otherwise silently combine by turning the integers into strings,
            or cannot be ordered together.
        """
        if self.is_integer != other.is_integer:
            raise TypeError("ids are not of the same kind (int/str)")
        return IdIndex(np.union1d(self._ids, other.ids))

    # ------------------------------------------------------------------ pickling, display
    def __getstate__(self):
        return {"_ids": self._ids}

    def __setstate__(self, state):
        self._ids = state["_ids"]
        self._index = None
        self._sorted = None

    def __repr__(self) -> str:
        return f"IdIndex(n={len(self)}, dtype={self._ids.dtype})"
