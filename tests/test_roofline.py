"""Smoke test of ``python -m bench.roofline`` on a tiny dataset (no timing is asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # bench/ is a top-level folder, not an installed package
    sys.path.insert(0, str(_REPO))

from bench import roofline  # noqa: E402


def test_roofline_runs_on_tiny(capsys):
    out = roofline.main(["--dataset", "tiny", "--rank", "8", "--repeat", "1", "--sgemm-size", "64", "--threads", "1"])
    text = capsys.readouterr().out
    assert "streaming floor" in text and "compute ceiling" in text
    names = {kn for kn, _ in out["kernels"]}
    assert names == {"loss+gradient", "exact Hessian product", "Gauss-Newton product"}
    assert all(rec["ms"] > 0 and rec["x_floor"] > 0 for rec in out["kernels"].values())


def test_stream_floor_reads_everything():
    import numpy as np

    u = np.arange(10, dtype=np.int32)
    i = np.ones(10, dtype=np.int32)
    v = np.full(10, 0.5, dtype=np.float32)
    run, nbytes = roofline.stream_floor(u, i, v, 3)
    assert nbytes == 120
    assert run() == 45 + 10 + 5.0
