"""Gibbs sampling of Bayesian biased MF (fastmf.solvers.gibbs) and its estimator path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fastmf import MatrixFactorization
from fastmf._packing import unpack
from fastmf.data.ratings import Ratings
from fastmf.kernels._chunks import balanced_chunks
from fastmf.kernels.blocks import PIVOT_RTOL, als_solve_rows
from fastmf.kernels.predict import predict_codes
from fastmf.solvers.gibbs import _normal_gamma_draw, gibbs


def _ratings(rng, m=30, n=20, density=0.4, dtype=np.float64, empty_user=True):
    mask = rng.random((m, n)) < density
    if empty_user:
        mask[m - 1] = False  # a user with no ratings
    u, i = np.nonzero(mask)
    v = rng.integers(1, 6, u.shape[0]).astype(float)
    return Ratings.from_codes(u, i, v, n_users=m, n_items=n, dtype=dtype)


def _dense_draw(r, Q, c, mu, diag, shift, z, sigma, biases):
    """Dense reference of one side's draws: mean B^{-1} y plus sigma L^{-T} z per row."""
    m, k = r.n_users, Q.shape[1]
    out = np.zeros((m, k + biases))
    for u in range(m):
        sl = slice(r.user_indptr[u], r.user_indptr[u + 1])
        cols, vals = r.items[sl], r.values[sl].astype(np.float64)
        A = np.hstack([Q[cols], np.ones((cols.shape[0], 1))]) if biases else Q[cols]
        t = vals - mu - (c[cols] if biases else 0.0)
        B = A.T @ A + np.diag(diag)
        y = A.T @ t + shift
        L = np.linalg.cholesky(B)
        out[u] = np.linalg.solve(B, y) + sigma * np.linalg.solve(L.T, z[u])
    return out


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_kernel_draw_matches_dense_conditional(rng, biases, dtype, tol):
    r = _ratings(rng, dtype=dtype)
    k = 3
    K = k + biases
    Q = rng.standard_normal((r.n_items, k)).astype(dtype)
    c = rng.standard_normal(r.n_items).astype(dtype)
    diag = rng.uniform(0.5, 2.0, K)
    shift = rng.standard_normal(K)
    z = rng.standard_normal((r.n_users, K))
    sigma, mu = 0.7, 3.1
    ch = balanced_chunks(r.user_indptr, 4)
    P = np.zeros((r.n_users, k), dtype=dtype)
    b = np.zeros(r.n_users, dtype=dtype)
    d = np.zeros(1, dtype=dtype)
    als_solve_rows(r.user_indptr, r.items, r.values, Q, c if biases else d, mu, np.ones(r.n_users), diag, shift,
                   biases, ch, PIVOT_RTOL, np.empty((len(ch) - 1, K, K)), np.empty((len(ch) - 1, K)), P,
                   b if biases else d, np.zeros(len(ch) - 1, dtype=np.int64), z, sigma)
    ref = _dense_draw(r, Q.astype(np.float64), c.astype(np.float64), mu, diag, shift, z, sigma, biases)
    np.testing.assert_allclose(P, ref[:, :k], rtol=tol, atol=tol)
    if biases:
        np.testing.assert_allclose(b, ref[:, k], rtol=tol, atol=tol)
    # the user with no ratings is drawn from its prior N(shift/diag, sigma^2/diag)
    np.testing.assert_allclose(P[-1], (shift[:k] + sigma * np.sqrt(diag[:k]) * z[-1, :k]) / diag[:k], rtol=tol)


def test_kernel_draws_have_the_conditional_moments(rng):
    # many draws of one user: sample mean and covariance vs sigma^2 B^{-1}
    r = Ratings.from_codes(np.zeros(6, int), np.arange(6), np.array([1., 2, 5, 4, 3, 5]), n_users=1, n_items=6,
                           dtype=np.float64)
    k, K, S, sigma = 2, 3, 20000, 0.5
    Q = rng.standard_normal((6, k))
    c = rng.standard_normal(6)
    diag = np.array([0.3, 0.6, 0.9])
    ch = balanced_chunks(r.user_indptr, 1)
    draws = np.empty((S, K))
    P, b = np.zeros((1, k)), np.zeros(1)
    A, y, fx = np.empty((1, K, K)), np.empty((1, K)), np.zeros(1, dtype=np.int64)
    for s in range(S):
        als_solve_rows(r.user_indptr, r.items, r.values, Q, c, 3.0, np.ones(1), diag, np.zeros(K), True, ch,
                       PIVOT_RTOL, A, y, P, b, fx, rng.standard_normal((1, K)), sigma)
        draws[s, :k], draws[s, k] = P[0], b[0]
    Qt = np.hstack([Q, np.ones((6, 1))])
    B = Qt.T @ Qt + np.diag(diag)
    cov = sigma ** 2 * np.linalg.inv(B)
    mean = np.linalg.solve(B, Qt.T @ (r.values - 3.0 - c))
    se = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.05 * np.abs(cov).max())


