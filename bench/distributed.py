"""In-process (2 numba threads) vs LocalCluster (2 workers x 1 thread) on MovieLens shapes.

Measures, per data shape: empty-call round-trip latency (one ``ping`` round over the B
blocks), loss+gradient and Hessian product per call, one ALS sweep, bytes per round,
and (``--fit``) Newton-CG fit time to the same loss.

    python -m bench.distributed --shapes ml-1m --rank 32 --dtype float32 --blocks 4 --repeat 3

Synthetic data of the given shape (``fastmf.data.synthetic.synthetic_preset``).
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["ml-1m"])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fit", action="store_true", help="also time Newton-CG fits (preconditioner none)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    import distributed

    from fastmf._threading import thread_limit
    from fastmf.data.synthetic import synthetic_preset
    from fastmf.objective import MFObjective
    from fastmf.solvers.als import ALSSolver, als
    from fastmf.solvers.newton import fit_newton_cg
    from fastmf.solvers.preconditioners import ProblemStructure
    import fastmf.distributed as fd

    dt = np.dtype(args.dtype)
    k = args.rank
    out = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cl, \
            distributed.Client(cl) as client:
        for shape in args.shapes:
            R = synthetic_preset(shape, args.scale, dtype=dt, random_state=0)
            row = dict(shape=shape, users=R.n_users, items=R.n_items, nnz=R.nnz, rank=k, dtype=dt.name,
                       blocks=args.blocks)
            # ---------------- in process, 2 threads
            with thread_limit(2):
                o = MFObjective(R, k, dtype=dt, n_threads=2)
                x = o.x0(0).astype(dt)
                p = np.random.default_rng(0).standard_normal(o.n_params).astype(dt)
                o.fun_and_jac(x)
                o.hessp(x, p)
                x2 = (x * dt.type(1.001)).astype(dt)
                row["local_fg_s"] = _best(lambda: (o.fun_and_jac(x2), o.fun_and_jac(x)), args.repeat) / 2
                row["local_hessp_s"] = _best(lambda: o.hessp(x, p), args.repeat)
                s = ALSSolver(ProblemStructure.from_objective(o), 2)
                xa = x.copy()
                s.solve_users(xa)
                row["local_als_sweep_s"] = _best(lambda: (s.solve_users(xa), s.solve_items(xa)), args.repeat)
            # ---------------- cluster
            t = time.perf_counter()
            ds = fd.distribute(R, client, n_blocks=args.blocks, dtype=dt)
            row["distribute_s"] = time.perf_counter() - t
            d = fd.DistributedObjective(ds, k, dtype=dt)
            row["ping_round_s"] = _best(lambda: ds.round("ping"), max(args.repeat, 10))
            d.fun_and_jac(x)
            ds.reset_stats()

            row["dask_fg_s"] = _best(lambda: (d.fun_and_jac(x2), d.fun_and_jac(x)), args.repeat) / 2
            row["fg_bytes_per_round"] = (ds.stats["bytes_sent"] + ds.stats["bytes_received"]) / ds.stats["rounds"]
            d.hessp(x, p)
            ds.reset_stats()
            row["dask_hessp_s"] = _best(lambda: d.hessp(x, p), args.repeat)
            row["hessp_bytes_per_round"] = (ds.stats["bytes_sent"] + ds.stats["bytes_received"]) / ds.stats["rounds"]
            ds.reset_stats()
            t = time.perf_counter()
            res = fd.fit_als(ds, k, dtype=dt, max_iter=args.repeat, tol=0.0, progress=False)
            el = time.perf_counter() - t
            it_times = np.diff([h["elapsed"] for h in res.history])
            row["dask_als_iteration_s"] = float(it_times.min())  # 3 rounds: users, items, evaluation
            row["als_bytes_per_iteration"] = (res.comm["bytes_sent"] + res.comm["bytes_received"]) / max(res.nit, 1)
            t = time.perf_counter()
            ref = als(R, k, dtype=dt, max_iter=args.repeat, tol=0.0, progress=False, n_threads=2)
            row["local_als_iteration_s"] = float(np.diff([h["elapsed"] for h in ref.history]).min())
            row["als_bit_identical"] = bool(np.array_equal(res.x, ref.x))
            if args.fit:
                kw = dict(dtype=dt, max_iter=30, progress=False, random_state=0, gtol=1e-4)
                t = time.perf_counter()
                rl = fit_newton_cg(R, k, preconditioner="none", n_threads=2, **kw)
                row["local_newton_fit_s"] = time.perf_counter() - t
                t = time.perf_counter()
                rd = fd.fit_newton(ds, k, **kw)
                row["dask_newton_fit_s"] = time.perf_counter() - t
                row["newton_loss_rel_diff"] = abs(rd.fun - rl.fun) / abs(rl.fun)
            ds.close()
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


if __name__ == "__main__":
    main()
