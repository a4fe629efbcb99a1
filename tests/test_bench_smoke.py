"""Smoke test of the benchmark code (bench/): it imports and runs on a tiny dataset.

No timing is asserted: this only keeps the asv suite, the pytest-benchmark helpers and
``python -m bench.report`` from rotting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # bench/ is a top-level folder, not an installed package
    sys.path.insert(0, str(_REPO))

from bench import _data, report  # noqa: E402
from bench import benchmarks_kernels as bk  # noqa: E402


def test_dataset_names_and_errors():
    assert set(_data.ALL) == set(_data.SMALL) | set(_data.LARGE)
    r = _data.load_dataset("tiny")
    assert r.nnz == 2_000 and r.dtype == np.float32
    assert _data.load_dataset("tiny", np.float64).dtype == np.float64
    assert _data.load_dataset("tiny") is r  # memoised
    assert _data.dense_fits(r)
    with pytest.raises(ValueError, match="unknown benchmark dataset"):
        _data.load_dataset("ml-7m")
    with pytest.raises(TypeError, match="float32 or float64"):
        _data.load_dataset("tiny", np.int32)


def test_synthetic_cache_roundtrip(tmp_path, monkeypatch):
    # A cached file with the wrong shape is regenerated, and a valid one is reloaded identically.
    monkeypatch.setenv("FASTMF_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(_data, "PRESETS", {"ml-1m": (60, 40, 500, (1.0, 5.0))})
    from fastmf.data import synthetic as syn

    def small_preset(name, random_state=0, dtype=np.float32):
        return syn.synthetic(60, 40, 500, random_state=random_state, dtype=dtype, rating_scale=(1.0, 5.0),
                             round_to=1.0)

    monkeypatch.setattr(_data, "synthetic_preset", small_preset)
    path = tmp_path / "ml-1m-seed0.npz"
    np.savez(path, users=np.zeros(1, np.int32), items=np.zeros(1, np.int32), values=np.ones(1, np.float32),
             shape=np.array([1, 1]))
    a = _data._synthetic_cached("ml-1m")
    assert a.nnz == 500 and path.is_file()
    b = _data._synthetic_cached("ml-1m")
    np.testing.assert_array_equal(a.users, b.users)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.values, b.values)
    assert not list(tmp_path.glob("*.tmp"))


def test_best_seconds_counts_calls():
    calls = []
    s = report.best_seconds(lambda: calls.append(1), repeat=3, warmup=2)
    assert len(calls) == 5 and s >= 0.0
    with pytest.raises(ValueError, match="repeat"):
        report.best_seconds(lambda: None, repeat=0)


def test_objective_calls_defeat_the_cache():
    from fastmf.objective import MFObjective

    obj = MFObjective(_data.load_dataset("tiny"), 3)
    calls = report.objective_calls(obj)
    for _ in range(3):
        calls["loss+grad"]()
    calls["jac"]()
    assert obj.n_evaluations == 4  # every timed call recomputed


def test_report_main_tiny(tmp_path, capsys):
    out_json = tmp_path / "r.json"
    rc = report.main(["--datasets", "tiny", "--ranks", "2", "--repeat", "1", "--min-time", "0", "--threads", "1",
                      "--no-first-call", "--markdown", "--profile", "tiny", "--json", str(out_json), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| dataset | nnz | format |" in text
    assert "CSR kernel-only passes" in text
    data = json.loads(out_json.read_text())
    rows = data["rows"]
    # dense + 2 formats x 2 dtypes, 2 ops each
    assert len(rows) == 2 * (1 + 4)
    assert {r["format"] for r in rows} == {"dense", "csr", "coo"}
    assert all(r["vs_dense"] is not None for r in rows if r["format"] != "dense")
    assert {p["side"] for p in data["profile"]} == {"user", "item"}


def test_thread_speedup_and_tables():
    rows = [report._row("tiny", _data.load_dataset("tiny"), "csr", "float32", 2, t, "hessp", s, None)
            for t, s in ((1, 0.2), (2, 0.1))]
    report._thread_speedups(rows)
    assert rows[0]["speedup_threads"] is None and rows[1]["speedup_threads"] == pytest.approx(2.0)
    text = report.format_table(rows)
    assert "2.00x" in text and len(text.splitlines()) == 4
    fc = {"import": 1.0, "data+objective": 0.1, "fun_and_jac": 0.2, "hessp": 0.3, "total": 1.6}
    assert "1.60" in report.format_first_call(fc, None, markdown=True)
    compile(report._FIRST_CALL_SNIPPET, "<first-call>", "exec")


def test_warm_up_runs():
    assert report.warm_up(formats=("csr",), dtypes=("float32",)) >= 0.0


def test_asv_suites_run_on_tiny():
    for cls in (bk.KernelsSmall, bk.KernelsJac, bk.KernelsLarge):
        names = cls.param_names
        assert len(cls.params) == len(names)
        suite = cls()
        suite.setup("tiny", "coo", "float64", 1, 2)
        for meth in ("time_loss_grad", "time_jac", "time_hessp"):
            if hasattr(suite, meth):
                getattr(suite, meth)("tiny", "coo", "float64", 1, 2)
    d = bk.DenseReference()
    d.setup("tiny", 1, 2)
    d.time_loss_grad("tiny", 1, 2)
    d.time_hessp("tiny", 1, 2)
    d.teardown("tiny", 1, 2)
    for fmt in ("csr", "coo"):
        pm = bk.PeakMem()
        pm.setup("tiny", fmt)
        pm.peakmem_objective_loss_grad("tiny", fmt)
    pd_ = bk.PeakMemDense()
    pd_.setup("tiny")
    pd_.peakmem_dense_loss_grad("tiny")
    tp = bk.Throughput()
    tp.setup("tiny")
    assert tp.track_loss_grad_mratings_per_s("tiny") > 0
    assert tp.track_hessp_mratings_per_s("tiny") > 0
    if bk.MAX_THREADS >= 2:
        assert tp.track_loss_grad_thread_speedup("tiny") > 0
    with pytest.raises(NotImplementedError):
        bk._check_threads(bk.MAX_THREADS + 1)
