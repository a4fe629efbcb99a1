"""ml-100k official folds u1..u5: test RMSE of Bayesian biased MF (Gibbs sampling).

Protocol (no test rating is used for any choice): for each fold, the base set is
split into ``K`` parts (seeded); every rank of the grid is fitted ``K`` times by
:func:`fastmf.solvers.gibbs.gibbs`, each time on ``K-1`` parts and scored on the
held-out part (the posterior-mean prediction after all sweeps, clipped to [1, 5]);
the rank with the lowest mean validation RMSE is refitted on the whole base set and
scored on the fold's test set, clipped to [1, 5] (unclipped printed too).  The
number of sweeps is fixed beforehand (``--burn-in``, ``--samples``), not chosen:
averaging more draws does not overfit.  There is no λ to choose: the prior
precisions are sampled.

Folds run in parallel processes (``--jobs``), one numba thread each.

Usage::

    python -m bench.gibbs_folds [--ranks 16 32 64] [--burn-in 50] [--samples 300]
                                [--inner-folds 5] [--jobs 2]

Target (issue 4): mean test RMSE <= 0.905 (surprise: SVD 0.934, SVD++ 0.919).
Results: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from fastmf._packing import unpack
from fastmf.data.movielens import load_ml100k_fold
from fastmf.kernels.predict import predict_codes
from fastmf.solvers.gibbs import gibbs

DEFAULT_DATA = Path(os.environ.get("FASTMF_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _fit(train, rank, args, validation=None):
    return gibbs(train, rank, max_iter=args.samples, burn_in=args.burn_in, validation=validation, clip=(1.0, 5.0),
                 progress=False, n_threads=1, random_state=args.seed, dtype=np.dtype(args.dtype))


def _rmse(res, test, clip: bool) -> float:
    P, Q, b, c = unpack(res.x, test.n_users, test.n_items, res.rank, res.biases)
    pred = predict_codes(test.users, test.items, P, Q, b, c, res.mu)
    if clip:
        np.clip(pred, 1.0, 5.0, out=pred)
    e = pred - test.values.astype(np.float64)
    return float(np.sqrt(np.mean(e * e)))


def run_fold(fold: str, args) -> dict:
    t0 = time.perf_counter()
    base, test = load_ml100k_fold(fold, data_home=args.data)
    part = np.empty(base.nnz, dtype=np.int64)
    part[np.random.default_rng(args.seed).permutation(base.nnz)] = np.arange(base.nnz) % args.inner_folds
    val = {}
    for rank in args.ranks:
        scores = []
        for v in range(args.inner_folds):
            hold = part == v
            res = _fit(base.subset(~hold), rank, args, validation=base.subset(hold))
            scores.append(res.history[-1]["val_rmse"])
        val[rank] = float(np.mean(scores))
    best = min(val, key=val.get)
    res = _fit(base, best, args)
    return dict(fold=fold, val=val, rank=best, test=_rmse(res, test, True), test_unclipped=_rmse(res, test, False),
                noise_variance=res.noise_variance, seconds=time.perf_counter() - t0)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"])
    ap.add_argument("--ranks", nargs="+", type=int, default=[16, 32, 64])
    ap.add_argument("--burn-in", type=int, default=50)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--inner-folds", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    if args.inner_folds < 2:
        ap.error("--inner-folds must be >= 2")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        rows = list(ex.map(run_fold, args.folds, [args] * len(args.folds)))
    print(f"gibbs, burn-in {args.burn_in}, {args.samples} draws, {args.inner_folds}-fold CV on each base set "
          f"over ranks {args.ranks}, {args.dtype}")
    print("| fold | " + " | ".join(f"val r{r}" for r in args.ranks) + " | rank | test RMSE | unclipped | σ² | s |")
    print("|---|" + "---|" * (len(args.ranks) + 5))
    for row in rows:
        vals = " | ".join(f"{row['val'][r]:.4f}" for r in args.ranks)
        print(f"| {row['fold']} | {vals} | {row['rank']} | {row['test']:.4f} | {row['test_unclipped']:.4f} | "
              f"{row['noise_variance']:.3f} | {row['seconds']:.0f} |")
    mean = float(np.mean([row["test"] for row in rows]))
    print(f"mean test RMSE {mean:.4f} (unclipped {np.mean([row['test_unclipped'] for row in rows]):.4f}); "
          f"{time.perf_counter() - t0:.0f} s")
    return mean


if __name__ == "__main__":
    main()
