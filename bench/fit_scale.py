"""End-to-end fits at MovieLens scale: ``MatrixFactorization`` with its defaults.

Generates a MovieLens-shaped synthetic set (:func:`fastmf.data.synthetic.synthetic_preset`,
seed 0), holds out 2% of the ratings, fits ``MatrixFactorization(rank=32, solver=...)``
with every other parameter at its default for each solver given, and prints the fit
time, iterations, stopping status and the held-out RMSE.  Peak memory: run it under
``/usr/bin/time -v``.

Usage::

    python -m bench.fit_scale [--dataset ml-25m] [--solvers newton als sgd] [--rank 32] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import fastmf
from fastmf.data.splits import train_test_split
from fastmf.data.synthetic import PRESETS, synthetic_preset


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-25m", choices=sorted(PRESETS))
    ap.add_argument("--solvers", nargs="+", default=["newton", "als", "sgd"], choices=["newton", "als", "sgd"])
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    ratings = synthetic_preset(args.dataset, random_state=0)
    train, test = train_test_split(ratings, 0.02, random_state=0)
    print(f"{args.dataset} shape: {ratings.nnz:,} ratings, {train.nnz:,} for training "
          f"({time.perf_counter() - t:.1f}s to generate and split)", flush=True)
    for solver in args.solvers:
        model = fastmf.MatrixFactorization(rank=args.rank, solver=solver, n_threads=args.threads, progress=False)
        t = time.perf_counter()
        model.fit(train)
        elapsed = time.perf_counter() - t
        res = model.result_
        print(f"{solver:7s} fit {elapsed:6.1f}s  {res.nit} iterations ({res.status.name})  "
              f"held-out RMSE {model.evaluate(test)['rmse']:.4f}", flush=True)


if __name__ == "__main__":
    main()
