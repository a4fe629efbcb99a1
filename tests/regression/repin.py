"""Re-pin only the named regression cases (a deliberate numerical change of one solver).

Usage::

    FASTMF_TEST_DATA=../shared/data PYTHONPATH=. python tests/regression/repin.py sgd_t1 sgd_t2

(``PYTHONPATH=.``: a script does not put the working directory on the path, so without it
an editable install elsewhere would be the code that gets pinned.)

Refits the named cases of :data:`regression_cases.CASES` on the current code and replaces
their arrays in ``pins.npz``; every other case keeps its pinned arrays byte for byte.
Prints how far each replaced array moved (max absolute difference).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from regression_cases import CASES, fit_case, load_split  # noqa: E402


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in CASES]
    if not names or unknown:
        raise SystemExit(f"name the cases to re-pin (unknown: {unknown}); known: {sorted(CASES)}")
    with np.load(HERE / "pins.npz") as z:
        pins = {k: z[k] for k in z.files}
    train, test = load_split()
    for name in names:
        old = {k: v for k, v in pins.items() if k.startswith(name + "/")}
        for k in old:
            del pins[k]
        for key, value in fit_case(CASES[name], train, test).items():
            full = f"{name}/{key}"
            pins[full] = value
            if full in old and old[full].shape == value.shape:
                moved = float(np.max(np.abs(np.asarray(value, np.float64) - old[full]))) if value.size else 0.0
                print(f"{full}: max |change| {moved:.3g}")
            else:
                print(f"{full}: new")
    np.savez_compressed(HERE / "pins.npz", **pins)


if __name__ == "__main__":
    os.environ.setdefault("FASTMF_TEST_DATA", str(HERE.parents[1].parent / "shared" / "data"))
    main(sys.argv[1:])
