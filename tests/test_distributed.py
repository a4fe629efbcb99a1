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
from fastmf.data.ratings import Ratings  # noqa: E402
from fastmf.data.synthetic import synthetic  # noqa: E402
from fastmf.objective import MFObjective  # noqa: E402
from fastmf.solvers.als import als  # noqa: E402
from fastmf.solvers.newton import fit_newton_cg  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cluster(n_workers, processes):
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                                    dashboard_address=":0")


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each (the production layout)."""
    with _cluster(2, True) as cluster, distributed.Client(cluster) as c:
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


def test_coding_independent_of_partitioning(client, ratings):
    from fastmf.distributed.coding import code_frame, read_input

    out = []
    for nparts in (1, 3, 5):
        coded = code_frame(read_input(_frame(ratings, nparts)), client, dtype=np.float64)
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


def test_bad_input_names_partition_and_row(client):
    pdf = pd.DataFrame({"user": [1, 2, 3, 4, 5, 6], "item": [1, 1, 2, 2, 3, 3],
                        "rating": [1.0, 2.0, 3.0, 4.0, np.nan, 5.0]})
    with pytest.raises(ValueError, match=r"partition 1: .*NaN.*row 1"):
        fd.distribute(dd.from_pandas(pdf, npartitions=2, sort=False), client, n_blocks=2)
    dup = pd.DataFrame({"user": [1, 2, 3, 1], "item": [1, 1, 2, 1], "rating": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match=r"duplicate rating .*partition 0 row 0 and partition 1 row 1"):
        fd.distribute(dd.from_pandas(dup, npartitions=2, sort=False), client, n_blocks=2)


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
    assert res.comm["rounds"] == 1 + 3 * 4 + 1  # initial evaluation, 3 per iteration, seen items
    np.testing.assert_array_equal(res.seen_items, ratings.items)
    np.testing.assert_array_equal(res.seen_indptr, ratings.user_indptr)


def test_results_depend_on_blocks_not_workers(ratings):
    """Newton-CG (whose item reductions depend on B) on 1, 2 and 3 in-process workers."""
    xs = []
    for w in (1, 2, 3):
        with _cluster(w, False) as cluster, distributed.Client(cluster) as c:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fd.fit_newton(ratings, 4, client=c, n_blocks=3, dtype=np.float32, max_iter=3,
                                    progress=False, random_state=1)
            xs.append(res.x)
    assert np.array_equal(xs[0], xs[1]) and np.array_equal(xs[0], xs[2])


@pytest.mark.parametrize("hessian", ["gauss-newton", "exact"])
def test_newton_pieces_equal_in_process(client, ratings, hessian):
    kw = dict(reg=0.05, reg_bias=0.02, dtype=np.float64, hessian=hessian, reg_weighting="count")
    with fd.distribute(ratings, client, n_blocks=3, dtype=np.float64) as ds:
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
        # x changed on the blocks (a trial point), then a product at the old x again
        d.fun(x + 1.0)
        np.testing.assert_allclose(d.hessp(x, p), h2, rtol=1e-10, atol=1e-10 * np.abs(h2).max())


def test_newton_fit_reaches_in_process_loss():
    """A whole fit is hundreds of rounds: in-process workers keep it within the time budget."""
    small = synthetic(50, 30, 500, rank=2, random_state=3, dtype=np.float64)
    kw = dict(reg=3.0, dtype=np.float64, gtol=1e-7, max_iter=100, progress=False, random_state=0)
    ref = fit_newton_cg(small, 2, preconditioner="none", **kw)
    with _cluster(2, False) as cluster, distributed.Client(cluster) as c:
        res = fd.fit_newton(small, 2, client=c, n_blocks=2, **kw)
    assert ref.status.converged and res.status.converged
    assert res.fun == pytest.approx(ref.fun, rel=1e-8)


def test_sgd_and_gibbs_refused():
    for solver in ("sgd", "gibbs"):
        with pytest.raises(ValueError, match="distributed solvers are 'als'.*'newton-cg'"):
            fd.check_solver(solver)
    fd.check_solver("als")


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

    t0 = time.monotonic()
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
    assert time.monotonic() - t0 < 60
