"""Numba helpers that build the CSR layouts of :class:`fastmf.Ratings` in O(nnz).

The kernels allocate nothing: the Python wrappers allocate their outputs.  Every
``np.zeros``/``np.empty`` inside a kernel is one more numba overload to compile on a cold
start (``item_major`` and ``indptr_from_sorted`` compiled in 1.5 s and 0.5-1 s with their
allocations inside, on the loaded 2-core machine).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._threading import kernel_guard


@numba.njit(cache=True, nogil=True)
def _count_prefix(codes, counts):
    """``counts[c + 1] += 1`` for each code, then the running sum in place (``counts`` zeroed)."""
    for j in range(codes.shape[0]):
        counts[codes[j] + 1] += 1
    for r in range(counts.shape[0] - 1):
        counts[r + 1] += counts[r]


@numba.njit(parallel=True, cache=True, nogil=True)
def _indptr_chunks(codes, indptr, n_chunks):
    """``indptr`` of sorted ``codes`` from the row changes, ``n_chunks`` contiguous chunks in parallel.

    Where ``codes[j - 1] = p < q = codes[j]``, rows ``p + 1 .. q`` start at ``j``.  The
    change at a chunk's first position is handled by that chunk, and each row start is
    written by the one chunk holding its change, so the writes are disjoint: race-free,
    and the same ``indptr`` for any chunk count.  No counts array, no prefix sum.
    """
    n = codes.shape[0]
    n_rows = indptr.shape[0] - 1
    for c in prange(n_chunks):
        a = max(1, c * n // n_chunks)
        b = (c + 1) * n // n_chunks
        for j in range(a, b):
            p = codes[j - 1]
            q = codes[j]
            if q != p:
                for r in range(p + 1, q + 1):
                    indptr[r] = j
    first = codes[0] if n else n_rows
    last = codes[n - 1] if n else -1
    for r in range(first + 1):  # rows before the first code are empty
        indptr[r] = 0
    for r in range(last + 1, n_rows + 1):  # rows after the last code are empty
        indptr[r] = n


#: Codes from which :func:`indptr_from_sorted` runs in parallel chunks; below, the serial
#: count (no ``prange`` kernel to compile on a small first fit, see the module docstring).
PARALLEL_MIN_CODES = 1 << 22


def indptr_from_sorted(codes: np.ndarray, n_rows: int) -> np.ndarray:
    """``indptr`` (int64, length ``n_rows + 1``) of an array of row codes sorted ascending.

    Serial count and prefix sum below :data:`PARALLEL_MIN_CODES` codes; above, one
    parallel pass over the row changes (:func:`_indptr_chunks`), with the same result
    (``np.r_[0, np.cumsum(np.bincount(codes, minlength=n_rows))]``) for any thread count.
    """
    if codes.shape[0] >= PARALLEL_MIN_CODES:
        indptr = np.empty(n_rows + 1, dtype=np.int64)
        with kernel_guard():
            _indptr_chunks(codes, indptr, max(1, numba.get_num_threads()))
        return indptr
    counts = np.zeros(n_rows + 1, dtype=np.int64)
    _count_prefix(codes, counts)
    return counts


@numba.njit(cache=True, nogil=True)
def _item_major_fill(users, items, values, indptr, fill, perm, item_users, item_values):
    for j in range(items.shape[0]):
        i = items[j]
        pos = fill[i]
        fill[i] = pos + 1
        perm[pos] = j
        item_users[pos] = users[j]
        item_values[pos] = values[j]


def item_major(users: np.ndarray, items: np.ndarray, values: np.ndarray, n_items: int):
    """Stable counting sort of the canonical (user-sorted) triplets by item.

    Returns ``item_indptr`` (int64, n_items + 1), ``item_users`` (int32),
    ``item_values`` (values' dtype) and ``item_perm`` (int64 positions into the
    canonical arrays).  Within an item, users stay ascending because the sort is
    stable and the input is sorted by user.
    """
    nnz = items.shape[0]
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    _count_prefix(items, indptr)
    perm = np.empty(nnz, dtype=np.int64)
    item_users = np.empty(nnz, dtype=np.int32)
    item_values = np.empty(nnz, dtype=values.dtype)
    _item_major_fill(users, items, values, indptr, indptr[:-1].copy(), perm, item_users, item_values)
    return indptr, item_users, item_values, perm


@numba.njit(cache=True, nogil=True)
def first_unsorted(users, items):
    """Index of the first position where (user, item) does not strictly increase, or -1.

    Equal consecutive pairs (duplicates) also count as unsorted.
    """
    for j in range(1, users.shape[0]):
        u0 = users[j - 1]
        u1 = users[j]
        if u1 < u0 or (u1 == u0 and items[j] <= items[j - 1]):
            return j
    return -1
