"""Serial and parallel variants of the kernels that pick one by size agree exactly.

Small inputs take the serial kernels (a ``prange`` kernel costs seconds of compilation on a
first fit); the thresholds are lowered here so that both paths run on the same input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fastmf.data import _sort
from fastmf.kernels import _vec


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_factorize_int_serial_equals_parallel(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    raw = rng.integers(5, 5000, size=300_000).astype(dtype)
    monkeypatch.setattr(_sort, "PARALLEL_MIN_IDS", 1 << 40)
    codes_s, uniq_s = _sort.factorize_int(raw)
    monkeypatch.setattr(_sort, "PARALLEL_MIN_IDS", 1)
    monkeypatch.setattr(_sort, "_MIN_CHUNK", 1 << 10)
    codes_p, uniq_p = _sort.factorize_int(raw)
    ref_codes, ref_uniq = pd.factorize(raw, sort=True)
    for codes, uniq in ((codes_s, uniq_s), (codes_p, uniq_p)):
        assert codes.dtype == np.int32 and uniq.dtype == raw.dtype
        np.testing.assert_array_equal(codes, ref_codes)
        np.testing.assert_array_equal(uniq, ref_uniq)


@pytest.mark.parametrize("xdtype,tdtype", [(np.float32, np.float32), (np.float64, np.float32), (np.float64, np.float64)])
def test_sync_changed_serial_equals_parallel(monkeypatch, xdtype, tdtype):
    rng = np.random.default_rng(1)
    n = 10_000
    for threshold in (1 << 40, 1):
        monkeypatch.setattr(_vec, "PARALLEL_MIN_SIZE", threshold)
        x = rng.standard_normal(n).astype(xdtype)
        last = x.copy()
        theta = x.astype(tdtype)
        assert not _vec.sync_changed(x, last, theta)
        x[[3, 7000]] = [1.5, np.nan]
        assert _vec.sync_changed(x, last, theta)
        np.testing.assert_array_equal(last, x)
        np.testing.assert_array_equal(theta, x.astype(tdtype))
        assert _vec.sync_changed(x, last, theta)  # NaN != NaN: always "changed"


def test_run_blocks_runs_every_block_once_and_reraises():
    """fastmf._threading.run_blocks: each block once, on at most n_threads threads (one of them
    the caller's), the first error re-raised once every thread has stopped (a thread stops at
    its first failing block)."""
    import threading

    from fastmf._threading import run_blocks

    for n_blocks, n_threads in [(1, 1), (5, 1), (5, 2), (2, 8)]:
        seen, names = [], set()
        lock = threading.Lock()

        def fn(t):
            with lock:
                seen.append(t)
                names.add(threading.current_thread().name)

        run_blocks(fn, n_blocks, n_threads)
        assert sorted(seen) == list(range(n_blocks))
        assert len(names) <= min(n_blocks, n_threads)
        assert threading.current_thread().name in names

    done = []

    def failing(t):
        if t == 1:
            raise ValueError("block 1 failed")
        done.append(t)

    with pytest.raises(ValueError, match="block 1 failed"):
        run_blocks(failing, 4, 2)
    assert sorted(done) == [0, 2]  # the caller's share; the pool thread stopped at block 1