def test_normal_gamma_draw_matches_its_posterior(rng):
    X = rng.normal(1.5, 0.5, size=(40, 2))
    a0, b0, g0 = 1.0, 1.0, 1.0
    draws = [_normal_gamma_draw(X, rng, a0, b0, g0) for _ in range(20000)]
    lam = np.array([d[0] for d in draws])
    mean = np.array([d[1] for d in draws])
    n, xbar = 40, X.mean(0)
    shape = (a0 + n) / 2
    rate = (b0 + ((X - xbar) ** 2).sum(0) + g0 * n * xbar ** 2 / (g0 + n)) / 2
    np.testing.assert_allclose(lam.mean(0), shape / rate, rtol=0.02)
    np.testing.assert_allclose(mean.mean(0), n * xbar / (g0 + n), atol=0.01)


def _lowrank(rng, m=120, n=80, k=2, noise=0.3, density=0.3):
    U = rng.standard_normal((m, k))
    V = rng.standard_normal((n, k))
    mask = rng.random((m, n)) < density
    u, i = np.nonzero(mask)
    v = 3.0 + 0.3 * rng.standard_normal(m)[u] + (U[u] * V[i]).sum(1) + noise * rng.standard_normal(u.shape[0])
    perm = rng.permutation(u.shape[0])
    cut = int(0.8 * u.shape[0])
    tr, te = perm[:cut], perm[cut:]
    train = Ratings.from_codes(u[tr], i[tr], v[tr], n_users=m, n_items=n, dtype=np.float64)
    test = Ratings.from_codes(u[te], i[te], v[te], n_users=m, n_items=n, dtype=np.float64)
    return train, test


def test_gibbs_recovers_low_rank_data_and_noise_level(rng):
    train, test = _lowrank(rng)
    res = gibbs(train, 2, max_iter=150, burn_in=50, dtype=np.float64, progress=False, validation=test)
    P, Q, b, c = unpack(res.x, train.n_users, train.n_items, res.rank, True)
    pred = predict_codes(test.users, test.items, P, Q, b, c, res.mu)
    rmse = np.sqrt(np.mean((pred - test.values) ** 2))
    baseline = np.sqrt(np.mean((train.global_mean - test.values) ** 2))
    assert rmse < 0.5 * baseline
    assert rmse < 0.5  # the noise std is 0.3
    assert 0.3 ** 2 * 0.7 < res.noise_variance < 0.3 ** 2 * 1.5
    assert res.history[-1]["val_rmse"] == pytest.approx(rmse, rel=1e-9)
    assert res.rank == 2 * 150 and res.sample_rank == 2 and res.n_kept == 150


def test_stacked_result_is_the_average_of_the_draws(rng):
    train, test = _lowrank(rng, m=40, n=30)
    one = gibbs(train, 2, max_iter=1, burn_in=3, dtype=np.float64, progress=False)
    two = gibbs(train, 2, max_iter=3, burn_in=3, thin=2, dtype=np.float64, progress=False, validation=test)
    m, n = train.n_users, train.n_items
    P1, Q1, b1, c1 = unpack(one.x, m, n, 2, True)
    P2, Q2, b2, c2 = unpack(two.x, m, n, 4, True)
    assert two.n_kept == 2 and two.rank == 4
    # the chains share their prefix: the first kept draw of `two` is the draw of `one`
    np.testing.assert_allclose(P2[:, :2] * np.sqrt(2), P1, rtol=1e-12)
    np.testing.assert_allclose(Q2[:, :2] * np.sqrt(2), Q1, rtol=1e-12)
    # the stacked model predicts the mean of the two draws' predictions (val_rmse is computed that way)
    pred = predict_codes(test.users, test.items, P2, Q2, b2, c2, two.mu)
    assert two.history[-1]["val_rmse"] == pytest.approx(np.sqrt(np.mean((pred - test.values) ** 2)), rel=1e-9)
    assert [rec["kept"] for rec in two.history] == [0, 0, 0, 1, 1, 2]


def test_gibbs_is_deterministic_whatever_the_threads(rng):
    train, _ = _lowrank(rng, m=60, n=40)
    a = gibbs(train, 3, max_iter=5, burn_in=2, progress=False, n_threads=1, random_state=7)
    b = gibbs(train, 3, max_iter=5, burn_in=2, progress=False, n_threads=2, random_state=7)
    c = gibbs(train, 3, max_iter=5, burn_in=2, progress=False, n_threads=2, random_state=8)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_gibbs_without_biases_and_fixed_noise(rng):
    train, _ = _lowrank(rng, m=40, n=30)
    res = gibbs(train, 2, max_iter=4, burn_in=1, biases=False, noise_variance=0.25, progress=False)
    assert res.mu == 0.0 and not res.biases
    assert res.x.shape == ((40 + 30) * 2 * 4,)
    assert all(rec["noise_variance"] == 0.25 for rec in res.history)


def test_gibbs_leaves_inputs_untouched(rng):
    train, _ = _lowrank(rng, m=40, n=30)
    before = (train.values.copy(), train.users.copy(), train.item_values.copy())
    x0 = rng.standard_normal((40 + 30) * 3)
    x0_copy = x0.copy()
    gibbs(train, 2, max_iter=2, burn_in=1, x0=x0, progress=False)
    np.testing.assert_array_equal(x0, x0_copy)
    for a, b in zip(before, (train.values, train.users, train.item_values)):
        np.testing.assert_array_equal(a, b)


