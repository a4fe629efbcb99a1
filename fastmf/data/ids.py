"""``IdIndex``: the one map between raw ids (ints or strings) and dense codes.

Every place in fastmf that turns raw user or item ids into codes goes through
:meth:`IdIndex.codes` (``Ratings.user_codes``, the fitted model's ``predict``,
``recommend``, fold-in, the conversion of evaluation data into a training code
space).  Tightening id validation later therefore means changing one routine.

Semantics (unchanged from the code it replaces)
-----------------------------------------------
* Code ``j`` is the position of a raw id in :attr:`IdIndex.ids` (sorted unique ids
  when built by :meth:`IdIndex.factorize`; whatever order was given otherwise).
* Float ids that are all whole and finite, such as ``3.0`` from a pandas column
  with missing values, address the integer id ``3`` when the index holds integers.
* Ids of a type the index cannot compare with (e.g. strings looked up in an
  integer index) are *unknown* (code ``-1``), never a ``TypeError``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from .._validation import check_choice

__all__ = ["IdIndex"]

Missing = Literal["raise", "ignore"]


def _py(x):
    """A numpy scalar as a plain Python value, for readable messages."""
    return x.item() if isinstance(x, np.generic) else x


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

    __slots__ = ("_ids", "_index")

    def __init__(self, ids):
        if isinstance(ids, IdIndex):
            ids = ids.ids
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
        self._ids = arr
        self._index: pd.Index | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def factorize(cls, raw: np.ndarray, name: str) -> tuple[np.ndarray, "IdIndex"]:
        """Codes (int32) of ``raw`` in the index of its sorted unique values.

        Parameters
        ----------
        raw : ndarray, 1-D
            Validated raw ids (see :func:`fastmf._validation.check_raw_ids`).
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
            or come back as ``-1``.
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
        arr = np.atleast_1d(np.asarray(raw))
        codes = self._lookup(arr)
        if missing == "raise" and (codes < 0).any():
            bad = np.flatnonzero(codes < 0)
            raise KeyError(f"unknown {what} id {_py(arr[bad[0]])!r} ({bad.size} unknown in all)")
        return codes[0] if scalar else codes

    def _lookup(self, arr: np.ndarray) -> np.ndarray:
        """Codes (int64, -1 when unknown) of a numpy array of raw ids."""
        if arr.ndim != 1:
            raise ValueError(f"ids must be a scalar or 1-D, got shape {arr.shape}")
        if arr.dtype.kind == "f":
            # float ids such as 3.0 (from pandas) address the integer id 3
            whole = np.isfinite(arr) & (arr == np.floor(arr))
            if whole.all() and self.index.dtype.kind in "iu":
                arr = arr.astype(np.int64)
        try:
            return self.index.get_indexer(arr).astype(np.int64)
        except (TypeError, ValueError):
            # Ids of a type the index cannot compare with are unknown ids.
            return np.full(arr.shape[0], -1, dtype=np.int64)

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

    def __repr__(self) -> str:
        return f"IdIndex(n={len(self)}, dtype={self._ids.dtype})"
