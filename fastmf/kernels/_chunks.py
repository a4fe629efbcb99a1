"""Load balancing: split CSR rows into chunks of (nearly) equal work.

Rating counts on MovieLens-like data follow a power law: a few users and items
hold a large share of the ratings.  Parallel loops over *rows* then leave one
thread waiting for the other, so the parallel kernels ``prange`` over *chunks* of
consecutive rows whose work is about equal.  The work of a row is its rating
count plus one (each row also pays for its regularisation term, so empty rows
are not free).

This is the one row-chunking helper of fastmf (kernels, solvers, backends and the Dask
blocks use it).  Kernels whose rows are independent (the
Gauss-Newton blocks, the diagonal, ALS) give the same result for any chunking; kernels
that reduce per chunk (loss partial sums) depend on the boundaries, which depend only on
``indptr`` and ``n_chunks``, never on the thread count.
"""

from __future__ import annotations

import numpy as np

__all__ = ["balanced_chunks", "PARALLEL_MIN_RATINGS"]

#: Below this many ratings the Newton-CG kernels (loss, gradient, Hessian products, the
#: Gauss-Newton diagonal) run serially by default: such fits take a few seconds, two threads
#: save little there (the factors sit in cache), and the ``prange`` kernels cost about 25 s of
#: compilation on a first fit against about 6 s for the serial ones (docs/performance.md,
#: "Cold start").  Public as :data:`fastmf.objective.PARALLEL_MIN_RATINGS`.
PARALLEL_MIN_RATINGS = 1 << 19


def balanced_chunks(indptr: np.ndarray, n_chunks: int) -> np.ndarray:
    """Row boundaries of at most ``n_chunks`` chunks of about equal work.

    The work of rows ``[0, r)`` is :math:`W(r) = \\mathrm{indptr}[r] + r` (ratings plus
    one per row).  Boundary ``t`` is the first row ``r`` with
    :math:`W(r) \\ge \\lfloor t\\,W(m)/n_\\text{chunks} \\rfloor` (integer arithmetic,
    no rounding); repeated boundaries are merged, so every
    chunk holds at least one row.  A single row with many ratings cannot be split, so a
    chunk may exceed the target when one row alone does.

    Parameters
    ----------
    indptr : ndarray of int64, shape (m + 1,)
        CSR row pointer (non-decreasing, ``indptr[0] == 0``).
    n_chunks : int
        Requested number of chunks (>= 1).

    Returns
    -------
    bounds : ndarray of int64, shape (n_eff + 1,)
        Strictly increasing, ``bounds[0] == 0`` and ``bounds[-1] == m``; chunk ``c``
        holds rows ``bounds[c]:bounds[c + 1]``.  For ``m == 0`` the result is ``[0]``
        (no chunk).

    Raises
    ------
    ValueError
        If ``indptr`` is not a 1-D non-decreasing array starting at 0 or
        ``n_chunks < 1``.
    """
    indptr = np.asarray(indptr)
    if indptr.ndim != 1 or indptr.shape[0] < 1:
        raise ValueError(f"indptr must be a non-empty 1-D array, got shape {indptr.shape}")
    if indptr.dtype.kind not in "iu":
        raise TypeError(f"indptr must be an integer array, got dtype {indptr.dtype}")
    if int(indptr[0]) != 0 or (indptr.shape[0] > 1 and np.any(np.diff(indptr) < 0)):
        raise ValueError("indptr must start at 0 and be non-decreasing")
    if isinstance(n_chunks, bool) or not isinstance(n_chunks, (int, np.integer)) or n_chunks < 1:
        raise ValueError(f"n_chunks must be an integer >= 1, got {n_chunks!r}")
    m = indptr.shape[0] - 1
    if m == 0:
        return np.zeros(1, dtype=np.int64)
    work = indptr.astype(np.int64) + np.arange(m + 1, dtype=np.int64)  # W(r), strictly increasing
    total = int(work[-1])
    n_chunks = min(int(n_chunks), m)
    targets = (np.arange(1, n_chunks, dtype=np.int64) * total) // n_chunks
    inner = np.searchsorted(work, targets, side="left").astype(np.int64)
    bounds = np.unique(np.concatenate(([0], inner, [m])).astype(np.int64))
    return np.ascontiguousarray(bounds, dtype=np.int64)
