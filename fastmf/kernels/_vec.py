"""Vector helpers for :class:`fastmf.objective.MFObjective`'s per-call bookkeeping."""

from __future__ import annotations

import numba
from numba import prange

__all__ = ["sync_changed"]


@numba.njit(parallel=True, cache=True, nogil=True)
def sync_changed(x, last, theta, n_chunks):
    """Compare ``x`` with ``last`` chunk by chunk and copy the chunks that differ.

    For every chunk where ``x`` and ``last`` differ (a NaN always differs), the chunk
    is copied into ``last`` and, cast, into ``theta``; equal chunks are left alone
    (``theta`` already holds them).  Returns whether anything changed.  One read of
    both vectors when nothing changed, against three passes for
    ``array_equal`` + cast + copy.
    """
    n = x.shape[0]
    changed = 0
    for ch in prange(n_chunks):
        i0 = (ch * n) // n_chunks
        i1 = ((ch + 1) * n) // n_chunks
        diff = False
        for i in range(i0, i1):
            if not (x[i] == last[i]):
                diff = True
                break
        if diff:
            for i in range(i0, i1):
                last[i] = x[i]
                theta[i] = x[i]
            changed += 1
    return changed > 0
