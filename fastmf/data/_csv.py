"""A dedicated numba parser for MovieLens ``ratings.csv`` files (issue #14 item 3).

The file format of ``ml-20m``, ``ml-25m``, ``ml-32m`` and ``ml-latest-small``::

    userId,movieId,rating,timestamp
    1,296,5.0,1147880044
    1,306,3.5,1147868817

pyarrow's generic CSV parser alone took 3.8-4.3 s on a 25M-row file on the 2-core
machine, over the whole 3 s budget of ``load_movielens``.  This parser reads the file
through a read-only memory map (no copy of its bytes), cuts the body into one
line-aligned chunk per thread and parses the chunks in a ``prange`` in two passes: count
the lines of each chunk, then fill int32 user ids, int32 movie ids, float64 ratings and
int64 timestamps at each chunk's row offset.  Every row lands at the same index whatever
the number of chunks, so the result does not depend on the thread count.

It accepts only what it can parse exactly, and returns ``None`` (the caller then runs
the pyarrow reader on the same file, which gives today's result or today's error) for:

* a first line that is not exactly ``userId,movieId,rating,timestamp`` (``\\n`` or
  ``\\r\\n`` after it), or nothing after it (an empty body: pyarrow's own error, which
  differs with and without a final newline, is kept);
* any other byte than digits, ``,``, one ``.`` in the rating, and ``\\n`` or ``\\r\\n``
  line ends: quotes, signs, exponents, spaces, empty fields or lines, a bare ``\\r``;
* a wrong number of fields;
* a user or movie id over ``2**31 - 1`` (pyarrow parses them as int32 and raises), a
  timestamp of more than 18 digits, a rating with more than 3 fraction digits or more
  than 6 integer digits.

Ratings: ``v = N / 10**d`` in float64, where ``N`` is the rating's digits read as one
integer and ``d`` its number of fraction digits (0-3).  ``N < 2**53`` and ``10**d`` are
exact doubles, and IEEE division rounds correctly, so ``v`` is the correctly rounded
value of the decimal, i.e. what pyarrow's (correctly rounding) parser gives, bit for bit.
"""

from __future__ import annotations

import logging
import mmap
import os
from pathlib import Path

import numba
import numpy as np
from numba import prange

from .._threading import kernel_guard

__all__ = ["FAST_CSV_MIN_BYTES", "MOVIELENS_HEADER", "read_movielens_csv"]

logger = logging.getLogger("fastmf.data")

#: The exact first line the fast parser accepts.
MOVIELENS_HEADER = b"userId,movieId,rating,timestamp"

#: Files smaller than this are read by pyarrow: it parses them fast enough, and a first
#: call of the parser costs a numba compile (or a cache load) that a small file does not
#: repay.  Tests set it to 0 to run small files through the fast parser.
FAST_CSV_MIN_BYTES = 16 << 20

_INT32_MAX = 2**31 - 1
_NL = 10
_CR = 13
_COMMA = 44
_DOT = 46
_ZERO = 48


@numba.njit(parallel=True, cache=True, nogil=True)
def _count_lines(buf, cuts, counts):
    """``counts[c]``: lines in ``buf[cuts[c]:cuts[c + 1]]`` (a last line without ``\\n`` counts)."""
    for c in prange(counts.shape[0]):
        a = cuts[c]
        b = cuts[c + 1]
        k = 0
        for j in range(a, b):
            if buf[j] == 10:
                k += 1
        if b > a and buf[b - 1] != 10:
            k += 1
        counts[c] = k


@numba.njit(cache=True, nogil=True)
def _parse_range(buf, a, b, row, users, items, ratings, stamps):
    """Parse the lines of ``buf[a:b]`` into rows ``row, row + 1, ...``.

    Returns -1 when every line parsed, else the offset in ``buf`` of the first byte
    the parser does not handle (the caller then falls back to pyarrow).
    """
    # The digit loops are written out per field on purpose: one ``_digits(buf, pos, b, v,
    # max_len) -> (v, pos, n)`` helper, plain or ``inline="always"``, parsed the 25M-row file
    # 1.3-1.5x slower (0.88-1.01 s against 0.60-0.63 s, interleaved).
    pow10 = (1.0, 10.0, 100.0, 1000.0)
    pos = a
    while pos < b:
        # user id: 1-10 digits, <= int32 max
        v = np.int64(0)
        start = pos
        while pos < b:
            d = np.int64(buf[pos]) - 48
            if d < 0 or d > 9:
                break
            v = v * 10 + d
            pos += 1
            if pos - start > 10:
                return pos - 1
        if pos == start or v > 2147483647 or pos >= b or buf[pos] != 44:
            return pos
        pos += 1
        users[row] = v
        # movie id
        v = np.int64(0)
        start = pos
        while pos < b:
            d = np.int64(buf[pos]) - 48
            if d < 0 or d > 9:
                break
            v = v * 10 + d
            pos += 1
            if pos - start > 10:
                return pos - 1
        if pos == start or v > 2147483647 or pos >= b or buf[pos] != 44:
            return pos
        pos += 1
        items[row] = v
        # rating: 1-6 integer digits, optionally '.' and 1-3 fraction digits
        v = np.int64(0)
        start = pos
        while pos < b:
            d = np.int64(buf[pos]) - 48
            if d < 0 or d > 9:
                break
            v = v * 10 + d
            pos += 1
            if pos - start > 6:
                return pos - 1
        if pos == start or pos >= b:
            return pos
        nfrac = 0
        if buf[pos] == 46:
            pos += 1
            start = pos
            while pos < b:
                d = np.int64(buf[pos]) - 48
                if d < 0 or d > 9:
                    break
                v = v * 10 + d
                pos += 1
                if pos - start > 3:
                    return pos - 1
            nfrac = pos - start
            if nfrac == 0 or pos >= b:
                return pos
        if buf[pos] != 44:
            return pos
        pos += 1
        ratings[row] = v / pow10[nfrac]  # both exact: one correctly rounded division
        # timestamp: 1-18 digits (fits int64)
        v = np.int64(0)
        start = pos
        while pos < b:
            d = np.int64(buf[pos]) - 48
            if d < 0 or d > 9:
                break
            v = v * 10 + d
            pos += 1
            if pos - start > 18:
                return pos - 1
        if pos == start:
            return pos
        stamps[row] = v
        row += 1
        # line end: "\n", "\r\n", or the end of the file
        if pos < b:
            if buf[pos] == 13:
                pos += 1
                if pos >= b or buf[pos] != 10:
                    return pos
            elif buf[pos] != 10:
                return pos
            pos += 1
    return -1


