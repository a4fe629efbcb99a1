"""End-to-end timings in one run (issue #14): cold/warm first fits, conversion, default fits.

Run from the repository root::

    python -m bench.end_to_end                                  # everything (the ML-20M fits take long)
    python -m bench.end_to_end --skip-ml20m --skip-conversion   # first fits + ml-latest-small fits
    python -m bench.end_to_end --solvers newton als --skip-cold --ml20m-max-time 120

It prints, with the load average before each part (other processes inflate every time; read
ratios measured in this run, e.g. cold / warm, rather than absolute seconds):

1. **First fits in fresh processes.**  ``fastmf fit`` (the README's default command:
   newton on the bundled ml-latest-small, validation split, refit, test RMSE) with an
   empty numba cache (a fresh ``NUMBA_CACHE_DIR``) then again with that cache warm
   (``--warm-runs`` runs, default 5, the median reported), the
   wall time of the whole process (interpreter start and ``import fastmf`` included).
   Then, per solver, a child process that imports fastmf, loads ml-latest-small, splits
   it (``train_test_split``, 10 % test, seed 0) and fits the estimator's defaults
   (gibbs: 2 draws), cold then warm; it reports import, load and fit seconds, the kernel
   specialisations compiled (numba's event API) and the test RMSE.
2. **Conversion.**  ``as_ratings((users, items, ratings))`` of ``--conversion-size``
   synthetic ratings with integer ids (``bench.conversion.synthetic_arrays``) in a child
   process: best of 2 seconds, and the peak RSS of one call above the RSS before it
   (``VmHWM`` reset through ``/proc/self/clear_refs``) as a multiple of the input arrays'
   size.
3. **Default fits.**  Each solver's defaults (``MatrixFactorization(solver=s,
   random_state=0, progress=False)``) on ml-latest-small and on the synthetic ML-20M shape
   (``bench._data.load_dataset("ml-20m")``), both split by ``fastmf``'s
   ``train_test_split`` (10 % test, seed 0), after ``fastmf.warmup`` (compilation not
   timed): fit seconds, iterations and test RMSE.  ``--ml20m-max-time`` caps each ML-20M
   fit (the solvers' ``max_time``; a capped row says so).

4. **Kernel roofline.**  :func:`bench.roofline.main` on the ML-20M shape (float32, rank 32,
   2 threads): the streaming floor, loss+gradient and Hessian products as multiples of it,
   their GB/s and GFLOP/s, and float32 sgemm as the compute ceiling, in this process.

``--json PATH`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

SOLVERS = ("newton", "als", "sgd", "gibbs")


def _load() -> str:
    return "load %.1f/%.1f/%.1f" % os.getloadavg()


def _child_env(cache_dir: str, threads: int | None) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(_REPO))
    if threads:
        env["NUMBA_NUM_THREADS"] = str(threads)
    return env


def _solver_params(solver: str) -> dict:
    """The estimator's defaults, except a 2-draw Gibbs fit (the first-fit target's)."""
    params = dict(solver=solver, random_state=0, progress=False)
    if solver == "gibbs":
        params.update(max_iter=2, solver_options={"burn_in": 1})
    return params


# ---------------------------------------------------------------------------- children
def _child_first_fit(solver: str) -> None:
    """One first fit in this (fresh) process; prints a JSON line."""
    import warnings

    t0 = time.perf_counter()
    import fastmf
    from fastmf._warmup import _CompileCounter
    from fastmf.data.splits import train_test_split

    t1 = time.perf_counter()
    ratings = fastmf.load_movielens("ml-latest-small")
    train, test = train_test_split(ratings, 0.1, random_state=0)
    t2 = time.perf_counter()
    counter = _CompileCounter()
    with counter, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fastmf.MatrixFactorization(**_solver_params(solver)).fit(train)
    t3 = time.perf_counter()
    rmse = model.evaluate(test)["rmse"]
    print(json.dumps({"import": t1 - t0, "load": t2 - t1, "fit": t3 - t2, "compiled": counter.count,
                      "rmse": rmse, "nit": len(model.history_) - 1}))


def _child_conversion(n: int) -> None:
    from bench.conversion import _reset_peak, _status_kib, synthetic_arrays
    from fastmf.data.convert import as_ratings

    u, i, r = synthetic_arrays(n)
    as_ratings((u[:1000], i[:1000], r[:1000]))  # compile or load the cache: not measured
    _reset_peak()
    before = _status_kib("VmRSS")
    t = time.perf_counter()
    out = as_ratings((u, i, r))
    first = time.perf_counter() - t
    peak = _status_kib("VmHWM") - before
    del out
    t = time.perf_counter()
    as_ratings((u, i, r))
    second = time.perf_counter() - t
    inputs = (u.nbytes + i.nbytes + r.nbytes) // 1024
    print(json.dumps({"n": int(len(u)), "seconds": min(first, second), "peak_kib": peak, "input_kib": inputs}))


def _run_child(args: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, *args], cwd=_REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return wall, res.stdout


# ---------------------------------------------------------------------------- parts
def first_fits(solvers, threads, skip_cold: bool, skip_cli: bool, warm_runs: int = 5) -> dict:
    out = {}
    phases = ("warm",) if skip_cold else ("cold", "warm")
    with tempfile.TemporaryDirectory(prefix="fastmf-e2e-") as scratch:
        if not skip_cli:
            env = _child_env(os.path.join(scratch, "cli"), threads)
            cmd = ["-m", "fastmf", "fit", "--no-progress"] + (["--threads", str(threads)] if threads else [])
            if skip_cold:
                _run_child(cmd, env)  # fill the cache
            for phase in phases:
                load = _load()
                walls = []
                # one cold run (the cache then holds everything); warm: the median of several runs, the
                # machine being shared (each run a fresh process, as a user's)
                for _ in range(1 if phase == "cold" else warm_runs):
                    wall, stdout = _run_child(cmd, env)
                    walls.append(wall)
                wall = float(np.median(walls))
                rmse = next((ln.split()[2] for ln in stdout.splitlines() if ln.startswith("test RMSE:")), "?")
                out[f"cli/{phase}"] = {"wall": wall, "walls": walls, "rmse": rmse}
                runs = f" (median of {len(walls)}: {min(walls):.2f}-{max(walls):.2f})" if len(walls) > 1 else ""
                print(f"fastmf fit (newton, ml-latest-small) {phase:4s}: {wall:6.2f} s wall{runs}, test RMSE {rmse}"
                      f"  [{load}]", flush=True)
            if "cli/cold" in out:
                print(f"  cold / warm: {out['cli/cold']['wall'] / out['cli/warm']['wall']:.1f}")
        for solver in solvers:
            env = _child_env(os.path.join(scratch, solver), threads)
            cmd = ["-m", "bench.end_to_end", "--child-first-fit", solver]
            if skip_cold:
                _run_child(cmd, env)
            for phase in phases:
                load = _load()
                wall, stdout = _run_child(cmd, env)
                rec = json.loads(stdout.strip().splitlines()[-1])
                rec["wall"] = wall
                out[f"{solver}/{phase}"] = rec
                print(f"first fit {solver:6s} {phase:4s}: fit {rec['fit']:6.2f} s ({rec['compiled']:2d} compiled), "
                      f"import {rec['import']:.2f} s, load {rec['load']:.2f} s, process {wall:6.2f} s, "
                      f"test RMSE {rec['rmse']:.4f}  [{load}]", flush=True)
    return out


def conversion(n: int, threads) -> dict:
    load = _load()
    env = dict(os.environ, PYTHONPATH=str(_REPO))
    if threads:
        env["NUMBA_NUM_THREADS"] = str(threads)
    _, stdout = _run_child(["-m", "bench.end_to_end", "--child-conversion", str(n)], env)
    rec = json.loads(stdout.strip().splitlines()[-1])
    ratio = rec["peak_kib"] / rec["input_kib"]
    print(f"as_ratings int ids n={rec['n']:,}: {rec['seconds']:.2f} s; peak RSS above baseline "
          f"{rec['peak_kib'] / 1024:.0f} MiB = {ratio:.2f} x the inputs ({rec['input_kib'] / 1024:.0f} MiB)  [{load}]",
          flush=True)
    return {**rec, "peak_ratio": ratio}


def default_fits(dataset: str, solvers, threads, max_time: float | None) -> dict:
    import warnings

    import fastmf
    from fastmf.data.splits import train_test_split

    from bench._data import load_dataset

    t = time.perf_counter()
    ratings = load_dataset(dataset)
    train, test = train_test_split(ratings, 0.1, random_state=0)
    print(f"{dataset}: {ratings.nnz:,} ratings ({ratings.n_users:,} x {ratings.n_items:,}), loaded and split in "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    out = {}
    for solver in solvers:
        fastmf.warmup(solver, n_threads=threads)
        params = dict(solver=solver, random_state=0, progress=False, n_threads=threads)
        if max_time:
            params["solver_options"] = {"max_time": max_time}
        load = _load()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            try:
                model = fastmf.MatrixFactorization(**params).fit(train)
            except ValueError as exc:  # e.g. gibbs: max_time reached before any draw was kept
                out[solver] = {"seconds": time.perf_counter() - t, "error": str(exc)}
                print(f"  {solver:6s} default fit: not finished after {out[solver]['seconds']:.2f} s: {exc}  [{load}]",
                      flush=True)
                continue
            seconds = time.perf_counter() - t
        rmse = model.evaluate(test)["rmse"]
        status = getattr(getattr(model, "result_", None), "status", None)
        capped = bool(max_time) and "time" in str(getattr(status, "name", status)).lower()
        out[solver] = {"seconds": seconds, "rmse": rmse, "nit": len(model.history_) - 1, "capped": capped,
                       "status": str(status)}
        print(f"  {solver:6s} default fit: {seconds:7.2f} s, {len(model.history_) - 1:3d} iterations, "
              f"test RMSE {rmse:.4f}{' (stopped by --ml20m-max-time)' if capped else ''}  [{load}]", flush=True)
        del model
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    p.add_argument("--threads", type=int, default=None, help="numba threads of every fit (default: all)")
    p.add_argument("--skip-cold", action="store_true", help="no empty-cache runs (the slow part of 1.)")
    p.add_argument("--skip-first-fits", action="store_true", help="skip part 1")
    p.add_argument("--skip-cli", action="store_true", help="no 'fastmf fit' runs in part 1")
    p.add_argument("--warm-runs", type=int, default=5, help="warm 'fastmf fit' runs (the median is reported)")
    p.add_argument("--skip-conversion", action="store_true", help="skip part 2")
    p.add_argument("--conversion-size", type=int, default=18_000_000)
    p.add_argument("--skip-small", action="store_true", help="no ml-latest-small default fits in part 3")
    p.add_argument("--skip-ml20m", action="store_true", help="no ML-20M-shape default fits in part 3")
    p.add_argument("--ml20m-max-time", type=float, default=None, help="cap of each ML-20M fit, seconds")
    p.add_argument("--skip-roofline", action="store_true", help="skip part 4 (bench.roofline)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--child-first-fit", help=argparse.SUPPRESS)
    p.add_argument("--child-conversion", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child_first_fit:
        _child_first_fit(a.child_first_fit)
        return
    if a.child_conversion:
        _child_conversion(a.child_conversion)
        return
    print(f"bench.end_to_end: {os.cpu_count()} CPUs, threads {a.threads or 'all'}, {_load()}", flush=True)
    report = {}
    if not a.skip_first_fits:
        report["first_fits"] = first_fits(a.solvers, a.threads, a.skip_cold, a.skip_cli, a.warm_runs)
    if not a.skip_conversion:
        report["conversion"] = conversion(a.conversion_size, a.threads)
    if not a.skip_small:
        report["ml-latest-small"] = default_fits("ml-latest-small", a.solvers, a.threads, None)
    if not a.skip_ml20m:
        report["ml-20m"] = default_fits("ml-20m", a.solvers, a.threads, a.ml20m_max_time)
    if not a.skip_roofline:
        from bench import roofline

        print(f"\n4. kernel roofline (python -m bench.roofline), {_load()}", flush=True)
        report["roofline"] = roofline.main(["--threads", str(a.threads or 2)])
    if a.json:
        Path(a.json).write_text(json.dumps(_json_keys(report), indent=1, default=str))


def _json_keys(obj):
    """``obj`` with every dict key a string (the roofline keys its times by (version, kernel))."""
    if isinstance(obj, dict):
        return {(" / ".join(map(str, k)) if isinstance(k, tuple) else str(k)): _json_keys(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_keys(v) for v in obj]
    return obj


if __name__ == "__main__":
    main()
