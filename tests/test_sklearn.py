"""``MatrixFactorization`` as a scikit-learn estimator (scikit-learn >= 1.6, from the dev extra).

clone, GridSearchCV, RandomizedSearchCV, cross_val_score and Pipeline on the two
rows-are-samples forms (a DataFrame of ratings; (user, item) pairs with y), the
applicable checks of ``sklearn.utils.estimator_checks``, the tags, ``score`` as the
negative RMSE, and fastmf without scikit-learn (a subprocess that hides it).
Fits are tiny: ALS, rank 4-8, 3-4 iterations, synthetic ratings.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from inspect import signature

import numpy as np
import pandas as pd
import pytest
import sklearn
import sklearn.utils.estimator_checks as checks
from scipy.stats import loguniform
from sklearn.base import clone, is_regressor
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import Tags, get_tags
from sklearn.utils.validation import check_is_fitted

from fastmf.data.synthetic import synthetic
from fastmf.fitted import UnknownIdWarning
from fastmf.model import MatrixFactorization

pytestmark = pytest.mark.filterwarnings("ignore:.*did not converge")

CV = KFold(3, shuffle=True, random_state=0)


def make(**kw) -> MatrixFactorization:
    params = dict(solver="als", rank=8, max_iter=4, progress=False, random_state=0)
    params.update(kw)
    return MatrixFactorization(**params)


@pytest.fixture(scope="module")
def ratings():
    return synthetic(150, 100, 3000, rank=4, noise=0.4, random_state=1)


@pytest.fixture(scope="module")
def df(ratings) -> pd.DataFrame:
    # rows in random order: the synthetic data comes sorted by user, and unshuffled
    # folds of user-sorted rows would hold users unknown to training
    return ratings.to_dataframe().sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def pairs_y(df):
    return df[["user", "item"]].to_numpy(), df["rating"].to_numpy()


def assert_same_params(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (a[k] is b[k]), k


# ---------------------------------------------------------------------------- clone, protocol
def test_clone_round_trip(ratings):
    m = make(reg=0.3, solver_options={}, callbacks=[print])
    c = clone(m)
    assert c is not m and type(c) is MatrixFactorization
    assert_same_params(c.get_params(), m.get_params())
    assert c.solver_options is not m.solver_options  # clone deep-copies non-estimator params
    m.fit(ratings)
    assert m.__sklearn_is_fitted__() and not clone(m).__sklearn_is_fitted__()
    check_is_fitted(m)
    with pytest.raises(SkNotFittedError):
        check_is_fitted(clone(m))
    assert_same_params(clone(m).get_params(), m.get_params())


class _Tunable:
    """A callback holding parameters of its own (an estimator-like parameter)."""

    def __init__(self, patience=1):
        self.patience = patience

    def get_params(self, deep=True):
        return {"patience": self.patience}

    def set_params(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __call__(self, record):
        return False


def test_nested_params():
    cb = _Tunable(2)
    m = make(callbacks=cb)
    deep = m.get_params(deep=True)
    assert deep["callbacks__patience"] == 2 and deep["callbacks"] is cb
    assert "callbacks__patience" not in m.get_params(deep=False)
    assert m.set_params(callbacks__patience=5, rank=4) is m and cb.patience == 5 and m.rank == 4
    with pytest.raises(ValueError, match="rank has no parameters"):
        m.set_params(rank__x=1)
    with pytest.raises(ValueError, match="invalid parameter 'nope'"):
        m.set_params(nope__x=1)
    assert m.rank == 4  # nothing set by a failing call


def test_fit_and_score_take_y_second():
    for method in (MatrixFactorization.fit, MatrixFactorization.score, MatrixFactorization.evaluate):
        assert list(signature(method).parameters)[1:3] == ["X", "y"]


def test_tags():
    m = make()
    tags = get_tags(m)
    assert isinstance(tags, Tags) and tags == m.__sklearn_tags__()
    assert tags.estimator_type == "regressor" and is_regressor(m)
    assert tags.target_tags.required is False and tags.target_tags.single_output
    assert tags.target_tags.multi_output is False
    it = tags.input_tags
    assert it.two_d_array and it.categorical and it.string
    assert not (it.sparse or it.allow_nan or it.pairwise or it.one_d_array)
    assert tags.requires_fit and not tags.non_deterministic and tags.regressor_tags.poor_score
    assert tags.transformer_tags is None and tags.classifier_tags is None


# The checks of sklearn.utils.estimator_checks that concern the API of the estimator
# object itself.  The others feed generic numeric regression data (X of shape (n, 3+)
# of floats), which is not (user, item) pairs: their equivalents for rating data are
# the tests of this file.  check_estimators_unfitted is left out because it wants
# sklearn.exceptions.NotFittedError itself (fastmf's NotFittedError is a ValueError
# and an AttributeError, not that class: scikit-learn is optional).
API_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_parameters_default_constructible",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
]


@pytest.mark.parametrize("check", API_CHECKS)
def test_estimator_checks(check):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checks report some failures as warnings
        getattr(checks, check)("MatrixFactorization", make(callbacks=_Tunable()))


# ---------------------------------------------------------------------------- model selection
def test_grid_search_picks_the_small_penalty(df):
    gs = GridSearchCV(make(), {"reg": [0.05, 50.0]}, cv=3).fit(df)
    assert gs.best_params_ == {"reg": 0.05}
    s = gs.cv_results_["mean_test_score"]
    assert s[0] > s[1] and (s < 0).all()  # negative RMSE: higher is better
    # refit on everything with the best parameters
    assert gs.best_estimator_.reg == 0.05 and gs.best_estimator_.model_.P.shape[1] == 8


def test_grid_search_pairs_and_y_same_as_dataframe(df, pairs_y):
    grid = {"reg": [0.05, 50.0]}
    a = GridSearchCV(make(), grid, cv=CV).fit(df)
    b = GridSearchCV(make(), grid, cv=CV).fit(*pairs_y)
    assert b.best_params_ == {"reg": 0.05}
    # same folds, same fits; the scores differ at most by the order of summation
    np.testing.assert_allclose(a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"], rtol=1e-12)
    np.testing.assert_array_equal(a.best_estimator_.predict(df), b.best_estimator_.predict(pairs_y[0]))


def test_randomized_search(pairs_y):
    dist = {"reg": loguniform(0.01, 100.0), "rank": [4, 8]}
    rs = RandomizedSearchCV(make(), dist, n_iter=3, cv=CV, random_state=0).fit(*pairs_y)
    res = rs.cv_results_
    assert len(res["params"]) == 3 and len({p["reg"] for p in res["params"]}) == 3
    assert rs.best_index_ == int(np.argmax(res["mean_test_score"]))
    assert rs.best_params_ == res["params"][rs.best_index_]
    assert rs.best_estimator_.get_params()["reg"] == rs.best_params_["reg"]
    assert rs.best_estimator_.model_.P.shape[1] == rs.best_params_["rank"]


def test_cross_val_score_is_negative_rmse(df, pairs_y):
    est = make(reg=0.1)
    got = cross_val_score(est, df, cv=CV)
    want = [-clone(est).fit(df.iloc[tr]).evaluate(df.iloc[te])["rmse"] for tr, te in CV.split(df)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert (got < 0).all()
    X, y = pairs_y
    np.testing.assert_allclose(cross_val_score(est, X, y, cv=CV), got, rtol=1e-12)
    # the default score is scikit-learn's "neg_root_mean_squared_error" on pairs
    np.testing.assert_allclose(cross_val_score(est, X, y, cv=CV, scoring="neg_root_mean_squared_error"), got,
                               rtol=1e-9)


def _movielens_pairs(frame: pd.DataFrame) -> np.ndarray:
    """(userId, movieId) pairs of a MovieLens-style frame (other columns dropped)."""
    return frame[["userId", "movieId"]].to_numpy()


def test_pipeline_with_function_transformer(df):
    ml = df.rename(columns={"user": "userId", "item": "movieId"}).assign(timestamp=0)
    X, y = ml.drop(columns="rating"), ml["rating"]
    pipe = Pipeline([("pairs", FunctionTransformer(_movielens_pairs)), ("mf", make())]).fit(X, y)
    direct = make().fit(_movielens_pairs(X), y.to_numpy())
    np.testing.assert_array_equal(pipe.predict(X), direct.predict(_movielens_pairs(X)))
    assert pipe.score(X, y) == direct.score(_movielens_pairs(X), y)
    assert pipe.score(X, y) == pytest.approx(-direct.evaluate(df)["rmse"], rel=1e-12)
    cv = cross_val_score(pipe, X, y, cv=CV)
    np.testing.assert_allclose(cv, cross_val_score(make(), df, cv=CV), rtol=1e-12)


# ---------------------------------------------------------------------------- input forms
def test_fit_forms_agree(df, pairs_y):
    X, y = pairs_y
    before = df.copy(deep=True), X.copy(), y.copy()
    two_cols = df[["item", "user"]].rename(columns={"item": "a", "user": "b"}).iloc[:, ::-1]  # b=user, a=item
    fits = [make().fit(df), make().fit(X, y), make().fit(df[["user", "item"]], df["rating"]),
            make().fit(two_cols, y), make().fit(X.tolist(), y.tolist())]
    for m in fits[1:]:
        np.testing.assert_array_equal(m.user_factors_, fits[0].user_factors_)
        np.testing.assert_array_equal(m.item_factors_, fits[0].item_factors_)
    pd.testing.assert_frame_equal(df, before[0])  # caller's data untouched
    np.testing.assert_array_equal(X, before[1])
    np.testing.assert_array_equal(y, before[2])
    m = fits[0]
    assert m.score(X, y) == -m.evaluate(X, y)["rmse"] < 0
    assert m.score(X, y) == pytest.approx(m.score(df), rel=1e-12)
    ev_pairs, ev_df = m.evaluate(X, y), m.evaluate(df)
    assert ev_pairs["n"] == ev_df["n"] == len(df) and ev_pairs["mae"] == pytest.approx(ev_df["mae"], rel=1e-12)


def test_fit_input_errors(ratings, df, pairs_y):
    X, y = pairs_y
    m = make()
    with pytest.raises(TypeError, match="pass the ratings as y"):
        m.fit(X)
    with pytest.raises(TypeError, match="y must be None"):
        m.fit(ratings, y)
    with pytest.raises(TypeError, match="eval_set is keyword-only"):
        m.fit(df, df)
    with pytest.raises(ValueError, match="rating column 'rating' and y"):
        m.fit(df, y)
    with pytest.raises(ValueError, match="2999 ratings"):
        m.fit(X, y[:-1])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        m.fit(np.c_[X, X], y)
    with pytest.raises(TypeError, match="column_stack"):
        m.fit((X[:, 0], X[:, 1]), y)
    with pytest.raises(ValueError, match="cannot find the user and item columns"):
        m.fit(df.assign(extra=1).rename(columns={"user": "u"}).drop(columns="rating"), y)
    assert not m.__sklearn_is_fitted__()


def test_predict_forms_and_unknown_ids(ratings, df, pairs_y):
    m = make().fit(ratings)
    X, _ = pairs_y
    two = m.predict(X[:, 0], X[:, 1])
    np.testing.assert_array_equal(m.predict(X), two)
    np.testing.assert_array_equal(m.predict(df), two)  # rating column not read
    np.testing.assert_array_equal(m.predict(X.tolist()), two)
    assert isinstance(m.predict(1, 2), float)
    # unknown ids follow the estimator's policy, as in the two-argument form
    new = np.array([[10_000, X[0, 1]], [X[0, 0], 10_000], [10_000, 10_001]])
    with pytest.warns(UnknownIdWarning):
        got = m.predict(new, clip=False)
    mu, b, c = m.global_mean_, m.user_biases_, m.item_biases_
    want = [mu + c[m.item_codes(X[0, 1])], mu + b[m.user_codes(X[0, 0])], mu]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.warns(UnknownIdWarning):
        assert np.isnan(m.predict(new, unknown="nan")).all()
    with pytest.raises(TypeError, match="predict needs items"):
        m.predict(X[:, 0])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        m.predict(np.c_[X, X])


def test_score_is_higher_for_the_better_model(ratings):
    good, bad = make(reg=0.05).fit(ratings), make(reg=50.0).fit(ratings)
    assert good.evaluate(ratings)["rmse"] < bad.evaluate(ratings)["rmse"]
    assert good.score(ratings) > bad.score(ratings)


# ---------------------------------------------------------------------------- without scikit-learn
def test_fastmf_works_without_sklearn():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # any import of scikit-learn now raises ImportError
        import numpy as np
        import fastmf
        from fastmf.data.synthetic import synthetic
        from fastmf.model import MatrixFactorization

        r = synthetic(40, 30, 400, rank=3, random_state=0)
        df = r.to_dataframe()
        m = MatrixFactorization(solver="als", rank=4, max_iter=3, progress=False, random_state=0)
        m.set_params(reg=0.2)
        assert m.get_params()["reg"] == 0.2 and "reg=0.2" in repr(m)
        X, y = df[["user", "item"]].to_numpy(), df["rating"].to_numpy()
        a = m.fit(X, y).predict(X)
        b = MatrixFactorization(**m.get_params()).fit(df).predict(X[:, 0], X[:, 1])
        assert np.array_equal(a, b) and m.score(X, y) == -m.evaluate(X, y)["rmse"] < 0
        assert abs(m.score(X, y) + m.evaluate(df)["rmse"]) < 1e-12
        try:
            m.__sklearn_tags__()
        except ImportError:
            pass
        else:
            raise AssertionError("__sklearn_tags__ without scikit-learn")
        assert sys.modules["sklearn"] is None
        assert not any(k.startswith("sklearn.") for k in sys.modules)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_sklearn_version_is_supported():
    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    assert (major, minor) >= (1, 6)
