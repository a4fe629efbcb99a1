"""FactorModel and the modules that work on it (serving, foldin, persistence), IdIndex,
the data-layer conversion, and the fitted-hyperparameter contract of fold-in."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import fastmf
import fastmf.model
from fastmf import foldin, persistence, serving
from fastmf.data.convert import as_ratings, to_code_space, to_union_code_space
from fastmf.data.ids import IdIndex
from fastmf.data.ratings import Ratings
from fastmf.data.synthetic import synthetic
from fastmf.fitted import FactorModel, UnknownIdWarning
from fastmf.model import MatrixFactorization

FAST = dict(solver="als", max_iter=2, progress=False, random_state=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(50, 30, 700, rank=3, random_state=5)


@pytest.fixture(scope="module")
def est(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MatrixFactorization(rank=3, reg=0.3, **FAST).fit(data)


def small_model(**changes) -> FactorModel:
    """3 users (ids 10, 20, 30) x 4 items ("a".."d"), rank 2, by hand."""
    P = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    Q = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5], [0.0, 0.0]])
    kw = dict(P=P, Q=Q, b=np.array([0.1, -0.1, 0.0]), c=np.array([0.0, 0.2, -0.2, 0.4]), mu=3.0,
              users=np.array([10, 20, 30]), items=np.array(["a", "b", "c", "d"]),
              seen_indptr=np.array([0, 1, 1, 3]), seen_items=np.array([3, 0, 1], dtype=np.int32),
              rating_scale=(1, 5), solver="als", reg=0.5)
    kw.update(changes)
    return FactorModel(**kw)


# ---------------------------------------------------------------------------- FactorModel
def test_factor_model_construction_and_checks():
    fm = small_model()
    assert isinstance(fm.users, IdIndex) and fm.n_users == 3 and fm.n_items == 4
    assert fm.rank == 2 and fm.biases and fm.rating_scale == (1.0, 5.0) and isinstance(fm.mu, float)
    assert fm.fitted_params()["reg"] == 0.5 and fm.reg_bias_value == 0.5
    with pytest.raises(Exception):
        fm.mu = 4.0  # frozen
    assert fm.replace(mu=4.0).mu == 4.0 and fm.mu == 3.0
    with pytest.raises(ValueError, match="user ids"):
        small_model(users=np.array([10, 20]))
    with pytest.raises(ValueError, match="both"):
        small_model(c=None)
    with pytest.raises(ValueError, match="seen_indptr"):
        small_model(seen_indptr=np.array([0, 3]))
    with pytest.raises(ValueError, match="same number of columns"):
        small_model(Q=np.zeros((4, 3)))


def test_serving_functions_on_a_factor_model():
    fm = small_model()
    # user 30 (row 2) with item "b" (row 1): 3 + 0 + 0.2 + (1, 1).(0, 2)
    assert serving.predict(fm, 30, "b") == pytest.approx(5.2)
    assert serving.predict(fm, 30, "b", clip=(1.0, 5.0)) == 5.0
    with pytest.warns(UnknownIdWarning):
        out = serving.predict(fm, [10, 99], ["a", "a"])
    np.testing.assert_allclose(out, [3.0 + 0.1 + 1.0, 3.0])
    with pytest.raises(KeyError, match="unknown user id 99"):
        serving.predict(fm, 99, "a", unknown="raise")
    # user 10 scores a 4.1, b 3.3, c 3.4, d 3.5; it saw "d": excluded unless exclude_seen=False
    items, scores = serving.recommend(fm, 10, n=2)
    np.testing.assert_array_equal(items, ["a", "c"])
    np.testing.assert_allclose(scores, [4.1, 3.4])
    np.testing.assert_array_equal(serving.recommend(fm, 10, n=2, exclude_seen=False)[0], ["a", "d"])
    np.testing.assert_array_equal(serving.recommend(fm, [10], n=1, min_ratings=1)[0], [["a"]])
    sims, vals = serving.similar_items(fm, "a", n=2)
    assert sims[0] == "c" and vals[0] == pytest.approx(1 / np.sqrt(2))
    ev = serving.evaluate(fm, ([30], ["b"], [5.0]))
    assert ev["n"] == 1 and ev["rmse"] == pytest.approx(0.2)


def test_estimator_exposes_its_factor_model(est):
    fm = est.model_
    assert isinstance(fm, FactorModel)
    assert est.user_factors_ is fm.P and est.item_biases_ is fm.c and est.user_ids_ is fm.user_ids
    assert fm.solver == "als" and fm.reg == 0.3 and fm.rank == 3
    u, i = est.user_ids_[:5], est.item_ids_[:5]
    np.testing.assert_array_equal(est.predict(u, i), serving.predict(fm, u, i, clip=fm.rating_scale))


def test_hand_assembled_estimator():
    m = MatrixFactorization(rank=2)
    m.user_factors_ = np.zeros((2, 1))
    m.item_factors_ = np.zeros((3, 1))
    m.global_mean_ = 3.0
    m.user_ids_ = np.array([1, 2])
    assert not hasattr(m, "model_")
    with pytest.raises(fastmf.NotFittedError):
        m.predict(1, 7)
    m.item_ids_ = np.array([7, 8, 9])
    m.rating_scale_ = (1.0, 5.0)
    assert m.predict(1, 7) == 3.0 and isinstance(m.model_, FactorModel) and m.model_.b is None


# ---------------------------------------------------------------------------- fold-in
def test_fold_in_uses_the_fitted_hyperparameters(est, data):
    items, ratings = data.item_ids[:6], np.array([5.0, 4.0, 1.0, 3.0, 2.0, 4.5])
    p0, b0 = est.fold_in(items, ratings)
    pred0 = est.predict_new_user(items, ratings, data.item_ids)
    rec0 = est.recommend_new_user(items, ratings, n=5)
    est.set_params(reg=5.0, reg_bias=2.0, reg_weighting="uniform", solver="newton")
    try:
        p1, b1 = est.fold_in(items, ratings)
        np.testing.assert_array_equal(p0, p1)
        assert b0 == b1
        np.testing.assert_array_equal(pred0, est.predict_new_user(items, ratings, data.item_ids))
        np.testing.assert_array_equal(rec0[1], est.recommend_new_user(items, ratings, n=5)[1])
        est.set_params(solver="gibbs")  # a fitted ALS model keeps its fold-in
        np.testing.assert_array_equal(p0, est.fold_in(items, ratings)[0])
    finally:
        est.set_params(reg=0.3, reg_bias=None, reg_weighting="count", solver="als")
    # ...while the fitted penalty does matter: a model with another reg folds in differently
    p2, _ = foldin.fold_in(est.model_.replace(reg=5.0), items, ratings)
    assert not np.allclose(p0, p2)


def test_fold_in_of_a_gibbs_model_refuses_whatever_the_params():
    fm = small_model(solver="gibbs")
    with pytest.raises(ValueError, match="gibbs"):
        foldin.fold_in(fm, ["a"], [4.0])
    p, b = foldin.fold_in(small_model(), ["a", "b"], [4.0, 2.0])
    assert p.shape == (2,) and isinstance(b, float)


def test_saved_file_records_the_fitted_hyperparameters(est, data, tmp_path):
    items, ratings = data.item_ids[:6], np.array([5.0, 4.0, 1.0, 3.0, 2.0, 4.5])
    before = est.fold_in(items, ratings)[0]
    est.set_params(reg=5.0)
    try:
        loaded = MatrixFactorization.load(est.save(tmp_path / "m.npz"))
    finally:
        est.set_params(reg=0.3)
    assert loaded.reg == 0.3 and loaded.model_.reg == 0.3
    np.testing.assert_array_equal(before, loaded.fold_in(items, ratings)[0])
    f = persistence.load_model(tmp_path / "m.npz")
    assert f.model.solver == "als" and f.n_iter == est.n_iter_


def test_pickle_keeps_the_factor_model(est, data):
    clone = pickle.loads(pickle.dumps(est))
    assert clone.model_.users._index is None  # the pandas index is rebuilt, not pickled
    u, i = data.user_ids[:4], data.item_ids[:4]
    np.testing.assert_array_equal(clone.predict(u, i), est.predict(u, i))


# ---------------------------------------------------------------------------- IdIndex
def test_id_index_semantics():
    idx = IdIndex(np.array([3, 5, 9]))
    assert len(idx) == 3 and idx.codes(5) == 1
    np.testing.assert_array_equal(idx.codes([9.0, 3.0]), [2, 0])  # float ids address int ids
    np.testing.assert_array_equal(idx.codes([3.5, "x"], "ignore"), [-1, -1])  # no TypeError
    np.testing.assert_array_equal(idx.codes(["x", "y"], "ignore"), [-1, -1])
    with pytest.raises(KeyError, match="unknown user id 4 \\(2 unknown in all\\)"):
        idx.codes([4, 3, 7], what="user")
    with pytest.raises(ValueError, match="missing"):
        idx.codes(3, missing="skip")
    with pytest.raises(ValueError, match="1-D"):
        idx.codes(np.zeros((2, 2)))
    assert idx == IdIndex([3, 5, 9]) and idx != IdIndex([3, 5]) and idx != IdIndex(["3", "5", "9"])
    assert idx.union(IdIndex([1, 5])).ids.tolist() == [1, 3, 5, 9]
    with pytest.raises(TypeError, match="same kind"):
        idx.union(IdIndex(["a"]))
    codes, fidx = IdIndex.factorize(np.array(["b", "a", "b"], dtype=object), "item ids")
    assert codes.tolist() == [1, 0, 1] and fidx.ids.tolist() == ["a", "b"]


def test_ratings_and_model_share_the_id_routine(data, est):
    r = Ratings.from_arrays([3, 5, 9], ["a", "b", "a"], [1.0, 2.0, 3.0])
    assert r.user_codes(9.0) == 2  # float ids now also work on Ratings
    np.testing.assert_array_equal(r.item_codes(["b", 1], missing="ignore"), [1, -1])
    assert r.user_index.equals(pd.Index([3, 5, 9]))
    assert r.user_id_index is r.user_id_index  # cached
    np.testing.assert_array_equal(est.user_codes(data.user_ids[:3].astype(float)), [0, 1, 2])
    with pytest.raises(KeyError, match="unknown item id"):
        est.item_codes("nope")


# ---------------------------------------------------------------------------- conversion
def test_deprecated_model_as_ratings_warns_and_works(data):
    with pytest.warns(DeprecationWarning, match="fastmf.as_ratings"):
        fn = fastmf.model.as_ratings
    assert fn is fastmf.as_ratings is as_ratings
    assert fn(data.to_dataframe()).nnz == data.nnz
    with pytest.warns(DeprecationWarning):
        assert fastmf.model.DEFAULT_BLOCK_SIZE == serving.DEFAULT_BLOCK_SIZE
    with pytest.raises(AttributeError):
        fastmf.model.no_such_name  # noqa: B018


def test_code_spaces_do_not_modify_the_callers_data():
    train = Ratings.from_arrays([1, 2, 2], [10, 10, 11], [1.0, 2.0, 3.0])
    other = Ratings.from_arrays([2, 3], [11, 10], [4.0, 5.0])
    users_before = other.users.copy()
    mapped, dropped = to_code_space(other, train, "eval_set")
    assert dropped == 1 and mapped.nnz == 1 and mapped.user_ids is train.user_ids
    np.testing.assert_array_equal(other.users, users_before)
    union, urows, irows = to_union_code_space(other, train.user_id_index, train.item_id_index, np.float32)
    assert union.user_ids.tolist() == [1, 2, 3] and urows.tolist() == [0, 1] and irows.tolist() == [0, 1]
    with pytest.raises(ValueError, match="same kind"):
        to_union_code_space(Ratings.from_arrays(["x"], [10], [1.0]), train.user_id_index, train.item_id_index,
                            np.float32)
