"""ALS: exact half-steps, monotone loss, run interface."""

from __future__ import annotations

import numpy as np
import pytest

from fastmf.data.ratings import Ratings
from fastmf.objective import MFObjective
from fastmf.reference import DenseMF
from fastmf.solvers._base import Status
from fastmf.solvers.als import ALSSolver, als
from fastmf.solvers.newton import ConvergenceWarning, newton_cg
from fastmf.backends.local import LocalBackend
from fastmf.problem import MFProblem


def random_ratings(rng, m=40, n=30, density=0.3, dtype=np.float64):
    M = rng.random((m, n)) < density
    M[3] = False
    users, items = np.nonzero(M)
    vals = rng.integers(1, 6, users.size).astype(float)
    return Ratings.from_codes(users, items, vals, n_users=m, n_items=n, dtype=dtype)


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("weighting", ["uniform", "count", "sqrt-count"])
def test_each_half_step_is_the_exact_minimiser(rng, biases, weighting):
    r = random_ratings(rng)
    k = 3
    kw = dict(reg=0.7, reg_bias=0.2, biases=biases, reg_weighting=weighting)
    obj = MFObjective(r, k, dtype=np.float64, **kw)
    ref = DenseMF.from_ratings(r, k, **kw)
    solver = ALSSolver(LocalBackend(r, MFProblem.from_objective(obj)))
    x = rng.standard_normal(obj.n_params)
    f0 = ref.fun(x)
    solver.solve_users(x)
    gP, gQ, gb, gc = ref.unpack(ref.jac(x))
    assert np.abs(gP).max() < 1e-10
    if biases:
        assert np.abs(gb).max() < 1e-10
    f1 = ref.fun(x)
    solver.solve_items(x)
    gP, gQ, gb, gc = ref.unpack(ref.jac(x))
    assert np.abs(gQ).max() < 1e-10
    if biases:
        assert np.abs(gc).max() < 1e-10
    f2 = ref.fun(x)
    assert f2 <= f1 <= f0


@pytest.mark.filterwarnings("ignore::fastmf.solvers.newton.ConvergenceWarning")
def test_als_loss_monotone_and_matches_objective(rng):
    r = random_ratings(rng)
    res = als(r, 3, reg=0.5, dtype=np.float64, max_iter=30, tol=0, progress=False)
    losses = [h["loss"] for h in res.history]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:]))
    ref = DenseMF.from_ratings(r, 3, reg=0.5)
    assert ref.fun(res.x) == pytest.approx(res.fun, rel=1e-10)
    assert np.linalg.norm(ref.jac(res.x)) == pytest.approx(res.grad_norm, rel=1e-6)
    assert res.mu == pytest.approx(r.global_mean) and res.rank == 3 and res.biases
    assert res.nit == 30 and res.status is Status.MAX_ITER


def test_als_reaches_a_stationary_point_newton_agrees(rng):
    r = random_ratings(rng)
    a = als(r, 2, reg=2.0, dtype=np.float64, max_iter=2000, tol=1e-14, progress=False)
    assert a.status is Status.FTOL
    assert a.grad_norm <= 1e-4 * a.history[0]["grad_norm"]
    # Newton-CG started there stays at the same loss (a local minimum, not a saddle)
    n = newton_cg(MFObjective(r, 2, reg=2.0, dtype=np.float64, hessian="exact"), a.x, tol=1e-3, ftol=0,
                  progress=False)
    # already stationary to rounding: either gtol is met or no step changes x any more
    assert n.status in (Status.GTOL, Status.TRUST_RADIUS), n.message
    assert n.fun == pytest.approx(a.fun, rel=1e-8)


def test_als_float32_and_deterministic(rng):
    r = random_ratings(rng, dtype=np.float32)
    a = als(r, 4, reg=0.5, max_iter=5, tol=0, progress=False, n_threads=1)
    b = als(r, 4, reg=0.5, max_iter=5, tol=0, progress=False, n_threads=2)
    assert a.x.dtype == np.float32
    np.testing.assert_array_equal(a.x, b.x)  # each row solved alone: thread count cannot matter


def _long_row_fit(n_threads, dtype):
    # items rated by up to ~300 users: several ratings panels per item row (PANEL = 64)
    r = random_ratings(np.random.default_rng(11), m=400, n=60, density=0.6, dtype=dtype)
    res = als(r, 6, reg=0.3, max_iter=3, tol=0, progress=False, n_threads=n_threads)
    return res.x


def test_als_bit_identical_at_1_2_and_3_threads(tmp_path):
    """Rows of several ratings panels: 1 and 2 threads here, 3 threads in a subprocess started with
    ``NUMBA_NUM_THREADS=3`` (the chunking follows the thread count; the rows' results must not)."""
    import os
    import subprocess
    import sys
    import textwrap
    import warnings
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {dt: _long_row_fit(1, dt) for dt in ("float32", "float64")}
        for dt in ref:
            np.testing.assert_array_equal(_long_row_fit(2, dt), ref[dt], err_msg=f"2 threads {dt}")
    out = tmp_path / "t3.npz"
    code = textwrap.dedent(f"""
        import sys, warnings, numpy as np
        sys.path.insert(0, {str(repo)!r}); sys.path.insert(0, {str(repo / 'tests')!r})
        import numba
        assert numba.config.NUMBA_NUM_THREADS == 3
        warnings.simplefilter("ignore")
        from test_als import _long_row_fit
        np.savez({str(out)!r}, **{{dt: _long_row_fit(3, dt) for dt in ("float32", "float64")}})
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS="3")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as z:
        for dt in ref:
            np.testing.assert_array_equal(z[dt], ref[dt], err_msg=f"3 threads {dt}")


def test_als_callback_early_stopping_and_silence(rng, capsys):
    r = random_ratings(rng, m=60, n=50, density=0.4)
    mask = np.random.default_rng(0).random(r.nnz) < 0.8
    train, val = r.subset(mask), r.subset(~mask)
    res = als(train, 3, reg=0.5, dtype=np.float64, callbacks=lambda rec: rec.iteration == 3, tol=0,
              progress=False)
    assert res.status is Status.CALLBACK and res.nit == 3
    res = als(train, 10, reg=1e-3, dtype=np.float64, validation=val, early_stopping=2, min_delta=0.0, tol=0,
              max_iter=200, progress=False)
    assert res.status is Status.EARLY_STOPPING
    best = min(h["val_rmse"] for h in res.history)
    assert res.history[res.best_iteration]["val_rmse"] == best
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_als_x0_warm_start_not_modified(rng):
    r = random_ratings(rng)
    obj = MFObjective(r, 3, dtype=np.float64)
    x0 = obj.x0(1)
    keep = x0.copy()
    with pytest.warns(ConvergenceWarning):
        als(r, 3, dtype=np.float64, x0=x0, max_iter=2, tol=0, progress=False)
    np.testing.assert_array_equal(x0, keep)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(rank=0), ValueError, "rank"),
        (dict(reg=-1.0), ValueError, "reg"),
        (dict(max_iter=-1), ValueError, "max_iter"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(early_stopping=2), ValueError, "validation"),
        (dict(dtype=np.int32), TypeError, "dtype"),
        (dict(reg_weighting="log"), ValueError, "reg_weighting"),
        (dict(x0=np.zeros(5)), ValueError, "x0"),
        (dict(max_time=0.0), ValueError, "max_time"),
    ],
)
def test_als_bad_parameters(rng, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        als(random_ratings(rng), progress=False, **kwargs)
