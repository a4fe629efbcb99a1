"""Numba helpers that build the CSR layouts of :class:`fastmf.Ratings` in O(nnz)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def indptr_from_sorted(codes, n_rows):
    """``indptr`` (int64, length ``n_rows + 1``) of an array of row codes sorted ascending."""
    counts = np.zeros(n_rows + 1, dtype=np.int64)
    for j in range(codes.shape[0]):
        counts[codes[j] + 1] += 1
    for r in range(n_rows):
        counts[r + 1] += counts[r]
    return counts


@numba.njit(cache=True, nogil=True)
def item_major(users, items, values, n_items):
    """Stable counting sort of the canonical (user-sorted) triplets by item.

    Returns ``item_indptr`` (int64, n_items + 1), ``item_users`` (int32),
    ``item_values`` (values' dtype) and ``item_perm`` (int64 positions into the
    canonical arrays).  Within an item, users stay ascending because the sort is
    stable and the input is sorted by user.
    """
    nnz = items.shape[0]
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    for j in range(nnz):
        indptr[items[j] + 1] += 1
    for i in range(n_items):
        indptr[i + 1] += indptr[i]
    fill = indptr[:-1].copy()
    perm = np.empty(nnz, dtype=np.int64)
    item_users = np.empty(nnz, dtype=np.int32)
    item_values = np.empty(nnz, dtype=values.dtype)
    for j in range(nnz):
        i = items[j]
        pos = fill[i]
        fill[i] = pos + 1
        perm[pos] = j
        item_users[pos] = users[j]
        item_values[pos] = values[j]
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
