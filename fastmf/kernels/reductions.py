"""Float64 dot products of vectors (Steihaug-CG, ALS gradient norms).

Moved here from the solver layer (``steihaug._dot64``): the solvers hold no numba code of
their own.  Sums of squared residuals are :func:`fastmf.kernels.predict.squared_error_segments`.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["dot64"]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot64(a, b):
    # reassoc: LLVM keeps several SIMD partial sums (2-3x faster than the one-accumulator
    # chain, which Steihaug-CG calls a few times per Hessian product); the order is fixed
    # by the compiled code, so the result does not depend on the thread count
    acc = 0.0
    for i in range(a.shape[0]):
        acc += np.float64(a[i]) * np.float64(b[i])
    return acc


def dot64(a: np.ndarray, b: np.ndarray) -> float:
    """Dot product of two 1-D arrays accumulated in float64, on the calling thread.

    Always this loop (also for float64 input): a threaded BLAS ``ddot`` splits the sum by
    thread count, which made float64 Newton-CG fits differ between 1 and 2 threads.  The
    loop keeps SIMD partial sums in a fixed order (``fastmath`` reassociation), so the
    result is the same on every call with the same inputs, at any thread count.
    """
    return float(_dot64(a, b))
