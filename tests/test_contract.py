"""The contract every solver passes through MatrixFactorization, parametrized over the registry.

Empty users/items, wrong dtype, DataFrame and sparse input, unknown ids, pickling, save/load,
determinism per seed (and across thread counts where the solver promises it), sklearn clone,
float32/float64, a sane fit, early stopping, callbacks that stop, progress off, bad options.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fastmf.data.ratings import Ratings
from fastmf.data.synthetic import synthetic
from fastmf import MatrixFactorization, UnknownIdWarning
from fastmf.solvers.registry import SOLVERS as REGISTRY
from fastmf.solvers.registry import get_solver_spec

SOLVERS = sorted(REGISTRY)
#: per-solver estimator parameters that keep these fits small
EXTRA = {"gibbs": dict(solver_options={"burn_in": 1})}

pytestmark = pytest.mark.filterwarnings("ignore:.*did not converge:UserWarning")


@pytest.fixture(scope="module")
def data():
    # every user and item has a rating (ids 0..m-1 / 0..n-1): Ratings, DataFrame and
    # scipy inputs then share one code space
    r = synthetic(40, 25, 500, rank=3, random_state=11)
    assert (r.user_counts > 0).all() and (r.item_counts > 0).all()
    return r


def make(solver, **kw):
    params = dict(rank=3, solver=solver, max_iter=4, progress=False, random_state=0)
    params.update(EXTRA.get(solver, {}))
    params.update(kw)
    return MatrixFactorization(**params)


def factors(m):
    return [a for a in (m.user_factors_, m.item_factors_, m.user_biases_, m.item_biases_) if a is not None]


@pytest.mark.parametrize("solver", SOLVERS)
def test_fit_is_sane(solver, data):
    m = make(solver, max_iter=10).fit(data)
    baseline = np.sqrt(np.mean((data.values.astype(np.float64) - data.global_mean) ** 2))
    assert m.evaluate(data)["rmse"] < 0.9 * baseline
    k = m.user_factors_.shape[1]
    assert k == 3 or (solver == "gibbs" and k % 3 == 0)  # gibbs stacks its kept draws
    assert m.user_factors_.shape == (data.n_users, k) and m.item_factors_.shape == (data.n_items, k)
    assert m.user_factors_.dtype == np.float32 and m.global_mean_ == pytest.approx(data.global_mean)
    assert m.n_iter_ >= 1
    # one record per iteration, plus possibly the starting point (iteration 0)
    assert len(m.history_) - m.n_iter_ in (0, 1) and m.history_[-1]["iteration"] == m.n_iter_
    assert all(np.isfinite(a).all() for a in factors(m))


@pytest.mark.parametrize("solver", SOLVERS)
def test_empty_users_and_items(solver, data):
    r = Ratings.from_codes(data.users, data.items, data.values, data.n_users + 3, data.n_items + 2)
    m = make(solver).fit(r)
    assert m.n_users_ == data.n_users + 3 and m.n_items_ == data.n_items + 2
    assert all(np.isfinite(a).all() for a in factors(m))
    empty_user, empty_item = data.n_users + 1, data.n_items + 1
    with_empty = m.predict([empty_user, 0, empty_user], [0, empty_item, empty_item])
    assert np.isfinite(with_empty).all()
    items, scores = m.recommend(empty_user, n=5)
    assert np.isfinite(scores).all()
    assert m.similar_items(empty_item, n=3)[0].shape == (3,)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [np.int64, "float16", "double precision", object])
def test_wrong_dtype_raises(solver, data, dtype):
    with pytest.raises(TypeError, match="dtype"):
        make(solver, dtype=dtype).fit(data)


@pytest.mark.parametrize("solver", SOLVERS)
def test_float64(solver, data):
    m = make(solver, dtype=np.float64).fit(data.astype(np.float32))
    assert all(a.dtype == np.float64 for a in factors(m))


@pytest.mark.parametrize("solver", SOLVERS)
def test_dataframe_and_sparse_give_the_same_model(solver, data):
    ref = make(solver).fit(data)
    from_df = make(solver).fit(data.to_dataframe())
    from_sp = make(solver).fit(data.to_scipy())
    triplets = data.to_dataframe()
    from_tuple = make(solver).fit((triplets["user"].to_numpy(), triplets["item"].to_numpy(),
                                   triplets["rating"].to_numpy()))
    for other in (from_df, from_sp, from_tuple):
        for a, b in zip(factors(ref), factors(other)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ref.user_ids_, other.user_ids_)


@pytest.mark.parametrize("solver", SOLVERS)
def test_unknown_ids(solver, data):
    m = make(solver).fit(data)
    u, i = data.user_ids[0], data.item_ids[0]
    with pytest.warns(UnknownIdWarning):
        assert m.predict(10_000, i) == pytest.approx(
            np.clip(m.global_mean_ + float(m.item_biases_[0]), *m.rating_scale_))
    with pytest.warns(UnknownIdWarning):
        assert np.isnan(m.predict(u, 10_000, unknown="nan"))
    with pytest.raises(KeyError, match="10000"):
        m.predict(10_000, i, unknown="raise")


@pytest.mark.parametrize("solver", SOLVERS)
def test_pickle_and_save_load(solver, data, tmp_path):
    m = make(solver).fit(data, eval_set=data)
    u, i = data.user_ids[data.users], data.item_ids[data.items]
    expect = m.predict(u, i)
    clone = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(clone.predict(u, i), expect)
    loaded = MatrixFactorization.load(m.save(tmp_path / f"{solver}.npz"))
    np.testing.assert_array_equal(loaded.predict(u, i), expect)
    np.testing.assert_array_equal(loaded.recommend(u[:4], n=3)[0], m.recommend(u[:4], n=3)[0])
    assert loaded.solver == solver and loaded.history_[-1]["val_rmse"] == pytest.approx(m.history_[-1]["val_rmse"])


@pytest.mark.parametrize("solver", SOLVERS)
def test_deterministic_per_seed(solver, data):
    a = make(solver, random_state=3).fit(data)
    b = make(solver, random_state=3).fit(data)
    c = make(solver, random_state=4).fit(data)
    for x, y in zip(factors(a), factors(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.user_factors_, c.user_factors_)


@pytest.mark.parametrize("solver", SOLVERS)
def test_sklearn_clone_refits_identically(solver, data):
    clone = pytest.importorskip("sklearn.base").clone
    m = make(solver, random_state=2)
    c = clone(m)
    assert c.get_params() == m.get_params()
    np.testing.assert_array_equal(m.fit(data).user_factors_, c.fit(data).user_factors_)


@pytest.mark.parametrize("solver", SOLVERS)
def test_eval_set_and_early_stopping(solver, data):
    if not get_solver_spec(solver).supports_early_stopping:
        with pytest.raises(ValueError, match="early_stopping does not apply"):
            make(solver, early_stopping=2).fit(data, eval_set=data)
        return
    m = make(solver, max_iter=6, early_stopping=2).fit(data, eval_set=data)
    assert all(rec["val_rmse"] is not None for rec in m.history_)
    assert m.n_iter_ <= 6
    best = min(rec["val_rmse"] for rec in m.history_)
    # the model keeps the best validation parameters
    assert m.evaluate(data)["rmse"] == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("solver", [s for s in SOLVERS if REGISTRY[s].thread_deterministic])
def test_deterministic_across_thread_counts(solver, data):
    one = make(solver, random_state=5, n_threads=1).fit(data)
    two = make(solver, random_state=5, n_threads=2).fit(data)
    for x, y in zip(factors(one), factors(two)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("solver", SOLVERS)
def test_callback_stops_the_run(solver, data):
    seen = []

    def stop_at_two(rec):
        seen.append(rec["iteration"])
        return rec["iteration"] >= 2

    m = make(solver, max_iter=8, callbacks=stop_at_two).fit(data)
    assert m.n_iter_ == 2 and seen[-1] == 2
    assert all(np.isfinite(a).all() for a in factors(m))


@pytest.mark.parametrize("solver", SOLVERS)
def test_progress_off_prints_nothing(solver, data, capsys):
    make(solver, progress=False).fit(data)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


@pytest.mark.parametrize("solver", SOLVERS)
def test_bad_solver_option_is_rejected_with_the_accepted_list(solver, data):
    with pytest.raises(ValueError, match=r"solver_options \['nope'\] are not options of solver="):
        make(solver, solver_options={"nope": 1}).fit(data)
    with pytest.raises(ValueError, match="may not set"):
        make(solver, solver_options={"progress": True}).fit(data)


@pytest.mark.parametrize("solver", SOLVERS)
def test_spec_flags_are_consistent(solver):
    spec = get_solver_spec(solver)
    assert spec.name == solver and callable(spec.run)
    assert set(spec.deprecated_options.values()) <= set(spec.options)
    if not spec.supports_early_stopping:
        assert "early_stopping" not in spec.options


def test_unknown_solver_spec():
    with pytest.raises(ValueError, match="unknown solver 'lbfgs'"):
        get_solver_spec("lbfgs")
