"""Roofline of the parallel COO kernels: each kernel against a streaming floor and a compute ceiling.

One process run prints, on the ML-20M shape (:func:`bench._data.load_dataset`, 20M ratings;
the first run generates and caches it, about a minute), float32, rank 32, 2 threads:

* the **streaming floor**: a numba ``prange`` pass over the threads that only reads the
  canonical ``users``, ``items`` and ``values`` arrays (12 bytes a rating) and sums them;
  its time and GB/s;
* each kernel of ``MFObjective(format="coo")`` (the tiled kernels of
  :mod:`fastmf.kernels.tiled`, called as the objective calls them, without the objective's
  copies of ``x`` and of the result): loss+gradient, exact Hessian product, Gauss-Newton
  product; time, ratio to the floor, GB/s and GFLOP/s;
* the **compute ceiling**: float32 ``sgemm`` (numpy matmul of two 2048 x 2048 matrices,
  BLAS limited to the same threads with threadpoolctl), in GFLOP/s.

Flops per rating, rank ``k`` (multiply and add counted separately; bias terms and the
loss, O(1) per rating, not counted):

* loss+gradient ``6k``: the prediction dot ``p_u . q_i`` (2k), the user-row update
  ``-e q_i`` (2k), the item-row scatter ``-e p_u`` (2k);
* Gauss-Newton product ``8k``: ``delta = dp_u . q_i + p_u . dq_i`` (4k), ``delta q_i``
  (2k), ``delta p_u`` (2k);
* exact Hessian product ``14k``: ``delta`` (4k), the residual's dot (2k),
  ``delta q_i - e dq_i`` (4k), ``delta p_u - e dp_u`` (4k).

Bytes: the GB/s column counts the compulsory traffic of one call: the kernel's rating
layout (the tiled copy: item codes, values, segment users and pointers) read once, every
dense array of the call read or written once (factors, direction, outputs), and the
per-block item buffers written, read back, and zeroed.  It is a lower bound of the DRAM
traffic, so GB/s near the floor's means the kernel streams; far below it means it is
latency- or compute-bound.

Timings are medians over ``--repeat`` rounds; in each round the floor and every kernel
run once, one after the other (interleaved), and the "x floor" column is the median over
the rounds of the kernel's time over that round's floor time (paired, robust to load).

``--baseline DIR`` also loads the ``fastmf`` package found in ``DIR`` (e.g. an older
commit's tree: ``git archive d98c2ef fastmf | tar -x -C /tmp/base``) under another
module name and times its kernels in the same rounds, so before/after ratios are paired
too.  Usage::

    python -m bench.roofline                      # ML-20M shape, float32, rank 32, 2 threads
    python -m bench.roofline --baseline /tmp/base --repeat 9
    python -m bench.roofline --dtype float64 --dataset ml-10m
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import prange
from threadpoolctl import threadpool_limits

__all__ = ["main", "stream_floor", "load_package"]


@numba.njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc"})
def _stream(bounds, users, items, vals, out):
    """Sum the three arrays over each chunk (``out[t]``): the least work that reads every byte."""
    for t in prange(bounds.shape[0] - 1):
        su = 0
        si = 0
        sv = vals.dtype.type(0)
        for j in range(bounds[t], bounds[t + 1]):
            su += users[j]
            si += items[j]
            sv += vals[j]
        out[t] = np.float64(su) + np.float64(si) + np.float64(sv)


def stream_floor(users, items, vals, n_threads: int):
    """A callable running the streaming floor over ``n_threads`` equal chunks, and its bytes."""
    nnz = users.shape[0]
    nt = max(1, int(n_threads))
    bounds = (np.arange(nt + 1, dtype=np.int64) * nnz) // nt
    out = np.empty(nt)

    def run():
        _stream(bounds, users, items, vals, out)
        return float(out.sum())

    return run, users.nbytes + items.nbytes + vals.nbytes


def load_package(root: str, alias: str):
    """Import the ``fastmf`` package under ``root`` as the top-level module ``alias``."""
    pkg = Path(root) / "fastmf"
    spec = importlib.util.spec_from_file_location(alias, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    if spec is None or spec.loader is None:
        raise ImportError(f"no fastmf package under {root}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[alias] = mod
    spec.loader.exec_module(mod)
    return mod


class _Variant:
    """One code version's objective and its three kernel calls."""

    def __init__(self, name, pkg, ratings, rank, dtype, n_threads, coo_blocks):
        objective = importlib.import_module(pkg.__name__ + ".objective")
        self.name = name
        self.tiled = importlib.import_module(pkg.__name__ + ".kernels.tiled")
        self.threading = importlib.import_module(pkg.__name__ + "._threading")
        R = ratings
        cls = importlib.import_module(pkg.__name__ + ".data.ratings").Ratings
        if not isinstance(R, cls):  # another package's class: same arrays, that package's container
            R = cls.from_codes(R.users, R.items, R.values, R.n_users, R.n_items, dtype=R.dtype)
        self.obj = obj = objective.MFObjective(R, rank, reg=0.05, dtype=dtype, format="coo", n_threads=n_threads,
                                               hessian="exact", coo_blocks=coo_blocks)
        rng = np.random.default_rng(0)
        x = obj.x0(random_state=0, scale=0.5)
        x[obj.n_users * rank + obj.n_items * rank:] = rng.normal(scale=0.1, size=obj.n_params - (obj.n_users
                                                                                                   + obj.n_items) * rank)
        obj.fun(x)  # sets theta, builds the tiles and buffers, compiles / loads the cache
        obj._dir[:] = rng.normal(scale=0.1, size=obj.n_params)
        self.n_threads = n_threads
        with self.threading.thread_limit(n_threads, limit_blas=False) as nt:
            # older trees (--baseline) cut one block per thread of the call: _tiles(n_threads)
            takes_nt = len(inspect.signature(obj._tiles).parameters) > 0
            self.tiles = obj._tiles(nt) if takes_nt else obj._tiles()
        self.nb = len(self.tiles["ubounds"]) - 1
        self.bufs = obj._coo_bufs(self.nb)
        for mode in (0, 1):
            self.hessp(mode)

    def grad(self):
        self.obj._fg_valid = False
        self.obj._compute_fg()

    def hessp(self, mode):
        o = self.obj
        P, Q, b, c = o._views(o._theta)
        dP, dQ, db, dc = o._views(o._dir)
        hP, hQ, hb, hc = o._views(o._hv)
        bufQ, bufc, _, rows = self.bufs
        with self.threading.thread_limit(self.n_threads, limit_blas=False):
            self.tiled.hessp_tiled(self.tiles, o._item_chunks, P, Q, dP, dQ, b, c, db, dc, o._mu, o._regw_u,
                                   o._regbw_u, o._regw_i, o._regbw_i, o.biases, mode, hP, hQ, hb, hc, bufQ, bufc,
                                   rows)

    def layout_bytes(self) -> int:
        return sum(int(v.nbytes) for v in self.tiles.values() if isinstance(v, np.ndarray))


