"""Re-pin only the named regression cases; every other entry of ``pins.npz`` is kept as it is.

Run from the repository root (so that the ``fastmf`` of this tree is imported)::

    FASTMF_TEST_DATA=../shared/data python tests/regression/repin_cases.py newton_t1 newton_t2

It prints, for every re-pinned array, whether it moved and by how much (the largest absolute
change over the largest absolute value): put that in the commit message.
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

from regression_cases import CASES, fit_case, load_split  # noqa: E402
names = sys.argv[1:]
if not names or any(n not in CASES for n in names):
    sys.exit(f"usage: repin_cases.py CASE [CASE ...]; cases: {sorted(CASES)}")
train, test = load_split()
with np.load(HERE / "pins.npz") as z:
    pins = {k: z[k] for k in z.files}
for name in names:
    arrays = fit_case(CASES[name], train, test)
    for key, value in arrays.items():
        old = pins[f"{name}/{key}"]
        same = np.array_equal(old, value)
        rel = float("nan")
        if old.size and old.shape == value.shape:
            rel = float(np.nanmax(np.abs(old - value)) / max(float(np.nanmax(np.abs(old))), 1e-300))
        print(f"{name}/{key}: {'bit-identical' if same else f'moved, max abs diff / max abs = {rel:.2e}'}")
        pins[f"{name}/{key}"] = value
np.savez_compressed(HERE / "pins.npz", **pins)
