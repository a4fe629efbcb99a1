"""Smoke test of bench/vs_libmf.py (the race against LIBMF) on a tiny split, without LIBMF.

No timing is asserted: this only keeps the script from rotting.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # bench/ is a top-level folder, not an installed package
    sys.path.insert(0, str(_REPO))

from bench import vs_libmf  # noqa: E402


def test_vs_libmf_without_libmf(tmp_path, capsys):
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 60, 3000), rng.integers(0, 40, 3000)
    key = np.unique(u * 40 + i)
    u, i = (key // 40).astype(np.int32), (key % 40).astype(np.int32)
    r = rng.integers(1, 11, len(key)).astype(np.float32) / 2
    te = rng.random(len(key)) < 0.1
    path = tmp_path / "split.npz"
    np.savez(path, tr_u=u[~te], tr_i=i[~te], tr_r=r[~te], te_u=u[te], te_i=i[te], te_r=r[te])
    # a target every fit reaches at its first scored iteration
    assert vs_libmf.main([str(path), "--solvers", "sgd", "--no-libmf", "--target", "10", "--max-time", "60"]) == 0
    out = capsys.readouterr().out
    assert "sgd:" in out and "reached at iteration 1" in out and "| sgd |" in out
