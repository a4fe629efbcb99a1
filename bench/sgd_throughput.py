"""SGD throughput on ML-20M-shaped synthetic data (rank 32, float32), 1 and 2 threads.

Reports, per thread count, from one solver run with default options
(``train_loss="running"``):

* the update pass of an epoch (``history[i]["epoch_time"]``), best and median wall
  seconds, and rating updates per second;
* the full epoch as the solver runs it (difference of consecutive ``elapsed``: update
  pass + stratum schedule + running loss + exact penalty / divergence check +
  bookkeeping), best and median;

then the kernel alone (the epoch kernel called directly, 64-byte aligned arrays as the
solver allocates them) with wall and process CPU seconds (on a shared machine wall
time is inflated; CPU seconds show what the kernel itself costs), and the exact loss
pass alone (``train_loss="exact"`` pays it every epoch).  The 2-thread/1-thread ratio
is computed from the best wall times of the same run.  The 1-minute load average is
printed with each figure.  With scikit-surprise installed, its SVD (the same biased
model, rank 32, plain SGD, 1 thread) is timed on ml-100k-shaped synthetic data.

``--fit N`` instead times whole short fits (issue #14 item 4): ``sgd(R, rank, max_iter=N)``
on the cached ML-20M shape (:func:`bench._data.load_dataset`; a ``Ratings``, so no
``as_ratings``), setup and the final exact loss included, ``--repeat`` times, and prints
the rate ``N * nnz / wall`` next to the update passes' own rate in the same fit, with where
the time went: setup (layout, permutation, shuffle, starting factors), update passes, the
per-epoch loss bookkeeping, and the final exact loss pass + packing.

Usage::

    python -m bench.sgd_throughput [--scale 1.0] [--epochs 5] [--rank 32] [--blocks N]
    python -m bench.sgd_throughput --fit 3 [--repeat 3] [--threads 2]

Targets (issue 5): >= 60M updates/s with 2 threads; >= 1.8x the 1-thread rate;
>= 100x the rate of Surprise's SVD.  Issue #14 item 4: a 3-epoch fit, setup included,
>= 60M updates/s with 2 threads (the update passes alone ran ~89M/s).
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numba
import numpy as np

from fastmf.solvers.sgd import sgd


def load() -> str:
    """The 1-, 5- and 15-minute load averages (the machine may be shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_data(scale: float, seed: int = 0):
    from fastmf.data.synthetic import synthetic_preset

    return synthetic_preset("ml-20m", scale=scale, random_state=seed)


def surprise_rate(rank: int):
    try:
        from surprise import SVD, Dataset, Reader
    except ImportError:
        return None
    import pandas as pd

    from fastmf.data.synthetic import synthetic_preset

    R = synthetic_preset("ml-100k", random_state=0)
    df = pd.DataFrame({"u": R.users, "i": R.items, "r": R.values.astype(float)})
    data = Dataset.load_from_df(df, Reader(rating_scale=R.rating_scale))
    trainset = data.build_full_trainset()
    epochs = 5
    algo = SVD(n_factors=rank, n_epochs=epochs, random_state=0)
    t = time.perf_counter()
    algo.fit(trainset)
    wall = time.perf_counter() - t
    return R.nnz * epochs / wall


def fit_rates(epochs: int, repeat: int, threads: int, rank: int) -> None:
    """Whole ``epochs``-epoch fits on the cached ML-20M shape; see the module docstring."""
    from bench._data import load_dataset

    R = load_dataset("ml-20m")
    sgd(R.subset(np.arange(1000)), rank, max_iter=1, progress=False)  # compile / load cache
    print(f"data: {R!r}; {epochs}-epoch fits, {threads} thread(s), rank {rank}", flush=True)
    for _ in range(repeat):
        # a fresh Ratings for every fit, as a fit of freshly converted data gets: a Ratings
        # caches derived arrays (e.g. its item-major copy) that a previous fit may have built
        fresh = copy.copy(R)
        fresh._item_major = None
        t = time.perf_counter()
        res = sgd(fresh, rank, max_iter=epochs, n_threads=threads, progress=False, random_state=0)
        wall = time.perf_counter() - t
        upd = sum(h["epoch_time"] for h in res.history)
        loop = res.history[-1]["elapsed"] - res.setup_time  # update passes + per-epoch loss
        final = wall - res.history[-1]["elapsed"]  # final exact loss, packing, call overhead
        print(f"fit {wall:.2f}s = {epochs * R.nnz / wall / 1e6:.1f}M updates/s; update passes {upd:.2f}s = "
              f"{epochs * R.nnz / upd / 1e6:.1f}M/s (fit/passes rate {upd / wall:.2f}); setup "
              f"{res.setup_time:.2f}s, per-epoch loss {loop - upd:.2f}s, final exact loss + packing "
              f"{final:.2f}s [load {load()}]", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of ML-20M (synthetic_preset scale)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=None)
    ap.add_argument("--schedule", default="adaptive")
    ap.add_argument("--fit", type=int, default=None, metavar="N", help="time whole N-epoch fits instead")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.fit is not None:
        fit_rates(args.fit, args.repeat, args.threads, args.rank)
        return 0

    t = time.perf_counter()
    R = make_data(args.scale)
    print(f"data: {R!r} ({time.perf_counter() - t:.1f}s to generate)")
    sgd(R.subset(np.arange(min(R.nnz, 1000))), args.rank, max_iter=1, progress=False)  # compile / load cache
    max_threads = numba.config.NUMBA_NUM_THREADS
    threads = sorted({1, min(2, max_threads)})
    upd, full = {}, {}
    for nt in threads:
        res = sgd(R, args.rank, max_iter=args.epochs, n_threads=nt, n_blocks=args.blocks, progress=False,
                  schedule=args.schedule, random_state=0)
        walls = [h["epoch_time"] for h in res.history]
        epochs = [h["elapsed"] - p["elapsed"] for p, h in zip(res.history, res.history[1:])]
        upd[nt], full[nt] = min(walls), min(epochs)
        print(f"{nt} thread(s), solver: B={res.n_blocks}, setup {res.setup_time:.2f}s; update pass best "
              f"{upd[nt]:.3f}s ({R.nnz / upd[nt] / 1e6:.1f}M updates/s), median {np.median(walls):.3f}s; "
              f"full epoch best {full[nt]:.3f}s ({R.nnz / full[nt] / 1e6:.1f}M/s), median "
              f"{np.median(epochs):.3f}s; final exact loss {res.fun:.6g} [load {load()}]", flush=True)
    # the kernels alone
    from fastmf.kernels import sgd as K
    from fastmf.solvers.sgd import _aligned_copy, _equal_segments, build_layout, stratum_schedule

    L = build_layout(R, res.n_blocks, np.random.default_rng(0), np.float32)
    m, n, k = R.n_users, R.n_items, args.rank
    f = np.float32
    seg = _equal_segments(R.nnz, 256)
    seg_out = np.empty(seg.shape[0] - 1)
    block_loss = np.zeros(L.n_blocks ** 2)
    kern = {}
    for nt in threads:
        numba.set_num_threads(nt)
        rng = np.random.default_rng(1)
        cpus, walls, lwalls = [], [], []
        P = _aligned_copy(rng.normal(0, 0.01, (m, k)).astype(f))
        Q = _aligned_copy(rng.normal(0, 0.01, (n, k)).astype(f))
        AU = _aligned_copy(np.ones((m, 4), f))
        AI = _aligned_copy(np.ones((n, 4), f))
        AU[:, 0] = 0
        AI[:, 0] = 0
        for _ in range(args.epochs):
            S = stratum_schedule(L.n_blocks, rng)
            c0, w0 = time.process_time(), time.perf_counter()
            K.sgd_epoch_blocked(L.users, L.items, L.values, L.block_ptr, S, P, Q, AU, AI, f(3.5), f(0.05),
                                f(0.05), f(0.05), f(1 / k), True, args.schedule == "adaptive", block_loss)
            cpus.append(time.process_time() - c0)
            walls.append(time.perf_counter() - w0)
            b, c = np.ascontiguousarray(AU[:, 0]), np.ascontiguousarray(AI[:, 0])
            w0 = time.perf_counter()
            K.squared_error_segments(L.users, L.items, L.values, seg, P, Q, b, c, 3.5, True, seg_out)
            lwalls.append(time.perf_counter() - w0)
        kern[nt] = min(walls)
        print(f"kernel only, {nt} thread(s): update pass best wall {min(walls):.3f}s "
              f"({R.nnz / min(walls) / 1e6:.1f}M/s), CPU {min(cpus):.3f}s "
              f"({R.nnz / min(cpus) / 1e6:.1f}M updates per CPU-second); exact loss pass best wall "
              f"{min(lwalls):.3f}s [load {load()}]", flush=True)
    numba.set_num_threads(max_threads)
    if 2 in upd:
        print(f"2 threads / 1 thread (wall): update pass {upd[1] / upd[2]:.2f}x, full epoch "
              f"{full[1] / full[2]:.2f}x, kernel only {kern[1] / kern[2]:.2f}x (target >= 1.8)")
    rate2 = R.nnz / upd[max(upd)]
    print(f"best rate {rate2 / 1e6:.1f}M updates/s (update pass), {R.nnz / full[max(full)] / 1e6:.1f}M/s "
          f"(full epoch) (target >= 60M/s at full scale, rank 32, float32, 2 threads)")
    s = surprise_rate(args.rank)
    if s is None:
        print("scikit-surprise not installed: no Surprise column")
    else:
        print(f"surprise SVD (rank {args.rank}, 1 thread, ml-100k-shaped): {s / 1e6:.3f}M updates/s; "
              f"fastmf / surprise = {rate2 / s:.0f}x (target >= 100x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
