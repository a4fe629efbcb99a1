"""Starting factors: random draws and the spectral (truncated-SVD) start."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastmf
from fastmf import MatrixFactorization, MFObjective, Ratings
from fastmf.initialization import initial_factors, random_factors
from fastmf.solvers.newton import newton_cg


def _ratings(rng, m=30, n=25, density=0.4, empty_user=None, empty_item=None, dtype=np.float64):
    mask = rng.random((m, n)) < density
    if empty_user is not None:
        mask[empty_user] = False
    if empty_item is not None:
        mask[:, empty_item] = False
    u, i = np.nonzero(mask)
    r = rng.integers(1, 6, size=u.size).astype(np.float64)
    # codes keep empty rows (from_codes takes the shape explicitly)
    return Ratings.from_codes(u.astype(np.int32), i.astype(np.int32), r, n_users=m, n_items=n, dtype=dtype)


def _dense_centred(R, mu):
    A = np.zeros((R.n_users, R.n_items))
    A[R.users, R.items] = R.values.astype(np.float64) - mu
    return A


def test_random_matches_the_documented_draw(rng):
    R = _ratings(rng)
    P, Q = initial_factors(R, 4, "random", 0.3, random_state=7)
    z = np.random.default_rng(7).standard_normal((R.n_users + R.n_items) * 4) * (0.3 / 2.0)
    np.testing.assert_array_equal(np.concatenate([P.ravel(), Q.ravel()]), z)


def test_random_factors_are_the_callers_normal_draws():
    """random_factors draws what rng.normal(0, std, (m, k)) then (n, k) would, bit for bit,
    leaves the generator in the same state, and casts after scaling."""
    for seed in range(3):
        g = np.random.default_rng(seed)
        P0, Q0 = g.normal(0.0, 0.07, size=(13, 4)), g.normal(0.0, 0.07, size=(9, 4))
        after = g.random()
        g2 = np.random.default_rng(seed)
        P, Q = random_factors(13, 9, 4, 0.07, g2)
        assert g2.random() == after
        np.testing.assert_array_equal(P, P0)
        np.testing.assert_array_equal(Q, Q0)
        P32, Q32 = random_factors(13, 9, 4, 0.07, seed, dtype=np.float32)
        assert P32.dtype == np.float32 and Q32.shape == (9, 4)
        np.testing.assert_array_equal(P32, P0.astype(np.float32))
    P, Q = random_factors(0, 3, 2, 1.0, 0)
    assert P.shape == (0, 2) and Q.shape == (3, 2)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_svd_start_is_the_scaled_truncated_svd(rng, k):
    R = _ratings(rng, empty_user=4, empty_item=9)
    mu = R.global_mean
    scale = 0.05
    P, Q = initial_factors(R, k, "svd", scale, mu=mu, random_state=0)
    A = _dense_centred(R, mu)
    U, s, Vt = np.linalg.svd(A)
    Ak = (U[:, :k] * s[:k]) @ Vt[:k]
    m, n = R.n_users, R.n_items
    c = scale**2 * np.sqrt(m * n) / (k * s[:k].mean())
    np.testing.assert_allclose(P @ Q.T, c * Ak, rtol=1e-8, atol=1e-12 * np.abs(c * Ak).max())
    # mean squared row norm is scale**2 on each side, exactly as for the random start
    np.testing.assert_allclose((P**2).sum() / m, scale**2, rtol=1e-10)
    np.testing.assert_allclose((Q**2).sum() / n, scale**2, rtol=1e-10)
    # rows without ratings start at zero
    assert np.all(P[4] == 0) and np.all(Q[9] == 0)
    # the columns of P are orthogonal (singular vectors), no random component
    G = P.T @ P
    np.testing.assert_allclose(G - np.diag(np.diag(G)), 0, atol=1e-12)


def test_svd_start_is_deterministic_and_leaves_inputs_alone(rng):
    R = _ratings(rng)
    before = R.values.copy()
    vals = rng.standard_normal(R.nnz)
    vals_before = vals.copy()
    a = initial_factors(R, 3, "svd", 0.1, mu=3.0, random_state=1)
    b = initial_factors(R, 3, "svd", 0.1, mu=3.0, random_state=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    initial_factors(R, 3, "svd", 0.1, values=vals, random_state=1)
    np.testing.assert_array_equal(R.values, before)
    np.testing.assert_array_equal(vals, vals_before)


def test_svd_start_of_given_values(rng):
    R = _ratings(rng)
    vals = np.sign(rng.standard_normal(R.nnz))
    P, Q = initial_factors(R, 2, "svd", 1.0, values=vals, random_state=0)
    A = np.zeros((R.n_users, R.n_items))
    A[R.users, R.items] = vals
    U, s, Vt = np.linalg.svd(A)
    c = np.sqrt(R.n_users * R.n_items) / (2 * s[:2].mean())
    np.testing.assert_allclose(P @ Q.T, c * (U[:, :2] * s[:2]) @ Vt[:2], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rank=25), r"rank < min\(n_users, n_items\) = 25"),
        (dict(rank=0), "rank"),
        (dict(init="spectral"), "init"),
        (dict(scale=-1.0), "scale"),
        (dict(mu=float("nan")), "mu"),
        (dict(values=np.ones(3)), "values must have shape"),
        (dict(values="nan"), "NaN or inf"),
    ],
)
def test_bad_arguments_raise(rng, kwargs, match):
    R = _ratings(rng)
    args = dict(rank=3, init="svd", scale=0.1)
    args.update(kwargs)
    if isinstance(args.get("values"), str):
        v = np.ones(R.nnz)
        v[5] = np.nan
        args["values"] = v
    with pytest.raises(ValueError, match=match):
        initial_factors(R, args.pop("rank"), args.pop("init"), args.pop("scale"), **args)


def test_constant_ratings_have_no_direction(rng):
    R = _ratings(rng)
    R2 = Ratings.from_codes(R.users, R.items, np.full(R.nnz, 4.0), n_users=R.n_users, n_items=R.n_items)
    with pytest.raises(ValueError, match="all zero"):
        initial_factors(R2, 2, "svd", 0.1, mu=4.0, random_state=0)


def test_not_ratings_raises():
    with pytest.raises(TypeError, match="Ratings"):
        initial_factors(np.ones((3, 3)), 1, "svd")


def test_objective_x0_layout(rng):
    R = _ratings(rng)
    obj = MFObjective(R, 3, dtype=np.float64)
    x = obj.x0(2, scale=0.2, init="svd")
    P, Q, b, c = obj.unpack(x)
    P0, Q0 = initial_factors(R, 3, "svd", 0.2, mu=obj.mu, random_state=2)
    np.testing.assert_array_equal(P, P0)
    np.testing.assert_array_equal(Q, Q0)
    assert np.all(b == 0) and np.all(c == 0)
    # the default stays the random start, unchanged
    np.testing.assert_array_equal(obj.x0(2), np.concatenate(
        [np.concatenate([a.ravel() for a in initial_factors(R, 3, "random", 0.1, random_state=2)]),
         np.zeros(R.n_users + R.n_items)]))
    # sign loss: factors of the sign targets, no centring
    sobj = MFObjective(R, 2, loss="sign", biases=False, dtype=np.float64, hessian="exact")
    xs = sobj.x0(0, init="svd")
    Ps, Qs, _, _ = sobj.unpack(xs)
    P1, Q1 = initial_factors(R, 2, "svd", 0.1, values=sobj._vals, random_state=0)
    np.testing.assert_array_equal(Ps, P1)


def test_newton_converges_from_the_svd_start(rng):
    R = _ratings(rng, m=40, n=30, density=0.5)
    obj = MFObjective(R, 2, reg=2.0, dtype=np.float64, hessian="exact")
    x0 = obj.x0(0, init="svd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = newton_cg(obj, x0, tol=1e-8, ftol=0.0, max_iter=500, progress=False)
    assert res.success, res.message
    assert res.grad_norm <= 1e-8 * np.linalg.norm(obj.jac(x0)) * 1.0001
    assert res.fun < obj.fun(x0)


@pytest.mark.parametrize("solver", ["newton", "als", "sgd"])
def test_estimator_init(rng, solver):
    R = _ratings(rng, m=40, n=30, density=0.5)
    kw = dict(rank=3, solver=solver, random_state=0, progress=False, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MatrixFactorization(init="svd", **kw).fit(R)
        b = MatrixFactorization(init="svd", **kw).fit(R)
        r = MatrixFactorization(**kw).fit(R)
        s = MatrixFactorization(init_scale=0.1, **kw).fit(R)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert not np.allclose(a.user_factors_, r.user_factors_)
    if solver == "newton":  # init_scale=0.1 is newton's default row scale: same fit
        np.testing.assert_array_equal(s.user_factors_, r.user_factors_)
    clone = fastmf.MatrixFactorization(**a.get_params())
    assert clone.init == "svd"


def test_estimator_init_start_point_is_used():
    """SGD takes the estimator's start: a zero-scale start stays (near) zero, SGD's own would not."""
    rng = np.random.default_rng(3)
    R = _ratings(rng, m=40, n=30, density=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MatrixFactorization(rank=3, solver="sgd", init="svd", init_scale=0.0, random_state=0, progress=False,
                                max_iter=1, solver_options={"learning_rate": 1e-12})
        m.fit(R)
    # a zero-scale start and a negligible step leave the factors at zero
    assert np.abs(m.user_factors_).max() < 1e-9


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(init="pca"), ValueError, "init"),
    (dict(init=3), TypeError, "init must be a string"),
    (dict(init_scale=-0.5), ValueError, "init_scale"),
])
def test_estimator_bad_init(rng, kwargs, exc, match):
    R = _ratings(rng)
    with pytest.raises(exc, match=match):
        MatrixFactorization(rank=2, progress=False, **kwargs).fit(R)


def test_estimator_svd_rank_too_large(rng):
    R = _ratings(rng, m=10, n=8)
    with pytest.raises(ValueError, match=r"rank < min\(n_users, n_items\) = 8"):
        MatrixFactorization(rank=8, init="svd", progress=False).fit(R)


def test_estimator_init_scale_given_twice(rng):
    R = _ratings(rng)
    m = MatrixFactorization(rank=2, solver="sgd", init_scale=0.1, progress=False,
                            solver_options={"init_scale": 0.01})
    with pytest.raises(ValueError, match="init_scale is given twice"):
        m.fit(R)


def test_svd_start_does_not_depend_on_the_sign_arpack_returns(rng, monkeypatch):
    """A singular pair is defined up to sign, and ARPACK's choice varies between machines;
    the start is canonicalised (largest-|.| entry of each left vector positive)."""
    import scipy.sparse.linalg as spla

    R = _ratings(rng)
    real_svds = spla.svds
    P, Q = initial_factors(R, 4, "svd", 0.3, random_state=3)
    flips = np.array([1.0, -1.0, -1.0, 1.0])

    def flipped_svds(A, k, v0):
        U, s, Vt = real_svds(A, k=k, v0=v0)
        return U * flips, s, Vt * flips[:, None]

    monkeypatch.setattr(spla, "svds", flipped_svds)
    P2, Q2 = initial_factors(R, 4, "svd", 0.3, random_state=3)
    np.testing.assert_allclose(P2, P, rtol=0, atol=1e-14)
    np.testing.assert_allclose(Q2, Q, rtol=0, atol=1e-14)
    col = np.argmax(np.abs(P), axis=0)
    assert np.all(P[col, np.arange(4)] > 0)
