"""asv benchmarks of input conversion: ``as_ratings((users, items, ratings))`` (issue #14 item 3).

Run from the repository root (``asv.conf.json`` there, ``benchmark_dir = bench``)::

    asv run --python=same --quick --bench Conversion

* :class:`ConversionInt`: integer ids (``users = rng.integers(0, 138_000, n)``,
  ``items = rng.integers(0, 27_000, n)``, unsorted, duplicates dropped) at 1M and 4.5M
  ratings, through the fast path (presence-table coding, radix sort) and, as
  ``path="reference"``, through the former path (``pd.factorize`` + ``np.argsort``,
  :mod:`fastmf.data._conversion_reference`);
* :class:`ConversionStr`: the same data with string ids (generic coding, fast sort);
* :class:`ConversionInt18M`: 18M ratings with integer ids (the issue's size), fast path.

``peakmem_`` is asv's process peak RSS: it includes the input arrays built in ``setup``.
``setup`` converts a small slice first, so numba compilation (or its cache load) is
never timed.  ``bench/conversion.py`` prints the before/after ratios in one process.
"""

from __future__ import annotations

from bench.conversion import new_path, old_path, synthetic_arrays

_PATHS = {"fast": new_path, "reference": old_path}


class ConversionInt:
    params = [[1_000_000, 4_500_000], ["fast", "reference"]]
    param_names = ["n", "path"]
    timeout = 600.0

    def setup(self, n, path):
        self.u, self.i, self.r = synthetic_arrays(n)
        self.fn = _PATHS[path]
        self.fn(self.u[:1000], self.i[:1000], self.r[:1000])

    def time_as_ratings(self, n, path):
        self.fn(self.u, self.i, self.r)

    def peakmem_as_ratings(self, n, path):
        self.fn(self.u, self.i, self.r)


class ConversionStr(ConversionInt):
    params = [[1_000_000], ["fast", "reference"]]

    def setup(self, n, path):
        self.u, self.i, self.r = synthetic_arrays(n, strings=True)
        self.fn = _PATHS[path]
        self.fn(self.u[:1000], self.i[:1000], self.r[:1000])


class ConversionInt18M(ConversionInt):
    """The issue's size: 18M ratings with integer ids, fast path only (the reference takes ~40 s)."""

    params = [[18_000_000], ["fast"]]
