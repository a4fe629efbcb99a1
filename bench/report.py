r"""One-command kernel benchmark report: ``python -m bench.report``.

Times the loss and gradient (``MFObjective.fun_and_jac``, the fused passes) and the
Gauss-Newton Hessian-vector product (``MFObjective.hessp``) for each dataset x format x
dtype x rank x threads, against the dense numpy reference
(:class:`fastmf.reference.DenseMF`, float64, BLAS limited to the same thread count)
where it fits in memory, and prints one table:

* ``ms``: best (minimum) wall-clock milliseconds per call over ``--repeat`` calls,
  after one warm-up call (which also compiles or loads the numba cache);
* ``M ratings/s``: ``nnz / time / 1e6``;
* ``vs dense``: dense time / fastmf time for the same op, rank and thread count;
* ``2t/1t``: the 1-thread time / the 2-thread time of the same configuration (on the
  row of the larger thread count).

How the objective's cache is defeated: :class:`~fastmf.objective.MFObjective` keeps
the loss and gradient of the last ``x`` (compared by content), so ``fun_and_jac`` is
timed on two points ``x`` and ``x' = x + 10^{-3}`` (every entry differs, as between two
solver iterates, so the content check never short-cuts the copy) called alternately:
every timed call recomputes both passes.  ``hessp`` is not cached (only ``x``'s cast is), so
it is timed on one ``(x, p)``.  ``x`` and ``p`` are float64, as :mod:`scipy.optimize`
passes them: the times include the API's per-call work on the parameter vector (the
content check of ``x``, its cast to the kernel dtype, the float64 copy of the result:
a few ms on ML-20M).

``--profile`` adds, for CSR on the chosen datasets, the kernel-only times of each pass
(user side and item side, loss+gradient and hessp, called directly on
``MFObjective.csr_arrays``, no API overhead), the chunk balance and the effective
memory traffic, to show what limits the kernels.

The first-call cost (``--first-call``, on by default) runs a *new* Python process that
imports fastmf, builds a tiny objective and calls ``fun_and_jac`` and ``hessp`` once,
with the numba cache warm (default cache, populated by a previous run) and cold
(``NUMBA_CACHE_DIR`` pointed to an empty temporary folder: everything compiles).

Usage::

    python -m bench.report                                   # ml-100k, ml-latest-small, ml-1m
    python -m bench.report --datasets ml-20m --ranks 32 --threads 1 2 --formats csr --dtypes float32
    python -m bench.report --datasets ml-100k ml-latest-small ml-1m ml-10m ml-20m --markdown
    python -m bench.report --warm-up                         # only fill numba's cache, then exit
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Callable, Sequence

import numba
import numpy as np

from bench._data import ALL, LARGE, dense_fits, load_dataset
from fastmf._threading import thread_limit
from fastmf.data.ratings import Ratings
from fastmf.objective import MFObjective

__all__ = ["best_seconds", "objective_calls", "measure", "profile_csr", "first_call_cost", "warm_up",
           "format_table", "main"]

OPS = ("loss+grad", "hessp")
REG = 0.1

# The code a fresh process runs for the first-call cost (prints one JSON line).
_FIRST_CALL_SNIPPET = textwrap.dedent(
    """
    import json, time
    t0 = time.perf_counter()
    import numpy as np
    from fastmf.data.ratings import Ratings
    from fastmf.objective import MFObjective
    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, 500).astype(np.int32)
    items = rng.integers(0, 40, 500).astype(np.int32)
    r = Ratings.from_codes(users, items, rng.integers(1, 6, 500).astype(np.float32), 50, 40, duplicates="last")
    obj = MFObjective(r, 8, dtype=np.float32, format="csr")
    x = obj.x0(random_state=0)
    t2 = time.perf_counter()
    obj.fun_and_jac(x)
    t3 = time.perf_counter()
    obj.hessp(x, x)
    t4 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "data+objective": t2 - t1, "fun_and_jac": t3 - t2, "hessp": t4 - t3,
                      "total": t4 - t0}))
    """
)


# ---------------------------------------------------------------------------- timing helpers
def best_seconds(fn: Callable[[], object], repeat: int, warmup: int = 1, min_time: float = 0.0,
                 max_repeat: int = 500) -> float:
    """Minimum wall-clock seconds of calls of ``fn`` after ``warmup`` untimed calls.

    At least ``repeat`` timed calls, more (up to ``max_repeat``) until ``min_time``
    seconds have been timed: on a shared machine the minimum of many short calls is
    the least disturbed figure.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for _ in range(warmup):
        fn()
    best = math.inf
    spent = 0.0
    n = 0
    while n < repeat or (spent < min_time and n < max_repeat):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        n += 1
    return best


