"""fastmf.distributed on real LocalClusters (tiny synthetic data, bounded time)."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

import fastmf.distributed as fd  # noqa: E402
from fastmf import MatrixFactorization  # noqa: E402
from fastmf.data.synthetic import synthetic  # noqa: E402
from fastmf.objective import MFObjective  # noqa: E402
from fastmf.problem import MFProblem  # noqa: E402
from fastmf.solvers._base import Status  # noqa: E402
from fastmf.solvers.als import als  # noqa: E402
from fastmf.solvers.newton import newton_cg  # noqa: E402
from fastmf.solvers.preconditioners import make_preconditioner  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cluster(n_workers, processes):
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                                    dashboard_address=":0")


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each (the production layout), shared by the module."""
    with _cluster(2, True) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def local_client():
    """Two in-process workers: enough for the many small rounds of Newton-CG fits."""
    with _cluster(2, False) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def ratings():
    return synthetic(120, 80, 1500, rank=3, random_state=7, dtype=np.float64)


def _frame(R, npartitions):
    df = R.to_dataframe()
    df = df.rename(columns={df.columns[0]: "user", df.columns[1]: "item", df.columns[2]: "rating"})
    return dd.from_pandas(df[["user", "item", "rating"]].sample(frac=1.0, random_state=1), npartitions=npartitions)


def test_workers_import_this_tree(client):
    files = set(client.run(lambda: __import__("fastmf").__file__).values())
    assert files == {os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fastmf",
                                  "__init__.py")}


def test_coding_independent_of_partitioning(local_client, ratings):
    from fastmf.distributed.coding import code_frame, read_input

    out = []
    for nparts in (1, 4):
        coded = code_frame(read_input(_frame(ratings, nparts)), local_client, dtype=np.float64)
        df = coded.frame.compute()
        df = df.sort_values(["user", "item"]).reset_index(drop=True)
        out.append((coded.user_ids, coded.item_ids, df[["user", "item", "rating"]].to_numpy()))
    for u, i, trip in out[1:]:
        np.testing.assert_array_equal(u, out[0][0])
        np.testing.assert_array_equal(i, out[0][1])
        np.testing.assert_array_equal(trip, out[0][2])
    np.testing.assert_array_equal(out[0][0], ratings.user_ids)
    np.testing.assert_array_equal(out[0][2][:, 0], ratings.users)
    np.testing.assert_array_equal(out[0][2][:, 2], ratings.values)


