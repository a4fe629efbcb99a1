"""Benchmark datasets: real MovieLens sets and cached synthetic MovieLens shapes.

Names understood by :func:`load_dataset`:

``"ml-100k"``
    The real ml-100k (100,000 ratings), from the shared data folder (``FASTMF_TEST_DATA``,
    else ``../shared/data`` relative to the repository), falling back to
    :func:`fastmf.data.movielens.load_movielens`'s own search (``FASTMF_DATA``, the cache).
``"ml-latest-small"``
    The real ml-latest-small (100,836 ratings), bundled with the repository.
``"ml-1m"``, ``"ml-10m"``, ``"ml-20m"``
    Synthetic data with the shape of these sets
    (:func:`fastmf.data.synthetic.synthetic_preset`, seed 0): 1,000,209 / 10,000,054 /
    20,000,263 ratings.  Generating ML-20M takes up to a minute, so the generated arrays
    are cached in ``<cache>/bench/<name>-seed<seed>.npz`` (``<cache>`` is
    :func:`fastmf.data.movielens.cache_dir`, ``~/.cache/fastmf`` by default; override the
    folder with ``FASTMF_BENCH_CACHE``), written atomically (temporary file then
    ``os.replace``) and reloaded by later runs.
``"tiny"``
    A 200 x 100 synthetic set of 2,000 ratings (never cached): for smoke tests.

Datasets are also memoised per process (asv calls ``setup`` for every parameter
combination), keyed by name and dtype.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from fastmf.data.movielens import cache_dir, load_movielens
from fastmf.data.ratings import Ratings
from fastmf.data.synthetic import PRESETS, synthetic, synthetic_preset

__all__ = [
    "REAL",
    "SYNTHETIC",
    "SMALL",
    "LARGE",
    "ALL",
    "DENSE_MAX_CELLS",
    "shared_data_dir",
    "bench_cache_dir",
    "load_dataset",
    "dense_fits",
]

REAL = ("ml-100k", "ml-latest-small")
SYNTHETIC = ("ml-1m", "ml-10m", "ml-20m")
#: Sets on which the full parameter grid is affordable.
SMALL = ("ml-100k", "ml-latest-small", "ml-1m")
#: Sets on which only the headline configurations are timed.
LARGE = ("ml-10m", "ml-20m")
ALL = SMALL + LARGE

#: The dense reference is built only when ``n_users * n_items`` is at most this many
#: cells (ML-1M: 22.4 M cells, ~180 MB per float64 array, a few arrays live at once;
#: ML-10M would be 746 M cells = 6 GB per array).
DENSE_MAX_CELLS = 50_000_000

_MEMO: dict[tuple[str, str], Ratings] = {}


def shared_data_dir() -> Path:
    """The shared data folder: ``FASTMF_TEST_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get("FASTMF_TEST_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def bench_cache_dir() -> Path:
    """Folder of the cached synthetic sets: ``FASTMF_BENCH_CACHE``, else ``<fastmf cache>/bench``."""
    env = os.environ.get("FASTMF_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return cache_dir() / "bench"


def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _synthetic_cached(name: str, seed: int = 0) -> Ratings:
    path = bench_cache_dir() / f"{name}-seed{seed}.npz"
    m, n, nr, scale = PRESETS[name]
    if path.is_file():
        with np.load(path) as z:
            users, items, values = z["users"], z["items"], z["values"]
            shape = tuple(int(v) for v in z["shape"])
        if shape == (m, n) and len(values) == nr:
            # The arrays were saved in canonical (user, item) order: from_codes keeps it.
            return Ratings.from_codes(users, items, values, m, n, dtype=np.float32, rating_scale=scale,
                                      name=f"synthetic-{name}")
        # A stale or foreign file: regenerate below (and overwrite it).
    r = synthetic_preset(name, random_state=seed, dtype=np.float32)
    _atomic_savez(path, users=r.users, items=r.items, values=r.values, shape=np.array([m, n], dtype=np.int64))
    return r


def load_dataset(name: str, dtype=np.float32) -> Ratings:
    """Load a benchmark dataset (see the module docstring) as :class:`Ratings` of ``dtype``.

    Raises
    ------
    ValueError
        Unknown ``name``.
    FileNotFoundError
        ml-100k absent from the shared folder and from fastmf's search path.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    if name not in ALL and name != "tiny":
        raise ValueError(f"unknown benchmark dataset {name!r}; known: {list(ALL) + ['tiny']}")
    key = (name, dt.name)
    if key in _MEMO:
        return _MEMO[key]
    base_key = (name, "float32")
    if base_key in _MEMO:
        r = _MEMO[base_key]
    elif name == "tiny":
        r = synthetic(200, 100, 2_000, rank=4, random_state=0, name="tiny")
    elif name == "ml-100k":
        shared = shared_data_dir()
        if (shared / "ml-100k.zip").is_file() or (shared / "ml-100k").is_dir():
            r = load_movielens("ml-100k", data_home=shared, download=False)
        else:
            r = load_movielens("ml-100k", download=False)
    elif name == "ml-latest-small":
        r = load_movielens("ml-latest-small", download=False)
    else:
        r = _synthetic_cached(name)
    _MEMO[base_key] = r
    if dt != r.dtype:
        r = r.astype(dt)
    _MEMO[key] = r
    return r


def dense_fits(ratings: Ratings) -> bool:
    """Whether the dense reference :class:`fastmf.reference.DenseMF` is affordable for ``ratings``."""
    return ratings.n_users * ratings.n_items <= DENSE_MAX_CELLS