def test_gibbs_callback_and_time_limit_stop(rng):
    train, _ = _lowrank(rng, m=40, n=30)
    res = gibbs(train, 2, max_iter=50, burn_in=1, progress=False, callbacks=lambda rec: rec["kept"] == 3)
    assert res.status.name == "CALLBACK" and res.n_kept == 3 and res.rank == 6
    # a run stopped at 3 kept draws is the run of 3 draws (same chain prefix)
    full = gibbs(train, 2, max_iter=3, burn_in=1, progress=False)
    np.testing.assert_array_equal(res.x, full.x)
    with pytest.raises(ValueError, match="before any draw was kept"):
        gibbs(train, 2, max_iter=5, burn_in=10, progress=False, callbacks=lambda rec: True)


@pytest.mark.parametrize("kw,match", [
    (dict(max_iter=0), "max_iter"),
    (dict(burn_in=-1), "burn_in"),
    (dict(thin=0), "thin"),
    (dict(prior_shape=0.0), "prior_shape"),
    (dict(prior_rate=-1.0), "prior_rate"),
    (dict(prior_mean_precision=0.0), "prior_mean_precision"),
    (dict(noise_variance=0.0), "noise_variance"),
    (dict(max_memory=1000.0), "max_memory"),
    (dict(x0=np.zeros(5)), "x0 must have shape"),
    (dict(mu=float("nan")), "mu must be finite"),
    (dict(rank=0), "rank"),
])
def test_gibbs_bad_parameters_raise(rng, kw, match):
    train, _ = _lowrank(rng, m=40, n=30)
    args = dict(rank=2, max_iter=3, burn_in=1, progress=False)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        gibbs(train, **args)


def test_gibbs_rejects_bad_data(rng):
    train, _ = _lowrank(rng, m=40, n=30)
    with pytest.raises(TypeError, match="Ratings"):
        gibbs((train.users, train.items, train.values), 2, progress=False)
    other = Ratings.from_codes(np.array([0]), np.array([0]), np.array([3.0]), n_users=3, n_items=3)
    with pytest.raises(ValueError, match="validation has shape"):
        gibbs(train, 2, max_iter=2, burn_in=0, validation=other, progress=False)


# ---------------------------------------------------------------------------- estimator
def _frame(rng, m=50, n=40, nnz=900):
    df = pd.DataFrame({"user": rng.integers(0, m, nnz), "item": rng.integers(0, n, nnz),
                       "rating": rng.integers(1, 6, nnz).astype(float)})
    return df.drop_duplicates(["user", "item"]).reset_index(drop=True)


def test_estimator_gibbs_fit_predict_save_load(rng, tmp_path):
    df = _frame(rng)
    model = MatrixFactorization(rank=3, solver="gibbs", max_iter=6, progress=False, random_state=1,
                                solver_options={"burn_in": 2})
    model.fit(df.iloc[:700], eval_set=df.iloc[700:])
    assert model.user_factors_.shape[1] == 3 * 6 and model.result_.n_kept == 6
    assert len(model.history_) == 8 and model.history_[-1]["val_rmse"] is not None
    pred = model.predict(df.user[:5], df.item[:5])
    assert np.all((pred >= 1) & (pred <= 5))
    top, scores = model.recommend(df.user[0], n=3)
    assert top.shape == (3,) and np.all(np.diff(scores) <= 0)
    path = model.save(tmp_path / "g.npz")
    again = MatrixFactorization.load(path)
    np.testing.assert_array_equal(again.predict(df.user[:5], df.item[:5]), pred)
    with pytest.raises(ValueError, match="fold-in"):
        again.fold_in(df.item[:3], [4.0, 3.0, 5.0])
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(df, warm_start=True)


@pytest.mark.parametrize("kw,match", [
    (dict(reg=1.0), "reg do"),
    (dict(reg_bias=0.1), "reg_bias"),
    (dict(reg_weighting="sqrt-count"), "reg_weighting"),
    (dict(tol=1e-3), "tol does not apply"),
])
def test_estimator_gibbs_rejects_parameters_it_does_not_use(rng, kw, match):
    with pytest.raises(ValueError, match=match):
        MatrixFactorization(rank=2, solver="gibbs", progress=False, **kw).fit(_frame(rng))


def test_estimator_gibbs_rejects_early_stopping(rng):
    df = _frame(rng)
    with pytest.raises(ValueError, match="early_stopping does not apply"):
        MatrixFactorization(rank=2, solver="gibbs", early_stopping=3, progress=False).fit(df, eval_set=df)


def test_estimator_gibbs_spectral_start_reaches_the_sampler(rng):
    df = _frame(rng)
    kw = dict(rank=2, solver="gibbs", max_iter=2, progress=False, solver_options={"burn_in": 0})
    a = MatrixFactorization(init="svd", **kw).fit(df)
    b = MatrixFactorization(init="random", **kw).fit(df)
    assert not np.array_equal(a.user_factors_, b.user_factors_)