@numba.njit(parallel=True, cache=True, nogil=True)
def _parse_chunks(buf, cuts, offsets, users, items, ratings, stamps, bad):
    """Each chunk ``c`` into rows ``offsets[c]:offsets[c + 1]``; ``bad[c]``: -1 or an offending offset."""
    for c in prange(bad.shape[0]):
        bad[c] = _parse_range(buf, cuts[c], cuts[c + 1], offsets[c], users, items, ratings, stamps)


def _cuts(mm, body: int, n: int, n_chunks: int) -> np.ndarray:
    """Chunk bounds in ``[body, n]``, each just after a ``\\n`` (lines are never split)."""
    cuts = np.empty(n_chunks + 1, dtype=np.int64)
    cuts[0], cuts[n_chunks] = body, n
    for c in range(1, n_chunks):
        p = body + (n - body) * c // n_chunks
        j = mm.find(b"\n", p)
        cuts[c] = max(int(cuts[c - 1]), n if j < 0 else j + 1)
    return cuts


def _header_end(mm, n: int) -> int:
    """Offset of the body when the first line is exactly the MovieLens header, else -1."""
    h = len(MOVIELENS_HEADER)
    if mm[:h] != MOVIELENS_HEADER:
        return -1
    if n == h:
        return h
    if mm[h:h + 1] == b"\n":
        return h + 1
    if mm[h:h + 2] == b"\r\n":
        return h + 2
    return -1


def _parse(mm, body: int, n: int):
    """(users, items, ratings, timestamps) of the body ``mm[body:n]``, or the offset of a bad byte."""
    buf = np.frombuffer(mm, dtype=np.uint8)
    try:
        with kernel_guard():
            n_chunks = max(1, min(numba.get_num_threads(), (n - body) >> 16))
            cuts = _cuts(mm, body, n, n_chunks)
            counts = np.empty(n_chunks, dtype=np.int64)
            _count_lines(buf, cuts, counts)
            offsets = np.zeros(n_chunks + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            rows = int(offsets[-1])
            users = np.empty(rows, dtype=np.int32)
            items = np.empty(rows, dtype=np.int32)
            ratings = np.empty(rows, dtype=np.float64)
            stamps = np.empty(rows, dtype=np.int64)
            bad = np.empty(n_chunks, dtype=np.int64)
            _parse_chunks(buf, cuts, offsets, users, items, ratings, stamps, bad)
    finally:
        del buf  # the map cannot close while an array exports its buffer
    failed = bad[bad >= 0]
    if failed.size:
        return int(failed.min())
    return users, items, ratings, stamps


def _map(fh) -> mmap.mmap:
    """A read-only map of the whole file.  On Linux its pages are mapped up front
    (``MAP_POPULATE``): at 632 MiB, faulting them in one by one during the line count took
    0.07-0.12 s more (0.42 against 0.05 + 0.30 s)."""
    if hasattr(mmap, "MAP_POPULATE"):
        return mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
    return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def read_movielens_csv(path: str | os.PathLike, min_bytes: int | None = None):
    """The four columns of a MovieLens ``ratings.csv`` by the fast parser, or ``None``.

    Parameters
    ----------
    path : path
        A plain file (not a zip member).
    min_bytes : int, optional
        Size below which the file is left to pyarrow; default
        :data:`FAST_CSV_MIN_BYTES` (read at call time, so tests can monkeypatch it).

    Returns
    -------
    tuple of ndarray or None
        ``(users int32, items int32, ratings float64, timestamps int64)`` in file
        order; ``None`` when the file is smaller than ``min_bytes``, its first line is
        not exactly :data:`MOVIELENS_HEADER`, it has no rows, or the body holds
        anything the parser does not handle (see the module docstring).  ``None``
        means: read the file with pyarrow, which gives the same result or the error it
        always gave.
    """
    path = Path(path)
    limit = FAST_CSV_MIN_BYTES if min_bytes is None else min_bytes
    n = path.stat().st_size
    if n < max(limit, 1):
        return None
    with open(path, "rb") as fh, _map(fh) as mm:
        body = _header_end(mm, n)
        if body < 0:
            logger.debug("%s: first line is not %r; reading it with pyarrow", path, MOVIELENS_HEADER.decode())
            return None
        if body == n:  # no rows: pyarrow's error differs with and without a newline after the header
            return None
        res = _parse(mm, body, n)
    if isinstance(res, int):
        logger.debug("%s: byte %d is outside the fast MovieLens CSV format; reading it with pyarrow", path, res)
        return None
    return res
