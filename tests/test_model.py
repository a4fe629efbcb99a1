"""MatrixFactorization: parameters, input forms, predict formula and unknown ids, recommend,
similar_items, fold-in, warm start, thread scoping."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pandas as pd
import pytest

from fastmf._packing import pack
from fastmf.data.ratings import Ratings
from fastmf.data.synthetic import synthetic
from fastmf import MatrixFactorization, NotFittedError, UnknownIdWarning, as_ratings
from fastmf.reference import DenseMF

FAST = dict(solver="sgd", max_iter=2, progress=False, random_state=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(60, 40, 900, rank=3, random_state=3)


@pytest.fixture(scope="module")
def model(data):
    """A fitted model whose parameters are then replaced by random values (distinct scores)."""
    m = MatrixFactorization(rank=4, **FAST).fit(data)
    rng = np.random.default_rng(7)
    m.user_factors_ = rng.normal(size=m.user_factors_.shape).astype(np.float32)
    m.item_factors_ = rng.normal(size=m.item_factors_.shape).astype(np.float32)
    m.user_biases_ = rng.normal(scale=0.3, size=m.user_biases_.shape).astype(np.float32)
    m.item_biases_ = rng.normal(scale=0.3, size=m.item_biases_.shape).astype(np.float32)
    return m


def dense_scores(m):
    return (m.global_mean_ + m.user_biases_[:, None] + m.item_biases_[None, :]
            + m.user_factors_.astype(np.float64) @ m.item_factors_.astype(np.float64).T)


# ---------------------------------------------------------------------------- parameters
def test_init_stores_only_and_fit_validates(data):
    m = MatrixFactorization(rank=-3, solver="nope", reg="x")  # no error here
    assert m.rank == -3 and m.solver == "nope"
    with pytest.raises(ValueError, match="rank"):
        m.fit(data)


@pytest.mark.parametrize(
    "params, exc, match",
    [
        (dict(rank=0), ValueError, "rank"),
        (dict(rank=2.5), TypeError, "rank"),
        (dict(solver="lbfgs"), ValueError, "solver"),
        (dict(reg=-1.0), ValueError, "reg"),
        (dict(reg_bias=float("nan")), ValueError, "reg_bias"),
        (dict(biases="yes"), TypeError, "biases"),
        (dict(reg_weighting="rows"), ValueError, "reg_weighting"),
        (dict(reg_weighting=-1.0), ValueError, "reg_weighting"),
        (dict(dtype=np.int32), TypeError, "dtype"),
        (dict(dtype="float16"), TypeError, "dtype"),
        (dict(n_threads=0), ValueError, "n_threads"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(tol=-1e-3), ValueError, "tol"),
        (dict(random_state="seed"), TypeError, "random_state"),
        (dict(progress=None), TypeError, "progress"),
        (dict(callbacks=[1]), TypeError, "callable"),
        (dict(early_stopping=0), ValueError, "early_stopping"),
        (dict(unknown="zero"), ValueError, "unknown"),
        (dict(clip="no"), TypeError, "clip"),
        (dict(solver_options=[("a", 1)]), TypeError, "solver_options"),
        (dict(solver_options={"no_such_option": 1}), ValueError, "no_such_option"),
        (dict(solver_options={"x0": None}), ValueError, "x0"),
    ],
)
def test_bad_parameters_raise_before_work(data, params, exc, match):
    kw = dict(FAST)
    kw.update(params)
    with pytest.raises(exc, match=match):
        MatrixFactorization(**kw).fit(data)


def test_early_stopping_needs_eval_set(data):
    with pytest.raises(ValueError, match="eval_set"):
        MatrixFactorization(early_stopping=3, **FAST).fit(data)


def test_get_set_params_and_repr():
    m = MatrixFactorization(rank=8, solver="als")
    p = m.get_params()
    assert p["rank"] == 8 and p["solver"] == "als" and p["dtype"] is np.float32
    assert set(p) == set(MatrixFactorization._get_param_names())
    assert m.set_params(rank=4, reg=0.2) is m and m.rank == 4 and m.reg == 0.2
    with pytest.raises(ValueError, match="invalid parameter 'ranks'"):
        m.set_params(ranks=3)
    r = repr(m)
    assert r.startswith("MatrixFactorization(") and "rank=4" in r and "solver='als'" in r and "biases" not in r


def test_sklearn_clone():
    clone = pytest.importorskip("sklearn.base").clone
    m = MatrixFactorization(rank=5, reg=0.3, solver="sgd", solver_options={"schedule": "constant"})
    c = clone(m)
    assert c is not m and c.get_params() == m.get_params()


def test_not_fitted():
    m = MatrixFactorization()
    for call in (lambda: m.predict(1, 2), lambda: m.recommend(1), lambda: m.save("x.npz"),
                 lambda: m.fold_in([1], [3.0]), lambda: m.similar_items(1)):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


# ---------------------------------------------------------------------------- inputs
def test_as_ratings_forms(data):
    df = data.to_dataframe()
    a = as_ratings(df)
    b = as_ratings(data.to_scipy())
    c = as_ratings((df["user"].to_numpy(), df["item"].to_numpy(), df["rating"].to_numpy()))
    for r in (a, b, c):
        assert r.nnz == data.nnz
        np.testing.assert_array_equal(r.values, data.values)
    assert as_ratings(data, np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="Ratings"):
        as_ratings(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="Ratings"):
        as_ratings("ratings.csv")


def test_fit_does_not_modify_input(data):
    before = (data.users.copy(), data.items.copy(), data.values.copy())
    df = data.to_dataframe()
    df_before = df.copy()
    MatrixFactorization(rank=3, **FAST).fit(df, eval_set=data)
    for a, b in zip(before, (data.users, data.items, data.values)):
        np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(df, df_before)


def test_eval_set_mapped_and_unknown_dropped(data, caplog):
    df = data.to_dataframe()
    train = df.iloc[100:]
    ev = pd.concat([df.iloc[:100], pd.DataFrame({"user": [999, 0], "item": [0, 999], "rating": [3.0, 4.0]})])
    train_r = as_ratings(train)
    ev_known = ev[ev["user"].isin(train_r.user_ids) & ev["item"].isin(train_r.item_ids)]
    with caplog.at_level("INFO", logger="fastmf"):
        m = MatrixFactorization(rank=3, **FAST).fit(train, eval_set=ev)
    assert m.n_eval_dropped_ == len(ev) - len(ev_known) >= 2
    assert "dropped" in caplog.text
    # the recorded validation RMSE is the RMSE of the known eval ratings (clipped)
    assert m.history_[-1]["val_rmse"] == pytest.approx(m.evaluate(ev_known)["rmse"], rel=1e-5)
    with pytest.raises(ValueError, match="none of the"):
        MatrixFactorization(rank=3, **FAST).fit(train, eval_set=([999], [999], [3.0]))


def test_string_ids(data):
    df = data.to_dataframe()
    df["user"] = "u" + df["user"].astype(str)
    df["item"] = "i" + df["item"].astype(str)
    m = MatrixFactorization(rank=3, **FAST).fit(df)
    assert m.user_ids_.dtype.kind in "OU"
    u, i = df["user"].iloc[0], df["item"].iloc[0]
    assert np.isfinite(m.predict(u, i))
    items, scores = m.recommend(u, n=3)
    assert all(isinstance(x, str) and x.startswith("i") for x in items.tolist())
    with pytest.warns(UnknownIdWarning):
        assert m.predict(5, i) == pytest.approx(m.predict("nobody", i))  # int id vs str ids: unknown


# ---------------------------------------------------------------------------- predict
def test_predict_formula(model, data):
    rng = np.random.default_rng(0)
    uc = rng.integers(0, model.n_users_, 50)
    ic = rng.integers(0, model.n_items_, 50)
    expect = dense_scores(model)[uc, ic]
    got = model.predict(model.user_ids_[uc], model.item_ids_[ic], clip=False)
    np.testing.assert_allclose(got, expect, rtol=1e-5)
    lo, hi = model.rating_scale_
    np.testing.assert_allclose(model.predict(model.user_ids_[uc], model.item_ids_[ic]), np.clip(expect, lo, hi),
                               rtol=1e-5)
    assert isinstance(model.predict(model.user_ids_[0], model.item_ids_[0]), float)
    # a scalar broadcasts against an array
    np.testing.assert_allclose(model.predict(model.user_ids_[0], model.item_ids_[:5], clip=False),
                               dense_scores(model)[0, :5], rtol=1e-5)
    with pytest.raises(ValueError, match="different lengths"):
        model.predict([0, 1], [0, 1, 2])


def test_rating_scale_used_for_clip(model, data):
    assert model.rating_scale_ == data.rating_scale
    df = data.to_dataframe()  # no declared scale: the observed range is used
    m = MatrixFactorization(rank=2, **FAST).fit(df)
    assert m.rating_scale_ == (float(df["rating"].min()), float(df["rating"].max()))


def test_unknown_policies(model):
    u0, i0 = model.user_ids_[0], model.item_ids_[0]
    mu, b0, c0 = model.global_mean_, float(model.user_biases_[0]), float(model.item_biases_[0])
    with pytest.warns(UnknownIdWarning, match="3 of 3"):
        got = model.predict([u0, -5, -5], [-7, i0, -7], unknown="mean", clip=False)
    np.testing.assert_allclose(got, [mu + b0, mu + c0, mu], rtol=1e-6)
    with pytest.warns(UnknownIdWarning):
        got = model.predict([u0, -5, u0], [i0, i0, i0], unknown="nan", clip=False)
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()
    with pytest.raises(KeyError, match="unknown user id -5"):
        model.predict([u0, -5], [i0, i0], unknown="raise")
    with pytest.raises(KeyError, match="unknown item id 12345"):
        model.predict(u0, 12345, unknown="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when every id is known
        model.predict([u0], [i0])
    with pytest.raises(ValueError, match="unknown"):
        model.predict(u0, i0, unknown="zero")


def test_score_and_evaluate(model, data):
    pred = model.predict(data.user_ids[data.users], data.item_ids[data.items])
    err = pred - data.values
    ev = model.evaluate(data)
    assert ev["rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)))
    assert ev["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert ev["n"] == data.nnz and ev["n_unknown"] == 0
    assert model.score(data) == -ev["rmse"]  # higher is better (scikit-learn's convention)
    extra = (np.array([-1, data.user_ids[0]]), np.array([data.item_ids[0], data.item_ids[1]]), np.array([3.0, 4.0]))
    ev2 = model.evaluate(extra, unknown="nan")
    assert ev2["n"] == 1 and ev2["n_unknown"] == 1


# ---------------------------------------------------------------------------- recommend
def brute_top(model, users_codes, n, exclude_seen):
    S = dense_scores(model)[users_codes]
    if exclude_seen:
        for r, u in enumerate(users_codes):
            S[r, model.seen_items_[model.seen_indptr_[u]:model.seen_indptr_[u + 1]]] = -np.inf
    order = np.argsort(-S, axis=1, kind="stable")[:, :n]
    return order, np.take_along_axis(S, order, axis=1)


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("block_size", [None, 1, 45, 10_000])
def test_recommend_matches_brute_force(model, exclude_seen, block_size):
    codes = np.array([0, 5, 17, 59, 5])
    items, scores = model.recommend(model.user_ids_[codes], n=7, exclude_seen=exclude_seen, block_size=block_size)
    order, best = brute_top(model, codes, 7, exclude_seen)
    np.testing.assert_array_equal(items, model.item_ids_[order])
    np.testing.assert_allclose(scores, best, rtol=1e-5)
    assert items.shape == scores.shape == (5, 7) and scores.dtype == np.float64
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_recommend_single_user_and_seen(model):
    u = model.user_ids_[3]
    items, scores = model.recommend(u, n=5)
    assert items.shape == (5,) and scores.shape == (5,)
    seen = set(model.item_ids_[model.seen_items_[model.seen_indptr_[3]:model.seen_indptr_[4]]].tolist())
    assert not seen & set(items.tolist())
    # all items: padding with seen items at -inf
    items, scores = model.recommend(u, n=model.n_items_)
    assert np.isneginf(scores).sum() == len(seen)
    assert set(items[np.isneginf(scores)].tolist()) == seen
    with pytest.raises(ValueError, match="exceeds"):
        model.recommend(u, n=model.n_items_ + 1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        model.recommend(u, n=0)


def test_recommend_unknown_user(model):
    with pytest.warns(UnknownIdWarning, match="non-personalised"):
        items, scores = model.recommend([-1], n=3)
    order = np.argsort(-model.item_biases_.astype(np.float64), kind="stable")[:3]
    np.testing.assert_array_equal(items[0], model.item_ids_[order])
    np.testing.assert_allclose(scores[0], model.global_mean_ + model.item_biases_[order], rtol=1e-6)
    strict = MatrixFactorization(**{**model.get_params(), "unknown": "raise"})
    strict.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    with pytest.raises(KeyError, match="unknown user id -1"):
        strict.recommend(-1)


def test_recommend_memory_is_blocked(model, monkeypatch):
    """With a small block budget no score block exceeds it."""
    import fastmf.serving

    shapes = []
    orig = fastmf.serving.top_n

    def spy(S, n):
        shapes.append(S.shape)
        return orig(S, n)

    monkeypatch.setattr(fastmf.serving, "top_n", spy)
    model.recommend(model.user_ids_, n=3, block_size=100)
    assert len(shapes) == int(np.ceil(model.n_users_ / (100 // model.n_items_)))
    assert max(a * b for a, b in shapes) <= 100


def test_similar_items(model):
    Q = model.item_factors_.astype(np.float64)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    S = Qn @ Qn.T
    np.fill_diagonal(S, -np.inf)
    codes = np.array([0, 3, 39])
    items, sims = model.similar_items(model.item_ids_[codes], n=4, block_size=50)
    order = np.argsort(-S[codes], axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(items, model.item_ids_[order])
    np.testing.assert_allclose(sims, np.take_along_axis(S[codes], order, 1), rtol=1e-5)
    assert model.item_ids_[0] not in model.similar_items(model.item_ids_[0], n=5)[0]
    with pytest.raises(KeyError, match="unknown item id"):
        model.similar_items(-3)


# ---------------------------------------------------------------------------- fold-in
@pytest.mark.parametrize("reg_weighting", ["count", "uniform", "sqrt-count", 0.3])
@pytest.mark.parametrize("biases", [True, False])
def test_fold_in_is_the_exact_row_minimiser(data, reg_weighting, biases):
    m = MatrixFactorization(rank=3, reg=0.3, reg_bias=0.2, biases=biases, reg_weighting=reg_weighting,
                            dtype=np.float64, **FAST).fit(data)
    rng = np.random.default_rng(1)
    codes = np.sort(rng.choice(m.n_items_, 8, replace=False))
    ratings = rng.uniform(1, 5, size=8)
    p, b = m.fold_in(m.item_ids_[codes], ratings)
    # the new user's row of the training objective, through the dense reference
    one = Ratings.from_codes(np.zeros(8, int), codes, ratings, 1, m.n_items_, dtype=np.float64)
    ref = DenseMF.from_ratings(one, 3, reg=0.3, reg_bias=0.2, biases=biases, mu=m.global_mean_,
                               reg_weighting=reg_weighting)
    x = pack(p[None, :], m.item_factors_, np.array([b]) if biases else None, m.item_biases_ if biases else None)
    g = ref.jac(x)
    gp = g[:3]
    assert np.linalg.norm(gp) < 1e-10 * max(1.0, np.linalg.norm(ratings))
    if biases:
        gb = g[3 + m.n_items_ * 3]
        assert abs(gb) < 1e-10 * max(1.0, np.linalg.norm(ratings))
    else:
        assert b == 0.0
    # predictions for the new user use mu + b + c + p.q
    t = m.item_ids_[[0, 1]]
    expect = m.global_mean_ + b + m.item_factors_[[0, 1]] @ p
    if biases:
        expect += m.item_biases_[[0, 1]]
    np.testing.assert_allclose(m.predict_new_user(m.item_ids_[codes], ratings, t, clip=False), expect, rtol=1e-10)


def test_fold_in_of_a_training_user_minimises_its_row(data):
    """Folding in a training user's own ratings gives a row at least as good (for that user's
    row objective) as the fitted row and as nearby perturbations of it; and it is idempotent."""
    m = MatrixFactorization(rank=3, reg=0.3, dtype=np.float64, **FAST).fit(data)
    u = 4
    lo, hi = data.user_indptr[u], data.user_indptr[u + 1]
    items, ratings = data.item_ids[data.items[lo:hi]], data.values[lo:hi].astype(np.float64)
    codes = data.items[lo:hi]
    Q, c, mu, w = m.item_factors_[codes], m.item_biases_[codes], m.global_mean_, hi - lo

    def J(p, b):
        e = ratings - (mu + b + c + Q @ p)
        return 0.5 * e @ e + 0.5 * 0.3 * w * (p @ p + b * b)

    p, b = m.fold_in(items, ratings)
    assert J(p, b) <= J(m.user_factors_[u], m.user_biases_[u]) + 1e-12
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert J(p, b) <= J(p + 1e-3 * rng.normal(size=3), b + 1e-3 * rng.normal())
    m.user_factors_[u], m.user_biases_[u] = p, b
    p2, b2 = m.fold_in(items, ratings)
    np.testing.assert_allclose(p2, p, rtol=1e-12)
    assert b2 == pytest.approx(b, rel=1e-12)


def test_fold_in_input_checks(model):
    ids = model.item_ids_
    with pytest.raises(ValueError, match="different lengths"):
        model.fold_in(ids[:3], [1.0, 2.0])
    with pytest.raises(ValueError, match="duplicates"):
        model.fold_in([ids[0], ids[0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        model.fold_in(ids[:2], [1.0, np.nan])
    with pytest.raises(ValueError, match="none of the rated items"):
        model.fold_in([-1, -2], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        model.fold_in([], [])
    with pytest.warns(UnknownIdWarning, match="ignores 1"):
        p, b = model.fold_in([ids[0], -9], [4.0, 1.0])
    np.testing.assert_allclose(model.fold_in([ids[0]], [4.0])[0], p)


def test_recommend_new_user(model):
    ids = model.item_ids_
    rated = ids[:5]
    r = np.array([5.0, 4.0, 1.0, 2.0, 3.0])
    items, scores = model.recommend_new_user(rated, r, n=6)
    assert not set(items.tolist()) & set(rated.tolist())
    p, b = model.fold_in(rated, r)
    full = model.global_mean_ + b + model.item_biases_ + model.item_factors_.astype(np.float64) @ p
    full[:5] = -np.inf
    order = np.argsort(-full, kind="stable")[:6]
    np.testing.assert_array_equal(items, ids[order])
    np.testing.assert_allclose(scores, full[order], rtol=1e-6)


# ---------------------------------------------------------------------------- warm start, threads, history
def test_warm_start_continues(data):
    m = MatrixFactorization(rank=3, solver="sgd", max_iter=3, progress=False, random_state=0).fit(data)
    loss_first = m.history_[-1]["loss"]
    P_before = m.user_factors_.copy()
    m.fit(data, warm_start=True)
    assert m.history_[0]["loss"] <= loss_first * 1.05  # continues near where it stopped, not from scratch
    cold = MatrixFactorization(rank=3, solver="sgd", max_iter=1, progress=False, random_state=0).fit(data)
    assert m.history_[0]["loss"] < cold.history_[0]["loss"]
    assert not np.array_equal(P_before, m.user_factors_)


def test_warm_start_adds_new_ids(data):
    m = MatrixFactorization(rank=3, **FAST).fit(data)
    df = data.to_dataframe()
    new = pd.DataFrame({"user": [1000, 1000, 1001], "item": [data.item_ids[0], 5000, 5000],
                        "rating": [4.0, 3.0, 2.0]})
    m.fit(pd.concat([df, new]), warm_start=True)
    assert m.n_users_ == data.n_users + 2 and m.n_items_ == data.n_items + 1
    assert {1000, 1001} <= set(m.user_ids_.tolist()) and 5000 in m.item_ids_.tolist()
    with pytest.raises(ValueError, match="same rank"):
        m.set_params(rank=4).fit(data, warm_start=True)
    m.set_params(rank=3)
    with pytest.raises(ValueError, match="biases"):
        m.set_params(biases=False).fit(data, warm_start=True)
    with pytest.raises(NotFittedError):
        MatrixFactorization(**FAST).fit(data, warm_start=True)


def test_n_threads_scoped_to_the_call(data):
    max_threads = numba.config.NUMBA_NUM_THREADS
    if max_threads < 2:
        pytest.skip("needs 2 numba threads")
    from threadpoolctl import threadpool_info

    def blas_threads():
        return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})

    seen, blas = [], []
    blas_before = blas_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        def cb(rec):
            seen.append(numba.get_num_threads())
            blas.append(blas_threads())

        m = MatrixFactorization(rank=3, n_threads=1, callbacks=cb, **FAST).fit(data)
        assert seen and set(seen) == {1}
        assert numba.get_num_threads() == 2
        if blas_before:  # BLAS limited during the call, restored afterwards
            assert all(b == [1] for b in blas)
            assert blas_threads() == blas_before
        m.recommend(m.user_ids_[:3], n=2)
        m.predict(m.user_ids_[:3], m.item_ids_[:3])
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(previous)


def test_callbacks_history_and_result(data):
    calls = []
    m = MatrixFactorization(rank=3, callbacks=[calls.append], **{**FAST, "max_iter": 4}).fit(data, eval_set=data)
    assert len(calls) == len(m.history_) == m.n_iter_ == 4
    assert all(set(("iteration", "loss", "elapsed", "val_rmse")) <= set(r) for r in m.history_)
    assert m.fit_time_ > 0 and m.result_.nit == 4
    stop = MatrixFactorization(rank=3, callbacks=lambda rec: rec["iteration"] >= 2,
                               **{**FAST, "max_iter": 10}).fit(data)
    assert stop.n_iter_ == 2


def test_progress_false_is_silent(data, capsys):
    MatrixFactorization(rank=3, **FAST).fit(data)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_warm_start_refuses_mixed_id_kinds(data):
    m = MatrixFactorization(rank=3, **FAST).fit(data)
    df = data.to_dataframe()
    df["user"] = "u" + df["user"].astype(str)
    with pytest.raises(ValueError, match="same kind"):
        m.fit(df, warm_start=True)


def test_recommend_mixed_known_and_unknown_users(model):
    codes = np.array([2, 7])
    with pytest.warns(UnknownIdWarning):
        items, scores = model.recommend([model.user_ids_[2], -1, model.user_ids_[7]], n=4)
    order, best = brute_top(model, codes, 4, True)
    np.testing.assert_array_equal(items[[0, 2]], model.item_ids_[order])
    np.testing.assert_allclose(scores[[0, 2]], best, rtol=1e-5)


def test_min_ratings_filter(model):
    counts = np.bincount(model.seen_items_, minlength=model.n_items_)
    k = int(np.median(counts))
    rare = counts < k
    assert rare.any() and (~rare).sum() >= 6
    codes = np.array([1, 8])
    items, scores = model.recommend(model.user_ids_[codes], n=4, min_ratings=k)
    S = dense_scores(model)[codes]
    for r, u in enumerate(codes):
        S[r, model.seen_items_[model.seen_indptr_[u]:model.seen_indptr_[u + 1]]] = -np.inf
    S[:, rare] = -np.inf
    order = np.argsort(-S, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(items, model.item_ids_[order])
    rare_ids = set(model.item_ids_[rare].tolist())
    assert np.isfinite(scores).any()
    assert not set(items[np.isfinite(scores)].tolist()) & rare_ids  # rare items only as -inf padding
    sim, s = model.similar_items(model.item_ids_[:3], n=3, min_ratings=k)
    assert np.isfinite(s).all() and not set(sim.ravel().tolist()) & rare_ids
    new, s = model.recommend_new_user(model.item_ids_[:3], [5.0, 1.0, 3.0], n=3, min_ratings=k)
    assert np.isfinite(s).all() and not set(new.tolist()) & rare_ids
    # min_ratings=0 or None: no filter
    np.testing.assert_array_equal(model.recommend(model.user_ids_[1], n=4, min_ratings=0)[0],
                                  model.recommend(model.user_ids_[1], n=4)[0])
    with pytest.raises(ValueError, match="min_ratings"):
        model.recommend(model.user_ids_[1], min_ratings=-1)


def test_top_n_ties_prefer_lower_columns():
    rng = np.random.default_rng(0)
    S = rng.integers(0, 4, size=(50, 30)).astype(np.float32)  # many ties
    S[:, 5:] = np.where(rng.random((50, 25)) < 0.5, -np.inf, S[:, 5:])
    for n in (1, 3, 17, 30):
        idx, val = MatrixFactorization._top_n(S, n)
        order = np.lexsort((np.broadcast_to(np.arange(30), S.shape), -S), axis=-1)[:, :n]
        np.testing.assert_array_equal(idx, order)
        np.testing.assert_array_equal(val, np.take_along_axis(S, order, 1))
