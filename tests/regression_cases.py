"""The fits pinned by ``tests/regression/pins.npz`` (see ``tests/regression/make_pins.py``).

Small fits of every solver on a slice of ml-100k u1, at one and two threads, with and
without an evaluation set, through the estimator.  Kept small so the whole regression
test runs in a few seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("FASTMF_TEST_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")))

#: name -> estimator parameters (+ "eval": fit with eval_set=test)
CASES: dict[str, dict] = {
    "newton_t1": dict(solver="newton", rank=8, max_iter=6, n_threads=1),
    "newton_t2": dict(solver="newton", rank=8, max_iter=6, n_threads=2),
    "newton_gn_bj_t1": dict(solver="newton", rank=8, max_iter=6, n_threads=1,
                            solver_options={"hessian": "gauss-newton", "preconditioner": "block-jacobi"}),
    "newton_es_t1": dict(solver="newton", rank=8, max_iter=12, n_threads=1, early_stopping=2, eval=True),
    "als_t1": dict(solver="als", rank=8, max_iter=4, n_threads=1),
    "als_t2": dict(solver="als", rank=8, max_iter=4, n_threads=2, reg_weighting="uniform", reg=5.0),
    "als_es_t1": dict(solver="als", rank=8, max_iter=10, n_threads=1, early_stopping=2, eval=True),
    "sgd_t1": dict(solver="sgd", rank=8, max_iter=5, n_threads=1),
    "sgd_t2": dict(solver="sgd", rank=8, max_iter=5, n_threads=2, eval=True),
    "gibbs_t1": dict(solver="gibbs", rank=4, max_iter=3, n_threads=1, solver_options={"burn_in": 2}),
    "gibbs_t2": dict(solver="gibbs", rank=4, max_iter=3, n_threads=2, solver_options={"burn_in": 2}, eval=True),
    "newton_f64_svd_t1": dict(solver="newton", rank=8, max_iter=4, n_threads=1, dtype=np.float64, init="svd"),
    "als_nobias_t1": dict(solver="als", rank=8, max_iter=3, n_threads=1, biases=False),
}


def load_split():
    from fastmf import load_ml100k_fold

    train, test = load_ml100k_fold("u1", DATA, download=False)
    return train, test


def fit_case(spec: dict, train, test) -> dict[str, np.ndarray]:
    from fastmf import MatrixFactorization

    params = {k: v for k, v in spec.items() if k != "eval"}
    m = MatrixFactorization(random_state=0, progress=False, **params)
    m.fit(train, eval_set=test if spec.get("eval") else None)
    out = {"P": m.user_factors_, "Q": m.item_factors_, "mu": np.array(m.global_mean_)}
    if m.user_biases_ is not None:
        out["b"] = m.user_biases_
        out["c"] = m.item_biases_
    out["loss"] = np.array([rec["loss"] for rec in m.history_], dtype=np.float64)
    val = [rec.get("val_rmse") for rec in m.history_]
    if any(v is not None for v in val):
        out["val_rmse"] = np.array([np.nan if v is None else v for v in val], dtype=np.float64)
    out["pred"] = m.predict(test.user_ids[test.users][:200], test.item_ids[test.items][:200])
    return out


#: Key of the pinning host's identity in ``pins.npz``.
HOST_KEY = "__host__"


def host_identity() -> str:
    """The CPU that numba compiles for: LLVM's host CPU name and its feature string.

    numba compiles for the host CPU, so fused multiply-adds and vector widths -- and the
    last bits of a fit -- can differ between CPUs; bit-identity is only promised on the CPU
    that wrote the pins.
    """
    import llvmlite.binding as ll

    return f"{ll.get_host_cpu_name()} {ll.get_host_cpu_features().flatten()}"

