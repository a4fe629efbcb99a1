"""MFObjective: validation, caching, counters, finite differences, threads, ml-100k vs the reference."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastmf.data.ratings import Ratings
from fastmf.objective import MFObjective
from fastmf.reference import DenseMF



def random_ratings(m, n, density, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((m, n)) < density
    mask[rng.integers(m)] = False  # one user and one item without ratings
    mask[:, rng.integers(n)] = False
    u, i = np.nonzero(mask)
    r = rng.integers(1, 6, size=u.size) + 0.5 * rng.integers(0, 2, size=u.size)
    return Ratings.from_codes(u, i, r.astype(float), n_users=m, n_items=n, dtype=np.float64)


def relerr(a, b):
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def small():
    return random_ratings(25, 18, 0.3, seed=21)


@pytest.fixture(scope="module")
def ml100k(shared_data):
    from fastmf.data.movielens import load_movielens

    return load_movielens("ml-100k", data_home=shared_data, download=False, dtype=np.float64)


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(rank=0), ValueError, "rank"),
        (dict(rank=2.5), TypeError, "rank"),
        (dict(reg=-1.0), ValueError, "reg"),
        (dict(reg="a"), TypeError, "reg"),
        (dict(reg_bias=-0.1), ValueError, "reg_bias"),
        (dict(reg=float("nan")), ValueError, "reg"),
        (dict(biases=1), TypeError, "biases"),
        (dict(loss="huber"), ValueError, "loss"),
        (dict(dtype=np.int32), TypeError, "dtype"),
        (dict(format="csc"), ValueError, "format"),
        (dict(n_threads=0), ValueError, "n_threads"),
        (dict(n_threads=10_000), ValueError, "n_threads"),
        (dict(n_threads="2"), TypeError, "n_threads"),
        (dict(hessian="bfgs"), ValueError, "hessian"),
        (dict(reg_weighting="log"), ValueError, "reg_weighting"),
        (dict(reg_weighting=-0.5), ValueError, "reg_weighting"),
        (dict(reg_weighting=float("nan")), ValueError, "reg_weighting"),
        (dict(reg_weighting=True), TypeError, "reg_weighting"),
        (dict(reg_weighting=None), TypeError, "reg_weighting"),
        (dict(mu=float("inf")), ValueError, "mu"),
        (dict(mu="3"), ValueError, "mu"),
        (dict(parallel="yes"), TypeError, "parallel"),
        (dict(loss="sign", biases=True, hessian="exact"), ValueError, "biases"),
        (dict(loss="sign", biases=False), ValueError, "hessian='exact'"),
    ],
)
def test_bad_parameters_raise(small, kwargs, exc, match):
    kw = dict(rank=3)
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        MFObjective(small, **kw)


def test_ratings_must_be_ratings(small):
    with pytest.raises(TypeError, match="Ratings"):
        MFObjective(small.to_scipy(), 3)


def test_bad_vectors_raise(small):
    obj = MFObjective(small, 3)
    x = obj.x0(0)
    with pytest.raises(ValueError, match="shape"):
        obj.fun(x[:-1])
    with pytest.raises(ValueError, match="shape"):
        obj.jac(x.reshape(1, -1))
    with pytest.raises(TypeError, match="numeric"):
        obj.fun(np.array(["a"] * obj.n_params))
    with pytest.raises(ValueError, match="p must"):
        obj.hessp(x, x[:3])
    with pytest.raises(ValueError, match="b and c"):
        obj.pack(*obj.unpack(x)[:2])


# ---------------------------------------------------------------------------- caching, counters, dtypes
def test_cache_counters_and_no_mutation(small):
    obj = MFObjective(small, 3, dtype=np.float64)
    x = obj.x0(1, scale=1.0)
    x_copy = x.copy()
    f = obj.fun(x)
    g = obj.jac(x)
    assert obj.n_evaluations == 1 and obj.nfev == 1 and obj.njev == 1
    f2, g2 = obj.fun_and_jac(x.copy())
    assert obj.n_evaluations == 1 and obj.nfev == 2 and obj.njev == 2
    assert f2 == f
    np.testing.assert_array_equal(g, g2)
    obj.hessp(x, x)
    assert obj.nhessp == 1 and obj.n_evaluations == 1
    np.testing.assert_array_equal(x, x_copy)
    # returned arrays are not views of internal buffers
    g[:] = 0.0
    np.testing.assert_array_equal(obj.jac(x), g2)
    # in-place mutation of x (as scipy does) is detected by content
    x[0] += 0.5
    assert obj.fun(x) != f
    assert obj.n_evaluations == 2
    x[0] -= 0.5
    assert obj.fun(x) == f
    # a change anywhere (last entry: last comparison chunk) is seen; NaN never matches the cache
    x[-1] += 0.25
    assert obj.fun(x) != f
    x[-1] -= 0.25
    assert obj.fun(x) == f
    evals = obj.n_evaluations
    x_nan = x.copy()
    x_nan[len(x) // 2] = np.nan
    assert np.isnan(obj.fun(x_nan)) and np.isnan(obj.fun(x_nan))
    assert obj.n_evaluations == evals + 2
    assert obj.fun(x.astype(np.float32)) == pytest.approx(f, rel=1e-6)  # another dtype: copied afresh
    assert obj.fun(x) == f
    obj.reset_counters()
    assert (obj.nfev, obj.njev, obj.nhessp, obj.n_evaluations) == (0, 0, 0, 0)


def test_hessp_after_new_x_invalidates_cache(small):
    obj = MFObjective(small, 3, dtype=np.float64)
    ref = DenseMF.from_ratings(small, 3, reg=0.1)
    x1, x2 = obj.x0(1, scale=1.0), obj.x0(2, scale=1.0)
    obj.fun(x1)
    obj.hessp(x2, x1)
    assert abs(obj.fun(x2) - ref.fun(x2)) <= 1e-10 * ref.fun(x2)
    assert relerr(obj.residuals(x1), ref.residuals(x1)[small.users, small.items]) <= 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtypes_follow_x(small, dtype):
    obj = MFObjective(small, 3, dtype=dtype)
    x = obj.x0(0)
    assert x.dtype == np.float64
    for xx in (x, x.astype(np.float32)):
        assert obj.jac(xx).dtype == xx.dtype
        assert obj.hessp(xx, xx).dtype == xx.dtype
        assert obj.residuals(xx).dtype == xx.dtype
        assert obj.diag_gauss_newton(xx).dtype == xx.dtype
        assert isinstance(obj.fun(xx), float)
    assert obj.jac(np.zeros(obj.n_params, dtype=np.int64)).dtype == np.float64


def test_x0_pack_unpack(small):
    obj = MFObjective(small, 4)
    np.testing.assert_array_equal(obj.x0(7), obj.x0(7))
    assert not np.array_equal(obj.x0(7), obj.x0(8))
    x = obj.x0(7)
    P, Q, b, c = obj.unpack(x)
    assert P.shape == (25, 4) and Q.shape == (18, 4) and not b.any() and not c.any()
    np.testing.assert_array_equal(obj.pack(P, Q, b, c), x)
    assert abs(P.std() - 0.1 / 2) < 0.02
    nb = MFObjective(small, 4, biases=False)
    assert nb.n_params == (25 + 18) * 4 and nb.unpack(nb.x0(0))[2] is None


def test_mu_options(small):
    assert MFObjective(small, 2).mu == pytest.approx(small.global_mean)
    assert MFObjective(small, 2, biases=False).mu == 0.0
    assert MFObjective(small, 2, mu=1.5).mu == 1.5
    obj = MFObjective(small, 2, mu=1.5, dtype=np.float64, biases=False)
    ref = DenseMF.from_ratings(small, 2, mu=1.5, biases=False)
    x = obj.x0(0, scale=1.0)
    assert abs(obj.fun(x) - ref.fun(x)) <= 1e-12 * ref.fun(x)


def test_layout_accessors(small):
    obj = MFObjective(small, 2, dtype=np.float64, format="csr")
    a = obj.csr_arrays
    assert a["user_indptr"][-1] == small.nnz and a["item_indptr"][-1] == small.nnz
    assert a["user_chunks"][-1] == small.n_users and a["item_chunks"][-1] == small.n_items
    np.testing.assert_array_equal(obj.coo_arrays["users"], small.users)
    assert "item_indptr" not in MFObjective(small, 2, format="coo").csr_arrays


# ---------------------------------------------------------------------------- finite differences
CASES = [
    dict(loss="squared", biases=True, hessian="exact", reg_weighting="uniform"),
    dict(loss="squared", biases=False, hessian="exact", reg_weighting="count"),
    dict(loss="sign", biases=False, hessian="exact", reg_weighting="uniform"),
    dict(loss="squared", biases=True, hessian="exact", reg_weighting="sqrt-count"),
    dict(loss="sign", biases=False, hessian="exact", reg_weighting=0.3),
]


@pytest.mark.parametrize("fmt", ["csr", "coo"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['loss']}-{c['biases']}-{c['reg_weighting']}")
def test_gradient_five_point_stencil(small, fmt, case):
    obj = MFObjective(small, 3, reg=0.2, dtype=np.float64, format=fmt, **case)
    rng = np.random.default_rng(4)
    x = obj.x0(3, scale=1.0)
    g = obj.jac(x)
    h = 1e-3
    for _ in range(3):
        d = rng.standard_normal(obj.n_params)
        fd = (-obj.fun(x + 2 * h * d) + 8 * obj.fun(x + h * d) - 8 * obj.fun(x - h * d) + obj.fun(x - 2 * h * d)) / (12 * h)
        assert abs(fd - g @ d) <= 1e-7 * max(1.0, abs(g @ d))


@pytest.mark.parametrize("fmt", ["csr", "coo"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['loss']}-{c['biases']}-{c['reg_weighting']}")
def test_exact_hessp_is_slope_of_gradient(small, fmt, case):
    obj = MFObjective(small, 3, reg=0.2, dtype=np.float64, format=fmt, **case)
    x = obj.x0(5, scale=1.0)
    d = obj.x0(6, scale=1.0) + 0.1
    h = 1e-4
    slope = (obj.jac(x + h * d) - obj.jac(x - h * d)) / (2 * h)
    assert relerr(obj.hessp(x, d), slope) <= 1e-7


def test_gauss_newton_equals_exact_at_zero_residuals():
    """With exact data (zero residuals) the exact Hessian equals the Gauss-Newton matrix."""
    rng = np.random.default_rng(0)
    m, n, k = 12, 10, 2
    P, Q = rng.standard_normal((m, k)), rng.standard_normal((n, k))
    mask = rng.random((m, n)) < 0.5
    u, i = np.nonzero(mask)
    R = Ratings.from_codes(u, i, np.einsum("jk,jk->j", P[u], Q[i]), n_users=m, n_items=n, dtype=np.float64)
    gn = MFObjective(R, k, biases=False, dtype=np.float64)
    ex = MFObjective(R, k, biases=False, dtype=np.float64, hessian="exact")
    x = gn.pack(P, Q)
    d = gn.x0(1, scale=1.0)
    assert np.abs(gn.residuals(x)).max() < 1e-12
    assert relerr(gn.hessp(x, d), ex.hessp(x, d)) <= 1e-12
    # and the Gauss-Newton matrix is positive semi-definite along d
    assert d @ gn.hessp(x, d) >= 0


# ---------------------------------------------------------------------------- threads, determinism
@pytest.mark.parametrize("fmt", ["csr", "coo", "coo-fixed-blocks"])
def test_threads_agree_and_repeat_bit_identically(ml100k, fmt):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    kw = dict(reg=0.1, dtype=np.float64, format=fmt[:3], hessian="exact")
    if fmt == "coo-fixed-blocks":
        kw["coo_blocks"] = 16
    o1 = MFObjective(ml100k, 8, n_threads=1, **kw)
    o2 = MFObjective(ml100k, 8, n_threads=2, **kw)
    x = o1.x0(0, scale=1.0)
    p = o1.x0(1, scale=1.0)
    f1, g1, h1 = o1.fun(x), o1.jac(x), o1.hessp(x, p)
    f2, g2, h2 = o2.fun(x), o2.jac(x), o2.hessp(x, p)
    assert abs(f1 - f2) <= 1e-12 * abs(f1)
    assert relerr(g2, g1) <= 1e-12 and relerr(h2, h1) <= 1e-12
    if fmt != "coo":  # fixed chunks (CSR) / fixed user blocks: bit-identical across thread counts
        assert f1 == f2
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_array_equal(h1, h2)
    # repeated calls (cache bypassed with a fresh objective) are bit-identical
    o3 = MFObjective(ml100k, 8, n_threads=2, **kw)
    assert o3.fun(x) == f2
    np.testing.assert_array_equal(o3.jac(x), g2)
    np.testing.assert_array_equal(o3.hessp(x, p), h2)
    np.testing.assert_array_equal(o3.hessp(x, p), h2)


# ---------------------------------------------------------------------------- ml-100k vs the reference
@pytest.mark.parametrize("fmt", ["csr", "coo"])
def test_ml100k_matches_reference(ml100k, fmt):
    for kw, hess in [(dict(reg=0.05, reg_bias=0.5, biases=True), "exact"),
                     (dict(reg=0.05, biases=False, reg_weighting="count"), "gauss-newton"),
                     (dict(reg=1.0, biases=False, loss="sign"), "exact")]:
        ref = DenseMF.from_ratings(ml100k, 6, **kw)
        obj = MFObjective(ml100k, 6, dtype=np.float64, format=fmt, hessian=hess, **kw)
        x = obj.x0(0, scale=1.0)
        p = obj.x0(1, scale=1.0)
        assert abs(obj.fun(x) - ref.fun(x)) <= 1e-10 * abs(ref.fun(x))
        assert relerr(obj.jac(x), ref.jac(x)) <= 1e-10
        assert relerr(obj.hessp(x, p), ref.hessp(x, p, hess)) <= 1e-10
        # float32 objective at the same (float32-representable) point
        x32 = x.astype(np.float32).astype(np.float64)
        o32 = MFObjective(ml100k, 6, dtype=np.float32, format=fmt, hessian=hess, **kw)
        assert abs(o32.fun(x32) - ref.fun(x32)) <= 1e-4 * abs(ref.fun(x32))
        assert relerr(o32.jac(x32), ref.jac(x32)) <= 1e-4


# ---------------------------------------------------------------------------- sign loss
def test_sign_loss_unbounded_below_when_reg_below_sigma_max():
    R = random_ratings(20, 15, 0.4, seed=8)
    ref = DenseMF.from_ratings(R, 2, biases=False, loss="sign")
    U, s, Vt = np.linalg.svd(ref.S)
    sigma = s[0]
    for reg, unbounded in [(0.5 * sigma, True), (1.01 * sigma, False)]:
        obj = MFObjective(R, 2, reg=reg, biases=False, loss="sign", hessian="exact", dtype=np.float64)
        P = np.zeros((20, 2))
        Q = np.zeros((15, 2))
        P[:, 0], Q[:, 0] = U[:, 0], Vt[0]
        for t in (1.0, 10.0, 100.0):
            f = obj.fun(obj.pack(t * P, t * Q))
            assert f == pytest.approx(t * t * (reg - sigma), rel=1e-10)
            assert (f < 0) == unbounded
