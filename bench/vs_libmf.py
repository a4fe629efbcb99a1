"""Whole fit against LIBMF (issue #14 item 4): time to reach LIBMF's test RMSE, in one run.

On a split made by the peer kit (``/work/shared/peers``: ``gen_synth.py`` then ``split.py``; arrays
``tr_u, tr_i, tr_r, te_u, te_i, te_r``), this script

1. fits LIBMF (k=32, 20 iterations, 2 threads, LIBMF's defaults) through the kit's ``run_libmf.py``
   in a subprocess and reads its fit time and clipped test RMSE: the **target**;
2. fits each requested fastmf solver through the estimator at its **defaults**
   (``MatrixFactorization(solver=name, random_state=0, progress=False)``: rank 32, the
   solver's default regularisation, learning rate, ...) on the raw arrays, with the test
   set as ``eval_set`` (scored every iteration, clipped to the training scale like LIBMF's
   RMSE) and a callback that stops the fit at the first iteration whose test RMSE is at
   most the target.  The time charged is the wall time of the whole ``fit`` call:
   ``as_ratings`` of the training and test arrays, the solver's setup, its iterations,
   the per-iteration test scoring, and building the fitted model;
3. fits LIBMF again (LIBMF's figure is the mean of its two runs: the machine is shared).

Only numba compilation is excluded (a tiny warm-up fit of each solver first; LIBMF is
precompiled).  Per solver it prints the time to target, the ratio to LIBMF's time, the
iterations, and where the time went (conversion, setup, iterations, scoring, model build).

Usage::

    LIBMF_OBJ=/tmp/libmf-build/libmf_avx.so python -m bench.vs_libmf /tmp/synth-20m-split.npz \
        [--solvers sgd newton als] [--threads 2] [--max-time 300] [--peers /work/shared/peers]

Target (issue #14 item 4): some solver at its defaults reaches LIBMF's RMSE in at most half
LIBMF's time, conversion included.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np


def run_libmf(split: str, peers: str, threads: int) -> tuple[float, float]:
    """``(fit seconds, test RMSE)`` of the kit's LIBMF run (needs ``LIBMF_OBJ``)."""
    out = subprocess.run([sys.executable, os.path.join(peers, "run_libmf.py"), split, "--threads", str(threads)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"fit ([0-9.]+) s, test RMSE ([0-9.]+)", out)
    if m is None:
        raise RuntimeError(f"unexpected run_libmf.py output: {out!r}")
    return float(m.group(1)), float(m.group(2))


class StopAt:
    """Callback: stop at the first iteration whose test RMSE is at most ``target``."""

    def __init__(self, target: float):
        self.target = target
        self.reached = None

    def __call__(self, rec) -> bool:
        v = rec.get("val_rmse")
        if v is not None and v <= self.target:
            self.reached = rec["iteration"]
            return True
        return False


def fit_to_target(solver: str, X, V, target: float, threads: int, max_time: float):
    """One estimator fit at the solver's defaults, stopped at the target; returns a dict of figures."""
    from fastmf import MatrixFactorization

    stop = StopAt(target)
    # max_time only bounds a solver that never gets there; it is not a tuning knob
    est = MatrixFactorization(solver=solver, random_state=0, progress=False, n_threads=threads, callbacks=stop,
                              solver_options={"max_time": max_time})
    t0 = time.perf_counter()
    est.fit(X, eval_set=V)
    wall = time.perf_counter() - t0
    res, hist = est.result_, est.history_
    solver_wall = float(res["elapsed"])
    setup = float(res.get("setup_time", float("nan")))
    epochs = float(sum(h.get("epoch_time", 0.0) for h in hist)) if hist and "epoch_time" in hist[-1] else float("nan")
    return dict(solver=solver, wall=wall, reached=stop.reached, nit=est.n_iter_,
                rmse=[round(h["val_rmse"], 4) for h in hist if h.get("val_rmse") is not None],
                outside_solver=wall - solver_wall, solver_wall=solver_wall, setup=setup, epochs=epochs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("split", nargs="?", default="/tmp/synth-20m-split.npz")
    ap.add_argument("--solvers", nargs="+", default=["sgd", "newton", "als"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-time", type=float, default=300.0, help="per solver: give up after this many seconds")
    ap.add_argument("--peers", default="/work/shared/peers")
    ap.add_argument("--no-libmf", action="store_true", help="skip LIBMF; needs --target")
    ap.add_argument("--target", type=float, default=None, help="test RMSE to reach (default: LIBMF's)")
    args = ap.parse_args(argv)

    import fastmf
    from fastmf import MatrixFactorization
    from fastmf.data.convert import as_ratings

    print(f"fastmf {fastmf.__file__}; load {os.getloadavg()[0]:.2f}", flush=True)
    z = np.load(args.split)
    X = (z["tr_u"], z["tr_i"], z["tr_r"])
    V = (z["te_u"], z["te_i"], z["te_r"])
    print(f"{len(X[2]):,} train / {len(V[2]):,} test ratings", flush=True)
    small = tuple(a[:5000] for a in X)
    for s in args.solvers:  # compile / load numba's cache outside the timings
        MatrixFactorization(solver=s, progress=False, max_iter=2, n_threads=args.threads).fit(small, eval_set=small)

    libmf = []
    if not args.no_libmf:
        libmf.append(run_libmf(args.split, args.peers, args.threads))
        print(f"LIBMF run 1: fit {libmf[0][0]:.2f} s, test RMSE {libmf[0][1]:.4f} [load {os.getloadavg()[0]:.2f}]",
              flush=True)
    target = args.target if args.target is not None else libmf[0][1]
    t = time.perf_counter()
    as_ratings(X)
    conv = time.perf_counter() - t
    print(f"as_ratings(train) alone: {conv:.2f} s", flush=True)
    rows = []
    for s in args.solvers:
        r = fit_to_target(s, X, V, target, args.threads, args.max_time)
        rows.append(r)
        print(f"{s}: {r['wall']:.2f} s, reached at iteration {r['reached']} (nit {r['nit']}); conversion+model "
              f"{r['outside_solver']:.2f} s, solver {r['solver_wall']:.2f} s (setup {r['setup']:.2f} s, update passes "
              f"{r['epochs']:.2f} s); test RMSE per iteration {r['rmse']} [load {os.getloadavg()[0]:.2f}]", flush=True)
    if not args.no_libmf:
        libmf.append(run_libmf(args.split, args.peers, args.threads))
        print(f"LIBMF run 2: fit {libmf[1][0]:.2f} s, test RMSE {libmf[1][1]:.4f} [load {os.getloadavg()[0]:.2f}]",
              flush=True)
    ref = float(np.mean([t for t, _ in libmf])) if libmf else float("nan")
    print(f"\ntarget test RMSE {target:.4f}; LIBMF time {ref:.2f} s (mean of {len(libmf)} runs)")
    print("| solver (defaults, rank 32) | time to target | / LIBMF | iterations |")
    print("|---|---|---|---|")
    for r in rows:
        got = f"{r['wall']:.2f} s" if r["reached"] else f"not reached in {r['wall']:.1f} s (best {min(r['rmse']):.4f})"
        print(f"| {r['solver']} | {got} | {r['wall'] / ref:.2f} | {r['reached'] or r['nit']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
