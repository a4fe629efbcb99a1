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


def test_roofline_in_a_fresh_process():
    """``import fastmf`` is lazy: the bench must import the submodules it uses itself."""
    import subprocess

    code = ("from bench import roofline; roofline.main(['--dataset', 'tiny', '--rank', '4', '--repeat', '1', "
            "'--sgemm-size', '32', '--threads', '1'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=_REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "streaming floor" in proc.stdout
