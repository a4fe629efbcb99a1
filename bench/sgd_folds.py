"""ml-100k official folds u1..u5: test RMSE of blocked SGD with early stopping.

Protocol (no test data is used for any choice): for each fold, the base set is split
90/10 at random (seeded); SGD runs on the 90% with early stopping on the 10%
(patience 10) and the early-stopped model is scored on the fold's test set
("es"), predictions clipped to the rating scale [1, 5] as a predictor does (the
unclipped figure is printed too).  Then SGD is refitted on the whole base set for the early-stopping epoch
count and scored too ("refit").  Hyper-parameters are the solver defaults (chosen on
a 90/10 split of u1.base only) unless overridden on the command line.

Usage::

    python -m bench.sgd_folds [--rank 32] [--reg 0.1] [--schedule adaptive] [--data DIR]

Target (issue 5): mean "es" test RMSE <= 0.910.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from fastmf.data.movielens import load_ml100k_fold
from fastmf.data.splits import train_test_split
from fastmf.kernels.predict import rmse_codes
from fastmf.solvers.sgd import sgd
from fastmf._packing import unpack

DEFAULT_DATA = Path(os.environ.get("FASTMF_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_rmse(result, train, test, clip=None) -> float:
    P, Q, b, c = unpack(result.x, train.n_users, train.n_items, result.rank, result.biases)
    return rmse_codes(test.users, test.items, test.values.astype(np.float64), P, Q, b, c, result.mu, clip)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding ml-100k.zip")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--reg", type=float, default=None)
    ap.add_argument("--reg-bias", type=float, default=None)
    ap.add_argument("--learning-rate", type=float, default=None)
    ap.add_argument("--schedule", default="adaptive")
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--folds", default="u1,u2,u3,u4,u5")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    kw = dict(rank=args.rank, schedule=args.schedule, progress=False, random_state=args.seed, clip=True)
    for name in ("reg", "reg_bias", "learning_rate"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    print(f"sgd settings: {kw}, patience={args.patience}")
    print(f"{'fold':5s} {'epochs':>6s} {'val':>7s} {'test(es)':>9s} {'test(refit)':>11s} {'es,unclipped':>12s} {'time':>6s}")
    es_scores, refit_scores, raw_scores = [], [], []
    for fold in args.folds.split(","):
        train, test = load_ml100k_fold(fold, args.data, download=False)
        inner, val = train_test_split(train, 0.1, random_state=args.seed)
        t0 = time.perf_counter()
        res = sgd(inner, validation=val, early_stopping=args.patience, max_iter=args.max_epochs, **kw)
        scale = train.rating_scale
        es = test_rmse(res, inner, test, scale)
        es_raw = test_rmse(res, inner, test)
        refit = sgd(train, max_iter=res.best_iteration, **kw)
        rf = test_rmse(refit, train, test, scale)
        dt = time.perf_counter() - t0
        es_scores.append(es)
        raw_scores.append(es_raw)
        refit_scores.append(rf)
        best_val = min(h["val_rmse"] for h in res.history)
        print(f"{fold:5s} {res.best_iteration:6d} {best_val:7.4f} {es:9.4f} {rf:11.4f} {es_raw:12.4f} {dt:6.2f}s", flush=True)
    print(f"mean  {'':6s} {'':7s} {np.mean(es_scores):9.4f} {np.mean(refit_scores):11.4f} {np.mean(raw_scores):12.4f}")
    print(f"target: mean test RMSE (es) <= 0.910 -> {'met' if np.mean(es_scores) <= 0.910 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
