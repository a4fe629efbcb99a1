"""Degenerate data: every solver fits all-equal ratings and a single rating."""

import warnings

import numpy as np
import pytest

from fastmf import MatrixFactorization
from fastmf.data.convert import as_ratings
from fastmf.solvers.registry import spec_function

SOLVERS = ["newton", "als", "sgd", "gibbs"]
DATA = {
    "all-equal": (np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), np.full(4, 4.0)),
    "single": (np.array([7]), np.array([3]), np.array([4.0])),
}


def _opts(solver):
    return {"burn_in": 1} if solver == "gibbs" else {}


@pytest.mark.parametrize("name", sorted(DATA))
@pytest.mark.parametrize("solver", SOLVERS)
def test_estimator_fits_degenerate(solver, name):
    users, items, values = DATA[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MatrixFactorization(rank=2, solver=solver, max_iter=3, progress=False,
                                    solver_options=_opts(solver)).fit(DATA[name])
    pred = model.predict(np.c_[users, items])
    np.testing.assert_allclose(pred, values, atol=1.0)


@pytest.mark.parametrize("name", sorted(DATA))
@pytest.mark.parametrize("solver", ["als", "sgd", "gibbs"])
def test_solver_function_fits_degenerate_with_one_point_clip(solver, name):
    r = as_ratings(DATA[name], np.float32)
    v = float(DATA[name][2][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = spec_function(solver)(r, 2, max_iter=3, progress=False, validation=r, clip=(v, v), **_opts(solver))
    assert np.isfinite(result.x).all()


def test_sgd_clip_still_refuses_reversed_range():
    r = as_ratings(DATA["all-equal"], np.float32)
    with pytest.raises(ValueError, match="low <= high"):
        spec_function("sgd")(r, 2, max_iter=1, progress=False, clip=(5.0, 1.0))
