"""asv benchmarks of the objective kernels: loss+gradient, gradient and hessp.

Run from the repository root (``asv.conf.json`` there, ``benchmark_dir = bench``)::

    asv machine --yes                                   # once per machine
    asv run --python=same --quick                       # everything once (a few minutes)
    asv run --python=same --quick --bench 'KernelsSmall.*ml-1m'   # a subset (regex on names/params)
    asv run --python=same --bench KernelsLarge          # the ML-10M/ML-20M headline, with repeats

Suites (parameters in the benchmark names):

* :class:`KernelsSmall`: the full grid dataset x format x dtype x threads x rank on
  ml-100k, ml-latest-small and the synthetic ML-1M shape;
* :class:`KernelsJac`: ``jac`` alone (float32, rank 32) on the same sets;
* :class:`KernelsLarge`: the headline configuration (CSR, float32, rank 32, 1 and 2
  threads) on the synthetic ML-10M and ML-20M shapes;
* :class:`DenseReference`: the dense numpy oracle (float64) where it fits (the small
  sets), BLAS limited to the thread count;
* :class:`PeakMem`, :class:`PeakMemDense`: peak resident memory of building the
  objective and one loss+gradient call (asv's ``peakmem_`` is the process' peak RSS, so
  it includes the dataset loaded in ``setup``);
* :class:`Throughput`: ``track_`` of million ratings per second and of the 2-thread
  over 1-thread speed-up (both measured in one process, best of 3 calls).

Every ``setup`` calls each timed operation once first, so numba compilation (or its
cache load) and the lazy item-major copy are never timed.  ``loss+grad`` and ``jac``
alternate two points because :class:`~fastmf.objective.MFObjective` caches the last
``x`` (see :func:`bench.report.objective_calls`).
"""

from __future__ import annotations

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from bench._data import ALL, LARGE, SMALL, load_dataset
from bench.report import best_seconds, dense_calls, objective_calls
from fastmf._threading import thread_limit
from fastmf.objective import MFObjective

REG = 0.1
MAX_THREADS = numba.config.NUMBA_NUM_THREADS


def _check_threads(threads: int) -> None:
    if threads > MAX_THREADS:
        raise NotImplementedError(f"{threads} threads requested, numba has {MAX_THREADS}")  # asv: skipped


class _ObjectiveSuite:
    """Shared setup: an objective for the parameters, warmed up."""

    param_names = ["dataset", "format", "dtype", "threads", "rank"]
    timeout = 600.0

    def setup(self, dataset, fmt, dtype, threads, rank):
        _check_threads(threads)
        ratings = load_dataset(dataset, np.dtype(dtype))
        self.obj = MFObjective(ratings, rank, reg=REG, dtype=np.dtype(dtype), format=fmt, n_threads=threads)
        self.calls = objective_calls(self.obj)
        for fn in self.calls.values():  # compile / load the numba cache, build the item-major copy
            fn()



class _LossGradHessp:
    def time_loss_grad(self, dataset, fmt, dtype, threads, rank):
        self.calls["loss+grad"]()

    def time_hessp(self, dataset, fmt, dtype, threads, rank):
        self.calls["hessp"]()


class KernelsSmall(_LossGradHessp, _ObjectiveSuite):
    """Full grid on ml-100k, ml-latest-small and the ML-1M shape (loss+grad, hessp)."""

    params = [list(SMALL), ["csr", "coo"], ["float32", "float64"], [1, 2], [8, 32, 128]]


class KernelsJac(_ObjectiveSuite):
    """``jac`` alone (the same fused passes as ``fun_and_jac``): float32, rank 32 only."""

    params = [list(SMALL), ["csr", "coo"], ["float32"], [1, 2], [32]]

    def time_jac(self, dataset, fmt, dtype, threads, rank):
        self.calls["jac"]()