def test_bad_input_names_partition_and_row(local_client):
    pdf = pd.DataFrame({"user": [1, 2, 3, 4, 5, 6], "item": [1, 1, 2, 2, 3, 3],
                        "rating": [1.0, 2.0, 3.0, 4.0, np.nan, 5.0]})
    with pytest.raises(ValueError, match=r"partition 1: .*NaN.*row 1"):
        fd.distribute(dd.from_pandas(pdf, npartitions=2, sort=False), local_client, n_blocks=2)
    dup = pd.DataFrame({"user": [1, 2, 3, 1], "item": [1, 1, 2, 1], "rating": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match=r"duplicate rating .*partition 0 row 0 and partition 1 row 1"):
        fd.distribute(dd.from_pandas(dup, npartitions=2, sort=False), local_client, n_blocks=2)


def test_als_bit_identical_to_in_process(client, ratings):
    kw = dict(reg=0.07, reg_weighting="sqrt-count", dtype=np.float64, max_iter=4, tol=0.0, progress=False,
              random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = als(ratings, 5, **kw)
        res = fd.fit_als(ratings, 5, client=client, n_blocks=3, **kw)
        res_df = fd.fit_als(_frame(ratings, 4), 5, client=client, n_blocks=2, **kw)
    assert np.array_equal(res.x, ref.x)
    assert np.array_equal(res_df.x, ref.x)
    assert res.nit == ref.nit == 4
    for a, b in zip(res.history, ref.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-12)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-6, abs=1e-9)
    assert res.comm["rounds"] == 1 + 3 * 4  # initial evaluation, 3 per iteration
    np.testing.assert_array_equal(res.seen_items, ratings.items)
    np.testing.assert_array_equal(res.seen_indptr, ratings.user_indptr)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_als_bit_identical_with_rows_of_several_panels(client, dtype):
    """Users with ~200 ratings (several of the row kernel's ratings panels), on 2 worker processes;
    the shards also report the CPU seconds of their row solves (``cpu_times``)."""
    R = synthetic(60, 400, 12000, rank=3, random_state=5, dtype=dtype)
    kw = dict(reg=0.1, reg_weighting="count", dtype=dtype, max_iter=2, tol=0.0, progress=False, random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = als(R, 7, **kw)
        with fd.distribute(R, client, n_blocks=3, dtype=dtype) as ds:
            res = fd.fit_als(ds, 7, **kw)
            cpu = ds.round("cpu_times")
    assert np.diff(R.user_indptr).min() > 64
    assert np.array_equal(res.x, ref.x)
    assert all(rec["cpu"]["solve_rows"] >= 0.0 for rec in cpu)


def test_results_depend_on_blocks_not_workers(ratings):
    """Newton-CG (whose item reductions depend on B) on 1, 2 and 3 in-process workers."""
    xs = []
    for w in (1, 2, 3):
        with _cluster(w, False) as cluster, distributed.Client(cluster) as c:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fd.fit_newton(ratings, 4, client=c, n_blocks=3, dtype=np.float32, max_iter=3,
                                    progress=False, random_state=1, preconditioner="block-jacobi")
            xs.append(res.x)
    assert np.array_equal(xs[0], xs[1]) and np.array_equal(xs[0], xs[2])


@pytest.mark.parametrize("hessian", ["gauss-newton", "exact"])
def test_newton_pieces_equal_in_process(local_client, ratings, hessian):
    kw = dict(reg=0.05, reg_bias=0.02, dtype=np.float64, hessian=hessian, reg_weighting="count")
    with fd.distribute(ratings, local_client, n_blocks=3, dtype=np.float64) as ds:
        d = fd.DistributedObjective(ds, 6, **kw)
        o = MFObjective(ratings, 6, **kw)
        rng = np.random.default_rng(0)
        x = o.x0(2) + 0.1 * rng.standard_normal(o.n_params)
        p = rng.standard_normal(o.n_params)
        f1, g1 = d.fun_and_jac(x)
        f2, g2 = o.fun_and_jac(x)
        assert f1 == pytest.approx(f2, rel=1e-10)
        np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-10 * np.abs(g2).max())
        h2 = o.hessp(x, p)
        np.testing.assert_allclose(d.hessp(x, p), h2, rtol=1e-10, atol=1e-10 * np.abs(h2).max())
        np.testing.assert_allclose(d.diag_gauss_newton(x), o.diag_gauss_newton(x), rtol=1e-10)
        # preconditioners: built where the data lives, bit-identical to the in-process ones
        problem = MFProblem.from_objective(o)
        for name in ("jacobi", "block-jacobi"):
            local, dist = make_preconditioner(name, problem, ratings), d.preconditioner(name, 2**30)
            local.update(x)
            dist.update(x)
            assert np.array_equal(dist.apply(p), local.apply(p)), name
        # x changed on the blocks (a trial point), then a product at the old x again
        d.fun(x + 1.0)
        np.testing.assert_allclose(d.hessp(x, p), h2, rtol=1e-10, atol=1e-10 * np.abs(h2).max())


@pytest.mark.parametrize("preconditioner", ["jacobi", "block-jacobi"])
def test_newton_fit_reaches_in_process_loss(local_client, preconditioner):
    small = synthetic(50, 30, 500, rank=2, random_state=3, dtype=np.float64)
    kw = dict(tol=1e-7, max_iter=100, progress=False, random_state=0, preconditioner=preconditioner)
    ref = newton_cg(MFObjective(small, 2, reg=3.0, dtype=np.float64), **kw)
    res = fd.fit_newton(small, 2, client=local_client, n_blocks=2, reg=3.0, dtype=np.float64, **kw)
    assert ref.status.converged and res.status.converged
    assert res.fun == pytest.approx(ref.fun, rel=1e-8)
    assert res.preconditioner == preconditioner


def _pandas(R):
    df = R.to_dataframe()
    return df.rename(columns={df.columns[0]: "user", df.columns[1]: "item", df.columns[2]: "rating"})[
        ["user", "item", "rating"]]


def test_estimator_als_on_dask_equals_in_process(client, ratings, tmp_path):
    params = dict(solver="als", rank=5, reg=0.07, dtype=np.float64, max_iter=4, tol=0.0, random_state=3,
                  progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MatrixFactorization(**params).fit(_pandas(ratings))
        with client.as_current():
            est = MatrixFactorization(**params, solver_options={"n_blocks": 3}).fit(_frame(ratings, 3))
    for name in ("user_factors_", "item_factors_", "user_biases_", "item_biases_", "user_ids_", "item_ids_",
                 "seen_indptr_", "seen_items_"):
        assert np.array_equal(getattr(est, name), getattr(ref, name)), name
    assert est.global_mean_ == ref.global_mean_ and est.rating_scale_ == ref.rating_scale_
    assert est.n_iter_ == 4 and len(est.history_) == 5 and est.result_.n_blocks == 3
    users, items = ratings.user_ids[:7], ratings.item_ids[:7]
    np.testing.assert_array_equal(est.predict(users, items), ref.predict(users, items))
    np.testing.assert_array_equal(est.recommend(users, n=3)[0], ref.recommend(users, n=3)[0])
    loaded = MatrixFactorization.load(est.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(users, items), ref.predict(users, items))


def test_estimator_newton_jacobi_reaches_in_process_loss(local_client):
    small = synthetic(50, 30, 500, rank=2, random_state=3, dtype=np.float64)
    params = dict(solver="newton", rank=2, reg=3.0, dtype=np.float64, tol=1e-7, max_iter=100, progress=False, random_state=0,
                  solver_options={"preconditioner": "jacobi"})
    ref = MatrixFactorization(**params).fit(small)
    with local_client.as_current():
        est = MatrixFactorization(**params).fit(_frame(small, 2))
    assert ref.result_.status.converged and est.result_.status.converged
    assert est.result_.fun == pytest.approx(ref.result_.fun, rel=1e-8)
    assert est.result_.preconditioner == "jacobi" and est.result_.hessian == "exact"


def test_estimator_newton_early_stopping_on_cluster(local_client, ratings):
    df = _pandas(ratings).sample(frac=1.0, random_state=0)
    train, val = df.iloc[:1200], df.iloc[1200:]
    params = dict(solver="newton", rank=8, reg=0.01, dtype=np.float64, max_iter=40, early_stopping=2, random_state=0,
                  progress=False, solver_options={"min_delta": 1e-3})
    ref = MatrixFactorization(**params).fit(train, eval_set=val)
    with local_client.as_current():
        est = MatrixFactorization(**params).fit(dd.from_pandas(train, npartitions=2), eval_set=val)
    assert ref.result_.status == Status.EARLY_STOPPING
    assert est.result_.status == Status.EARLY_STOPPING
    assert est.result_.best_iteration == ref.result_.best_iteration
    assert est.n_iter_ == ref.n_iter_ and est.n_eval_dropped_ == ref.n_eval_dropped_
    for a, b in zip(est.history_, ref.history_):
        assert a["val_rmse"] == pytest.approx(b["val_rmse"], rel=1e-8)
    np.testing.assert_allclose(est.user_factors_, ref.user_factors_, rtol=1e-6, atol=1e-8)


def test_sgd_and_gibbs_refused():
    pdf = pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [3.0, 4.0]})
    for solver in ("sgd", "gibbs"):
        with pytest.raises(ValueError, match="distributed solvers are 'als' and 'newton'"):
            fd.check_solver(solver)
        with pytest.raises(ValueError, match=f"solver='{solver}' cannot fit Dask input.*'als' and 'newton'"):
            MatrixFactorization(solver=solver).fit(dd.from_pandas(pdf, npartitions=1))
    fd.check_solver("als")
    fd.check_solver("newton")


