"""The dense reference against hand-computed cases and central finite differences."""

import numpy as np
import pytest

from fastmf._packing import pack
from fastmf.reference import DenseMF, gradient_descent, sign_matrix

CONFIGS = [
    dict(biases=True, loss="squared", reg_weighting="uniform"),
    dict(biases=False, loss="squared", reg_weighting="uniform"),
    dict(biases=True, loss="squared", reg_weighting="count"),
    dict(biases=False, loss="sign", reg_weighting="uniform"),
    dict(biases=False, loss="sign", reg_weighting="count"),
    dict(biases=True, loss="squared", reg_weighting="sqrt-count"),
    dict(biases=False, loss="sign", reg_weighting=0.3),
]


def random_problem(rng, m=7, n=6, k=3, density=0.5, **kw):
    R = rng.integers(1, 6, size=(m, n)).astype(float)
    M = rng.random((m, n)) < density
    M[0, :] = False  # a user with no ratings
    M[:, 1] = False  # an item with no ratings
    M[2, 3] = True
    prob = DenseMF(R, M, k, reg=0.3, reg_bias=0.2, **kw)
    x = rng.normal(scale=0.5, size=prob.n_params)
    return prob, x


def central_gradient(f, x, h=1e-5):
    g = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        g[j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_gradient_matches_finite_differences(cfg, rng):
    prob, x = random_problem(rng, **cfg)
    g = prob.jac(x)
    g_fd = central_gradient(prob.fun, x)
    assert np.linalg.norm(g - g_fd) <= 1e-6 * np.linalg.norm(g)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_exact_hessp_matches_gradient_differences(cfg, rng):
    prob, x = random_problem(rng, **cfg)
    v = rng.normal(size=x.size)
    h = 1e-5
    hv_fd = (prob.jac(x + h * v) - prob.jac(x - h * v)) / (2 * h)
    hv = prob.hessp(x, v, "exact")
    assert np.linalg.norm(hv - hv_fd) <= 1e-6 * np.linalg.norm(hv)


@pytest.mark.parametrize("cfg", CONFIGS[:3], ids=lambda c: "-".join(str(v) for v in c.values()))
def test_gauss_newton_is_jtj_plus_regulariser(cfg, rng):
    # G = J^T J + diag(reg weights) where J is the Jacobian of the observed predictions.
    prob, x = random_problem(rng, **cfg)
    obs = np.flatnonzero(prob.M.ravel())

    def preds(z):
        return prob.predict(z).ravel()[obs]

    J = np.empty((obs.size, x.size))
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = 1e-6
        J[:, j] = (preds(x + e) - preds(x - e)) / 2e-6
    P, Q, b, c = prob.unpack(np.zeros_like(x))
    wu, wi = prob.wu, prob.wi
    diag = [np.repeat(prob.reg * wu, prob.rank), np.repeat(prob.reg * wi, prob.rank)]
    if prob.biases:
        diag += [prob.reg_bias * wu, prob.reg_bias * wi]
    G = J.T @ J + np.diag(np.concatenate(diag))
    G_ref = prob.hessian(x, "gauss-newton")
    assert np.allclose(G, G_ref, rtol=1e-6, atol=1e-6)
    assert np.allclose(G_ref, G_ref.T)
    assert np.linalg.eigvalsh(G_ref).min() > -1e-10  # positive semi-definite


def test_exact_hessian_is_symmetric_and_differs_from_gn(rng):
    prob, x = random_problem(rng, biases=True)
    H = prob.hessian(x, "exact")
    G = prob.hessian(x, "gauss-newton")
    assert np.allclose(H, H.T, atol=1e-12)
    assert not np.allclose(H, G)


def test_hand_computed_tiny_case():
    # 2 users, 2 items, rank 1, one missing cell.
    R = np.array([[4.0, 0.0], [2.0, 5.0]])
    M = np.array([[True, False], [True, True]])
    prob = DenseMF(R, M, 1, reg=0.5, reg_bias=0.25, biases=True, mu=3.0)
    P = np.array([[1.0], [2.0]])
    Q = np.array([[0.5], [-1.0]])
    b = np.array([0.1, -0.2])
    c = np.array([0.3, 0.0])
    x = pack(P, Q, b, c)
    # predictions: (0,0) 3+.1+.3+.5=3.9 ; (1,0) 3-.2+.3+1=4.1 ; (1,1) 3-.2+0-2=0.8
    e = {(0, 0): 0.1, (1, 0): -2.1, (1, 1): 4.2}
    data = 0.5 * (0.1**2 + 2.1**2 + 4.2**2)
    pen = 0.5 * 0.5 * (1 + 4 + 0.25 + 1) + 0.5 * 0.25 * (0.01 + 0.04 + 0.09 + 0)
    assert prob.fun(x) == pytest.approx(data + pen, rel=1e-14)
    g = prob.jac(x)
    gp0 = -e[0, 0] * 0.5 + 0.5 * 1
    gp1 = -(e[1, 0] * 0.5 + e[1, 1] * -1.0) + 0.5 * 2
    gq0 = -(e[0, 0] * 1 + e[1, 0] * 2) + 0.5 * 0.5
    gq1 = -(e[1, 1] * 2) + 0.5 * -1
    gb = [-e[0, 0] + 0.25 * 0.1, -(e[1, 0] + e[1, 1]) + 0.25 * -0.2]
    gc = [-(e[0, 0] + e[1, 0]) + 0.25 * 0.3, -e[1, 1] + 0.0]
    assert np.allclose(g, [gp0, gp1, gq0, gq1, *gb, *gc], rtol=1e-14, atol=1e-14)


def test_mu_defaults():
    R = np.array([[4.0, 2.0]])
    M = np.array([[True, True]])
    assert DenseMF(R, M, 1, biases=True).mu == 3.0
    assert DenseMF(R, M, 1, biases=False).mu == 0.0


def test_sign_matrix_centres_by_user_mean():
    R = np.array([[5.0, 1.0, 3.0], [2.0, 2.0, 0.0]])
    M = np.array([[True, True, True], [True, True, False]])
    S = sign_matrix(R, M)
    assert np.array_equal(S, [[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]])


def test_sign_loss_unbounded_below_when_reg_small(rng):
    prob, _ = random_problem(rng, biases=False, loss="sign")
    U, s, Vt = np.linalg.svd(prob.S)
    k = prob.rank
    for reg, unbounded in ((0.5 * s[0], True), (1.01 * s[0], False)):
        prob.reg = reg
        P = np.zeros((prob.m, k))
        Q = np.zeros((prob.n, k))
        P[:, 0] = U[:, 0]
        Q[:, 0] = Vt[0]
        vals = [prob.fun(pack(t * P, t * Q)) for t in (1.0, 10.0, 100.0)]
        assert np.allclose(vals, [t * t * (reg - s[0]) for t in (1.0, 10.0, 100.0)])
        assert (vals[-1] < -1e3) == unbounded


def test_gradient_descent_decreases_loss(rng):
    prob, x0 = random_problem(rng, biases=True)
    x0_copy = x0.copy()
    x, losses = gradient_descent(prob, x0, learning_rate=0.02, n_iter=50)
    assert np.array_equal(x0, x0_copy)
    assert losses[-1] < losses[0]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))