def objective_calls(obj: MFObjective, seed: int = 0) -> dict[str, Callable[[], object]]:
    """Zero-argument callables ``{"loss+grad", "jac", "hessp"}`` that each do the full work.

    ``loss+grad`` and ``jac`` alternate two points (the objective caches the last ``x``);
    ``hessp`` multiplies a fixed random direction.  All vectors are float64.
    """
    x = obj.x0(random_state=seed)
    x2 = x + 1e-3  # every entry differs: the objective copies the whole vector, as between solver iterates
    points = (x, x2)
    p = np.random.default_rng(seed + 1).standard_normal(obj.n_params)
    state = {"t": 0}

    def loss_grad():
        state["t"] ^= 1
        return obj.fun_and_jac(points[state["t"]])

    def jac():
        state["t"] ^= 1
        return obj.jac(points[state["t"]])

    def hessp():
        return obj.hessp(x, p)

    return {"loss+grad": loss_grad, "jac": jac, "hessp": hessp}


def dense_calls(dense, seed: int = 0) -> dict[str, Callable[[], object]]:
    """The dense reference's ``loss+grad`` (``fun`` then ``jac``) and ``hessp`` callables."""
    x = np.random.default_rng(seed).standard_normal(dense.n_params) * (0.1 / np.sqrt(dense.rank))
    p = np.random.default_rng(seed + 1).standard_normal(dense.n_params)
    return {"loss+grad": lambda: (dense.fun(x), dense.jac(x)), "jac": lambda: dense.jac(x),
            "hessp": lambda: dense.hessp(x, p)}


# ---------------------------------------------------------------------------- the main table
def measure(
    datasets: Sequence[str],
    formats: Sequence[str] = ("csr", "coo"),
    dtypes: Sequence[str] = ("float32", "float64"),
    ranks: Sequence[int] = (8, 32, 128),
    large_ranks: Sequence[int] = (32,),
    threads: Sequence[int] = (1, 2),
    repeat: int = 5,
    dense: bool = True,
    ops: Sequence[str] = OPS,
    log: Callable[[str], None] | None = None,
    min_time: float = 0.5,
) -> list[dict]:
    """Time every configuration; one dict per (dataset, format, dtype, rank, threads, op).

    Keys: ``dataset, nnz, format, dtype, rank, threads, op, seconds, mratings_per_s,
    vs_dense`` (float or None), ``speedup_threads`` (float or None: set on rows whose
    thread count is the largest measured and > 1).  Dense reference rows have
    ``format="dense"`` and ``dtype="float64"``.
    """
    from fastmf.reference import DenseMF

    rows: list[dict] = []
    for name in datasets:
        ranks_here = large_ranks if name in LARGE else ranks
        for rank in ranks_here:
            dense_time: dict[tuple[int, str], float] = {}
            if dense and dense_fits(load_dataset(name)):
                r64 = load_dataset(name, np.float64)
                dmf = DenseMF.from_ratings(r64, rank, reg=REG, biases=True)
                calls = dense_calls(dmf)
                for nt in threads:
                    with thread_limit(nt):
                        for op in ops:
                            s = best_seconds(calls[op], repeat, min_time=min_time)
                            dense_time[(nt, op)] = s
                            rows.append(_row(name, r64, "dense", "float64", rank, nt, op, s, None))
                            if log:
                                log(f"{name} dense k={rank} t={nt} {op}: {s * 1e3:.1f} ms")
                del dmf, calls
            for fmt in formats:
                for dt in dtypes:
                    ratings = load_dataset(name, np.dtype(dt))
                    for nt in threads:
                        obj = MFObjective(ratings, rank, reg=REG, dtype=np.dtype(dt), format=fmt, n_threads=nt)
                        calls = objective_calls(obj)
                        for op in ops:
                            s = best_seconds(calls[op], repeat, min_time=min_time)
                            d = dense_time.get((nt, op))
                            rows.append(_row(name, ratings, fmt, dt, rank, nt, op, s, None if d is None else d / s))
                            if log:
                                log(f"{name} {fmt} {dt} k={rank} t={nt} {op}: {s * 1e3:.1f} ms")
                        del obj, calls
    _thread_speedups(rows)
    return rows


