"""Scoped control of numba and BLAS threads.

``with thread_limit(n): ...`` sets numba's thread count (``numba.set_num_threads``)
and limits BLAS/OpenMP pools (threadpoolctl) for the duration of the block only,
restoring both afterwards, even on error.
"""

from __future__ import annotations

import contextlib
import os

import numba
from threadpoolctl import threadpool_limits

__all__ = ["resolve_n_threads", "thread_limit"]


def resolve_n_threads(n_threads: int | None) -> int:
    """Turn a user's ``n_threads`` into a positive thread count.

    ``None`` means all threads numba was started with (``numba.config.NUMBA_NUM_THREADS``);
    a negative value ``-j`` means ``NUMBA_NUM_THREADS + 1 - j`` (so ``-1`` is all), as in
    scikit-learn's ``n_jobs``.

    Raises
    ------
    ValueError
        If the count is 0, not an integer, or larger than numba's maximum.
    """
    max_threads = numba.config.NUMBA_NUM_THREADS
    if n_threads is None:
        return max_threads
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int,)) and not (
        hasattr(n_threads, "__index__")
    ):
        raise TypeError(f"n_threads must be an int or None, got {type(n_threads).__name__}")
    n = int(n_threads)
    if n == 0:
        raise ValueError("n_threads must be a non-zero integer or None, got 0")
    if n < 0:
        n = max_threads + 1 + n
        if n < 1:
            raise ValueError(
                f"n_threads={n_threads} leaves no thread (numba has {max_threads}); use -1 for all"
            )
    if n > max_threads:
        raise ValueError(
            f"n_threads={n_threads} exceeds the {max_threads} threads numba was started with "
            f"(set NUMBA_NUM_THREADS before importing numba to raise it)"
        )
    return n


@contextlib.contextmanager
def thread_limit(n_threads: int | None, limit_blas: bool = True):
    """Run a block with ``n_threads`` numba threads (and BLAS limited to the same).

    Yields the resolved thread count.  Both settings are restored on exit.
    """
    n = resolve_n_threads(n_threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        if limit_blas:
            with threadpool_limits(limits=n):
                yield n
        else:
            yield n
    finally:
        numba.set_num_threads(previous)


def cpu_count() -> int:
    """Number of CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
