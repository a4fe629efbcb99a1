"""The whole-fit memory guard (fastmf._memory): refusal before work, estimate accuracy."""

import tracemalloc
import warnings

import numpy as np
import pytest

from fastmf import MatrixFactorization
from fastmf._memory import estimate_fit_memory, memory_limit, parse_memory
from fastmf.data.convert import as_ratings
from fastmf.exceptions import FitMemoryError

SOLVERS = ["newton", "als", "sgd", "gibbs"]


def _data(m=600, n=400, nnz=20000, seed=0):
    rng = np.random.default_rng(seed)
    key = np.unique(rng.integers(0, m, nnz) * n + rng.integers(0, n, nnz))
    return as_ratings((key // n, key % n, rng.integers(1, 6, len(key)).astype(float)), np.float32)


@pytest.mark.parametrize("solver", SOLVERS)
def test_huge_rank_refused_before_work(solver):
    r = _data()
    # "before work" measured in bytes, not seconds: a rank-10**7 fit that started would
    # allocate gigabytes before failing
    tracemalloc.start()
    try:
        with pytest.raises(FitMemoryError, match="would need about .* more than the limit") as info:
            MatrixFactorization(rank=10**7, solver=solver, progress=False).fit(r)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"
    assert isinstance(info.value, MemoryError)
    assert info.value.estimate.total > info.value.limit
    assert "max_memory" in str(info.value)


@pytest.mark.parametrize("solver", SOLVERS)
def test_max_memory_option_and_env(solver, monkeypatch):
    r = _data(m=50, n=40, nnz=500)
    with pytest.raises(FitMemoryError, match="max_memory"):
        MatrixFactorization(rank=4, solver=solver, progress=False, max_iter=2,
                            solver_options={"max_memory": "10KiB"}).fit(r)
    monkeypatch.setenv("FASTMF_MAX_MEMORY", "1KB")
    with pytest.raises(FitMemoryError, match=r"\$FASTMF_MAX_MEMORY"):
        MatrixFactorization(rank=4, solver=solver, progress=False, max_iter=2).fit(r)
    # the option wins over the environment; a normal fit passes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MatrixFactorization(rank=4, solver=solver, progress=False, max_iter=2,
                            solver_options={"max_memory": "1GiB"}).fit(r)


def test_parse_and_bad_max_memory():
    assert parse_memory("8GiB") == 8 * 2**30
    assert parse_memory("500 MB") == 500 * 10**6
    assert parse_memory(1e9) == 10**9
    for bad in ("lots", "-1GB", 0, float("inf")):
        with pytest.raises(ValueError):
            parse_memory(bad)
    with pytest.raises(ValueError, match="max_memory"):
        MatrixFactorization(rank=2, solver="als", solver_options={"max_memory": "x"}).fit(_data(50, 40, 500))
    limit, source = memory_limit()
    assert limit is None or limit > 0


@pytest.mark.parametrize("solver,opts", [("newton", {}), ("newton", {"preconditioner": "block-jacobi"}),
                                         ("als", {}), ("sgd", {}), ("gibbs", {"burn_in": 1})])
def test_estimate_within_2x_of_measured_peak(solver, opts):
    r = _data()
    rank, kw = 64, dict(max_iter=3, n_threads=2, progress=False, solver=solver, solver_options=opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MatrixFactorization(rank=2, **kw).fit(r)  # compile; builds the cached layouts outside the measure
        tracemalloc.start()
        try:
            MatrixFactorization(rank=rank, **kw).fit(r)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    est = estimate_fit_memory(solver, r.n_users, r.n_items, r.nnz, rank, True, np.float32, 2,
                              dict(opts, max_iter=3)).total
    assert 0.5 < est / peak < 2.0, (est, peak)