def _row(name, ratings: Ratings, fmt, dt, rank, nt, op, seconds, vs_dense) -> dict:
    return {"dataset": name, "nnz": int(ratings.nnz), "format": fmt, "dtype": str(dt), "rank": int(rank),
            "threads": int(nt), "op": op, "seconds": float(seconds),
            "mratings_per_s": ratings.nnz / seconds / 1e6, "vs_dense": vs_dense, "speedup_threads": None}


def _thread_speedups(rows: list[dict]) -> None:
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["format"], r["dtype"], r["rank"], r["op"]), {})[r["threads"]] = r
    for by_t in groups.values():
        if 1 in by_t and len(by_t) > 1:
            top = max(by_t)
            by_t[top]["speedup_threads"] = by_t[1]["seconds"] / by_t[top]["seconds"]


def format_table(rows: Sequence[dict], markdown: bool = False) -> str:
    """The rows as an aligned text table (or a GitHub markdown table)."""
    head = ["dataset", "nnz", "format", "dtype", "rank", "threads", "op", "ms", "M ratings/s", "vs dense",
            "2t/1t"]
    body = []
    for r in rows:
        body.append([
            r["dataset"], f"{r['nnz']:,}", r["format"], r["dtype"], str(r["rank"]), str(r["threads"]), r["op"],
            f"{r['seconds'] * 1e3:.2f}" if r["seconds"] < 0.1 else f"{r['seconds'] * 1e3:.1f}",
            f"{r['mratings_per_s']:.1f}",
            "" if r["vs_dense"] is None else f"{r['vs_dense']:.0f}x",
            "" if r["speedup_threads"] is None else f"{r['speedup_threads']:.2f}x",
        ])
    return _render(head, body, markdown, right={1, 4, 5, 7, 8, 9, 10})


def _render(head, body, markdown, right=frozenset()) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join("---:" if j in right else "---" for j in range(len(head))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[j]) for row in body)) if body else len(h) for j, h in enumerate(head)]

    def fmt(row):
        return "  ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(row) for row in body])


# ---------------------------------------------------------------------------- CSR profile
def profile_csr(name: str, rank: int = 32, dtype: str = "float32", threads: Sequence[int] = (1, 2),
                repeat: int = 5, min_time: float = 0.0) -> list[dict]:
    """Kernel-only times of each CSR pass (user side, item side) for loss+grad and hessp.

    Calls the parallel CSR side passes MFObjective runs (:mod:`fastmf.kernels.tiled`, over
    tiled copies of :attr:`MFObjective.csr_arrays` built here) directly (uniform
    regularisation, biases on), so no API work is included.  Also reports the chunk
    balance (largest chunk's work, ratings plus rows, over the mean) and the effective
    traffic: streamed bytes (CSR index + value, 4 + itemsize bytes a rating) plus the
    gathered other-side rows (``k * itemsize`` bytes a rating, mostly from cache) per second.
    """
    from fastmf.kernels import tiled as K

    dt = np.dtype(dtype)
    ratings = load_dataset(name, dt)
    obj = MFObjective(ratings, rank, reg=REG, dtype=dt, format="csr")
    A = obj.csr_arrays
    x = obj.x0(random_state=0).astype(dt)
    p = np.random.default_rng(1).standard_normal(obj.n_params).astype(dt)
    P, Q, b, c = obj.unpack(x)
    dP, dQ, db, dc = obj.unpack(p)
    m, n, k = obj.n_users, obj.n_items, rank
    mu = dt.type(obj.mu)
    one_u, one_i = np.full(m, REG, dtype=dt), np.full(n, REG, dtype=dt)
    gP, gQ = np.empty((m, k), dt), np.empty((n, k), dt)
    gb, gc = np.empty(m, dt), np.empty(n, dt)
    uparts, iparts = np.zeros(len(A["user_chunks"]) - 1), np.zeros(len(A["item_chunks"]) - 1)
    sides = {
        "user": (A["user_chunks"], A["user_indptr"], A["items"], A["values"], P, Q, b, c, dP, dQ, db, dc, one_u,
                 gP, gb, uparts, True),
        "item": (A["item_chunks"], A["item_indptr"], A["item_users"], A["item_values"], Q, P, c, b, dQ, dP, dc, db,
                 one_i, gQ, gc, iparts, False),
    }
    out = []
    nnz = ratings.nnz
    shape = K.tile_shape(k, dt.itemsize)
    for side, (ch, ip, idx, vals, Aa, Bb, a, bo, dA, dB, da, dbo, regw, G, gbias, parts, dl) in sides.items():
        work = np.diff(ip[ch]) + np.diff(ch)
        balance = float(work.max() / work.mean())
        rows_other = n if side == "user" else m
        T = K.build_tiles(ip, idx, vals, ch, rows_other, *shape)
        rows, pens = np.empty((len(ch) - 1, k), dt), np.empty(len(ch) - 1)
        for nt in threads:
            with thread_limit(nt, limit_blas=False):
                tg = best_seconds(lambda: K.side_grad_tiled(T, Aa, Bb, a, bo, mu, regw, regw, True, False, dl, G,
                                                            gbias, rows, parts, pens), repeat, min_time=min_time)
                th = best_seconds(lambda: K.side_hessp_tiled(T, Aa, Bb, dA, dB, a, bo, da, dbo, mu, regw, regw,
                                                             True, 0, G, gbias, rows), repeat, min_time=min_time)
            for op, s, gathered_rows in (("loss+grad", tg, 1), ("hessp", th, 2)):
                streamed = nnz * (4 + dt.itemsize)
                gathered = nnz * gathered_rows * k * dt.itemsize
                out.append({"dataset": name, "nnz": nnz, "side": side, "op": op, "rank": k, "dtype": dt.name,
                            "threads": nt, "seconds": s, "chunks": len(ch) - 1, "balance": balance,
                            "other_rows_mb": rows_other * k * dt.itemsize * gathered_rows / 1e6,
                            "stream_gb_s": streamed / s / 1e9, "gather_gb_s": gathered / s / 1e9})
    return out


