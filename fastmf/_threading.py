"""Numba threading layer selection, fork/thread guards, and scoped thread limits.

Threading layer
---------------
numba runs ``parallel=True`` kernels on one of three threading layers, chosen
once per process, the first time a parallel kernel is compiled or run:

* ``tbb``: safe with ``fork()`` and with kernels launched from several Python
  threads at once.  Needs the ``tbb`` package (``libtbb.so.12`` / ``tbb12.dll``,
  TBB 2021.6 or later).
* ``omp``: fast and thread-safe, but on Linux (GNU OpenMP) not fork-safe: a
  process forked after the parent ran a parallel kernel is killed by numba
  ("fork() called from a process already using GNU OpenMP"), which makes a
  ``multiprocessing.Pool`` respawn its workers forever.
* ``workqueue``: fork-safe, but aborts the process when two threads launch
  parallel kernels at the same time.

:func:`configure_threading_layer` runs when this module is first imported (so
at ``import fastmf``): unless the user chose a layer (``NUMBA_THREADING_LAYER``
in the environment, or ``numba.config.THREADING_LAYER`` set before importing
fastmf), it makes a pip-installed TBB loadable and pins ``tbb`` when TBB is
there.  Without TBB numba's default stays (``omp``, else ``workqueue``) and two
guards in :func:`thread_limit`, which every fastmf kernel call goes through,
cover the unsafe cases:

* in a process forked from one whose GNU OpenMP layer was already started, a
  fastmf kernel call raises :class:`ForkedOpenMPError` naming the fixes,
  instead of the process being killed (and a pool hanging);
* with the ``workqueue`` layer, fastmf kernel calls from different threads are
  serialised by a process-wide lock instead of aborting the process.

Thread limits
-------------
``with thread_limit(n): ...`` sets numba's thread count (``numba.set_num_threads``)
and limits BLAS/OpenMP pools (threadpoolctl) for the duration of the block only,
restoring both afterwards, even on error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
import warnings

import numba
from numba.core import config as _numba_config
from threadpoolctl import threadpool_limits

__all__ = [
    "ForkedOpenMPError",
    "configure_threading_layer",
    "resolve_n_threads",
    "run_blocks",
    "thread_limit",
    "threading_layer",
]

_ENV = "NUMBA_THREADING_LAYER"
_TBB_LIBS = {"linux": "libtbb.so.12", "win32": "tbb12.dll", "darwin": "libtbb.12.dylib"}


from .exceptions import ForkedOpenMPError  # noqa: E402  (raised here; defined with the other errors)


def _numba_parallel():
    from numba.np.ufunc import parallel

    return parallel


def _layer_started() -> str | None:
    """The layer numba already launched in this process, or None."""
    par = _numba_parallel()
    return par._threading_layer if par._is_initialized else None


def _tbb_library_name() -> str | None:
    for prefix, name in _TBB_LIBS.items():
        if sys.platform.startswith(prefix):
            return name
    return None


def _preload_tbb() -> bool:
    """Load the TBB runtime of the ``tbb`` package by full path.

    pip puts ``libtbb.so.12`` in ``<prefix>/lib`` (``tbb12.dll`` in
    ``<prefix>/Library/bin``), which the dynamic loader does not search, so numba
    reports "TBB not available" in a virtual environment (numba issue #7148).
    Once loaded by full path, numba's ``CDLL("libtbb.so.12")`` and its
    ``tbbpool`` extension find the loaded library by name.  Returns True if a
    library was loaded.
    """
    name = _tbb_library_name()
    if name is None:
        return False
    candidates = []
    try:
        from importlib import metadata

        dist = metadata.distribution("tbb")
        for f in dist.files or ():
            if f.name == name:
                candidates.append(str(dist.locate_file(f)))
    except Exception:  # noqa: BLE001 - package missing or odd metadata: try the usual folders
        pass
    for base in {sys.prefix, sys.base_prefix}:
        candidates += [os.path.join(base, "lib", name), os.path.join(base, "Library", "bin", name)]
    mode = getattr(ctypes, "RTLD_GLOBAL", 0)
    for path in candidates:
        if os.path.isfile(path):
            try:
                ctypes.CDLL(os.path.abspath(path), mode=mode)
                return True
            except OSError:
                continue
    return False


def tbb_available() -> bool:
    """True if numba's TBB threading layer can be loaded in this process."""
    par = _numba_parallel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba warns about an old TBB; we just fall back
        try:
            par._check_tbb_version_compatible()
            from numba.np.ufunc import tbbpool  # noqa: F401
        except ImportError:
            if not _preload_tbb():
                return False
            try:
                par._check_tbb_version_compatible()
                from numba.np.ufunc import tbbpool  # noqa: F401
            except ImportError:
                return False
    return True


_configured: str | None = None


def configure_threading_layer() -> str:
    """Pin numba's threading layer for fastmf; returns the setting in force.

    Respects a user's choice: ``NUMBA_THREADING_LAYER`` in the environment or a
    ``numba.config.THREADING_LAYER`` other than ``"default"`` (a pip-installed TBB
    is still made loadable, so that ``tbb`` or ``safe`` work).  Does nothing if
    numba already started a layer in this process.  Otherwise sets
    ``numba.config.THREADING_LAYER = "tbb"`` when TBB is loadable (see
    :func:`tbb_available`), else leaves numba's default.  Idempotent.
    """
    global _configured
    if _configured is not None:
        return _configured
    started = _layer_started()
    if started is not None:
        _configured = started
        return _configured
    tbb = tbb_available()  # also makes a pip-installed TBB loadable for a user's own choice of "tbb"/"safe"
    if os.environ.get(_ENV, "").strip() or str(_numba_config.THREADING_LAYER).lower() != "default":
        _configured = str(_numba_config.THREADING_LAYER).lower()
    elif tbb:
        _numba_config.THREADING_LAYER = "tbb"
        _configured = "tbb"
    else:
        _configured = "default"
    return _configured


def threading_layer() -> str:
    """The layer numba runs (starting it if needed): ``"tbb"``, ``"omp"`` or ``"workqueue"``."""
    par = _numba_parallel()
    par._launch_threads()
    return par._threading_layer


# --- guards -------------------------------------------------------------------------------

_forked_after_gnu_omp = False
_workqueue_lock = threading.RLock()


def _gnu_omp_started() -> bool:
    if _layer_started() != "omp":
        return False
    try:
        from numba.np.ufunc import omppool
    except ImportError:  # pragma: no cover
        return False
    return getattr(omppool, "openmp_vendor", "") == "GNU"


def _after_fork_in_child() -> None:
    global _forked_after_gnu_omp, _workqueue_lock, _block_pool
    # a lock held by another thread of the parent would stay held forever in the child
    _workqueue_lock = threading.RLock()
    # the parent's pool threads do not exist in the child: start a new pool on first use
    _block_pool = None
    if _gnu_omp_started():
        _forked_after_gnu_omp = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_fork_safety() -> None:
    """Raise :class:`ForkedOpenMPError` if parallel kernels cannot run in this process."""
    if _forked_after_gnu_omp:
        raise ForkedOpenMPError(
            "fastmf cannot run parallel kernels in this process: it was forked (multiprocessing "
            "start method 'fork') from a process that had already started numba's GNU OpenMP "
            "threading layer, which does not survive fork(). Fixes: install TBB (pip install tbb) "
            "so that fastmf uses numba's fork-safe TBB layer; or use "
            "multiprocessing.get_context('spawn') or 'forkserver'; or set "
            "NUMBA_THREADING_LAYER=workqueue before the parent imports fastmf."
        )


# --- thread counts ------------------------------------------------------------------------

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

    Yields the resolved thread count.  Both settings are restored on exit.  Every
    fastmf kernel call runs inside one, so this is also where the fork guard
    (:func:`check_fork_safety`) runs and, under the ``workqueue`` layer, where
    calls from different threads are serialised.
    """
    n = resolve_n_threads(n_threads)
    check_fork_safety()
    previous = numba.get_num_threads()  # starts numba's threading layer if needed
    lock = _workqueue_lock if _layer_started() == "workqueue" else contextlib.nullcontext()
    with lock:
        numba.set_num_threads(n)
        try:
            if limit_blas:
                with threadpool_limits(limits=n):
                    yield n
            else:
                yield n
        finally:
            numba.set_num_threads(previous)



# --- serial kernels on Python threads -------------------------------------------------------

_block_pool = None
_block_pool_lock = threading.Lock()


def _pool():
    global _block_pool
    with _block_pool_lock:
        if _block_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _block_pool = ThreadPoolExecutor(max_workers=max(1, _numba_config.NUMBA_NUM_THREADS - 1),
                                             thread_name_prefix="fastmf-block")
        return _block_pool


def run_blocks(fn, n_blocks: int, n_threads: int) -> None:
    """Call ``fn(t)`` for ``t = 0 .. n_blocks - 1`` on at most ``n_threads`` threads.

    For small problems, where a ``prange`` kernel would cost seconds of compilation on a first
    fit for a call of a few milliseconds: ``fn`` calls serial numba kernels compiled with
    ``nogil=True`` on disjoint outputs, so the blocks run concurrently on the calling thread
    and up to ``n_threads - 1`` threads of a process-wide pool (started on first use, again
    in a forked child).  Thread ``w`` takes blocks ``w, w + n_threads, ...``; which thread runs
    a block never changes what it computes, so results do not depend on ``n_threads``.  Every
    thread has stopped before this returns; a thread stops at its first failing block, and the
    first exception (the caller's own, else the pool threads' in order) is re-raised.
    """
    n_threads = max(1, min(int(n_threads), int(n_blocks)))

    def share(w: int) -> None:
        for t in range(w, n_blocks, n_threads):
            fn(t)

    if n_threads == 1:
        share(0)
        return
    futures = [_pool().submit(share, w) for w in range(1, n_threads)]
    try:
        share(0)
    finally:
        errors = [f.exception() for f in futures]  # waits for every block
    for e in errors:
        if e is not None:
            raise e


@contextlib.contextmanager
def kernel_guard():
    """The fork guard and the ``workqueue`` serialisation of :func:`thread_limit`, without
    changing the thread count: for parallel kernels called where the caller's thread setting
    (an enclosing :func:`thread_limit`, or numba's default) must stay in force, such as the
    data layer's conversion kernels."""
    check_fork_safety()
    numba.get_num_threads()  # starts numba's threading layer if needed
    lock = _workqueue_lock if _layer_started() == "workqueue" else contextlib.nullcontext()
    with lock:
        yield


configure_threading_layer()