def test_gradient_descent_divergence_message(rng):
    prob, x0 = random_problem(rng, biases=True)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        with np.errstate(over="ignore", invalid="ignore"):
            gradient_descent(prob, x0 * 100, learning_rate=50.0, n_iter=200)


def test_bad_inputs():
    R = np.ones((2, 2))
    M = np.ones((2, 2), dtype=bool)
    with pytest.raises(TypeError, match="mask must be boolean"):
        DenseMF(R, M.astype(int), 1)
    with pytest.raises(ValueError, match="same shape"):
        DenseMF(R, M[:1], 1)
    with pytest.raises(ValueError, match="no ratings"):
        DenseMF(R, ~M, 1)
    with pytest.raises(ValueError, match="rank"):
        DenseMF(R, M, 0)
    with pytest.raises(ValueError, match="reg"):
        DenseMF(R, M, 1, reg=-1.0)
    with pytest.raises(ValueError, match="sign loss has no biases"):
        DenseMF(R, M, 1, loss="sign", biases=True)
    with pytest.raises(ValueError, match="hessian='exact'"):
        DenseMF(R, M, 1, loss="sign", biases=False).hessp(np.zeros(4), np.zeros(4))
    R2 = R.copy()
    R2[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DenseMF(R2, M, 1)
    with pytest.raises(ValueError, match="length"):
        DenseMF(R, M, 1).fun(np.zeros(3))


def test_from_ratings_matches_dense():
    from fastmf.data.ratings import Ratings

    r = Ratings.from_arrays([0, 0, 1], [0, 1, 1], [1.0, 2.0, 5.0], dtype=np.float64)
    prob = DenseMF.from_ratings(r, 2)
    assert prob.M.sum() == 3 and prob.R[1, 1] == 5.0 and prob.mu == pytest.approx(8 / 3)
