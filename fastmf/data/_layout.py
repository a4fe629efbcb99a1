"""Numba helpers that build the CSR layouts of :class:`fastmf.Ratings` in O(nnz).

The kernels allocate nothing: the Python wrappers allocate their outputs.  Every
``np.zeros``/``np.empty`` inside a kernel is one more numba overload to compile on a cold
start (``item_major`` and ``indptr_from_sorted`` compiled in 1.5 s and 0.5-1 s with their
allocations inside, on the loaded 2-core machine).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _count_prefix(codes, counts):
    """``counts[c + 1] += 1`` for each code, then the running sum in place (``counts`` zeroed)."""
    for j in range(codes.shape[0]):
        counts[codes[j] + 1] += 1
    for r in range(counts.shape[0] - 1):
        counts[r + 1] += counts[r]


def indptr_from_sorted(codes: np.ndarray, n_rows: int) -> np.ndarray:
    """``indptr`` (int64, length ``n_rows + 1``) of an array of row codes sorted ascending."""
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