def format_profile(rows: Sequence[dict], markdown: bool = False) -> str:
    head = ["dataset", "side", "op", "rank", "dtype", "threads", "ms", "chunks", "max/mean chunk",
            "other-side MB", "stream GB/s", "gather GB/s"]
    body = [[r["dataset"], r["side"], r["op"], str(r["rank"]), r["dtype"], str(r["threads"]),
             f"{r['seconds'] * 1e3:.1f}", str(r["chunks"]), f"{r['balance']:.2f}", f"{r['other_rows_mb']:.1f}",
             f"{r['stream_gb_s']:.2f}", f"{r['gather_gb_s']:.1f}"] for r in rows]
    return _render(head, body, markdown, right={3, 5, 6, 7, 8, 9, 10, 11})


# ---------------------------------------------------------------------------- first call
def first_call_cost(cold: bool, timeout: float = 600.0) -> dict:
    """Seconds a NEW process spends on import, a tiny objective, first ``fun_and_jac``, first ``hessp``.

    ``cold=False`` uses the default numba cache (run once first so it is populated:
    the second run is reported); ``cold=True`` points ``NUMBA_CACHE_DIR`` to an empty
    temporary folder, so every kernel compiles.
    """
    env = dict(os.environ)
    cmd = [sys.executable, "-c", _FIRST_CALL_SNIPPET]
    if cold:
        with tempfile.TemporaryDirectory(prefix="fastmf-numba-cold-") as tmp:
            env["NUMBA_CACHE_DIR"] = tmp
            return _run_json(cmd, env, timeout)
    _run_json(cmd, env, timeout)  # populate the cache if needed
    return _run_json(cmd, env, timeout)


def _run_json(cmd, env, timeout) -> dict:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"first-call subprocess failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_first_call(warm: dict | None, cold: dict | None, markdown: bool = False) -> str:
    head = ["numba cache", "import s", "data+objective s", "first fun_and_jac s", "first hessp s", "total s"]
    body = []
    for label, d in (("warm", warm), ("cold (empty NUMBA_CACHE_DIR)", cold)):
        if d is not None:
            body.append([label] + [f"{d[key]:.2f}" for key in ("import", "data+objective", "fun_and_jac", "hessp",
                                                                 "total")])
    return _render(head, body, markdown, right={1, 2, 3, 4, 5})


