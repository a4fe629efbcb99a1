"""pytest-benchmark timings of the objective kernels (not collected by the plain ``pytest`` run).

Run::

    pytest bench/test_bench_kernels.py --benchmark-only                       # small sets
    pytest bench/test_bench_kernels.py --benchmark-only -k "csr-float32-t2-k32"
    FASTMF_BENCH_LARGE=1 pytest bench/test_bench_kernels.py --benchmark-only -k ml-20m

Ids read ``<format>-<dtype>-t<threads>-k<rank>-<dataset>`` (e.g. ``csr-float32-t2-k32-ml-1m``;
``dense-float64-t1-k32-ml-1m`` for the dense reference).  The small sets (ml-100k,
ml-latest-small, ML-1M shape) get the full format x dtype x threads x rank grid; the
ML-10M and ML-20M shapes only the headline configurations (CSR, float32, rank 32,
1 and 2 threads) and only when ``FASTMF_BENCH_LARGE=1``.  Every operation is called
once before timing (compilation, cache load, item-major copy).  There are no timing
assertions: the numbers are for reading (``--benchmark-compare``, ``--benchmark-json``).
"""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest

from bench._data import LARGE, SMALL, load_dataset
from bench.report import dense_calls, objective_calls
from fastmf._threading import thread_limit
from fastmf.objective import MFObjective

REG = 0.1
MAX_THREADS = numba.config.NUMBA_NUM_THREADS
LARGE_ENABLED = os.environ.get("FASTMF_BENCH_LARGE", "").lower() in {"1", "true", "yes"}
THREADS = [t for t in (1, 2) if t <= MAX_THREADS]


def _configs():
    out = []
    for ds in SMALL:
        for fmt in ("csr", "coo"):
            for dt in ("float32", "float64"):
                for nt in THREADS:
                    for k in (8, 32, 128):
                        out.append(pytest.param(fmt, dt, nt, k, ds, id=f"{fmt}-{dt}-t{nt}-k{k}-{ds}"))
    for ds in LARGE:
        for nt in THREADS:
            out.append(pytest.param("csr", "float32", nt, 32, ds, id=f"csr-float32-t{nt}-k32-{ds}",
                                    marks=pytest.mark.skipif(not LARGE_ENABLED,
                                                             reason="set FASTMF_BENCH_LARGE=1 for ML-10M/20M")))
    return out


def _dense_configs():
    return [pytest.param(nt, k, ds, id=f"dense-float64-t{nt}-k{k}-{ds}")
            for ds in SMALL for nt in THREADS for k in (8, 32, 128)]


_OBJ_CACHE: dict = {}


def _objective(fmt, dt, nt, k, ds):
    key = (fmt, dt, nt, k, ds)
    if key not in _OBJ_CACHE:
        _OBJ_CACHE.clear()  # keep one objective alive at a time (memory on the large sets)
        obj = MFObjective(load_dataset(ds, np.dtype(dt)), k, reg=REG, dtype=np.dtype(dt), format=fmt, n_threads=nt)
        calls = objective_calls(obj)
        for fn in calls.values():  # warm-up: compile or load the numba cache, build the item-major copy
            fn()
        _OBJ_CACHE[key] = calls
    return _OBJ_CACHE[key]


def _run(benchmark, fn, nnz):
    fn()  # warm-up outside the timing
    benchmark.extra_info["nnz"] = nnz
    result = benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["mratings_per_s"] = nnz / stats.stats.min / 1e6
    return result


@pytest.mark.parametrize("fmt,dt,nt,k,ds", _configs())
def test_loss_grad(benchmark, fmt, dt, nt, k, ds):
    benchmark.group = f"loss+grad {ds} k{k}"
    loss, grad = _run(benchmark, _objective(fmt, dt, nt, k, ds)["loss+grad"], load_dataset(ds).nnz)
    assert np.isfinite(loss) and np.isfinite(grad).all()


@pytest.mark.parametrize("fmt,dt,nt,k,ds", _configs())
def test_jac(benchmark, fmt, dt, nt, k, ds):
    benchmark.group = f"jac {ds} k{k}"
    grad = _run(benchmark, _objective(fmt, dt, nt, k, ds)["jac"], load_dataset(ds).nnz)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("fmt,dt,nt,k,ds", _configs())
def test_hessp(benchmark, fmt, dt, nt, k, ds):
    benchmark.group = f"hessp {ds} k{k}"
    hv = _run(benchmark, _objective(fmt, dt, nt, k, ds)["hessp"], load_dataset(ds).nnz)
    assert np.isfinite(hv).all()


@pytest.mark.parametrize("nt,k,ds", _dense_configs())
@pytest.mark.parametrize("op", ["loss+grad", "hessp"])
def test_dense_reference(benchmark, op, nt, k, ds):
    from fastmf.reference import DenseMF

    benchmark.group = f"{op} {ds} k{k}"
    dense = DenseMF.from_ratings(load_dataset(ds, np.float64), k, reg=REG, biases=True)
    fn = dense_calls(dense)[op]
    with thread_limit(nt):
        _run(benchmark, fn, load_dataset(ds).nnz)
