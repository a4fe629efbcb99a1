"""Trust-region Newton-CG: Steihaug subproblem, driver, preconditioners, stops, sign loss,
and the notebook problem that stalled (rank-1, ml-latest-small, ratings doubled)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastmf.data.ratings import Ratings
from fastmf.objective import MFObjective
from fastmf.reference import DenseMF
from fastmf.solvers._base import Status
from fastmf.solvers.newton import ConvergenceWarning, _backtrack, newton_cg, sign_loss_bound
from fastmf.solvers.steihaug import CGStatus, steihaug_cg


# ----------------------------------------------------------------------------- Steihaug
def spd(rng, n, cond=50.0):
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return U @ np.diag(np.geomspace(1, cond, n)) @ U.T


@pytest.mark.parametrize("precond", [False, True])
def test_steihaug_interior_step_is_newton_step(rng, precond):
    B = spd(rng, 12)
    g = rng.standard_normal(12)
    Minv = np.diag(1 / np.diag(B)) if precond else None
    res = steihaug_cg(g, lambda v: B @ v, 1e6, tol=1e-12, max_iter=100,
                      precondition=(lambda r: Minv @ r) if precond else None)
    assert res.status is CGStatus.CONVERGED
    np.testing.assert_allclose(res.step, -np.linalg.solve(B, g), rtol=1e-9)
    s = res.step
    assert res.model_change == pytest.approx(g @ s + 0.5 * s @ B @ s, rel=1e-10)
    M = np.diag(np.diag(B)) if precond else np.eye(12)
    assert res.step_norm_m == pytest.approx(math.sqrt(s @ M @ s), rel=1e-8)


@pytest.mark.parametrize("precond", [False, True])
def test_steihaug_boundary_exit(rng, precond):
    B = spd(rng, 10)
    g = rng.standard_normal(10)
    D = np.diag(rng.uniform(0.5, 3.0, 10))
    newton = np.linalg.solve(B, g)
    M = D if precond else np.eye(10)
    radius = 0.3 * math.sqrt(newton @ M @ newton)
    res = steihaug_cg(g, lambda v: B @ v, radius, tol=1e-12, max_iter=100,
                      precondition=(lambda r: np.linalg.solve(D, r)) if precond else None)
    assert res.status is CGStatus.BOUNDARY and res.hits_boundary
    s = res.step
    assert math.sqrt(s @ M @ s) == pytest.approx(radius, rel=1e-9)
    assert res.model_change == pytest.approx(g @ s + 0.5 * s @ B @ s, rel=1e-9)
    assert res.model_change < 0
    np.testing.assert_allclose(res.residual_norm, np.linalg.norm(g + B @ s), rtol=1e-9)


def test_steihaug_negative_curvature_exit():
    B = np.diag([-1.0, 2.0, 3.0])
    g = np.array([1.0, 0.1, 0.0])
    res = steihaug_cg(g, lambda v: B @ v, 2.0, tol=1e-12, max_iter=10)
    assert res.status is CGStatus.NEGATIVE_CURVATURE and res.n_iter == 1
    np.testing.assert_allclose(np.linalg.norm(res.step), 2.0)
    np.testing.assert_allclose(res.step, -2.0 * g / np.linalg.norm(g))  # along d0 = -g to the boundary
    s = res.step
    assert res.model_change == pytest.approx(g @ s + 0.5 * s @ B @ s)


def test_steihaug_zero_gradient_and_bad_args():
    res = steihaug_cg(np.zeros(3), lambda v: v, 1.0, tol=0.0, max_iter=5)
    assert res.n_iter == 0 and not res.step.any()
    with pytest.raises(ValueError, match="radius"):
        steihaug_cg(np.ones(3), lambda v: v, 0.0, tol=0.0, max_iter=5)
    with pytest.raises(ValueError, match="max_iter"):
        steihaug_cg(np.ones(3), lambda v: v, 1.0, tol=0.0, max_iter=0)


# ----------------------------------------------------------------------------- driver
def random_ratings(rng, m=40, n=30, density=0.3, dtype=np.float64):
    M = rng.random((m, n)) < density
    M[5] = False  # an empty user
    users, items = np.nonzero(M)
    vals = rng.integers(1, 6, users.size).astype(float)
    return Ratings.from_codes(users, items, vals, n_users=m, n_items=n, dtype=dtype, rating_scale=(1, 5))


@pytest.mark.parametrize("preconditioner", ["none", "jacobi", "block-jacobi"])
@pytest.mark.parametrize("hessian", ["gauss-newton", "exact"])
def test_newton_converges_each_preconditioner_and_hessian(rng, preconditioner, hessian):
    r = random_ratings(rng)
    obj = MFObjective(r, 3, reg=1.0, dtype=np.float64, hessian=hessian, reg_weighting="count", reg_bias=0.5)
    res = newton_cg(obj, random_state=0, preconditioner=preconditioner, tol=1e-6, ftol=0.0, max_iter=300,
                    progress=False)
    assert res.status is Status.GTOL, res.message
    assert res.success
    g0 = res.history[0]["grad_norm"]
    assert res.grad_norm <= 1e-6 * g0
    # the reported gradient is the reference one at x
    ref = DenseMF.from_ratings(r, 3, reg=1.0, reg_bias=0.5, reg_weighting="count")
    assert np.linalg.norm(ref.jac(res.x)) == pytest.approx(res.grad_norm, rel=1e-6, abs=1e-9)
    assert ref.fun(res.x) == pytest.approx(res.fun, rel=1e-10)
    assert res.nhessp == res.n_cg > 0
    assert res.mu == pytest.approx(r.global_mean) and res.rank == 3 and res.biases is True
    losses = [h["loss"] for h in res.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # accepted steps only lower the loss
    for key in ("iteration", "loss", "grad_norm", "n_cg", "radius", "val_rmse", "elapsed", "rho", "accepted"):
        assert key in res.history[-1]


def test_block_jacobi_needs_fewer_cg_steps_than_none(rng):
    r = random_ratings(rng)
    runs = {}
    for p in ("none", "block-jacobi"):
        obj = MFObjective(r, 4, reg=0.5, dtype=np.float64, hessian="exact")
        runs[p] = newton_cg(obj, random_state=1, preconditioner=p, tol=1e-5, ftol=0, max_iter=100, progress=False)
        assert runs[p].status is Status.GTOL
    assert runs["block-jacobi"].n_cg < runs["none"].n_cg


def test_float32_objective(rng):
    r = random_ratings(rng, dtype=np.float32)
    obj = MFObjective(r, 3, reg=1.0, dtype=np.float32)
    # ftol=0: the float32 loss-stall rule would end this slow problem earlier (at ~5e-3 of the
    # first gradient); what is tested here is that float32 arithmetic reaches the gradient test
    res = newton_cg(obj, random_state=0, tol=1e-4, ftol=0, max_iter=300, progress=False)
    assert res.x.dtype == np.float32
    assert res.status in (Status.GTOL, Status.TRUST_RADIUS), res.message
    assert res.grad_norm <= 1e-3 * res.history[0]["grad_norm"]


@pytest.mark.filterwarnings("ignore::fastmf.solvers.newton.ConvergenceWarning")
def test_x0_not_modified_and_warm_start(rng):
    r = random_ratings(rng)
    obj = MFObjective(r, 3, reg=1.0, dtype=np.float64, hessian="exact")
    x0 = obj.x0(3)
    keep = x0.copy()
    res = newton_cg(obj, x0, tol=1e-8, ftol=0, progress=False)
    assert res.status is Status.GTOL
    np.testing.assert_array_equal(x0, keep)
    again = newton_cg(obj, res.x, max_iter=1, tol=1e-8, ftol=0, progress=False)
    assert again.history[0]["loss"] == res.fun
    assert again.fun <= res.fun


def test_callback_stops(rng):
    r = random_ratings(rng)
    seen = []

    def cb(rec):
        seen.append(rec)
        return rec["iteration"] == 2

    res = newton_cg(MFObjective(r, 3, dtype=np.float64), random_state=0, callbacks=[cb], progress=False, tol=0)
    assert res.status is Status.CALLBACK and res.nit == 2 and res.success
    assert [s.iteration for s in seen] == [1, 2]


def test_max_iter_warns(rng):
    r = random_ratings(rng)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = newton_cg(MFObjective(r, 3, dtype=np.float64), random_state=0, max_iter=2, tol=0, ftol=0,
                        progress=False)
    assert res.status is Status.MAX_ITER and res.nit == 2


def test_early_stopping_returns_best(rng):
    from fastmf.kernels.predict import rmse_codes

    r = random_ratings(rng, m=60, n=50, density=0.4)
    mask = np.random.default_rng(0).random(r.nnz) < 0.8
    train, val = r.subset(mask), r.subset(~mask)
    obj = MFObjective(train, 8, reg=0.001, dtype=np.float64)  # overfits: validation RMSE turns up
    res = newton_cg(obj, random_state=0, validation=val, early_stopping=2, min_delta=0.0, tol=0, ftol=0,
                    max_iter=200, progress=False)
    assert res.status is Status.EARLY_STOPPING, res.message
    best = min(h["val_rmse"] for h in res.history)
    P, Q, b, c = obj.unpack(res.x)
    got = rmse_codes(val.users, val.items, val.values.astype(float), P, Q, b, c, res.mu)
    assert got == pytest.approx(best, rel=1e-12)
    assert res.history[res.best_iteration]["val_rmse"] == pytest.approx(best)


@pytest.mark.filterwarnings("ignore::fastmf.solvers.newton.ConvergenceWarning")
def test_progress_false_is_silent(rng, capsys):
    r = random_ratings(rng)
    newton_cg(MFObjective(r, 3, dtype=np.float64), random_state=0, progress=False, max_iter=3, tol=0, ftol=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


class CountingObjective:
    def __init__(self, obj):
        self.obj = obj
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.obj, name)

    def fun(self, x):
        self.calls += 1
        return self.obj.fun(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tol=-1), "tol"),
        (dict(max_iter=-1), "max_iter"),
        (dict(preconditioner="ilu"), "preconditioner"),
        (dict(eta=0.3), "eta"),
        (dict(cg_tol=1.5), "cg_tol"),
        (dict(max_cg=0), "max_cg"),
        (dict(backtrack=-1), "backtrack"),
        (dict(forcing="linear"), "forcing"),
        (dict(initial_radius=0), "initial_radius"),
        (dict(initial_radius=10, max_radius=1), "initial_radius"),
        (dict(early_stopping=3), "validation"),
        (dict(max_time=-1), "max_time"),
        (dict(hessian="bfgs"), "hessian"),
        (dict(hessian="exact"), "hessian='exact'"),
        (dict(max_block_memory=0), "max_block_memory"),
        (dict(x0=np.zeros(3)), "x0"),
    ],
)
def test_bad_parameters_raise_before_work(rng, kwargs, match):
    obj = CountingObjective(MFObjective(random_ratings(rng), 3, dtype=np.float64))
    kwargs = dict(kwargs)
    x0 = kwargs.pop("x0", None)
    with pytest.raises(ValueError, match=match):
        newton_cg(obj, x0, progress=False, **kwargs)
    assert obj.calls == 0


def test_block_memory_guard(rng):
    obj = MFObjective(random_ratings(rng), 3, dtype=np.float64)
    with pytest.raises(ValueError, match="preconditioner='jacobi'"):
        newton_cg(obj, progress=False, preconditioner="block-jacobi", max_block_memory=100)


def test_validation_code_space_checked(rng):
    r = random_ratings(rng)
    other = random_ratings(rng, m=10, n=10)
    with pytest.raises(ValueError, match="code space"):
        newton_cg(MFObjective(r, 3, dtype=np.float64), validation=other, progress=False)


# ----------------------------------------------------------------------------- sign loss
def test_sign_loss_unbounded_status_and_bounded_case(rng):
    r = random_ratings(rng)
    ref = DenseMF.from_ratings(r, 2, reg=0.0, biases=False, loss="sign")
    sigma = np.linalg.norm(ref.S, 2)
    assert sign_loss_bound(r) == pytest.approx(sigma, rel=1e-10)
    obj = MFObjective(r, 2, reg=0.5 * sigma, biases=False, loss="sign", hessian="exact", dtype=np.float64)
    with pytest.warns(RuntimeWarning, match="unbounded below"):
        res = newton_cg(obj, random_state=0, progress=False)
    assert res.status is Status.UNBOUNDED and not res.success
    assert f"use reg >= {sigma:.6g}" in res.message
    # along the top singular pair the loss really goes to -inf
    U, s, Vt = np.linalg.svd(ref.S)
    m, n = ref.S.shape
    x = np.zeros(obj.n_params)
    x[: m * 2].reshape(m, 2)[:, 0] = 100 * U[:, 0]
    x[m * 2:].reshape(n, 2)[:, 0] = 100 * Vt[0]
    assert obj.fun(x) == pytest.approx(1e4 * (0.5 * sigma - sigma), rel=1e-9)
    # above the bound: converges (to 0 factors, the unique minimiser when reg > sigma)
    obj = MFObjective(r, 2, reg=1.5 * sigma, biases=False, loss="sign", hessian="exact", dtype=np.float64)
    res = newton_cg(obj, random_state=0, progress=False, tol=1e-8, ftol=0)
    assert res.status is Status.GTOL
    assert np.abs(res.x).max() < 1e-6


def test_sign_loss_bound_count_weighting(rng):
    r = random_ratings(rng)
    ref = DenseMF.from_ratings(r, 2, reg=0.0, biases=False, loss="sign")
    cu = np.maximum(r.user_counts, 1).astype(float)
    ci = np.maximum(r.item_counts, 1).astype(float)
    scaled = ref.S / np.sqrt(cu)[:, None] / np.sqrt(ci)[None, :]
    assert sign_loss_bound(r, "count") == pytest.approx(np.linalg.norm(scaled, 2), rel=1e-10)
    scaled = ref.S / (cu ** 0.25)[:, None] / (ci ** 0.25)[None, :]
    assert sign_loss_bound(r, "sqrt-count") == pytest.approx(np.linalg.norm(scaled, 2), rel=1e-10)


# ----------------------------------------------------------------------------- the notebook problem
@pytest.mark.parametrize("preconditioner", ["jacobi", "block-jacobi"])
def test_notebook_rank1_problem_converges(shared_data, preconditioner):
    """ml-latest-small, ratings doubled (1..10), rank 1, no biases, reg = 0: the notebook's dense
    Newton stalled at |g| ~ 1e5 and scipy BFGS ended at |g| = 8,320.  Newton-CG (matrix-free:
    only Hessian-vector products, never the Hessian) must cut |g| by 1e-6."""
    from fastmf.data.movielens import load_movielens

    r = load_movielens("ml-latest-small", download=False, dtype=np.float64)
    doubled = Ratings.from_codes(r.users, r.items, 2 * r.values, n_users=r.n_users, n_items=r.n_items,
                                 dtype=np.float64)
    assert doubled.values.min() == 1 and doubled.values.max() == 10
    obj = MFObjective(doubled, 1, reg=0.0, biases=False, dtype=np.float64)
    x0 = np.random.default_rng(0).random(obj.n_params)  # the notebook's np.random.rand start
    res = newton_cg(obj, x0, tol=1e-6, ftol=0.0, max_iter=100, progress=False, preconditioner=preconditioner)
    g0 = res.history[0]["grad_norm"]
    assert g0 > 1e4
    assert res.status is Status.GTOL, res.message
    assert res.grad_norm <= 1e-6 * g0
    assert res.nit <= 40


# ----------------------------------------------------------------------------- trust-region mechanics
class Quartic1D:
    """f(x) = x²/2 + x⁴ in one variable (the quadratic model of any step is too optimistic)."""

    def fun(self, x):
        return float(0.5 * x[0] ** 2 + x[0] ** 4)


def test_backtrack_quadratic_interpolation_accepts_a_fraction_of_a_bad_step():
    obj = Quartic1D()
    x = np.array([1.0])
    s = np.array([-3.0])  # model with B = 1: m(s) = 5 s + s²/2 = -10.5, but f(x + s) = 18 > f(x) = 1.5
    f, f1, gs, sBs = obj.fun(x), obj.fun(x + s), 5.0 * -3.0, 9.0
    alpha, fa, n, x_a, rho = _backtrack(obj, x, s, f, f1, gs, sBs, 0.15, 3)
    # quadratic interpolation gives 15 / 63 = 0.238, safeguarded to [1/4, 1/2]
    assert alpha == pytest.approx(0.25) and n == 1
    assert x_a is not None and x_a[0] == pytest.approx(0.25)
    assert fa == pytest.approx(obj.fun(x_a)) and fa < f
    assert rho == pytest.approx((f - fa) / -(alpha * gs + 0.5 * alpha**2 * sBs))
    assert rho > 0.15
    # a step along which the loss never decreases enough: every trial fails, None returned
    alpha, fa, n, x_a, rho = _backtrack(obj, x, np.array([-3.0]), f, f1, gs, 1e6, 0.15, 2)
    assert x_a is None and n == 2 and alpha <= 0.25
    # not a descent direction: nothing to try
    assert _backtrack(obj, x, np.array([3.0]), f, obj.fun(np.array([4.0])), 15.0, 9.0, 0.15, 3)[2] == 0


@pytest.mark.parametrize("preconditioner", ["none", "jacobi"])
def test_rejected_step_is_backtracked_not_thrown_away(rng, preconditioner):
    r = random_ratings(rng)
    runs = {}
    for bt in (0, 3):
        obj = MFObjective(r, 3, reg=0.1, dtype=np.float64, hessian="exact")
        runs[bt] = newton_cg(obj, random_state=0, preconditioner=preconditioner, backtrack=bt,
                             tol=1e-6, ftol=0.0, max_iter=300, progress=False)
        assert runs[bt].status is Status.GTOL, runs[bt].message
    h0, h3 = runs[0].history, runs[3].history
    # both runs are identical up to the first step that fails the ratio test
    k = next(h["iteration"] for h in h0[1:] if not h["accepted"])
    for a, b in zip(h0[:k], h3[:k]):
        assert a["loss"] == b["loss"] and a["radius"] == b["radius"] and b["backtracks"] == 0
    # classic TR rejects it: loss unchanged, radius / 4
    assert h0[k]["rho"] < 0.15 and h0[k]["loss"] == h0[k - 1]["loss"] and h0[k]["step_scale"] == 1.0
    assert h0[k]["radius"] == pytest.approx(0.25 * h0[k - 1]["radius"])
    # the backtracking driver takes a fraction of the same CG step, which lowers the loss
    b = h3[k]
    assert b["n_cg"] == h0[k]["n_cg"] and b["backtracks"] >= 1
    assert b["accepted"] is True and 0 < b["step_scale"] <= 0.5 and b["rho"] > 0.15
    assert b["loss"] < h3[k - 1]["loss"]
    assert b["radius"] == pytest.approx(b["step_norm"])  # radius = alpha ||s||_M
    assert runs[3].n_rejected < runs[0].n_rejected
    assert runs[3].n_backtracks == sum(h["backtracks"] for h in h3[1:])
    assert runs[3].nfev >= len(h3) + runs[3].n_backtracks - 1
    # a step so long that every trial fails: rejected, radius = alpha ||s||_M / 4
    obj = MFObjective(r, 3, reg=0.1, dtype=np.float64, hessian="exact")
    res = newton_cg(obj, random_state=0, preconditioner=preconditioner, initial_radius=1e3, tol=1e-6, ftol=0.0,
                    max_iter=300, progress=False)
    fail = next(h for h in res.history[1:] if not h["accepted"])
    assert fail["backtracks"] == 3 and fail["step_scale"] <= 0.5**3
    assert fail["loss"] == res.history[fail["iteration"] - 1]["loss"]
    assert fail["radius"] == pytest.approx(0.25 * fail["step_norm"])
    assert res.status is Status.GTOL


class Quadratic:
    """f(x) = ½ xᵀAx - bᵀx: the model is exact, so every step has rho = 1."""

    def __init__(self, A, b):
        self.A, self.b = A, b

    def fun(self, x):
        return float(0.5 * x @ self.A @ x - self.b @ x)

    def jac(self, x):
        return self.A @ x - self.b

    def hessp(self, x, p):
        return self.A @ p


def test_radius_doubles_at_the_boundary_and_is_capped(rng):
    n = 20
    obj = Quadratic(spd(rng, n, cond=10.0), rng.standard_normal(n))
    res = newton_cg(obj, np.zeros(n), preconditioner="none", initial_radius=1e-3, max_radius=0.1, tol=1e-6,
                    ftol=0.0, max_iter=500, progress=False)
    assert res.status is Status.GTOL
    h = res.history
    radii = [1e-3]
    for rec in h[1:]:
        # (rho is exact up to rounding in the loss difference)
        assert rec["accepted"] and rec["rho"] == pytest.approx(1.0, abs=1e-4) and rec["backtracks"] == 0
        if rec["cg_status"] in ("boundary", "negative_curvature"):
            radii.append(min(2 * radii[-1], 0.1))
        else:
            radii.append(radii[-1])
        assert rec["radius"] == pytest.approx(radii[-1])
    assert max(radii) == pytest.approx(0.1)


def test_eisenstat_walker_forcing_converges(rng):
    r = random_ratings(rng)
    obj = MFObjective(r, 3, reg=1.0, dtype=np.float64, hessian="exact")
    res = newton_cg(obj, random_state=0, forcing="eisenstat-walker", tol=1e-6, ftol=0.0, max_iter=300,
                    progress=False)
    assert res.status is Status.GTOL, res.message
    assert res.grad_norm <= 1e-6 * res.history[0]["grad_norm"]
