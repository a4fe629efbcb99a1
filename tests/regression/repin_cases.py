"""Re-pin only the named regression cases; every other entry of ``pins.npz`` is kept as it is.

Run from the repository root (so that the ``fastmf`` of this tree is imported)::

    FASTMF_TEST_DATA=../shared/data python tests/regression/repin_cases.py newton_t1 newton_t2

It prints, for every re-pinned array, whether it moved and by how much (the largest absolute
change over the largest absolute value): put that in the commit message.

The pins are bit-identical only on the CPU that wrote them (its identity is stored in
``pins.npz``).  On another CPU, re-pin every case at once (``--all``): a file must not mix
two CPUs' bits.
"""

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "regression"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("FASTMF_TEST_DATA", str(ROOT.parent / "shared" / "data"))

from regression_cases import CASES, HOST_KEY, fit_case, host_identity, load_split  # noqa: E402
names = sys.argv[1:]
if names == ["--all"]:
    names = sorted(CASES)
if not names or any(n not in CASES for n in names):
    sys.exit(f"usage: repin_cases.py CASE [CASE ...] | --all; cases: {sorted(CASES)}")
train, test = load_split()
with np.load(HERE / "pins.npz") as z:
    pins = {k: z[k] for k in z.files}
host = host_identity()
pinned_on = str(pins[HOST_KEY]) if HOST_KEY in pins else None
if pinned_on != host and set(names) != set(CASES):
    sys.exit(f"the pins were written on another CPU ({pinned_on!r}); this one is {host!r}: "
             "re-pin every case at once with --all")
pins[HOST_KEY] = np.array(host)
for name in names:
    arrays = fit_case(CASES[name], train, test)
    for key, value in arrays.items():
        old = pins.get(f"{name}/{key}", np.empty(0))
        same = np.array_equal(old, value)
        rel = float("nan")
        if old.size and old.shape == value.shape:
            rel = float(np.nanmax(np.abs(old - value)) / max(float(np.nanmax(np.abs(old))), 1e-300))
        print(f"{name}/{key}: {'bit-identical' if same else f'moved, max abs diff / max abs = {rel:.2e}'}")
        pins[f"{name}/{key}"] = value
np.savez_compressed(HERE / "pins.npz", **pins)
