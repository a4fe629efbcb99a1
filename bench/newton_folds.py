"""ml-100k official folds u1..u5: test RMSE of biased MF fitted by Newton-CG.

Protocol (no test rating is used for any choice): for each fold, the base set is
split 90/10 at random (seeded); every (rank, reg) of the grid is fitted on the 90%
and scored on the 10%; the best pair is refitted on the whole base set and scored
on the fold's test set, predictions clipped to [1, 5] (the unclipped figure is
printed too).  Biased MF, count-weighted regularisation (ALS-WR style, λ·n_u and
λ·n_i) unless ``--weighting uniform``.

Usage::

    python -m bench.newton_folds [--ranks 8 16 32] [--regs 0.04 0.06 0.08 0.1]
                                 [--weighting count] [--hessian exact] [--threads 1]

Target (issue 4): mean test RMSE <= 0.905 (surprise: SVD 0.934, SVD++ 0.919, 5-fold).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings
from pathlib import Path

import numpy as np

from fastmf._packing import unpack
from fastmf.data.movielens import load_ml100k_fold
from fastmf.data.splits import train_test_split
from fastmf.kernels.predict import rmse_codes
from fastmf.solvers.newton import ConvergenceWarning, fit_newton_cg

DEFAULT_DATA = Path(os.environ.get("FASTMF_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def rmse(result, train, test, clip=None) -> float:
    P, Q, b, c = unpack(result.x, train.n_users, train.n_items, result.rank, result.biases)
    return rmse_codes(test.users, test.items, test.values.astype(np.float64), P, Q, b, c, result.mu, clip)


def fit(train, rank, reg, args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_newton_cg(train, rank, reg=reg, reg_bias=args.reg_bias, reg_weighting=args.weighting, hessian=args.hessian,
                             preconditioner=args.preconditioner, gtol=args.gtol, max_iter=args.max_iter,
                             random_state=0, progress=False, n_threads=args.threads)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"])
    ap.add_argument("--ranks", nargs="+", type=int, default=[8, 16, 32])
    ap.add_argument("--regs", nargs="+", type=float, default=[0.04, 0.06, 0.08, 0.1])
    ap.add_argument("--weighting", default="count", choices=["count", "uniform"])
    ap.add_argument("--hessian", default="exact", choices=["exact", "gauss-newton"])
    ap.add_argument("--preconditioner", default="block-jacobi")
    ap.add_argument("--gtol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=60)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--reg-bias", type=float, default=None, help="λ_b (default: = reg)")
    args = ap.parse_args(argv)

    tests = []
    t_all = time.perf_counter()
    for fold in args.folds:
        base, test = load_ml100k_fold(fold, data_home=args.data)
        tr, val = train_test_split(base, 0.1, random_state=0)
        scores = {}
        for rank, reg in itertools.product(args.ranks, args.regs):
            res = fit(tr, rank, reg, args)
            scores[(rank, reg)] = rmse(res, tr, val, (1, 5))
            if args.verbose:
                print(f"  {fold} rank={rank} reg={reg:g}: val {scores[(rank, reg)]:.4f} "
                      f"({res.status.name}, nit={res.nit}, n_cg={res.n_cg})", flush=True)
        (rank, reg), best = min(scores.items(), key=lambda kv: kv[1])
        t0 = time.perf_counter()
        res = fit(base, rank, reg, args)
        t_fit = time.perf_counter() - t0
        te = rmse(res, base, test, (1, 5))
        te_raw = rmse(res, base, test)
        tests.append(te)
        print(f"{fold}: chosen rank={rank} reg={reg:g} (val {best:.4f})  test RMSE {te:.4f} "
              f"(unclipped {te_raw:.4f})  refit: {res.status.name} nit={res.nit} n_cg={res.n_cg} {t_fit:.1f}s",
              flush=True)
    mean = float(np.mean(tests))
    print(f"mean test RMSE over {len(tests)} folds: {mean:.4f}  (target <= 0.905)  "
          f"[{args.weighting} reg, hessian={args.hessian}, {time.perf_counter() - t_all:.0f}s total]")
    return mean


if __name__ == "__main__":
    main()
