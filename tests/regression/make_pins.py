"""Write the regression pins: small ml-100k (u1) fits of every solver, and a format-1 model file.

Run once, on the code the pins must preserve (main at ca87f1a, before the solver-contract
restructuring of issue #12)::

    FASTMF_TEST_DATA=../shared/data python tests/regression/make_pins.py

It writes ``tests/regression/pins.npz`` (factors, biases, mu and per-iteration losses of
every case in :data:`CASES`) and ``tests/regression/format1_model.npz`` (a model saved by
the format-1 writer) plus ``format1_predictions.npy``.  ``tests/test_regression.py`` refits
every case on the current code and compares bit for bit.  Re-running this script on newer
code is how a deliberate numerical change re-pins the arrays (say why in the commit).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from regression_cases import CASES, HOST_KEY, fit_case, host_identity, load_split  # noqa: E402


def main() -> None:
    train, test = load_split()
    out = {HOST_KEY: np.array(host_identity())}
    for name, spec in CASES.items():
        arrays = fit_case(spec, train, test)
        for key, value in arrays.items():
            out[f"{name}/{key}"] = value
        print(name, {k: v.shape for k, v in arrays.items()})
    np.savez_compressed(HERE / "pins.npz", **out)

    from fastmf import MatrixFactorization

    m = MatrixFactorization(rank=4, solver="als", max_iter=3, random_state=0, progress=False, n_threads=1)
    m.fit(train)
    path = m.save(HERE / "format1_model.npz")
    users = test.user_ids[test.users][:500]
    items = test.item_ids[test.items][:500]
    np.save(HERE / "format1_pairs.npy", np.stack([users, items]))
    np.save(HERE / "format1_predictions.npy", m.predict(users, items))
    print("wrote", path)


if __name__ == "__main__":
    os.environ.setdefault("FASTMF_TEST_DATA", str(HERE.parents[1].parent / "shared" / "data"))
    main()
