"""In-process (2 numba threads) vs LocalCluster (2 workers x 1 thread), same solver code.

Shapes mode (synthetic data of MovieLens shapes, ``fastmf.data.synthetic.synthetic_preset``):
per shape, the empty-round latency (one ``ping`` over the B blocks), loss+gradient and
Hessian product per call, one ALS iteration (two half-sweeps + the loss/gradient
evaluation), bytes per round, and with ``--fit`` the Newton-CG fit time (Jacobi, exact
Hessian, the same iterations) in process and on the cluster.

    python -m bench.distributed --shapes ml-10m ml-20m --rank 32 --dtype float32 --blocks 4 --repeat 2 --fit

Peer mode (``--peer SPLIT.npz`` from ``/work/shared/peers/split.py``): ALS (rank 32, reg 0.1
count-weighted = Spark's ALS-WR regParam 0.1) until the test RMSE reaches ``--target``,
in process and on the cluster; cluster start-up and ``distribute`` reported separately.

    python -m bench.distributed --peer /tmp/synth-20m-split.npz --rank 32 --target 0.6963
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def _best(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def _worker_cpu(ds, reset=False):
    """Per worker process: CPU seconds per shard method since the last reset (summed over its blocks)."""
    per = {}
    for rec in ds.round("cpu_times", [(reset,)] * ds.n_blocks):
        d = per.setdefault(rec["pid"], {})
        for k, v in rec["cpu"].items():
            d[k] = d.get(k, 0.0) + v
    return per


def _bytes_per_round(ds):
    s = ds.stats
    return (s["bytes_sent"] + s["bytes_received"]) / max(s["rounds"], 1)


def shapes(args, client):
    from fastmf._threading import thread_limit
    from fastmf.data.synthetic import synthetic_preset
    from fastmf.objective import MFObjective
    from fastmf.solvers.als import als
    from fastmf.solvers.newton import newton_cg
    import fastmf.distributed as fd

    dt = np.dtype(args.dtype)
    k = args.rank
    for shape in args.shapes:
        R = synthetic_preset(shape, args.scale, dtype=dt, random_state=0)
        import os

        row = dict(shape=shape, users=R.n_users, items=R.n_items, nnz=R.nnz, rank=k, dtype=dt.name, blocks=args.blocks,
                   load_before=os.getloadavg()[0])
        # ---------------- in process, 2 threads
        with thread_limit(2):
            o = MFObjective(R, k, dtype=dt, n_threads=2, hessian="exact")
            x = o.x0(0).astype(dt)
            p = np.random.default_rng(0).standard_normal(o.n_params).astype(dt)
            x2 = (x * dt.type(1.001)).astype(dt)
            o.fun_and_jac(x)
            o.hessp(x, p)
            row["local_fg_s"] = _best(lambda: (o.fun_and_jac(x2), o.fun_and_jac(x)), args.repeat) / 2
            row["local_hessp_s"] = _best(lambda: o.hessp(x, p), args.repeat)
        c = time.process_time()
        ref = als(R, k, dtype=dt, max_iter=args.repeat + 1, tol=0.0, progress=False, n_threads=2)
        row["local_als_cpu_per_iteration_s"] = round((time.process_time() - c) / ref.nit, 3)
        row["local_als_iteration_s"] = float(np.diff([h["elapsed"] for h in ref.history]).min())
        # ---------------- cluster
        t = time.perf_counter()
        ds = fd.distribute(R, client, n_blocks=args.blocks, dtype=dt)
        d = fd.DistributedObjective(ds, k, dtype=dt, hessian="exact")
        row["distribute_s"] = time.perf_counter() - t
        row["ping_round_s"] = _best(lambda: ds.round("ping"), 20)
        d.fun_and_jac(x)
        d.hessp(x, p)
        ds.reset_stats()
        row["dask_fg_s"] = _best(lambda: (d.fun_and_jac(x2), d.fun_and_jac(x)), args.repeat) / 2
        row["fg_bytes_per_round"] = _bytes_per_round(ds)
        d.hessp(x, p)
        ds.reset_stats()
        row["dask_hessp_s"] = _best(lambda: d.hessp(x, p), args.repeat)
        row["hessp_bytes_per_round"] = _bytes_per_round(ds)
        _worker_cpu(ds, reset=True)
        c = time.process_time()
        res = fd.fit_als(ds, k, dtype=dt, max_iter=args.repeat + 1, tol=0.0, progress=False)
        row["dask_als_client_cpu_per_iteration_s"] = round((time.process_time() - c) / res.nit, 3)
        row["dask_als_busiest_worker_cpu_per_iteration_s"] = round(
            max(sum(d.values()) for d in _worker_cpu(ds).values()) / res.nit, 3)
        row["dask_als_iteration_s"] = float(np.diff([h["elapsed"] for h in res.history]).min())
        row["als_bytes_per_iteration"] = (res.comm["bytes_sent"] + res.comm["bytes_received"]) / max(res.nit, 1)
        row["als_bit_identical"] = bool(np.array_equal(res.x, ref.x))
        row["als_ratio"] = row["dask_als_iteration_s"] / row["local_als_iteration_s"]
        if args.fit:
            kw = dict(max_iter=args.newton_iter, tol=1e-4, progress=False, preconditioner="jacobi")
            t, c = time.perf_counter(), time.process_time()
            rl = newton_cg(MFObjective(R, k, dtype=dt, n_threads=2, hessian="exact"), x.copy(), n_threads=2, **kw)
            row["local_newton_fit_s"] = time.perf_counter() - t
            row["local_newton_cpu_s"] = round(time.process_time() - c, 2)
            ds.reset_stats()
            _worker_cpu(ds, reset=True)
            t, c = time.perf_counter(), time.process_time()
            rd = fd.fit_newton(ds, k, dtype=dt, hessian="exact", x0=x.copy(), **kw)
            row["dask_newton_fit_s"] = time.perf_counter() - t
            row["dask_newton_client_cpu_s"] = round(time.process_time() - c, 2)
            row["dask_newton_busiest_worker_cpu_s"] = round(max(sum(d.values()) for d in _worker_cpu(ds).values()), 2)
            row["newton_nit_ncg"] = [rl.nit, rl.n_cg, rd.nit, rd.n_cg]
            row["newton_loss_rel_diff"] = abs(rd.fun - rl.fun) / abs(rl.fun)
            row["newton_ratio"] = row["dask_newton_fit_s"] / row["local_newton_fit_s"]
        ds.close()
        row["load_after"] = os.getloadavg()[0]
        print(json.dumps(row), flush=True)


def peer(args, client, t_cluster):
    from fastmf.data.ratings import Ratings
    from fastmf.solvers.als import als
    import fastmf.distributed as fd

    z = np.load(args.peer)
    m = int(max(z["tr_u"].max(), z["te_u"].max())) + 1
    n = int(max(z["tr_i"].max(), z["te_i"].max())) + 1
    dt = np.dtype(args.dtype)
    R = Ratings.from_codes(z["tr_u"], z["tr_i"], z["tr_r"], m, n, dtype=dt)
    V = Ratings.from_codes(z["te_u"], z["te_i"], z["te_r"], m, n, dtype=dt)
    row = dict(peer=args.peer, users=m, items=n, nnz=R.nnz, test=V.nnz, rank=args.rank, target=args.target,
               cluster_start_s=t_cluster)
    from fastmf.distributed.newton import initial_point

    x0 = initial_point(m, n, args.rank, True, 0, args.init_scale)  # rows of RMS norm init_scale, zero biases
    row["init_scale"] = args.init_scale
    kw = dict(reg=0.1, reg_weighting="count", dtype=dt, max_iter=args.max_iter, tol=0.0, progress=False,
              validation=V, x0=x0, callbacks=lambda rec: rec["val_rmse"] <= args.target)

    def reached(res):
        hit = [h for h in res.history if h["val_rmse"] is not None and h["val_rmse"] <= args.target]
        return (hit[0]["elapsed"], hit[0]["iteration"]) if hit else (None, None)

    row["solver"] = args.solver
    if args.solver == "newton":
        row["hessian"] = args.hessian

    def fit_local():
        if args.solver == "als":
            return als(R, args.rank, n_threads=2, **kw)
        from fastmf.objective import MFObjective
        from fastmf.solvers.newton import newton_cg

        obj = MFObjective(R, args.rank, reg=0.1, reg_weighting="count", dtype=dt, n_threads=2, hessian=args.hessian)
        return newton_cg(obj, x0, **{k: v for k, v in kw.items() if k not in ("reg", "reg_weighting", "dtype", "x0")})

    if not args.skip_local:
        t, c = time.perf_counter(), time.process_time()
        rl = fit_local()
        row["local_total_s"] = time.perf_counter() - t
        row["local_cpu_per_iteration_s"] = round((time.process_time() - c) / max(rl.nit, 1), 3)
        row["local_time_to_target_s"], row["local_iterations"] = reached(rl)
        row["local_val_rmse"] = [round(h["val_rmse"], 5) for h in rl.history]
        row["local_iteration_s"] = float(np.median(np.diff([h["elapsed"] for h in rl.history])))
        row["bit_identical_factors_checked_by"] = "tests/test_distributed.py"
        print(json.dumps(row), flush=True)
    if args.skip_dask:
        return
    t = time.perf_counter()
    ds = fd.distribute(R, client, n_blocks=args.blocks, dtype=dt)
    row["distribute_s"] = time.perf_counter() - t
    _worker_cpu(ds, reset=True)
    import os

    row["load_before"] = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    if args.solver == "als":
        rd = fd.fit_als(ds, args.rank, **kw)
    else:
        rd = fd.fit_newton(ds, args.rank, hessian=args.hessian, **kw)
    row["dask_total_s"] = time.perf_counter() - t
    row["load_after"] = os.getloadavg()[0]
    # CPU seconds per iteration (the machine is shared: wall times carry other jobs' load).  Each
    # worker runs its blocks' calls one after the other; the rounds' critical path is the busiest
    # worker, so max over workers of the per-method CPU is the no-load compute time of the fit.
    nit = max(rd.nit, 1)
    row["client_cpu_per_iteration_s"] = round((time.process_time() - c) / nit, 3)
    wc = _worker_cpu(ds)
    row["worker_cpu_per_iteration_s"] = {str(pid): {k: round(v / nit, 3) for k, v in sorted(d.items())}
                                         for pid, d in wc.items()}
    row["busiest_worker_cpu_per_iteration_s"] = round(max(sum(d.values()) for d in wc.values()) / nit, 3)
    row["dask_time_to_target_s"], row["dask_iterations"] = reached(rd)
    row["dask_val_rmse"] = [round(h["val_rmse"], 5) for h in rd.history]
    row["dask_iteration_s"] = float(np.median(np.diff([h["elapsed"] for h in rd.history])))
    row["als_bytes_per_iteration"] = (rd.comm["bytes_sent"] + rd.comm["bytes_received"]) / max(rd.nit, 1)
    row["spark_10_iterations_s"] = [149, 153]
    ds.close()
    print(json.dumps(row), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["ml-1m"])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fit", action="store_true", help="also time Newton-CG fits (Jacobi, exact Hessian)")
    ap.add_argument("--newton-iter", type=int, default=8)
    ap.add_argument("--peer", help="split .npz of /work/shared/peers/split.py: time to --target test RMSE")
    ap.add_argument("--target", type=float, default=0.6963)
    ap.add_argument("--max-iter", type=int, default=15)
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--solver", choices=["als", "newton"], default="als", help="solver raced in --peer mode")
    ap.add_argument("--hessian", choices=["exact", "gauss-newton"], default="exact",
                    help="Newton's Hessian in --peer mode (exact: the estimator's default)")
    ap.add_argument("--init-scale", type=float, default=0.1, help="RMS norm of the starting factor rows")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    import distributed

    t = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cl, \
            distributed.Client(cl) as client:
        t_cluster = time.perf_counter() - t
        if args.peer:
            peer(args, client, t_cluster)
        else:
            shapes(args, client)


if __name__ == "__main__":
    main()
