"""model_selection: splitters partition the ratings, cross_validate = a manual loop, searches pick the best."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastmf import MatrixFactorization, load_ml100k_fold
from fastmf.data.ratings import Ratings
from fastmf.data.synthetic import synthetic
from fastmf.metrics import ranking_metrics
from fastmf.model_selection import (
    CVResults,
    GridSearch,
    KFold,
    ML100KFolds,
    ParameterGrid,
    RandomizedSearch,
    TemporalKFold,
    UserKFold,
    check_cv,
    cross_validate,
    greater_is_better,
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        yield


@pytest.fixture(scope="module")
def data() -> Ratings:
    """Synthetic ratings with timestamps (many ties) and a few users with a single rating."""
    r = synthetic(150, 100, 3000, rank=4, random_state=3)
    rng = np.random.default_rng(5)
    # ten small users (raw ids 1000..1009) with 1, 2 or 3 ratings
    n_small = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 1])
    su = np.repeat(1000 + np.arange(10), n_small)
    si = np.concatenate([rng.choice(100, n, replace=False) for n in n_small])
    users = np.concatenate([r.user_ids[r.users], su])
    items = np.concatenate([r.item_ids[r.items], si])
    values = np.concatenate([r.values, rng.integers(1, 6, len(su)).astype(np.float32)])
    ts = rng.integers(0, 400, len(users))  # many ties in time
    return Ratings.from_arrays(users, items, values, ts, rating_scale=r.rating_scale)


def _keys(r: Ratings) -> np.ndarray:
    return np.sort(r.users.astype(np.int64) * r.n_items + r.items)


def _unknown(train: Ratings, test: Ratings) -> np.ndarray:
    has_u = np.bincount(train.users, minlength=train.n_users) > 0
    has_i = np.bincount(train.items, minlength=train.n_items) > 0
    return ~(has_u[test.users] & has_i[test.items])


def _est(**kw) -> MatrixFactorization:
    p = dict(rank=4, solver="als", max_iter=3, progress=False, random_state=0, n_threads=1)
    p.update(kw)
    return MatrixFactorization(**p)


# ---------------------------------------------------------------------------- splitters
@pytest.mark.parametrize("cls", [KFold, UserKFold])
def test_random_folds_partition_the_ratings(data, cls):
    splits = list(cls(4, random_state=0, drop_unknown=False).split(data))
    assert len(splits) == 4 == cls(4).get_n_splits()
    all_keys = _keys(data)
    tests = np.concatenate([_keys(s.test) for s in splits])
    np.testing.assert_array_equal(np.sort(tests), all_keys)  # every rating in exactly one test fold
    for s in splits:
        assert s.n_dropped == 0
        assert s.train.user_ids is data.user_ids and s.test.item_ids is data.item_ids  # one code space
        np.testing.assert_array_equal(np.sort(np.concatenate([_keys(s.train), _keys(s.test)])), all_keys)
    sizes = [s.test.nnz for s in splits]
    if cls is KFold:
        assert max(sizes) - min(sizes) <= 1
    # drop_unknown: the same folds, minus the unknown test ratings, counted
    dropped = list(cls(4, random_state=0).split(data))
    for s, d in zip(splits, dropped):
        assert d.n_dropped == int(_unknown(s.train, s.test).sum())
        assert d.test.nnz + d.n_dropped == s.test.nnz
        assert not _unknown(d.train, d.test).any()


def test_user_kfold_keeps_every_user_in_train(data):
    k = 4
    counts = data.user_counts
    assert (counts == 1).any() and (counts < k).any()  # the interesting cases exist
    splits = list(UserKFold(k, random_state=1, drop_unknown=False).split(data))
    for s in splits:
        in_train = np.bincount(s.train.users, minlength=data.n_users)
        assert np.all(in_train[counts >= 2] >= 1)
        assert np.all(in_train[counts >= k] >= k - 1)
        in_test = np.bincount(s.test.users, minlength=data.n_users)
        # each user's ratings are spread evenly over the folds
        assert np.all(in_test <= np.ceil(counts / k)) and np.all(in_test >= np.floor(counts / k))
    # a KFold over ratings does not give that guarantee on these data
    kf = list(KFold(k, random_state=1, drop_unknown=False).split(data))
    assert any((np.bincount(s.train.users, minlength=data.n_users)[counts >= 2] == 0).any() for s in kf)


def test_temporal_folds_never_train_on_the_future(data):
    splits = list(TemporalKFold(3, drop_unknown=False).split(data))
    assert len(splits) == 3
    prev_train = 0
    for s in splits:
        assert s.train.timestamps.max() <= s.test.timestamps.min()
        assert s.train.nnz > prev_train  # expanding window
        prev_train = s.train.nnz
    tests = np.sort(np.concatenate([_keys(s.test) for s in splits]))
    assert len(np.unique(tests)) == len(tests) == data.nnz - data.nnz // 4  # all but the first block
    # train of the first split = the first block = the oldest quarter
    assert splits[0].train.nnz == data.nnz // 4
    np.testing.assert_array_equal(_keys(splits[1].train), np.sort(np.concatenate([_keys(splits[0].train),
                                                                                 _keys(splits[0].test)])))
    window = list(TemporalKFold(3, max_train_size=500, drop_unknown=False).split(data))
    for w, s in zip(window, splits):
        assert w.train.nnz == 500 and w.train.timestamps.max() <= w.test.timestamps.min()
        np.testing.assert_array_equal(_keys(w.test), _keys(s.test))
    with pytest.raises(ValueError, match="timestamps"):
        next(TemporalKFold(2).split(synthetic(20, 10, 100, random_state=0)))


@pytest.mark.parametrize("cls", [KFold, UserKFold])
def test_folds_deterministic_per_seed(data, cls):
    a = [_keys(s.test) for s in cls(3, random_state=7).split(data)]
    b = [_keys(s.test) for s in cls(3, random_state=7).split(data)]
    c = [_keys(s.test) for s in cls(3, random_state=8).split(data)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(len(x) != len(z) or not np.array_equal(x, z) for x, z in zip(a, c))
    # a Generator advances: two split() calls give different folds
    g = cls(3, random_state=np.random.default_rng(7))
    first = [_keys(s.test) for s in g.split(data)]
    second = [_keys(s.test) for s in g.split(data)]
    assert any(len(x) != len(z) or not np.array_equal(x, z) for x, z in zip(first, second))


def test_split_accepts_other_inputs_and_leaves_them_untouched(data):
    df = data.to_dataframe()
    before = df.copy()
    from_df = [s.test for s in KFold(3, random_state=0).split(df)]
    from_r = [s.test for s in KFold(3, random_state=0).split(data)]
    for x, y in zip(from_df, from_r):
        np.testing.assert_array_equal(x.user_ids[x.users], y.user_ids[y.users])
        np.testing.assert_array_equal(x.values, y.values)
    assert df.equals(before)
    users = data.users.copy()
    list(UserKFold(3, random_state=0).split(data))
    np.testing.assert_array_equal(users, data.users)


def test_ml100k_folds_equal_load_ml100k_fold(shared_data, ml100k_zip):
    cv = ML100KFolds(("u1", "u2"), data_home=shared_data)
    assert cv.get_n_splits() == 2
    for fold, s in zip(("u1", "u2"), cv.split(None)):
        ref = load_ml100k_fold(fold, shared_data)
        assert s.n_dropped == ref.n_dropped
        for a, b in ((s.train, ref.train), (s.test, ref.test)):
            np.testing.assert_array_equal(a.users, b.users)
            np.testing.assert_array_equal(a.items, b.items)
            np.testing.assert_array_equal(a.values, b.values)
    with pytest.raises(ValueError, match="not ml-100k"):
        next(cv.split(synthetic(30, 20, 200, random_state=0)))
    with pytest.raises(ValueError, match="unknown ml-100k fold"):
        ML100KFolds(("u9",))


# ---------------------------------------------------------------------------- cross_validate
def test_cross_validate_equals_manual_loop(data):
    est = _est()
    params_before = est.get_params()
    cv = UserKFold(3, random_state=2)
    res = cross_validate(est, data, cv=cv, metrics=("rmse", "mae", "ndcg@5"), return_train_score=True)
    assert isinstance(res, CVResults)
    assert not hasattr(est, "user_factors_") and est.get_params() == params_before  # untouched
    for i, s in enumerate(cv.split(data)):
        m = MatrixFactorization(**est.get_params()).fit(s.train)
        ev = m.evaluate(s.test)
        assert res["test_rmse"][i] == pytest.approx(ev["rmse"], rel=1e-12)
        assert res["test_mae"][i] == pytest.approx(ev["mae"], rel=1e-12)
        assert res["test_ndcg@5"][i] == pytest.approx(ranking_metrics(m, s.test, k=5)["ndcg"], rel=1e-12)
        assert res["train_rmse"][i] == pytest.approx(m.evaluate(s.train)["rmse"], rel=1e-12)
        assert (res["n_train"][i], res["n_test"][i], res["n_dropped"][i]) == (s.train.nnz, s.test.nnz, s.n_dropped)
    assert np.all(res["fit_time"] > 0) and np.all(res["test_time"] > 0)
    assert res.mean()["test_rmse"] == pytest.approx(np.mean(res["test_rmse"]))
    assert res.std()["test_mae"] == pytest.approx(np.std(res["test_mae"]))
    frame = res.to_frame()
    assert len(frame) == 3 and "test_ndcg@5" in frame
    assert list(res.summary().index) == ["mean", "std"]


# ---------------------------------------------------------------------------- searches
def test_grid_search_picks_the_better_reg(data):
    est = _est(rank=8)
    gs = GridSearch(est, {"reg": [50.0, 0.05]}, measures=("rmse", "mae"), cv=3, random_state=4).fit(data)
    assert gs.best_params["rmse"] == {"reg": 0.05} and gs.best_params["mae"] == {"reg": 0.05}
    assert gs.best_index["rmse"] == 1
    r = gs.cv_results
    assert list(r["rank_test_rmse"]) == [2, 1]
    assert r["mean_test_rmse"][1] < r["mean_test_rmse"][0]
    assert gs.best_score["rmse"] == r["mean_test_rmse"][1]
    assert gs.refit_measure == "rmse"
    best = gs.best_estimator["rmse"]
    assert best.reg == 0.05 and best.rank == 8 and hasattr(best, "user_factors_")  # refitted on all the data
    assert best.n_users_ == data.n_users
    assert not hasattr(gs.best_estimator["mae"], "user_factors_")
    # every candidate is scored on the same folds as cross_validate with the same cv
    cvr = cross_validate(MatrixFactorization(**{**est.get_params(), "reg": 0.05}), data,
                         cv=KFold(3, random_state=4), metrics="rmse")
    np.testing.assert_allclose([r[f"split{i}_test_rmse"][1] for i in range(3)], cvr["test_rmse"], rtol=1e-12)
    assert len(r.to_frame()) == 2


def test_randomized_search_is_deterministic(data):
    dists = {"reg": [0.01, 0.1, 1.0, 10.0], "rank": [2, 4, 6]}
    a = RandomizedSearch(_est(), dists, n_iter=3, random_state=5)._candidates(np.random.default_rng(5))
    b = RandomizedSearch(_est(), dists, n_iter=3, random_state=5)._candidates(np.random.default_rng(5))
    c = RandomizedSearch(_est(), dists, n_iter=3, random_state=5)._candidates(np.random.default_rng(6))
    assert a == b and a != c
    assert len({tuple(sorted(p.items())) for p in a}) == 3  # distinct grid points
    rs = RandomizedSearch(_est(), {"reg": [0.05, 50.0], "rank": [4]}, n_iter=5, cv=2, refit=False,
                          measures=("recall@5", "rmse"), random_state=0).fit(data)
    assert len(rs.cv_results["params"]) == 2  # grid smaller than n_iter: all of it
    rec = rs.cv_results["mean_test_recall@5"]
    assert rs.best_index["recall@5"] == int(np.argmax(rec))  # higher is better for ranking metrics
    assert rs.best_index["rmse"] == int(np.argmin(rs.cv_results["mean_test_rmse"]))
    assert not hasattr(rs.best_estimator["rmse"], "user_factors_")


def test_parameter_grid():
    g = ParameterGrid({"reg": [0.1, 1.0], "rank": [4, 8]})
    assert len(g) == 4 and list(g)[0] == {"rank": 4, "reg": 0.1} and list(g)[1] == {"rank": 4, "reg": 1.0}
    assert len(ParameterGrid([{"reg": [1]}, {"rank": [2, 3]}])) == 3
    assert greater_is_better("ndcg") and not greater_is_better("RMSE")


# ---------------------------------------------------------------------------- errors
class _NeverFit:
    """Duck-typed estimator whose fit must not be reached."""

    def __init__(self, reg=0.1):
        self.reg = reg

    def get_params(self, deep=True):
        return {"reg": self.reg}

    def fit(self, X, eval_set=None):  # pragma: no cover - reaching it is the failure
        raise AssertionError("fit called")


@pytest.mark.parametrize("cv", [1, 0, True, "5", 2.5, object()])
def test_bad_cv(cv, data):
    with pytest.raises(ValueError, match="cv must be"):
        check_cv(cv)
    with pytest.raises(ValueError, match="cv must be"):
        cross_validate(_NeverFit(), data, cv=cv)


def test_errors(data):
    tiny = synthetic(3, 3, 5, random_state=0)
    with pytest.raises(ValueError, match="unknown metric 'rsme'"):
        cross_validate(_NeverFit(), data, metrics=("rsme",))
    with pytest.raises(ValueError, match="empty"):
        cross_validate(_NeverFit(), data, metrics=())
    with pytest.raises(ValueError, match="unknown metric"):
        GridSearch(_NeverFit(), {"reg": [1]}, measures="ndcg@x").fit(data)
    for grid in ({}, {"reg": []}, [], [{}]):
        with pytest.raises(ValueError, match="empty"):
            GridSearch(_NeverFit(), grid)
    with pytest.raises(ValueError, match="list of values"):
        GridSearch(_NeverFit(), {"reg": 0.1})
    with pytest.raises(ValueError, match=r"invalid parameter\(s\) \['regg'\]"):
        GridSearch(_NeverFit(), {"regg": [1.0]}, cv=2).fit(data)
    with pytest.raises(ValueError, match="invalid parameter"):
        GridSearch(_est(), {"rank": [2], "lr": [0.1]}, cv=2).fit(data)
    with pytest.raises(ValueError, match="invalid parameter"):
        RandomizedSearch(_NeverFit(), {"alpha": [1.0, 2.0]}, n_iter=1).fit(data)
    with pytest.raises(ValueError, match="refit"):
        GridSearch(_NeverFit(), {"reg": [1]}, measures="rmse", refit="mae").fit(data)
    with pytest.raises(ValueError, match="n_splits=6 exceeds the 5 ratings"):
        list(KFold(6).split(tiny))
    with pytest.raises(ValueError, match="n_splits=6 exceeds"):
        cross_validate(_NeverFit(), tiny, cv=6)
    with pytest.raises(ValueError, match="needs at least 6 ratings"):
        list(TemporalKFold(5).split(Ratings.from_arrays([0, 1, 2], [0, 1, 2], [1.0, 2.0, 3.0], [1, 2, 3])))
    with pytest.raises(ValueError, match="n_splits must be >= 2"):
        KFold(1)
    with pytest.raises(ValueError, match="n_jobs"):
        cross_validate(_NeverFit(), data, n_jobs=0)