class KernelsLarge(_LossGradHessp, _ObjectiveSuite):
    """Headline configurations on the ML-10M and ML-20M shapes (loss+grad, jac, hessp)."""

    params = [list(LARGE), ["csr", "coo"], ["float32"], [1, 2], [32]]
    number = 1
    repeat = (1, 5, 30.0)

    def time_jac(self, dataset, fmt, dtype, threads, rank):
        self.calls["jac"]()


class DenseReference:
    """The dense float64 oracle (small sets only), BLAS limited to ``threads``."""

    params = [list(SMALL), [1, 2], [8, 32, 128]]
    param_names = ["dataset", "threads", "rank"]
    timeout = 600.0

    def setup(self, dataset, threads, rank):
        from fastmf.reference import DenseMF

        _check_threads(threads)
        self.limits = threadpool_limits(limits=threads)
        self.dense = DenseMF.from_ratings(load_dataset(dataset, np.float64), rank, reg=REG, biases=True)
        self.calls = dense_calls(self.dense)
        for fn in self.calls.values():
            fn()

    def teardown(self, dataset, threads, rank):
        self.limits.restore_original_limits()

    def time_loss_grad(self, dataset, threads, rank):
        self.calls["loss+grad"]()

    def time_hessp(self, dataset, threads, rank):
        self.calls["hessp"]()


class PeakMem:
    """Peak RSS: objective construction (float32, rank 32) and one loss+gradient."""

    params = [list(ALL), ["csr", "coo"]]
    param_names = ["dataset", "format"]
    timeout = 600.0

    def setup(self, dataset, fmt):
        # Load the data (and nothing else) before the measured call.  The lazy
        # item-major copy is built inside the measurement (CSR needs it).
        self.ratings = load_dataset(dataset)

    def peakmem_objective_loss_grad(self, dataset, fmt):
        obj = MFObjective(self.ratings, 32, reg=REG, dtype=np.float32, format=fmt)
        obj.fun_and_jac(obj.x0(random_state=0))


class PeakMemDense:
    """Peak RSS of the dense reference (float64, rank 32) and one gradient."""

    params = [list(SMALL)]
    param_names = ["dataset"]
    timeout = 600.0

    def setup(self, dataset):
        self.ratings = load_dataset(dataset, np.float64)

    def peakmem_dense_loss_grad(self, dataset):
        from fastmf.reference import DenseMF

        dense = DenseMF.from_ratings(self.ratings, 32, reg=REG, biases=True)
        dense_calls(dense)["loss+grad"]()


class Throughput:
    """Ratings per second and the 2-thread speed-up, CSR float32 rank 32 (best of 3 calls)."""

    params = [list(ALL)]
    param_names = ["dataset"]
    timeout = 900.0

    def setup(self, dataset):
        self.ratings = load_dataset(dataset)
        self.obj = MFObjective(self.ratings, 32, reg=REG, dtype=np.float32, format="csr")
        self.calls = objective_calls(self.obj)
        for fn in self.calls.values():
            fn()

    def _best(self, op, threads):
        with thread_limit(threads, limit_blas=False):
            self.obj.n_threads = threads
            try:
                return best_seconds(self.calls[op], 3)
            finally:
                self.obj.n_threads = None

    def track_loss_grad_mratings_per_s(self, dataset):
        return self.ratings.nnz / self._best("loss+grad", MAX_THREADS) / 1e6

    track_loss_grad_mratings_per_s.unit = "M ratings/s"

    def track_hessp_mratings_per_s(self, dataset):
        return self.ratings.nnz / self._best("hessp", MAX_THREADS) / 1e6

    track_hessp_mratings_per_s.unit = "M ratings/s"

    def track_loss_grad_thread_speedup(self, dataset):
        if MAX_THREADS < 2:
            raise NotImplementedError("one numba thread: no speed-up to measure")
        return self._best("loss+grad", 1) / self._best("loss+grad", 2)

    track_loss_grad_thread_speedup.unit = "x (2 threads over 1)"
