"""ml-100k official folds u1..u5: test RMSE of biased MF fitted by Newton-CG.

Protocol (no test rating is used for any choice): for each fold, the base set is
split 90/10 at random (seeded); every configuration of the grid (rank, λ_f, λ_b,
init scale) is fitted on the 90% and scored on the 10% (predictions clipped to
[1, 5]); the best configuration is refitted on the whole base set and scored on the
fold's test set, clipped to [1, 5] (the unclipped figure is printed too).

With ``--early-stopping P`` every grid fit also stops early on the 10% validation
part (patience ``P`` accepted iterations, best parameters kept), so the grid also
chooses an iteration count.  Two test figures are then reported per fold:

* ``es``: the early-stopped model itself (fitted on the 90% only);
* ``refit``: a fit on the whole base set stopped after the chosen number of
  iterations (``max_iter = best_iteration``; no validation data left to stop on).

``--seeds N`` additionally reports an *ensemble* (average of the clipped-at-the-end
predictions of N refits from different starting points, same chosen configuration);
it is not a single biased MF and is printed separately.

Usage::

    python -m bench.newton_folds [--ranks 8 16 32] [--regs 0.04 0.06 0.08 0.1]
                                 [--reg-biases 0.02 0.05] [--weighting count|uniform]
                                 [--init-scales 0.1] [--early-stopping 3]
                                 [--hessian exact] [--threads 1]

``--reg-biases`` default: λ_b = λ_f.  Target (issue 4): mean test RMSE <= 0.905
(surprise: SVD 0.934, SVD++ 0.919, 5-fold).

``--weighting`` takes any ``reg_weighting`` of :class:`fastmf.MFObjective`
(``uniform``, ``sqrt-count``, ``count`` or an exponent α: penalty weights
``n**α`` per user/item row, ``n`` its training rating count).  ``--init svd`` starts
from the spectral start (:mod:`fastmf.initialization`).  The best configuration found
(results in ``docs/performance.md``)::

    python -m bench.newton_folds --ranks 128 256 --regs 1 1.25 --reg-biases 1 --init svd \
        --init-scales 0.01 0.03 --weighting sqrt-count --threads 1 --max-cg 1 \
        --inner-folds 5 --inner-max-iter 25
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
from fastmf.cli import _weighting
from fastmf.data.movielens import load_ml100k_fold
from fastmf.data.splits import train_test_split
from fastmf.kernels.predict import rmse_codes
from fastmf.objective import MFObjective
from fastmf.solvers.newton import ConvergenceWarning, newton_cg

DEFAULT_DATA = Path(os.environ.get("FASTMF_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def rmse(result, train, test, clip=None) -> float:
    P, Q, b, c = unpack(result.x, train.n_users, train.n_items, result.rank, result.biases)
    return rmse_codes(test.users, test.items, test.values.astype(np.float64), P, Q, b, c, result.mu, clip)


def fit(train, cfg, args, *, validation=None, max_iter=None, seed=0, early_stopping="args"):
    rank, reg, reg_bias, scale = cfg
    obj = MFObjective(train, rank, reg=reg, reg_bias=reg_bias, reg_weighting=args.weighting,
                      hessian=args.hessian, n_threads=args.threads, dtype=args.dtype)
    x0 = obj.x0(seed, scale=scale, init=args.init)
    kw = {}
    if validation is not None:
        kw = dict(validation=validation, clip=(1.0, 5.0),
                  early_stopping=args.early_stopping if early_stopping == "args" else early_stopping,
                  min_delta=args.min_delta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return newton_cg(obj, x0, preconditioner=args.preconditioner, tol=args.gtol, max_cg=args.max_cg,
                         max_iter=args.max_iter if max_iter is None else max_iter,
                         progress=False, n_threads=args.threads, **kw)


def predict(result, train, test, clip=None) -> np.ndarray:
    P, Q, b, c = unpack(result.x, train.n_users, train.n_items, result.rank, result.biases)
    u, i = test.users, test.items
    pred = result.mu + np.einsum("ij,ij->i", P[u].astype(np.float64), Q[i].astype(np.float64))
    if result.biases:
        pred += b[u] + c[i]
    return pred if clip is None else np.clip(pred, *clip)


def fmt(cfg) -> str:
    rank, reg, reg_bias, scale = cfg
    return f"rank={rank} reg={reg:g} reg_bias={'=reg' if reg_bias is None else f'{reg_bias:g}'} scale={scale:g}"


def cross_validate(base, grid, args, fold):
    """K-fold choice of configuration and iteration count on the base set.

    The base ratings are cut at random (seed 0) into K parts; each configuration is
    fitted K times (every part once the validation set, the rest the training set),
    without early stopping, for ``--inner-max-iter`` iterations.  The K validation
    curves (clipped RMSE after each iteration) are averaged; a configuration's score
    is the minimum of its mean curve and its iteration count the argmin.
    """
    K = args.inner_folds
    part = np.empty(base.nnz, dtype=np.int64)
    part[np.random.default_rng(0).permutation(base.nnz)] = np.arange(base.nnz) % K
    scores, iters = {}, {}
    for cfg in grid:
        curves = []
        for v in range(K):
            hold = part == v
            tr, val = base.subset(~hold), base.subset(hold)
            res = fit(tr, cfg, args, validation=val, max_iter=args.inner_max_iter, early_stopping=None)
            curves.append({rec["iteration"]: rec["val_rmse"] for rec in res.history if rec["iteration"] >= 1})
        n_it = min(max(c) for c in curves)
        mean = np.array([np.mean([c[t] for c in curves]) for t in range(1, n_it + 1)])
        iters[cfg] = int(np.argmin(mean)) + 1
        scores[cfg] = float(mean.min())
        if args.verbose:
            print(f"  {fold} {fmt(cfg)}: {K}-fold val {scores[cfg]:.4f} at {iters[cfg]} iterations", flush=True)
    return scores, iters


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"])
    ap.add_argument("--ranks", nargs="+", type=int, default=[8, 16, 32])
    ap.add_argument("--regs", nargs="+", type=float, default=[0.04, 0.06, 0.08, 0.1])
    ap.add_argument("--reg-biases", nargs="+", type=float, default=None, help="λ_b grid (default: λ_b = λ_f)")
    ap.add_argument("--init-scales", nargs="+", type=float, default=[0.1], help="x0 scale grid (MFObjective.x0)")
    ap.add_argument("--init", default="random", choices=["random", "svd"],
                    help="starting factors (MFObjective.x0): random draws or the spectral start; --init-scales "
                         "gives their row norm either way")
    ap.add_argument("--weighting", default="count", type=_weighting, metavar="{count,sqrt-count,uniform,ALPHA}",
                    help="reg_weighting of MFObjective (penalty weights n**ALPHA)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--hessian", default="exact", choices=["exact", "gauss-newton"])
    ap.add_argument("--preconditioner", default="jacobi")
    ap.add_argument("--gtol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=60)
    ap.add_argument("--max-cg", type=int, default=250, help="CG steps per Newton iteration (small: a finer "
                    "early-stopping path)")
    ap.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                    help="early stopping on the validation split during the grid (see module docstring)")
    ap.add_argument("--min-delta", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=1,
                    help="also report an ENSEMBLE: the average of the refits from this many starting points "
                         "(x0 seeds 0..N-1; same chosen configuration); not a single biased MF")
    ap.add_argument("--inner-folds", type=int, default=1, metavar="K",
                    help="choose the configuration and the iteration count by K-fold cross-validation on the base "
                         "set (mean validation curve over K fits of each configuration, no early stopping, up to "
                         "--inner-max-iter iterations) instead of one 90/10 split")
    ap.add_argument("--inner-max-iter", type=int, default=30)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    reg_biases = [None] if args.reg_biases is None else args.reg_biases
    grid = list(itertools.product(args.ranks, args.regs, reg_biases, args.init_scales))
    cv = args.inner_folds > 1
    if cv and (args.early_stopping is not None or args.seeds > 1):
        ap.error("--inner-folds chooses the iteration count itself: drop --early-stopping and --seeds")
    es = args.early_stopping is not None or cv
    tests, tests_es, tests_ens = [], [], []
    t_all = time.perf_counter()
    for fold in args.folds:
        base, test = load_ml100k_fold(fold, data_home=args.data)
        tr, val = train_test_split(base, 0.1, random_state=0)
        scores, iters, results = {}, {}, {}
        if cv:
            scores, iters = cross_validate(base, grid, args, fold)
            grid_left = []
        else:
            grid_left = grid
        for cfg in grid_left:
            res = fit(tr, cfg, args, validation=val if es else None)
            scores[cfg] = rmse(res, tr, val, (1, 5))
            iters[cfg] = res.best_iteration if es else res.nit
            if es:
                results[cfg] = res
            if args.verbose:
                print(f"  {fold} {fmt(cfg)}: val {scores[cfg]:.4f} ({res.status.name}, nit={res.nit}, "
                      f"best_it={res.best_iteration}, n_cg={res.n_cg})", flush=True)
        cfg, best = min(scores.items(), key=lambda kv: kv[1])
        t0 = time.perf_counter()
        res = fit(base, cfg, args, max_iter=max(1, iters[cfg]) if es else None)
        t_fit = time.perf_counter() - t0
        te = rmse(res, base, test, (1, 5))
        te_raw = rmse(res, base, test)
        tests.append(te)
        line = (f"{fold}: chosen {fmt(cfg)} (val {best:.4f}"
                + (f", {iters[cfg]} iterations" if es else "")
                + f")  refit test RMSE {te:.4f} (unclipped {te_raw:.4f}, {res.status.name} nit={res.nit} "
                f"n_cg={res.n_cg} {t_fit:.1f}s)")
        if es and not cv:
            te_es = rmse(results[cfg], tr, test, (1, 5))
            tests_es.append(te_es)
            line += f"  early-stopped model test RMSE {te_es:.4f}"
        if args.seeds > 1:
            preds = [predict(res, base, test)]
            for seed in range(1, args.seeds):
                preds.append(predict(fit(base, cfg, args, max_iter=max(1, iters[cfg]) if es else None, seed=seed),
                                     base, test))
            ens = np.clip(np.mean(preds, axis=0), 1, 5)
            te_ens = float(np.sqrt(np.mean((ens - test.values.astype(np.float64)) ** 2)))
            tests_ens.append(te_ens)
            line += f"  ensemble of {args.seeds} refits {te_ens:.4f}"
        print(line, flush=True)
    mean = float(np.mean(tests))
    print(f"mean test RMSE over {len(tests)} folds: refit {mean:.4f}"
          + (f", early-stopped {np.mean(tests_es):.4f}" if tests_es else "")
          + (f", ensemble of {args.seeds} refits {np.mean(tests_ens):.4f}" if tests_ens else "")
          + f"  (target <= 0.905)  [{args.weighting} reg, hessian={args.hessian}, "
          f"init={args.init}, {time.perf_counter() - t_all:.0f}s total]")
    return mean


if __name__ == "__main__":
    main()