def test_batch_scoring_equals_in_process(client, ratings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fd.fit_als(ratings, 4, client=client, n_blocks=2, max_iter=2, progress=False)
    model = fd.to_model(res)
    df = _frame(ratings, 3)
    pred = fd.predict(model, df["user"], df["item"]).compute()
    local = df.compute()
    np.testing.assert_array_equal(pred.to_numpy(), model.predict(local["user"].to_numpy(), local["item"].to_numpy()))
    users = dd.from_pandas(pd.Series(ratings.user_ids[:10]), npartitions=3)
    top = fd.recommend(model, users, n=3).compute()
    items, scores = model.recommend(ratings.user_ids[:10], n=3)
    assert list(top.columns) == ["user", "rank", "item", "score"]
    np.testing.assert_array_equal(top["item"].to_numpy(), np.asarray(items).ravel())
    np.testing.assert_array_equal(top["score"].to_numpy(), np.asarray(scores).ravel())
    np.testing.assert_array_equal(top["rank"].to_numpy(), np.tile([1, 2, 3], 10))


def test_worker_killed_mid_fit_raises_clear_error(client, ratings):
    """Last test of the module: it kills one of the module cluster's worker processes."""
    pids = client.run(os.getpid)
    victim_addr = sorted(pids)[1]
    killed = []

    def kill_after_first(rec):
        if rec["iteration"] == 1 and not killed:
            os.kill(pids[victim_addr], signal.SIGKILL)
            killed.append(time.monotonic())

    box = {}

    def run():
        try:
            box["res"] = fd.fit_als(ratings, 4, client=client, n_blocks=2, max_iter=50, tol=0.0, progress=False,
                                    callbacks=kill_after_first, timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["exc"] = exc

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(60)
    assert not th.is_alive(), "the fit hung after a worker died"
    assert killed
    assert "res" not in box, "factors were returned from partial data"
    exc = box["exc"]
    assert isinstance(exc, fd.WorkerLostError), repr(exc)
    assert victim_addr in str(exc) and "fit again" in str(exc)
