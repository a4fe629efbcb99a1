"""The embedding contract: MFObjective drives scipy.optimize.minimize unchanged.

ml-100k, rank 4, reg 5.0, float64, from a small random start: each method must bring the gradient norm down by
a factor 1e5 from a random start.  The Newton-type methods use the exact Hessian:
with the Gauss-Newton matrix they converge only linearly on this non-zero-residual
problem (trust-ncg: relative gradient norm 2e-4 after 500 iterations at reg 0.5), while
the exact Hessian gives the fast local convergence of Newton's method.
L-BFGS-B's ``gtol`` bounds the *max-norm* of the projected gradient, so it is set ten
times tighter than the 2-norm target (at ``gtol = 1e-5 * |g0|`` it stopped at a
2-norm ratio of 3.7e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from fastmf.objective import MFObjective

RANK = 4
REG = 5.0
RTOL = 1e-5


@pytest.fixture(scope="module")
def ml100k(shared_data):
    from fastmf.data.movielens import load_movielens

    return load_movielens("ml-100k", data_home=shared_data, download=False, dtype=np.float64)


@pytest.fixture(scope="module")
def start(ml100k):
    obj = MFObjective(ml100k, RANK, reg=REG, dtype=np.float64, hessian="exact")
    x0 = obj.x0(0, scale=0.1)
    return x0, obj.gradient_norm(x0)


@pytest.mark.parametrize("method", ["trust-ncg", "trust-krylov", "Newton-CG", "L-BFGS-B"])
def test_scipy_minimize_reduces_gradient(ml100k, start, method):
    x0, g0 = start
    obj = MFObjective(ml100k, RANK, reg=REG, dtype=np.float64, hessian="exact")
    x0_copy = x0.copy()
    if method == "L-BFGS-B":
        res = minimize(obj.fun_and_jac, x0, jac=True, method=method,
                       options=dict(maxiter=3000, maxfun=6000, gtol=RTOL * g0 / 10, ftol=0.0))
    elif method == "Newton-CG":
        # Newton-CG has no gradient-norm test: it stops when the summed |step| <= xtol * n_params.
        res = minimize(obj.fun, x0, jac=obj.jac, hessp=obj.hessp, method=method, options=dict(maxiter=200, xtol=1e-9))
    else:
        res = minimize(obj.fun, x0, jac=obj.jac, hessp=obj.hessp, method=method,
                       options=dict(maxiter=200, gtol=RTOL * g0 / 2))
    np.testing.assert_array_equal(x0, x0_copy)
    gnorm = obj.gradient_norm(res.x)
    assert gnorm <= RTOL * g0, (method, res.message, res.nit, gnorm / g0)
    assert np.isfinite(res.fun) and res.fun < obj.fun(x0)
    assert obj.nfev > 0 and obj.njev > 0
    if method != "L-BFGS-B":
        assert obj.nhessp > 0