# ---------------------------------------------------------------------------- warm-up
def warm_up(formats: Sequence[str] = ("csr", "coo"), dtypes: Sequence[str] = ("float32", "float64")) -> float:
    """Compile (or load from numba's cache) the objective kernels of each format x dtype.

    Runs ``fun_and_jac``, ``jac`` and ``hessp`` (Gauss-Newton and exact) once on a tiny
    synthetic set, parallel and serial; returns the seconds spent.  After it, a new
    process's first call only loads the cache.
    """
    t0 = time.perf_counter()
    for dt in dtypes:
        r = load_dataset("tiny", np.dtype(dt))
        for fmt in formats:
            for parallel in (True, False):
                for hessian in ("gauss-newton", "exact"):
                    obj = MFObjective(r, 4, dtype=np.dtype(dt), format=fmt, parallel=parallel, hessian=hessian)
                    calls = objective_calls(obj)
                    for fn in calls.values():
                        fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small", "ml-1m"],
                    choices=list(ALL) + ["tiny"], metavar="NAME",
                    help=f"datasets, among {', '.join(ALL)} (default: the three small ones; 'tiny' for smoke runs)")
    ap.add_argument("--ranks", nargs="+", type=int, default=[8, 32, 128], help="ranks on ml-100k/latest-small/1m")
    ap.add_argument("--large-ranks", nargs="+", type=int, default=[32], help="ranks on ml-10m/ml-20m (default 32)")
    ap.add_argument("--formats", nargs="+", default=["csr", "coo"], choices=["csr", "coo"])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--threads", nargs="+", type=int, default=None,
                    help="thread counts (default: 1 and numba's maximum)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="timed calls per configuration, at least (min is kept; default 5)")
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="keep calling until this many seconds are timed (max 500 calls; default 0.5)")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense reference")
    ap.add_argument("--profile", nargs="*", metavar="NAME", default=None, choices=list(ALL) + ["tiny"],
                    help="kernel-only CSR pass profile (rank 32, float32) on these datasets (default: ml-20m "
                         "if given without names)")
    ap.add_argument("--no-first-call", action="store_true", help="skip the new-process first-call measurement")
    ap.add_argument("--markdown", action="store_true", help="GitHub markdown tables")
    ap.add_argument("--json", metavar="PATH", help="also write all measurements to this JSON file")
    ap.add_argument("--warm-up", action="store_true", help="only compile/load the kernels into numba's cache")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.warm_up:
        s = warm_up(args.formats, args.dtypes)
        print(f"numba kernels compiled or loaded from the cache in {s:.1f} s (cache: "
              f"{numba.config.CACHE_DIR or 'next to the sources (__pycache__)'})")
        return 0
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be >= 1, got {args.repeat}")
    max_t = numba.config.NUMBA_NUM_THREADS
    threads = args.threads or sorted({1, max_t})
    for t in threads:
        if not 1 <= t <= max_t:
            raise SystemExit(f"--threads {t}: numba has {max_t} threads (set NUMBA_NUM_THREADS to raise it)")
    for kk in list(args.ranks) + list(args.large_ranks):
        if kk < 1:
            raise SystemExit(f"ranks must be >= 1, got {kk}")
    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))

    t0 = time.perf_counter()
    load_before = os.getloadavg()
    out: dict = {"machine": {"cpus": os.cpu_count(), "numba_threads": max_t, "numba": numba.__version__,
                             "numpy": np.__version__, "python": sys.version.split()[0]}}
    rows = measure(args.datasets, args.formats, args.dtypes, args.ranks, args.large_ranks, threads, args.repeat,
                   dense=not args.no_dense, log=log, min_time=args.min_time)
    out["rows"] = rows
    load = os.getloadavg()
    out["load_average"] = {"before": load_before, "after": load}
    print(f"## fastmf kernels: best of >= {args.repeat} calls (>= {args.min_time:g} s timed) after a warm-up; "
          f"{max_t} numba threads max ({numba.threading_layer()} layer); numba {numba.__version__}, "
          f"numpy {np.__version__}; load average {load_before[0]:.1f} before, {load[0]:.1f} after\n")
    print(format_table(rows, args.markdown))
    if args.profile is not None:
        names = args.profile or ["ml-20m"]
        prof = []
        for nm in names:
            prof += profile_csr(nm, 32, "float32", threads, args.repeat, args.min_time)
        out["profile"] = prof
        print("\n## CSR kernel-only passes (rank 32, float32; direct kernel calls, no API overhead)\n")
        print(format_profile(prof, args.markdown))
    if not args.no_first_call:
        warm = first_call_cost(cold=False)
        cold = first_call_cost(cold=True)
        out["first_call"] = {"warm": warm, "cold": cold}
        print("\n## First call in a new process (tiny data, csr, float32)\n")
        print(format_first_call(warm, cold, args.markdown))
    print(f"\n(report took {time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
