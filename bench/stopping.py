"""Stopping rules: the old defaults against the new ones, per solver, in one process.

"before": the old ``fastmf fit`` -- fit on the whole training part to the old stopping rules
(Newton-CG float32 ``ftol=1e-7`` after one step; no early stopping).
"after": the new ``fastmf fit`` -- Newton-CG's float32 loss-stall rule (``ftol=1e-5`` for 3
steps), early stopping with patience 5 on a validation part carved out of the training
ratings (5%, same splitter and seed), then 5 warm-started iterations on all the training
ratings.  The test ratings are never seen by either fit.

Both: rank 32, the CLI's estimator defaults (count-weighted reg 0.1, float32, seed 0), a
warm numba cache (one untimed warm-up fit per solver first).

    python -m bench.stopping                          # ml-latest-small 90/10 and ml-100k u1..u5
    python -m bench.stopping --datasets ml-latest-small --solvers newton
    python -m bench.stopping --datasets synthetic-ml-10m --scale 0.1
    python -m bench.stopping --newton-rule            # estimator default: ftol 1e-5 -> 2e-4 (below)

``--newton-rule`` compares, for the estimator's default Newton-CG fit (no validation set), the
float32 loss-stall rule of release 0.2.0 (``ftol=1e-5`` for 3 steps once ``|g| <= 1e-3 |g0|``)
with today's (``ftol=2e-4``, ``1e-2``): test RMSE, iterations and fit seconds per dataset.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

SOLVERS = ("newton", "als", "sgd")


def _splits(name: str, data_home, scale: float):
    from fastmf.data.movielens import load_ml100k_fold, load_movielens
    from fastmf.data.splits import train_test_split

    if name == "ml-100k":
        return [load_ml100k_fold(f"u{k}", data_home, download=False) for k in range(1, 6)]
    if name.startswith("synthetic-"):
        from fastmf.data.synthetic import synthetic_preset

        ratings = synthetic_preset(name[len("synthetic-"):], scale=scale, random_state=0)
    else:
        ratings = load_movielens(name, data_home)
    return [train_test_split(ratings, 0.1, random_state=0)]


def fit_before(solver, train, test):
    from fastmf import MatrixFactorization

    opts = {"ftol": 1e-7, "ftol_iter": 1} if solver == "newton" else {}
    m = MatrixFactorization(solver=solver, rank=32, random_state=0, progress=False, solver_options=opts)
    t0 = time.perf_counter()
    m.fit(train)
    return m.evaluate(test)["rmse"], time.perf_counter() - t0, m.n_iter_


def fit_after(solver, train, test, validation_size=0.05, patience=5, refit=5):
    """What ``fastmf fit`` does (fastmf.cli.cmd_fit)."""
    from fastmf import MatrixFactorization
    from fastmf.data.splits import train_test_split

    t0 = time.perf_counter()
    fit_part, val = train_test_split(train, validation_size, random_state=0)
    m = MatrixFactorization(solver=solver, rank=32, random_state=0, progress=False, early_stopping=patience)
    m.fit(fit_part, eval_set=val)
    nit = m.n_iter_
    if refit:
        m.set_params(max_iter=refit, early_stopping=None)
        m.fit(train, warm_start=True)
        nit += m.n_iter_
    return m.evaluate(test)["rmse"], time.perf_counter() - t0, nit


def fit_newton_rule(rule, train, test):
    """The estimator's default Newton-CG fit under the 0.2.0 ("before") or today's stall rule."""
    import fastmf.solvers.newton as newton
    from fastmf import MatrixFactorization

    stall_gtol = newton.STALL_GTOL
    opts = {}
    if rule == "before":
        newton.STALL_GTOL, opts = 1e-3, {"ftol": 1e-5, "ftol_iter": 3}
    try:
        m = MatrixFactorization(solver="newton", rank=32, random_state=0, progress=False, solver_options=opts)
        t0 = time.perf_counter()
        m.fit(train)
        return m.evaluate(test)["rmse"], time.perf_counter() - t0, m.n_iter_
    finally:
        newton.STALL_GTOL = stall_gtol


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ml-latest-small", "ml-100k"])
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS)
    ap.add_argument("--data-home", default=os.environ.get("FASTMF_TEST_DATA"))
    ap.add_argument("--scale", type=float, default=0.1, help="scale of synthetic-* presets")
    ap.add_argument("--newton-rule", action="store_true",
                    help="only the estimator's default Newton fit: 0.2.0's loss-stall rule against today's")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from fastmf._warmup import warmup

    if args.newton_rule:
        args.solvers = ["newton"]
    warmup(args.solvers)
    rows = []
    for name in args.datasets:
        splits = _splits(name, args.data_home, args.scale)
        for solver in args.solvers:
            res = {"before": [], "after": []}
            for train, test in splits:
                if args.newton_rule:
                    res["before"].append(fit_newton_rule("before", train, test))
                    res["after"].append(fit_newton_rule("after", train, test))
                else:
                    res["before"].append(fit_before(solver, train, test))
                    res["after"].append(fit_after(solver, train, test))
            b, a = (np.array(res[k], dtype=float) for k in ("before", "after"))
            label = name + (" (u1..u5 mean)" if len(splits) > 1 else "")
            rows.append([label, solver, f"{b[:, 0].mean():.4f}", f"{a[:, 0].mean():.4f}",
                         f"{a[:, 0].mean() - b[:, 0].mean():+.4f}", f"{b[:, 2].mean():.0f}", f"{a[:, 2].mean():.0f}",
                         f"{b[:, 1].mean():.2f}", f"{a[:, 1].mean():.2f}", f"{a[:, 1].mean() / b[:, 1].mean():.2f}"])
            print("  ".join(rows[-1]), flush=True)
    header = ["data", "solver", "RMSE before", "RMSE after", "delta", "iters before", "iters after",
              "fit s before", "fit s after", "time ratio"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    try:
        load = os.getloadavg()
        print(f"\nload average {load[0]:.1f}, {os.cpu_count()} CPUs; timings are wall-clock in this process")
    except OSError:  # pragma: no cover
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
