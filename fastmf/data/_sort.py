"""Numba counting sorts behind :meth:`fastmf.data.Ratings.from_arrays` (issue #14 item 3).

Two steps replace the generic ``pd.factorize(sort=True)`` + ``np.argsort`` path:

* :func:`factorize_int` codes integer ids through a presence table when their range
  is small relative to their number (``max - min <= 4 * n + 2**20``): O(n + range),
  codes are the rank among the present ids, so the unique ids come out sorted and the
  codes are exactly those of ``pd.factorize(raw, sort=True)``.  Otherwise it returns
  ``None`` and the caller keeps the generic path.
* :func:`sort_by_user_item` is a two-pass (LSD) stable counting sort: by item, then
  by user.  It gives the canonical order sorted by (user, item), ties (duplicate
  pairs) in input order, i.e. exactly ``np.argsort(user * n_items + item,
  kind="stable")``.  Each pass runs over ``n_chunks`` contiguous chunks in parallel,
  with per-chunk counts and a prefix sum over (bucket, chunk), so the result does not
  depend on the number of threads.

Positions are int32 when ``nnz < 2**31`` (int64 otherwise) to keep the temporary
memory at a few bytes a rating.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import prange

from .._threading import kernel_guard


def _guarded(fn):
    """Run ``fn`` (which calls parallel kernels) under :func:`fastmf._threading.kernel_guard`:
    the fork check and, under the ``workqueue`` layer, one parallel region at a time."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with kernel_guard():
            return fn(*args, **kwargs)
    return wrapper

__all__ = ["factorize_int", "rank_table", "RankTable", "sort_by_user_item", "sort_by_rank_tables", "n_chunks_for"]

#: Presence-table coding when ``max - min <= DENSE_FACTOR * n + DENSE_SLACK``.
DENSE_FACTOR = 4
DENSE_SLACK = 1 << 20
_MIN_CHUNK = 1 << 16


