"""Before/after timings of ``as_ratings`` on integer and string ids (issue #14 item 3).

"Before" is the former path kept in :mod:`fastmf.data._conversion_reference`
(``pd.factorize(sort=True)`` + stable ``np.argsort``); "after" is
:func:`fastmf.as_ratings` (presence-table coding + packed-key radix sort).  Both run
in the same process, alternated, best of ``--repeat``; results are checked equal.

Run from the repository root::

    python -m bench.conversion                       # 1M, 4.5M and 18M synthetic ratings
    python -m bench.conversion --sizes 4500000 --memory
    python -m bench.conversion --csv 5000000         # + load_ratings_file/load_movielens on an ML-25M-layout CSV
    python -m bench.conversion --sizes 18000000 --baseline-tree /work/main   # this tree against another checkout

Synthetic data: ``users = rng.integers(0, 138_000, n)``, ``items = rng.integers(0,
27_000, n)`` (int64, unsorted, duplicates dropped keeping the first occurrence, so the
default ``duplicates="error"`` passes), ratings float32 in 0.5 steps.  ``--memory``
measures, in a subprocess per path, the peak resident memory of one call above the
resident memory before it (``VmHWM`` after resetting it, ``/proc/self/clear_refs``),
against the size of the input arrays.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from fastmf.data._conversion_reference import reference_from_arrays  # noqa: E402
from fastmf.data.convert import as_ratings  # noqa: E402


def synthetic_arrays(n: int, seed: int = 0, strings: bool = False):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 138_000, n, dtype=np.int64)
    i = rng.integers(0, 27_000, n, dtype=np.int64)
    key = u * 27_000 + i
    _, first = np.unique(key, return_index=True)
    first.sort()
    u, i = u[first], i[first]
    r = (rng.integers(1, 11, len(u)) / 2).astype(np.float32)
    if strings:
        u = np.array([f"u{x}" for x in u], dtype=object)
        i = np.array([f"m{x}" for x in i], dtype=object)
    return u, i, r


def new_path(u, i, r):
    return as_ratings((u, i, r))


def old_path(u, i, r):
    return reference_from_arrays(u, i, r)


def _same(a, b) -> bool:
    if (a.timestamps is None) != (b.timestamps is None):
        return False
    fields = ("users", "items", "values", "user_ids", "item_ids", "user_indptr")
    fields += ("timestamps",) * (a.timestamps is not None)
    return all(np.array_equal(getattr(a, f), getattr(b, f)) and getattr(a, f).dtype == getattr(b, f).dtype
               for f in fields)


def compare_paths(n: int, repeat: int, strings: bool = False) -> dict:
    u, i, r = synthetic_arrays(n, strings=strings)
    new_path(u[:1000], i[:1000], r[:1000])  # compile / load the numba cache
    best = {"old": np.inf, "new": np.inf}
    for _ in range(repeat):
        for label, fn in (("old", old_path), ("new", new_path)):
            t = time.perf_counter()
            out = fn(u, i, r)
            best[label] = min(best[label], time.perf_counter() - t)
            if label == "old":
                ref = out
            else:
                assert _same(out, ref), "new and old paths differ"
            del out
    return {"n": len(u), **best, "ratio": best["old"] / best["new"]}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> None:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _memory_child(folder: str, which: str) -> None:
    u, i, r = (np.load(os.path.join(folder, f"{x}.npy")) for x in "uir")  # no temporary peak
    fn = new_path if which == "new" else old_path
    fn(u[:1000], i[:1000], r[:1000])
    _reset_peak()
    before = _status_kib("VmRSS")
    out = fn(u, i, r)
    peak = _status_kib("VmHWM")
    inputs = (u.nbytes + i.nbytes + r.nbytes) // 1024
    print(f"{which} {len(u)} {inputs} {peak - before} {out.nnz}")


def memory(n: int, scratch: str) -> None:
    """Peak RSS of one call above the RSS before it, in a fresh process per path."""
    folder = os.path.join(scratch, f"mem-{n}")
    os.makedirs(folder, exist_ok=True)
    for x, arr in zip("uir", synthetic_arrays(n)):
        np.save(os.path.join(folder, f"{x}.npy"), arr)
    for which in ("old", "new"):
        res = subprocess.run([sys.executable, "-m", "bench.conversion", "--child", folder, which],
                             cwd=_REPO, capture_output=True, text=True, check=True)
        label, nn, inputs, extra, _ = res.stdout.split()
        print(f"peak memory {label}: n={int(nn):,} inputs {int(inputs) / 1024:.0f} MiB, "
              f"peak above before {int(extra) / 1024:.0f} MiB = {int(extra) / int(inputs):.2f} x inputs")


def csv_load(n: int, folder: Path, repeat: int) -> None:
    """ML-25M layout (``userId,movieId,rating,timestamp``, sorted by user then movie)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from fastmf.data.movielens import load_movielens, load_ratings_file

    path = folder / "ml-25m" / "ratings.csv"
    header = b"userId,movieId,rating,timestamp\n"  # unquoted, as GroupLens writes it
    if not path.is_file() or open(path, "rb").read(len(header)) != header or \
            sum(1 for _ in open(path, "rb")) != n + 1:
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(1)
        users = np.sort(rng.integers(1, 162_542, n))
        movies = rng.integers(1, 209_172, n)
        order = np.lexsort((movies, users))
        users, movies = users[order], movies[order]
        keep = np.ones(n, dtype=bool)
        keep[1:] = (users[1:] != users[:-1]) | (movies[1:] != movies[:-1])
        while keep.sum() < n:  # top up so the file has exactly n rows: shift duplicates to fresh movies
            movies[~keep] = rng.integers(1, 209_172, int((~keep).sum()))
            order = np.lexsort((movies, users))
            users, movies = users[order], movies[order]
            keep[1:] = (users[1:] != users[:-1]) | (movies[1:] != movies[:-1])
        table = pa.table({"userId": users, "movieId": movies,
                          "rating": rng.integers(1, 11, n) / 2, "timestamp": rng.integers(789652009, 1574327703, n)})
        with pa.OSFile(str(path), "wb") as out:  # pyarrow would quote the header
            out.write(header)
            pacsv.write_csv(table, out, pacsv.WriteOptions(quoting_style="none", include_header=False))
    size = path.stat().st_size / 2**20
    from fastmf.data import _csv

    def pyarrow_path(fn):
        """``fn`` with the fast parser switched off: the former (pyarrow) reader."""
        def run():
            saved = _csv.FAST_CSV_MIN_BYTES
            _csv.FAST_CSV_MIN_BYTES = 1 << 62
            try:
                return fn()
            finally:
                _csv.FAST_CSV_MIN_BYTES = saved
        return run

    readers = {
        "load_movielens": lambda: load_movielens("ml-25m", data_home=folder, download=False),
        "load_ratings_file": lambda: load_ratings_file(path),
    }
    runs = {"pyarrow.csv.read_csv": lambda: pacsv.read_csv(str(path)),
            "_csv.read_movielens_csv": lambda: _csv.read_movielens_csv(path)}
    for label, fn in readers.items():
        runs[f"{label} old (pyarrow)"] = pyarrow_path(fn)
        runs[f"{label} new"] = fn
    results = {}
    for label, fn in runs.items():  # warm: compile / load the numba cache, the page cache
        results[label] = fn()
    for label in readers:
        assert _same(results[f"{label} new"], results[f"{label} old (pyarrow)"]), f"{label}: new and old differ"
    nnz = results["load_movielens new"].nnz
    results.clear()
    best = dict.fromkeys(runs, np.inf)
    for _ in range(repeat):  # interleaved, so both paths see the same machine load
        for label, fn in runs.items():
            t = time.perf_counter()
            out = fn()
            best[label] = min(best[label], time.perf_counter() - t)
            del out
    print(f"uptime: {os.getloadavg()}")
    for label, b in best.items():
        print(f"{label}: {nnz:,} rows ({size:.0f} MiB) in {b:.2f} s = {nnz / b / 1e6:.1f} M rows/s; "
              f"25,000,095 rows extrapolated: {25_000_095 * b / nnz:.1f} s")
    for label in readers:
        old, new = best[f"{label} old (pyarrow)"], best[f"{label} new"]
        print(f"{label}: old {old:.2f} s, new {new:.2f} s, ratio {old / new:.2f}x")
    print(f"parse alone: pyarrow.csv.read_csv {best['pyarrow.csv.read_csv']:.2f} s, fast parser "
          f"{best['_csv.read_movielens_csv']:.2f} s, ratio "
          f"{best['pyarrow.csv.read_csv'] / best['_csv.read_movielens_csv']:.2f}x")


