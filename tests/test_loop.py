"""The one run loop of every solver (fastmf.solvers._base.run_iterations), on a toy step
function, and the deprecations of issue #12."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from fastmf.exceptions import ConvergenceWarning, DivergenceError
from fastmf.problem import DEFAULTS, SOLVER_DEFAULTS, MFProblem, solver_default
from fastmf.solvers._base import IterativeSolver, RunOptions, Status, run_iterations


class Toy(IterativeSolver):
    """Loss (x - 3)^2 halved towards 0 each step; 'validation' RMSE is |x - target|."""

    name = "toy"

    def __init__(self, target=3.0, tol=0.0, slow=0.0):
        self.x = np.array([10.0])
        self.target, self.tol, self.slow = target, tol, slow
        self.restored = None

    def params(self):
        return (self.x.reshape(1, 1), np.ones((1, 1)), None, None)

    def initial_record(self):
        return dict(loss=float(self.x[0] ** 2))

    def step(self, it):
        time.sleep(self.slow)
        self.prev = float(self.x[0] ** 2)
        self.x = self.x * 0.5
        return dict(loss=float(self.x[0] ** 2), extra=it * 10)

    def check_convergence(self, it, rec):
        if self.prev - rec["loss"] <= self.tol:
            return Status.FTOL, "small decrease"
        return None

    def restore_best(self, params, iteration):
        self.restored = iteration
        self.x = params[0].ravel().copy()

    def convergence_warning(self, status, message):
        return f"toy did not converge: {message}"

    def finalize(self, status, message):
        return dict(x=self.x, fun=float(self.x[0] ** 2), grad_norm=float("nan"))


class Val:
    """A one-rating 'validation set' in a 1 x 1 code space."""

    def __init__(self, value):
        self.users = np.zeros(1, dtype=np.int32)
        self.items = np.zeros(1, dtype=np.int32)
        self.values = np.array([value])
        self.n_users = self.n_items = 1


def test_history_result_and_convergence_warning():
    with pytest.warns(ConvergenceWarning, match="toy did not converge: maximum number of iterations"):
        res = run_iterations(Toy(), RunOptions(max_iter=3, progress=False).check())
    assert res.status is Status.MAX_ITER and res.nit == 3 and res.success
    assert [r["iteration"] for r in res.history] == [0, 1, 2, 3]
    assert res.history[2]["extra"] == 20 and res.history[2]["val_rmse"] is None
    assert res.history[-1]["elapsed"] <= res.elapsed and res.fun == pytest.approx(1.25 ** 2)


def test_convergence_test_runs_first_and_ends_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run_iterations(Toy(tol=30.0), RunOptions(max_iter=50, progress=False).check())
    assert res.status is Status.FTOL and res.message == "small decrease" and res.nit == 2


def test_callback_stops_and_sees_each_record():
    seen = []
    res = run_iterations(Toy(), RunOptions(max_iter=50, progress=False,
                                           callbacks=lambda r: seen.append(r.iteration) or r.iteration == 4).check())
    assert res.status is Status.CALLBACK and res.nit == 4 and seen == [1, 2, 3, 4]


def test_early_stopping_restores_the_best_parameters():
    # x = 10, 5, 2.5, 1.25, ...: |x - 5| is best at iteration 1
    toy = Toy()
    res = run_iterations(toy, RunOptions(max_iter=50, progress=False, validation=Val(5.0), early_stopping=2).check())
    assert res.status is Status.EARLY_STOPPING and res.nit == 3
    assert res.best_iteration == 1 and toy.restored == 1 and res.x[0] == 5.0
    assert [r["val_rmse"] for r in res.history] == [5.0, 0.0, 2.5, 3.75]
    assert "did not improve" in res.message and "iterations" in res.message


def test_max_time():
    with pytest.warns(ConvergenceWarning):
        res = run_iterations(Toy(slow=0.02), RunOptions(max_iter=1000, max_time=0.05, progress=False).check())
    assert res.status is Status.MAX_TIME and 1 <= res.nit < 1000


def test_setup_can_end_the_run_before_any_iteration():
    class Refuses(Toy):
        def setup(self):
            return Status.UNBOUNDED, "no minimum"

    res = run_iterations(Refuses(), RunOptions(max_iter=5, progress=False).check())
    assert res.status is Status.UNBOUNDED and res.nit == 0 and res.history == [] and not res.success


def test_step_may_raise():
    class Diverges(Toy):
        def step(self, it):
            raise DivergenceError("boom", it)

    with pytest.raises(DivergenceError, match="boom"):
        run_iterations(Diverges(), RunOptions(max_iter=5, progress=False).check())


@pytest.mark.parametrize("kw, match", [
    (dict(max_iter=-1), "max_iter"), (dict(max_time=0), "max_time"), (dict(early_stopping=2), "validation set"),
    (dict(progress="yes"), "progress"), (dict(callbacks=3), "callback"), (dict(min_delta=-1), "min_delta"),
])
def test_run_options_are_checked(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RunOptions(**{"max_iter": 3, **kw}).check()


# ----------------------------------------------------------------------------- problem specification
def test_problem_defaults_and_solver_overrides():
    assert solver_default("sgd", "reg") == 0.05 and solver_default("sgd", "reg_weighting") == "count"
    assert solver_default("als", "reg") == DEFAULTS["reg"] == 0.1
    assert solver_default("estimator", "reg_weighting") == "count"
    p = MFProblem.for_solver("sgd", rank=4)
    assert (p.reg, p.reg_bias, p.reg_weighting, p.dtype) == (0.05, 0.05, "count", np.dtype(np.float32))
    assert set(SOLVER_DEFAULTS) >= {"newton", "als", "sgd", "gibbs"}
    with pytest.raises(ValueError, match="reg"):
        MFProblem(rank=2, reg=-1)
    with pytest.raises(TypeError, match="dtype"):
        MFProblem(rank=2, dtype=np.int32)


def test_solver_function_defaults_come_from_the_table():
    import inspect

    from fastmf.solvers import als, sgd

    for fn, name in ((als, "als"), (sgd, "sgd")):
        sig = inspect.signature(fn).parameters
        assert sig["reg"].default == solver_default(name, "reg")
        assert sig["reg_weighting"].default == solver_default(name, "reg_weighting")


# ----------------------------------------------------------------------------- deprecations
@pytest.fixture(scope="module")
def small():
    from fastmf.data.synthetic import synthetic

    return synthetic(30, 20, 300, rank=2, random_state=3)


def test_old_iteration_names_warn_and_give_the_same_result(small):
    from fastmf.objective import MFObjective
    from fastmf.solvers import gibbs, newton_cg, sgd

    with pytest.warns(DeprecationWarning, match="n_epochs is deprecated"):
        old = sgd(small, 2, n_epochs=3, progress=False)
    new = sgd(small, 2, max_iter=3, progress=False)
    np.testing.assert_array_equal(old.x, new.x)
    assert old.nit == 3
    with pytest.warns(DeprecationWarning, match="n_samples is deprecated"):
        old = gibbs(small, 2, n_samples=2, burn_in=1, progress=False)
    np.testing.assert_array_equal(old.x, gibbs(small, 2, max_iter=2, burn_in=1, progress=False).x)
    obj = MFObjective(small, 2, dtype=np.float64)
    with pytest.warns(DeprecationWarning, match="gtol is deprecated"):
        old = newton_cg(obj, random_state=0, gtol=1e-3, max_iter=50, progress=False)
    new = newton_cg(MFObjective(small, 2, dtype=np.float64), random_state=0, tol=1e-3, max_iter=50, progress=False)
    np.testing.assert_array_equal(old.x, new.x)
    with pytest.raises(ValueError, match="gtol"):
        with pytest.warns(DeprecationWarning):
            newton_cg(obj, gtol=-1, progress=False)
    with pytest.raises(TypeError, match="give only max_iter"):
        sgd(small, 2, n_epochs=3, max_iter=4, progress=False)


def test_removed_names_warn(small):
    import fastmf.solvers as solvers
    import fastmf.solvers.newton as newton
    import fastmf.solvers.preconditioners as pre

    with pytest.warns(DeprecationWarning, match="fit_newton_cg"):
        fit = solvers.fit_newton_cg
    with pytest.warns(DeprecationWarning, match="fit_newton_cg"):
        assert newton.fit_newton_cg is fit
    res = fit(small, 2, dtype=np.float64, max_iter=3, progress=False, random_state=0)
    assert res.nit >= 1
    with pytest.warns(DeprecationWarning, match="MFProblem"):
        assert pre.ProblemStructure.__name__ == "ProblemStructure"
    with pytest.raises(AttributeError):
        solvers.no_such_name


def test_exceptions_are_one_class_each():
    import importlib

    newton = importlib.import_module("fastmf.solvers.newton")
    sgd = importlib.import_module("fastmf.solvers.sgd")
    assert newton.ConvergenceWarning is ConvergenceWarning and sgd.DivergenceError is DivergenceError
    assert issubclass(DivergenceError, FloatingPointError) and issubclass(ConvergenceWarning, UserWarning)


def test_no_private_cross_imports_between_solver_modules():
    import ast
    import pathlib

    import fastmf.solvers

    for path in pathlib.Path(fastmf.solvers.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module not in ("_base", "_compat"):
                assert not any(a.name.startswith("_") for a in node.names), (path.name, node.module)