def _sgemm(n_threads: int, size: int, repeat: int, dtype=np.float32) -> float:
    rng = np.random.default_rng(0)
    A = rng.random((size, size), dtype=np.float32).astype(dtype)
    B = rng.random((size, size), dtype=np.float32).astype(dtype)
    times = []
    with threadpool_limits(limits=n_threads):
        A @ B
        for _ in range(repeat):
            t0 = time.perf_counter()
            A @ B
            times.append(time.perf_counter() - t0)
    return 2.0 * size ** 3 / float(np.median(times)) / 1e9


def main(argv=None) -> dict:
    """Run the roofline (see the module docstring); returns the figures as a dict."""
    ap = argparse.ArgumentParser(prog="python -m bench.roofline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-20m")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--coo-blocks", type=int, default=None, help="MFObjective(coo_blocks=...): fixed user blocks")
    ap.add_argument("--baseline", default=None, help="a tree holding an older fastmf package to time alongside")
    ap.add_argument("--sgemm-size", type=int, default=2048)
    args = ap.parse_args(argv)

    from bench._data import load_dataset
    import fastmf

    dtype = np.dtype(args.dtype)
    k = args.rank
    R = load_dataset(args.dataset, dtype)
    nnz = R.nnz
    floor, floor_bytes = stream_floor(R.users, R.items, R.values, args.threads)
    numba.set_num_threads(args.threads)
    floor()

    variants = [_Variant("current", fastmf, R, k, dtype, args.threads, args.coo_blocks)]
    if args.baseline:
        variants.append(_Variant("baseline", load_package(args.baseline, "fastmf_baseline"), R, k, dtype,
                                 args.threads, args.coo_blocks))
    kernels = {"loss+gradient": (lambda v: v.grad(), 6 * k),
               "exact Hessian product": (lambda v: v.hessp(1), 14 * k),
               "Gauss-Newton product": (lambda v: v.hessp(0), 8 * k)}

    floor_t = []
    times = {(v.name, kn): [] for v in variants for kn in kernels}
    for _ in range(args.repeat):
        numba.set_num_threads(args.threads)
        t0 = time.perf_counter()
        floor()
        floor_t.append(time.perf_counter() - t0)
        for kn, (fn, _) in kernels.items():
            for v in variants:
                t0 = time.perf_counter()
                fn(v)
                times[(v.name, kn)].append(time.perf_counter() - t0)
    floor_t = np.asarray(floor_t)
    gflops_ceiling = _sgemm(args.threads, args.sgemm_size, max(3, args.repeat), dtype)

    m, n = R.n_users, R.n_items
    isz = dtype.itemsize
    print(f"# roofline: {args.dataset} ({nnz:,} ratings, {m:,} users x {n:,} items), rank {k}, {dtype.name}, "
          f"{args.threads} thread{'s' if args.threads != 1 else ''}, median of {args.repeat} interleaved rounds")
    tf = float(np.median(floor_t))
    print(f"streaming floor (read users+items+values, {floor_bytes / nnz:.0f} B/rating): {tf * 1e3:8.1f} ms  "
          f"{floor_bytes / tf / 1e9:6.1f} GB/s")
    print(f"compute ceiling ({'s' if dtype == np.float32 else 'd'}gemm {args.sgemm_size}^2, {dtype.name}, "
          f"{args.threads} thread{'s' if args.threads != 1 else ''}): "
          f"{gflops_ceiling:6.1f} GFLOP/s")
    hdr = f"{'kernel':<24}{'version':<10}{'ms':>9}{'x floor':>9}{'GB/s':>8}{'GFLOP/s':>9}{'flop/rating':>12}"
    if args.baseline:
        hdr += f"{'/ baseline':>11}"
    print(hdr)
    out = {"floor_ms": tf * 1e3, "floor_gbs": floor_bytes / tf / 1e9, "sgemm_gflops": gflops_ceiling, "kernels": {}}
    dense = (m + n) * k * isz  # one factor-shaped array
    nbufs = variants[0].nb
    for kn, (_, fpr) in kernels.items():
        for v in variants:
            t = np.asarray(times[(v.name, kn)])
            med = float(np.median(t))
            ratio = float(np.median(t / floor_t))
            # dense traffic: grad reads x and writes g (2 arrays); a Hessian product reads x, v and writes
            # Hv (3); the buffers: zeroed, scattered into, read back (3 passes of nb * n * (k + 1) floats)
            n_dense = 2 if kn == "loss+gradient" else 3
            nbytes = v.layout_bytes() + n_dense * dense + 3 * nbufs * n * (k + 1) * isz
            row = (f"{kn:<24}{v.name:<10}{med * 1e3:9.1f}{ratio:9.2f}{nbytes / med / 1e9:8.1f}"
                   f"{fpr * nnz / med / 1e9:9.1f}{fpr:12d}")
            rec = {"ms": med * 1e3, "x_floor": ratio, "gbs": nbytes / med / 1e9, "gflops": fpr * nnz / med / 1e9}
            if args.baseline and v.name == "current":
                rel = float(np.median(t / np.asarray(times[("baseline", kn)])))
                row += f"{rel:11.2f}"
                rec["vs_baseline"] = rel
            print(row)
            out["kernels"][(kn, v.name)] = rec
    return out


if __name__ == "__main__":
    main()
