"""Train loss and test RMSE against time: Newton-CG (each preconditioner), ALS,
scipy L-BFGS-B on MFObjective, and plain gradient descent.

Datasets: ml-latest-small with a seeded 90/10 split, and the ML-10M-shaped synthetic
set (``synthetic_preset("ml-10m", scale=...)``, 90/10 split).  Same objective for
every method: biased MF, rank ``--rank``, count-weighted λ (``--reg``), float32.
Every method is timed from the same starting point (``MFObjective.x0(0)``); elapsed
times include scoring the test set at each iteration (the same small cost for all).
Compile time is excluded by a warm-up run of every method on a tiny problem.

Table columns: final train loss and test RMSE; ``t(L-BFGS loss)``, the first time
the method's train loss is at or below L-BFGS-B's final loss; ``t(RMSE)``, the first
time its test RMSE is at or below the target (``--target-rmse``, default: ALS's best
test RMSE + 0.002).

Usage::

    python -m bench.solver_curves [--datasets ml-latest-small ml-10m] [--scale 0.1]
                                  [--rank 32] [--reg 0.05] [--threads 1] [--plot curves.png]

Targets (issue 4): Newton-CG reaches L-BFGS-B's final loss >= 3x sooner, and is no
slower than ALS to the same test RMSE.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import scipy.optimize as so

from fastmf._threading import thread_limit
from fastmf.data.ratings import Ratings
from fastmf.data.splits import train_test_split
from fastmf.kernels.predict import rmse_codes
from fastmf.objective import MFObjective
from fastmf.solvers.als import als
from fastmf.solvers.newton import ConvergenceWarning, newton_cg


def load(name: str, scale: float):
    if name == "ml-latest-small":
        from fastmf.data.movielens import load_movielens

        r = load_movielens("ml-latest-small", download=False)
    else:
        from fastmf.data.synthetic import synthetic_preset

        r = synthetic_preset(name, scale=scale, random_state=0) if scale != 1.0 else synthetic_preset(name, random_state=0)
    train, test = train_test_split(r, 0.1, random_state=0)
    return train, test


class Scorer:
    def __init__(self, obj: MFObjective, test: Ratings):
        self.obj = obj
        self.test = test
        self.vals = test.values.astype(np.float64)

    def __call__(self, x) -> float:
        P, Q, b, c = self.obj.unpack(np.asarray(x, dtype=self.obj.dtype))
        return rmse_codes(self.test.users, self.test.items, self.vals, P, Q, b, c, self.obj.mu)


def run_newton(obj, x0, test, preconditioner, hessian, args):
    o = MFObjective(obj.ratings, args.rank, reg=args.reg, reg_weighting="count", hessian=hessian,
                    n_threads=args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = newton_cg(o, x0, preconditioner=preconditioner, validation=test, tol=args.gtol, ftol=0,
                        max_iter=args.max_iter, max_time=args.max_time, progress=False, n_threads=args.threads)
    return [(h["elapsed"], h["loss"], h["val_rmse"]) for h in res.history if h["accepted"]]


def run_als(obj, x0, test, args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = als(obj.ratings, args.rank, reg=args.reg, reg_weighting="count", x0=x0, validation=test, tol=0,
                  max_iter=args.max_iter, max_time=args.max_time, progress=False, n_threads=args.threads)
    return [(h["elapsed"], h["loss"], h["val_rmse"]) for h in res.history]


def run_lbfgs(obj, x0, test, args):
    score = Scorer(obj, test)
    rows = []
    t0 = time.perf_counter()
    x64 = x0.astype(np.float64)
    rows.append((0.0, obj.fun(x64), score(x64)))
    t0 = time.perf_counter()

    def cb(intermediate_result):
        rows.append((time.perf_counter() - t0, float(intermediate_result.fun), score(intermediate_result.x)))
        if time.perf_counter() - t0 > args.max_time:
            raise StopIteration

    with thread_limit(args.threads):
        so.minimize(obj.fun_and_jac, x64, jac=True, method="L-BFGS-B", callback=cb,
                    options=dict(maxiter=args.lbfgs_iter, maxcor=10, gtol=0, ftol=0))
    return rows


def run_gd(obj, x0, test, args):
    score = Scorer(obj, test)
    r = obj.ratings
    # fixed step 1/L with L bounded by the bias blocks' curvature (n_u + λ n_u) at small factors
    lr = args.gd_lr if args.gd_lr else 1.0 / ((1 + args.reg) * max(r.user_counts.max(), r.item_counts.max()))
    x = x0.astype(obj.dtype).copy()
    rows = [(0.0, obj.fun(x), score(x))]
    t0 = time.perf_counter()
    with thread_limit(args.threads):
        for _ in range(args.gd_iter):
            f, g = obj.fun_and_jac(x)
            x -= obj.dtype.type(lr) * g
            rows.append((time.perf_counter() - t0, obj.fun(x), score(x)))
            if time.perf_counter() - t0 > args.max_time:
                break
    return rows


def first_time(rows, col, level):
    for row in rows:
        if row[col] is not None and row[col] <= level:
            return row[0]
    return float("nan")


def bench_dataset(name, args):
    train, test = load(name, args.scale)
    print(f"\n== {name}: train {train.nnz} ratings ({train.n_users} x {train.n_items}), test {test.nnz}; "
          f"rank {args.rank}, count-weighted reg {args.reg}, float32, {args.threads} thread(s)", flush=True)
    obj = MFObjective(train, args.rank, reg=args.reg, reg_weighting="count", n_threads=args.threads)
    x0 = obj.x0(0).astype(np.float32)
    curves = {}
    for hessian in args.hessians:
        for p in args.preconditioners:
            curves[f"newton[{p},{hessian[:5]}]"] = run_newton(obj, x0, test, p, hessian, args)
            print(f"  done {p} {hessian}", flush=True)
    curves["als"] = run_als(obj, x0, test, args)
    curves["l-bfgs-b"] = run_lbfgs(obj, x0, test, args)
    curves["gd"] = run_gd(obj, x0, test, args)
    f_lbfgs = curves["l-bfgs-b"][-1][1]
    best_als = min(r[2] for r in curves["als"])
    target = args.target_rmse if args.target_rmse else best_als + 0.002
    t_lb = first_time(curves["l-bfgs-b"], 1, f_lbfgs)
    print(f"{'method':28s} {'time':>7s} {'loss':>12s} {'test RMSE':>9s} {'t(L-BFGS loss)':>14s} "
          f"{'t(RMSE<=%.4f)' % target:>15s}")
    for k, rows in curves.items():
        t, f, e = rows[-1]
        print(f"{k:28s} {t:7.1f} {f:12.2f} {min(r[2] for r in rows):9.4f} {first_time(rows, 1, f_lbfgs):14.2f} "
              f"{first_time(rows, 2, target):15.2f}")
    print(f"L-BFGS-B final loss {f_lbfgs:.2f} reached at {t_lb:.2f}s; speed-up of each Newton-CG run: "
          + ", ".join(f"{k}: {t_lb / first_time(v, 1, f_lbfgs):.1f}x" for k, v in curves.items() if k.startswith("newton")))
    return curves


def warm_up(args):
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 300)
    items = rng.integers(0, 20, 300)
    r = Ratings.from_codes(users, items, rng.integers(1, 6, 300).astype(float), n_users=30, n_items=20,
                           duplicates="last")
    train, test = train_test_split(r, 0.2, random_state=0)
    small = argparse.Namespace(**{**vars(args), "max_iter": 2, "gd_iter": 2, "lbfgs_iter": 2, "rank": 3})
    obj = MFObjective(train, 3, reg=args.reg, reg_weighting="count")
    x0 = obj.x0(0).astype(np.float32)
    for hessian in args.hessians:
        for p in args.preconditioners:
            run_newton(obj, x0, test, p, hessian, small)
    run_als(obj, x0, test, small)
    run_lbfgs(obj, x0, test, small)
    run_gd(obj, x0, test, small)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["ml-latest-small", "ml-10m"])
    ap.add_argument("--scale", type=float, default=0.1, help="scale of the synthetic sets (1 = full)")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--reg", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gtol", type=float, default=1e-6)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--max-time", type=float, default=60.0)
    ap.add_argument("--lbfgs-iter", type=int, default=300)
    ap.add_argument("--gd-iter", type=int, default=300)
    ap.add_argument("--gd-lr", type=float, default=None)
    ap.add_argument("--hessians", nargs="+", default=["exact", "gauss-newton"])
    ap.add_argument("--preconditioners", nargs="+", default=["block-jacobi", "jacobi", "none"])
    ap.add_argument("--target-rmse", type=float, default=None)
    ap.add_argument("--plot", default=None, help="save a PNG of the curves here")
    args = ap.parse_args(argv)
    warm_up(args)
    all_curves = {name: bench_dataset(name, args) for name in args.datasets}
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib missing: no plot")
            return all_curves
        fig, axes = plt.subplots(len(all_curves), 2, figsize=(12, 4.5 * len(all_curves)), squeeze=False)
        for row, (name, curves) in enumerate(all_curves.items()):
            f_min = min(min(r[1] for r in rows) for rows in curves.values())
            for k, rows in curves.items():
                t = [r[0] for r in rows]
                axes[row, 0].semilogy(t, [r[1] - f_min + 1e-3 * abs(f_min) for r in rows], label=k)
                axes[row, 1].plot(t, [r[2] for r in rows], label=k)
            axes[row, 0].set(title=f"{name}: train loss - min (log)", xlabel="seconds")
            axes[row, 1].set(title=f"{name}: test RMSE", xlabel="seconds")
            lo = min(min(r[2] for r in rows) for rows in curves.values())
            axes[row, 1].set_ylim(lo - 0.01, lo + 0.15)
            axes[row, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"plot saved to {args.plot}")
    return all_curves


if __name__ == "__main__":
    main()