def n_chunks_for(n: int, n_buckets: int) -> int:
    """Chunks of a parallel counting sort: one per thread, fewer for small inputs.

    Per-chunk counts cost ``n_chunks * n_buckets`` int64, so the count is also capped
    to keep that below the input size.
    """
    threads = numba.get_num_threads()
    by_size = max(1, n // _MIN_CHUNK)
    by_buckets = max(1, n // max(1, n_buckets))
    return int(max(1, min(threads, by_size, by_buckets)))


# ---------------------------------------------------------------------------- coding
#: Inputs shorter than this are coded by the serial kernels.  A ``prange`` kernel costs
#: seconds of compilation on a first call (``_minmax`` 7 s, ``_presence_codes`` 4 s on the
#: 2-core machine) against milliseconds saved below a million ids, so a first fit on a
#: small data set (ml-latest-small: 100K ratings) compiles only the serial kernels.
PARALLEL_MIN_IDS = 1 << 20


@numba.njit(cache=True, nogil=True)
def _minmax_range(ids, a, b):
    """``(min, max)`` as int64 of ``ids[a:b]`` (``b > a``)."""
    lo = np.int64(ids[a])
    hi = lo
    for j in range(a + 1, b):
        x = np.int64(ids[j])
        if x < lo:
            lo = x
        if x > hi:
            hi = x
    return lo, hi


@numba.njit(parallel=True, cache=True, nogil=True)
def _minmax(ids, n_chunks):
    n = ids.shape[0]
    los = np.empty(n_chunks, dtype=np.int64)
    his = np.empty(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        lo, hi = _minmax_range(ids, c * n // n_chunks, (c + 1) * n // n_chunks)
        los[c] = lo
        his[c] = hi
    lo, hi = los[0], his[0]
    for c in range(1, n_chunks):  # a loop, not los.min(): np.min costs a second of compilation
        lo = min(lo, los[c])
        hi = max(hi, his[c])
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _presence_mark(ids, lo, table, a, b):
    for j in range(a, b):
        table[np.int64(ids[j]) - lo] = 1


@numba.njit(cache=True, nogil=True)
def _presence_rank(table, lo, uniques_template):
    """In place: presence 0/1 -> rank among the present ids (or -1); returns the sorted uniques."""
    span = table.shape[0]
    n_unique = 0
    for s in range(span):
        if table[s]:
            table[s] = n_unique
            n_unique += 1
        else:
            table[s] = -1
    uniques = np.empty(n_unique, dtype=uniques_template.dtype)
    for s in range(span):
        r = table[s]
        if r >= 0:
            uniques[r] = s + lo
    return uniques


@numba.njit(cache=True, nogil=True)
def _presence_apply(ids, lo, table, codes, a, b):
    for j in range(a, b):
        codes[j] = table[np.int64(ids[j]) - lo]


@numba.njit(cache=True, nogil=True)
def _presence_count(ids, lo, table):
    """Mark the ids in the zeroed ``table``, turn it into ranks (-1: absent); the number present."""
    for j in range(ids.shape[0]):  # inline, not _presence_mark(..., 0, n): a literal 0 is one more specialisation
        table[np.int64(ids[j]) - lo] = 1
    n_unique = 0
    for s in range(table.shape[0]):
        if table[s]:
            table[s] = n_unique
            n_unique += 1
        else:
            table[s] = -1
    return n_unique


@numba.njit(cache=True, nogil=True)
def _presence_fill(ids, lo, table, codes, uniques):
    for s in range(table.shape[0]):
        r = table[s]
        if r >= 0:
            uniques[r] = s + lo
    for j in range(ids.shape[0]):
        codes[j] = table[np.int64(ids[j]) - lo]


def _presence_codes_serial(ids, lo, span):
    """Codes (int32) by rank in a presence table of ``span`` slots, and the sorted uniques.

    The arrays are allocated here, not in the kernels: each allocation inside a kernel is
    one more numba overload compiled on a cold start (this path is the one small inputs
    take, e.g. a first ``fastmf fit``).
    """
    table = np.zeros(span, dtype=np.int32)
    n_unique = _presence_count(ids, lo, table)
    codes = np.empty(ids.shape[0], dtype=np.int32)
    uniques = np.empty(n_unique, dtype=ids.dtype)
    _presence_fill(ids, lo, table, codes, uniques)
    return codes, uniques


@numba.njit(parallel=True, cache=True, nogil=True)
def _presence_table(ids, lo, span, n_chunks, uniques_template):
    """The rank table (rank of each present id, -1 for absent ones) and the sorted uniques,
    with the pass over ``ids`` in parallel chunks (and the allocations inside: this kernel is
    compiled only for large inputs)."""
    n = ids.shape[0]
    table = np.zeros(span, dtype=np.int32)
    for c in prange(n_chunks):  # identical writes of 1 from several threads: benign
        _presence_mark(ids, lo, table, c * n // n_chunks, (c + 1) * n // n_chunks)
    uniques = _presence_rank(table, lo, uniques_template)
    return table, uniques


@numba.njit(parallel=True, cache=True, nogil=True)
def _presence_apply_chunks(ids, lo, table, codes, n_chunks):
    n = ids.shape[0]
    for c in prange(n_chunks):
        _presence_apply(ids, lo, table, codes, c * n // n_chunks, (c + 1) * n // n_chunks)
    return codes


class RankTable:
    """Ranks of integer ids by a presence table: ``code = table[id - lo]``, ``uniques[code] = id``.

    What :func:`factorize_int` computes before it writes the codes; kept as a table so the
    radix sort can read the codes straight from the ids (:func:`sort_by_rank_tables`) and
    the ``nnz`` int32 codes are never stored when the input needs sorting.
    """

    __slots__ = ("table", "lo", "uniques", "n_chunks")

    def __init__(self, table, lo, uniques, n_chunks):
        self.table, self.lo, self.uniques, self.n_chunks = table, lo, uniques, n_chunks

    def codes(self, raw: np.ndarray) -> np.ndarray:
        """The int32 codes of ``raw`` (the ids the table was built from)."""
        out = np.empty(raw.shape[0], dtype=np.int32)
        if self.n_chunks > 1:
            return _presence_apply_chunks(raw, self.lo, self.table, out, self.n_chunks)
        _presence_apply(raw, self.lo, self.table, out, 0, raw.shape[0])
        return out


def _table_range(raw: np.ndarray, chunks: int) -> tuple[int, int] | None:
    """``(lo, span)`` of the presence table of integer ids, or ``None`` when the table does not
    apply: non-integer ids, empty input, or a range too wide (the generic path, and its int32
    code-range check, takes those)."""
    if raw.dtype.kind != "i" or raw.size == 0:
        return None
    n = raw.shape[0]
    lo, hi = _minmax(raw, chunks) if chunks > 1 else _minmax_range(raw, 0, n)
    span = int(hi) - int(lo) + 1
    if span > DENSE_FACTOR * n + DENSE_SLACK or span > np.iinfo(np.int32).max:
        return None
    return int(lo), span


@_guarded
def rank_table(raw: np.ndarray) -> RankTable | None:
    """:class:`RankTable` of validated integer ids (see :func:`factorize_int`), or ``None``.

    Parallel from :data:`PARALLEL_MIN_IDS` ids; ``None`` for non-integer ids, empty input
    or a range too wide for the table.
    """
    n = raw.shape[0]
    chunks = n_chunks_for(n, 1) if n >= PARALLEL_MIN_IDS else 1
    rng = _table_range(raw, chunks)
    if rng is None:
        return None
    lo, span = rng
    if chunks > 1:
        table, uniques = _presence_table(raw, np.int64(lo), span, chunks, raw[:0])
        return RankTable(table, np.int64(lo), uniques, chunks)
    table = np.zeros(span, dtype=np.int32)
    n_unique = _presence_count(raw, np.int64(lo), table)
    uniques = np.empty(n_unique, dtype=raw.dtype)
    codes = np.empty(0, dtype=np.int32)  # _presence_fill's id loop runs on no ids: uniques only
    _presence_fill(raw[:0], np.int64(lo), table, codes, uniques)
    return RankTable(table, np.int64(lo), uniques, 1)


@_guarded
def factorize_int(raw: np.ndarray):
    """``(codes int32, sorted unique ids)`` of validated integer ids by a presence table, or ``None``.

    ``raw`` comes from :func:`fastmf.data.ids.raw_ids` (signed integers, non-negative).
    Gives exactly ``pd.factorize(raw, sort=True)`` (codes as int32, uniques in
    ``raw``'s dtype); ``None`` for non-integer ids, empty input or a range too wide
    for the table (the caller then factorizes generically).  Serial below
    :data:`PARALLEL_MIN_IDS` ids (the same result).
    """
    if raw.shape[0] < PARALLEL_MIN_IDS:  # the serial kernels a small first fit compiles (unchanged)
        rng = _table_range(raw, 1)
        return None if rng is None else _presence_codes_serial(raw, np.int64(rng[0]), rng[1])
    tab = rank_table(raw)
    if tab is None:
        return None
    return tab.codes(raw), tab.uniques


# ---------------------------------------------------------------------------- sorting
@numba.njit(cache=True, nogil=True)
def _chunk_offsets(counts):
    """Exclusive prefix sum over (bucket, chunk) of per-chunk counts, in place; bucket ends."""
    n_chunks, n_buckets = counts.shape
    ends = np.empty(n_buckets + 1, dtype=np.int64)
    ends[0] = 0
    run = np.int64(0)
    for k in range(n_buckets):
        for c in range(n_chunks):
            cnt = counts[c, k]
            counts[c, k] = run
            run += cnt
        ends[k + 1] = run
    return ends


@numba.njit(parallel=True, cache=True, nogil=True)
def _sort_by_item(icodes, n_items, n_chunks, perm):
    """``perm``: positions sorted stably by item code."""
    n = icodes.shape[0]
    counts = np.zeros((n_chunks, n_items), dtype=np.int64)
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        for j in range(a, b):
            counts[c, icodes[j]] += 1
    _chunk_offsets(counts)
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        for j in range(a, b):
            i = icodes[j]
            p = counts[c, i]
            counts[c, i] = p + 1
            perm[p] = j
    return perm


@numba.njit(parallel=True, cache=True, nogil=True)
def _sort_by_user(ucodes, icodes, by_item, n_users, n_chunks, src, out_items):
    """Stable counting sort of the item-sorted positions ``by_item`` by user.

    Fills ``src`` (canonical position -> input row) and ``out_items``; returns the
    user indptr (int64, ``n_users + 1``).
    """
    n = by_item.shape[0]
    counts = np.zeros((n_chunks, n_users), dtype=np.int64)
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        for k in range(a, b):
            counts[c, ucodes[by_item[k]]] += 1
    indptr = _chunk_offsets(counts)
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        for k in range(a, b):
            j = by_item[k]
            u = ucodes[j]
            p = counts[c, u]
            counts[c, u] = p + 1
            src[p] = j
            out_items[p] = icodes[j]
    return indptr


@numba.njit(parallel=True, cache=True, nogil=True)
def _users_from_indptr(indptr, out_users):
    n_users = indptr.shape[0] - 1
    for u in prange(n_users):
        for p in range(indptr[u], indptr[u + 1]):
            out_users[p] = u
    return out_users


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather(values, src, out):
    for p in prange(src.shape[0]):
        out[p] = values[src[p]]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _count_duplicates(users, items, n_chunks):
    """Number of positions equal (user and item) to the previous one."""
    n = users.shape[0]
    per = np.zeros(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        a = max(1, c * n // n_chunks)
        b = (c + 1) * n // n_chunks
        d = 0
        for k in range(a, b):
            if items[k] == items[k - 1] and users[k] == users[k - 1]:
                d += 1
        per[c] = d
    return per.sum()


@_guarded
def gather(values: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``values[src]`` (a new array), in parallel."""
    return _gather(values, src, np.empty(src.shape[0], dtype=values.dtype))


# ---------------------------------------------------------------------------- packed radix sort
_DIGIT_BITS = 11
_DIGIT_MASK = (1 << _DIGIT_BITS) - 1


def _bits(n: int) -> int:
    """Bits needed for the values ``0 .. n - 1``."""
    return max(1, int(n - 1).bit_length())


@numba.njit(parallel=True, cache=True, nogil=True)
def _pack(ucodes, icodes, item_bits, pos_bits, n_chunks, out):
    n = ucodes.shape[0]
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        for j in range(a, b):
            out[j] = (((np.int64(ucodes[j]) << item_bits) | np.int64(icodes[j])) << pos_bits) | j
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _radix_pass(keys, out, shift, n_chunks):
    """One stable LSD pass on the 11-bit digit at ``shift``: ``keys`` -> ``out``."""
    n = keys.shape[0]
    counts = np.zeros((n_chunks, 1 << 11), dtype=np.int64)
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        for j in range(a, b):
            counts[c, (keys[j] >> shift) & 2047] += 1
    _chunk_offsets(counts)
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        for j in range(a, b):
            v = keys[j]
            d = (v >> shift) & 2047
            p = counts[c, d]
            counts[c, d] = p + 1
            out[p] = v
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _unpack(keys, item_bits, pos_bits, n_chunks, users, items, dups):
    """Users and items of the sorted packed keys; ``keys`` becomes the positions, in place.

    The same pass counts, in ``dups[c]``, the keys of chunk ``c`` whose (user, item) equals
    the previous key's (a separate pass over the codes before).  The previous key of a
    chunk's first position belongs to another chunk, which may already have overwritten it
    with a position, so that one comparison is made by the caller, before this kernel.
    The gather of the values stays a separate pass: fused in here, its random reads took
    0.6-0.7 s at 18M ratings against 0.25 s for this pass and the gather apart.
    """
    n = keys.shape[0]
    pmask = (np.int64(1) << pos_bits) - 1
    imask = (np.int64(1) << item_bits) - 1
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        d = 0
        prev = np.int64(-1)  # keys are non-negative: no (user, item) equals it
        for p in range(a, b):
            v = keys[p]
            k = v >> pos_bits
            if k == prev:
                d += 1
            prev = k
            items[p] = k & imask
            users[p] = k >> item_bits
            keys[p] = v & pmask
        dups[c] = d


def _radix_sort(ucodes, icodes, n_users, n_items, values):
    """Sorted (users, items, src, n_duplicates, sorted values) by an LSD radix sort of packed
    ``user|item|position`` int64 keys.

    The position in the low bits makes every key unique, so any sort of the packed
    keys is the stable sort by (user, item); only the (user, item) bits are radix
    digits (11 bits a pass).  ``None`` when the packed key needs more than 63 bits.

    Memory: two int64 buffers of ``nnz`` (fresh pages are expensive, so they are
    reused): the sorted buffer becomes ``src`` (int64) in place, the other one holds
    ``users`` and ``items`` as its two int32 halves.  The duplicate count rides on the
    unpacking pass; ``values`` are gathered after it.
    """
    n = ucodes.shape[0]
    ib, ub, pb = _bits(n_items), _bits(n_users), _bits(n)
    if ib + ub + pb > 63:
        return None
    chunks = n_chunks_for(n, 1 << _DIGIT_BITS)
    keys = _pack(ucodes, icodes, np.int64(ib), np.int64(pb), chunks, np.empty(n, dtype=np.int64))
    return _radix_sort_keys(keys, ib, ub, pb, chunks, values)


@numba.njit(parallel=True, cache=True, nogil=True)
def _pack_ranked(uraw, iraw, utable, ulo, itable, ilo, item_bits, pos_bits, n_chunks, out):
    """:func:`_pack` with the codes read from the rank tables (``code = table[id - lo]``)."""
    n = uraw.shape[0]
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        for j in range(a, b):
            u = np.int64(utable[np.int64(uraw[j]) - ulo])
            i = np.int64(itable[np.int64(iraw[j]) - ilo])
            out[j] = (((u << item_bits) | i) << pos_bits) | j
    return out


@_guarded
def sort_by_rank_tables(uraw, iraw, utab: RankTable, itab: RankTable, values):
    """:func:`sort_by_user_item` of the codes ``utab``/``itab`` give ``uraw``/``iraw``, without
    storing those codes: the packing pass reads them from the tables (2 x 4 bytes a rating
    of fresh memory and one pass fewer than coding first).  ``None`` when the packed key
    needs more than 63 bits (the caller then codes and sorts by :func:`sort_by_user_item`).
    """
    n = uraw.shape[0]
    n_users, n_items = len(utab.uniques), len(itab.uniques)
    ib, ub, pb = _bits(n_items), _bits(n_users), _bits(n)
    if ib + ub + pb > 63:
        return None
    chunks = n_chunks_for(n, 1 << _DIGIT_BITS)
    keys = _pack_ranked(uraw, iraw, utab.table, utab.lo, itab.table, itab.lo, np.int64(ib), np.int64(pb), chunks,
                        np.empty(n, dtype=np.int64))
    return _radix_sort_keys(keys, ib, ub, pb, chunks, values)


def _radix_sort_keys(keys, ib, ub, pb, chunks, values):
    """The radix passes over the packed ``keys``, then the unpacking (see :func:`_radix_sort`)."""
    n = keys.shape[0]
    tmp = np.empty(n, dtype=np.int64)
    for shift in range(pb, pb + ib + ub, _DIGIT_BITS):
        _radix_pass(keys, tmp, np.int64(shift), chunks)
        keys, tmp = tmp, keys
    halves = tmp.view(np.int32)
    users, items = halves[:n], halves[n:]
    # the comparisons across chunk starts, made before _unpack overwrites the keys
    starts = [c * n // chunks for c in range(1, chunks)]
    n_dup = sum(int(keys[a] >> pb == keys[a - 1] >> pb) for a in starts if 0 < a < n)
    dups = np.zeros(chunks, dtype=np.int64)
    _unpack(keys, np.int64(ib), np.int64(pb), chunks, users, items, dups)
    return users, items, keys, n_dup + int(dups.sum()), _gather(values, keys, np.empty(n, dtype=values.dtype))


@_guarded
def sort_by_user_item(ucodes: np.ndarray, icodes: np.ndarray, n_users: int, n_items: int, values: np.ndarray):
    """Canonical order of (user, item) codes by two stable counting sorts.

    Returns
    -------
    users, items : ndarray of int32
        Sorted codes.
    src : ndarray of int64 (radix path) or int32 (counting-sort fallback, int64 if ``nnz >= 2**31``)
        Input row of each sorted position: ``np.argsort(users * n_items + items,
        kind="stable")``.
    n_duplicates : int
        Positions whose (user, item) equals the previous one.
    sorted_values : ndarray
        ``values[src]`` (a new array).
    """
    n = ucodes.shape[0]
    pos_dtype = np.int32 if n < 2**31 else np.int64
    res = _radix_sort(ucodes, icodes, n_users, n_items, values)
    if res is not None:
        return res
    by_item = _sort_by_item(icodes, n_items, n_chunks_for(n, n_items), np.empty(n, dtype=pos_dtype))
    src = np.empty(n, dtype=pos_dtype)
    items = np.empty(n, dtype=np.int32)
    indptr = _sort_by_user(ucodes, icodes, by_item, n_users, n_chunks_for(n, n_users), src, items)
    del by_item
    users = _users_from_indptr(indptr, np.empty(n, dtype=np.int32))
    n_dup = int(_count_duplicates(users, items, n_chunks_for(n, 1)))
    return users, items, src, n_dup, _gather(values, src, np.empty(n, dtype=values.dtype))
