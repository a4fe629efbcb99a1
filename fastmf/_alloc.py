"""Cache-line aligned allocation.

numpy's large allocations start 16 bytes past a 64-byte boundary, so a 128-byte
factor row (rank 32, float32) straddles three cache lines instead of two.  The
kernels gather and scatter whole rows at random, so aligning the parameter,
gradient, direction and buffer arrays saves a cache line per row touched.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CACHE_LINE", "aligned_empty", "aligned_zeros"]

CACHE_LINE = 64


def aligned_empty(shape, dtype, align: int = CACHE_LINE) -> np.ndarray:
    """Uninitialised C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + align, dtype=np.uint8)
    offset = (-buf.ctypes.data) % align
    return buf[offset : offset + nbytes].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype, align: int = CACHE_LINE) -> np.ndarray:
    """Zero-filled :func:`aligned_empty`."""
    out = aligned_empty(shape, dtype, align)
    out[...] = 0
    return out
