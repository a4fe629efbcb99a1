"""Soak: fit, save, load and predict in a loop across solvers, with valid and invalid inputs.

Bounded (a few rounds of tiny fits).  Checks that nothing leaks (open file
descriptors, temporary files in the save folder, threads) and nothing changes
that should not (the caller's arrays; a loaded model predicts what the saved one did).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from fastmf.model import MatrixFactorization

SOLVERS = {
    "newton": dict(max_iter=2),
    "als": dict(max_iter=2),
    "sgd": dict(max_iter=2),
    "gibbs": dict(max_iter=3),
}


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - not Linux
        pytest.skip("/proc/self/fd is not available")


def _invalid_inputs(rng, users, items, ratings):
    """Inputs that must be refused with a ValueError before any work."""
    bad_rating = ratings.copy()
    bad_rating[rng.integers(len(ratings))] = 1e39
    mixed = users.astype(object)
    mixed[rng.integers(len(users))] = "x"
    return [
        (users.astype(np.float64) * 2**60, items, ratings),
        (mixed, items, ratings),
        (users, items, bad_rating),
        (users + 0.5, items, ratings),
    ]


def _round(rng, solver, folder):
    n = 40
    users = rng.integers(0, 8, n)
    items = rng.integers(0, 6, n)
    keep = np.unique(users * 6 + items, return_index=True)[1]
    users, items = users[keep], items[keep]
    ratings = rng.uniform(1, 5, len(users))
    copies = [a.copy() for a in (users, items, ratings)]
    for bad in _invalid_inputs(rng, users, items, ratings):
        with pytest.raises(ValueError):
            MatrixFactorization(rank=2, solver=solver, progress=False).fit(bad)
    m = MatrixFactorization(rank=2, solver=solver, progress=False, random_state=int(rng.integers(100)),
                            n_threads=1, **SOLVERS[solver]).fit((users, items, ratings))
    for a, b in zip((users, items, ratings), copies):
        np.testing.assert_array_equal(a, b)
    path = m.save(folder / f"{solver}.npz")
    loaded = MatrixFactorization.load(path)
    np.testing.assert_array_equal(loaded.predict(users, items), m.predict(users, items))
    (folder / "junk.npz").write_bytes(rng.bytes(64))
    with pytest.raises(ValueError):
        MatrixFactorization.load(folder / "junk.npz")


@pytest.mark.filterwarnings("ignore:.*did not converge")
def test_soak_fit_save_load_predict(tmp_path):
    rng = np.random.default_rng(2024)
    _round(rng, "sgd", tmp_path)  # warm up (numba compilation, thread pools) before the baseline
    fds, threads = _open_fds(), threading.active_count()
    for _ in range(2):
        for solver in SOLVERS:
            _round(rng, solver, tmp_path)
    assert _open_fds() <= fds
    assert threading.active_count() <= threads
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({f"{s}.npz" for s in SOLVERS} | {"junk.npz"})
