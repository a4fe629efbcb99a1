"""asv benchmarks of a cold start (issue #14 item 1): ``import fastmf`` and first fits in fresh processes.

Run from the repository root (``asv.conf.json`` there, ``benchmark_dir = bench``)::

    asv run --python=same --quick --bench ColdStart

Every timed call runs a fresh interpreter (``python -m bench.end_to_end --child-first-fit
SOLVER``: import fastmf, load the bundled ml-latest-small, split, fit the estimator's
defaults; gibbs: 2 draws), so the time includes interpreter start, imports, loading the
kernels from numba's cache or compiling them, and the fit:

* :class:`ColdStart` ``time_first_fit_cold``: an empty ``NUMBA_CACHE_DIR`` for every call
  (compiles every kernel the fit needs);
* ``time_first_fit_warm``: a cache filled in ``setup`` (loads every kernel);
* ``time_cli_fit_warm``: ``python -m fastmf fit --no-progress``, the README's default
  command, with a warm cache;
* ``time_import``: ``python -c "import fastmf"``.

``peakmem_`` would measure asv's own process, not the child, so there is none here; see
``bench/end_to_end.py`` for the figures in one run with the load average beside them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def _run(args, cache_dir: str) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(_REPO))
    subprocess.run([sys.executable, *args], cwd=_REPO, env=env, check=True, capture_output=True)


class ColdStart:
    params = [["newton", "als", "sgd", "gibbs"]]
    param_names = ["solver"]
    timeout = 900.0
    number = 1
    repeat = 1
    warmup_time = 0.0

    def setup(self, solver):
        self.scratch = tempfile.mkdtemp(prefix="fastmf-asv-cold-")
        self.warm = os.path.join(self.scratch, "warm")
        _run(["-m", "bench.end_to_end", "--child-first-fit", solver], self.warm)
        self.n = 0

    def teardown(self, solver):
        shutil.rmtree(self.scratch, ignore_errors=True)

    def time_first_fit_cold(self, solver):
        self.n += 1
        _run(["-m", "bench.end_to_end", "--child-first-fit", solver], os.path.join(self.scratch, f"cold{self.n}"))

    def time_first_fit_warm(self, solver):
        _run(["-m", "bench.end_to_end", "--child-first-fit", solver], self.warm)


class CliStart:
    timeout = 900.0
    number = 1
    repeat = 3
    warmup_time = 0.0

    def setup(self):
        self.scratch = tempfile.mkdtemp(prefix="fastmf-asv-cli-")
        _run(["-m", "fastmf", "fit", "--no-progress"], self.scratch)

    def teardown(self):
        shutil.rmtree(self.scratch, ignore_errors=True)

    def time_cli_fit_warm(self):
        _run(["-m", "fastmf", "fit", "--no-progress"], self.scratch)

    def time_import(self):
        _run(["-c", "import fastmf"], self.scratch)