_TREE_CHILD = """
import sys, time
import numpy as np
sys.path.insert(0, {tree!r})
from bench.conversion import synthetic_arrays
from fastmf.data.convert import as_ratings
import fastmf
assert fastmf.__file__.startswith({tree!r}), fastmf.__file__
u, i, r = synthetic_arrays({n})
as_ratings((u[:2_000_000], i[:2_000_000], r[:2_000_000]))  # compile / load the numba cache
best = np.inf
for _ in range({repeat}):
    t = time.perf_counter()
    out = as_ratings((u, i, r))
    best = min(best, time.perf_counter() - t)
    del out
print(len(u), best)
"""


def compare_trees(n: int, baseline: str, rounds: int, repeat: int) -> None:
    """``as_ratings`` at ``n`` in this tree against another checkout (e.g. ``main``'s worktree).

    One fresh process per tree and round, the trees alternated, best of ``repeat`` calls in
    each; the figure is the best over the rounds, so both trees see the same machine load.
    """
    trees = {"old": os.path.abspath(baseline), "new": str(_REPO)}
    times = {"old": [], "new": []}
    for _ in range(rounds):
        for label, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=tree)
            res = subprocess.run([sys.executable, "-c", _TREE_CHILD.format(tree=tree, n=n, repeat=repeat)],
                                 cwd=tree, env=env, capture_output=True, text=True, check=True)
            nn, t = res.stdout.split()
            times[label].append(float(t))
    best = {k: min(v) for k, v in times.items()}
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"as_ratings int ids n={int(nn):,}: {trees['old']} best {best['old']:.3f} s (median {med['old']:.3f}), "
          f"this tree best {best['new']:.3f} s (median {med['new']:.3f}); ratio of bests "
          f"{best['old'] / best['new']:.2f}x, of medians {med['old'] / med['new']:.2f}x "
          f"({rounds} alternated process pairs, best of {repeat} calls each; load {os.getloadavg()[0]:.1f})")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 4_500_000, 18_000_000])
    p.add_argument("--strings", type=int, nargs="*", default=[1_000_000], help="sizes with string ids")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--memory", action="store_true", help="peak-memory subprocesses at each size")
    p.add_argument("--csv", type=int, default=0, help="rows of a synthetic ML-25M ratings.csv to load")
    p.add_argument("--csv-dir", help="scratch folder (CSV, memory inputs)",
                   default=os.environ.get("FASTMF_BENCH_SCRATCH", "/tmp/fastmf-bench"))
    p.add_argument("--baseline-tree", help="another checkout (e.g. /work/main) to time as_ratings against, "
                   "at each of --sizes, in alternated processes")
    p.add_argument("--rounds", type=int, default=3, help="alternated process pairs for --baseline-tree")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _memory_child(a.child[0], a.child[1])
        return
    print(f"uptime: {os.getloadavg()}")
    if a.baseline_tree:
        for n in a.sizes:
            compare_trees(n, a.baseline_tree, a.rounds, a.repeat)
        return
    for n in a.sizes:
        res = compare_paths(n, a.repeat)
        print(f"as_ratings int ids n={res['n']:,}: old {res['old']:.3f} s, new {res['new']:.3f} s, "
              f"ratio {res['ratio']:.1f}x")
        if a.memory:
            memory(n, a.csv_dir)
    for n in a.strings:
        res = compare_paths(n, a.repeat, strings=True)
        print(f"as_ratings string ids n={res['n']:,}: old {res['old']:.3f} s, new {res['new']:.3f} s, "
              f"ratio {res['ratio']:.1f}x")
    if a.csv:
        csv_load(a.csv, Path(a.csv_dir), a.repeat)


if __name__ == "__main__":
    main()
