"""Reductions used by the solvers: float64 dot products and chunked sums of squared residuals.

Moved here from the solver layer (``steihaug._dot64``, ``gibbs._sse_chunks``): the solvers
hold no numba code of their own.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["dot64", "sse_chunks"]


@numba.njit(cache=True, nogil=True)
def _dot64(a, b):
    acc = 0.0
    for i in range(a.shape[0]):
        acc += np.float64(a[i]) * np.float64(b[i])
    return acc


def dot64(a: np.ndarray, b: np.ndarray) -> float:
    """Dot product of two 1-D arrays accumulated in float64."""
    if a.dtype == np.float64 and b.dtype == np.float64:
        return float(np.dot(a, b))
    return float(_dot64(a, b))


@numba.njit(parallel=True, cache=True, nogil=True)
def sse_chunks(indptr, cols, vals, P, Q, b, c, mu, biases, chunks, out):
    """``out[ch]`` = sum of squared residuals of the CSR rows of chunk ``ch`` (float64)."""
    k = P.shape[1]
    for ch in numba.prange(chunks.shape[0] - 1):
        s = 0.0
        for row in range(chunks[ch], chunks[ch + 1]):
            for j in range(indptr[row], indptr[row + 1]):
                col = cols[j]
                e = np.float64(vals[j]) - mu
                if biases:
                    e -= np.float64(b[row]) + np.float64(c[col])
                for a in range(k):
                    e -= np.float64(P[row, a]) * np.float64(Q[col, a])
                s += e * e
        out[ch] = s
