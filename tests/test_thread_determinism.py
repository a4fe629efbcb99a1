"""The Newton-CG path (parallel COO objective) gives bit-identical results at any thread count.

The COO kernels cut the users into fixed blocks -- one per thread of numba's pool by default
(issue #14 item 6), or ``MFObjective(coo_blocks=B)`` (``fastmf.objective.DEFAULT_COO_BLOCKS = B``
for the estimator) -- never from ``n_threads``; each block has its own item buffer, reduced
in block order, and threads only take blocks.  Checked at 1 and 2 threads in process (the
default cut and ``B = 16``) and, for ``B = 16``, at 3 threads in a subprocess started with
``NUMBA_NUM_THREADS=3`` (numba threads may exceed the cores).  The data (100K ratings) is
below ``PARALLEL_MIN_RATINGS``, so every objective here forces ``parallel=True``: the serial
path is thread-independent trivially.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest

import fastmf.objective as fobj
from fastmf.data.synthetic import synthetic_preset
from fastmf.objective import MFObjective

REPO = Path(__file__).resolve().parents[1]
DTYPES = [np.float32, np.float64]


def _data():
    # ml-100k shaped (943 x 1682, 100,000 ratings)
    return synthetic_preset("ml-100k", random_state=3)


def _objective_outputs(R, dtype, n_threads, coo_blocks=16):
    out = {}
    for hess in ("gauss-newton", "exact"):
        o = MFObjective(R, 8, reg=0.05, dtype=dtype, n_threads=n_threads, hessian=hess, coo_blocks=coo_blocks,
                        parallel=True)
        x = o.x0(0, scale=0.5)
        p = o.x0(1, scale=0.5)
        f, g = o.fun_and_jac(x)
        out[f"{hess}/f"] = np.array(f)
        out[f"{hess}/g"] = g
        out[f"{hess}/hp"] = o.hessp(x, p)
    return out


def _fit_outputs(R, dtype, n_threads, coo_blocks=16):
    from fastmf import MatrixFactorization

    old = fobj.DEFAULT_COO_BLOCKS
    fobj.DEFAULT_COO_BLOCKS = coo_blocks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = MatrixFactorization(solver="newton", rank=8, max_iter=5, n_threads=n_threads, dtype=dtype,
                                    random_state=0, progress=False, solver_options={"parallel": True}).fit(R)
        finally:
            fobj.DEFAULT_COO_BLOCKS = old
    return {"P": m.user_factors_, "Q": m.item_factors_, "b": m.user_biases_, "c": m.item_biases_,
            "loss": np.array([rec["loss"] for rec in m.history_])}


def _assert_same(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}: {k}")


@pytest.fixture(scope="module")
def data():
    return _data()


def test_default_block_count_is_the_pool_size(data):
    for t in (1, None):
        o = MFObjective(data, 4, n_threads=t, parallel=True)
        assert o.coo_blocks is None and o._coo_blocks == min(numba.config.NUMBA_NUM_THREADS, data.n_users)


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_objective_bit_identical_1_and_2_threads(data, dtype):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    _assert_same(_objective_outputs(data, dtype, 1, None), _objective_outputs(data, dtype, 2, None), "objective")


def test_default_newton_fit_bit_identical_1_and_2_threads(data):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    _assert_same(_fit_outputs(data, np.float32, 1, None), _fit_outputs(data, np.float32, 2, None), "newton fit")


def test_block_count_does_not_follow_n_threads(data):
    o1 = MFObjective(data, 4, n_threads=1, coo_blocks=16)
    o2 = MFObjective(data, 4, n_threads=-1, coo_blocks=16)
    assert o1.coo_blocks == o2.coo_blocks == 16
    assert len(o1._tiles()["ubounds"]) == 17
    assert np.array_equal(o1._tiles()["ubounds"], o2._tiles()["ubounds"])
    assert np.array_equal(o1._item_chunks, o2._item_chunks)
    assert MFObjective(data, 4).coo_blocks is None  # default: one block per thread
    with pytest.raises(ValueError, match="coo_blocks"):
        MFObjective(data, 4, coo_blocks=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_objective_bit_identical_1_and_2_threads(data, dtype):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    _assert_same(_objective_outputs(data, dtype, 1), _objective_outputs(data, dtype, 2), "objective")


@pytest.mark.parametrize("dtype", DTYPES)
def test_newton_fit_bit_identical_1_and_2_threads(data, dtype):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    _assert_same(_fit_outputs(data, dtype, 1), _fit_outputs(data, dtype, 2), "newton fit")


def test_three_threads_in_a_subprocess(data, tmp_path):
    """NUMBA_NUM_THREADS=3, n_threads=3: same bits as one thread here (objective and fit)."""
    out = tmp_path / "t3.npz"
    code = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / 'tests')!r})
        import numba
        assert numba.config.NUMBA_NUM_THREADS == 3
        from test_thread_determinism import _data, _objective_outputs, _fit_outputs
        R = _data(); z = {{}}
        for dt in (np.float32, np.float64):
            for k, v in _objective_outputs(R, dt, 3).items():
                z[f"obj/{{np.dtype(dt).name}}/{{k}}"] = v
        for k, v in _fit_outputs(R, np.float32, 3).items():
            z[f"fit/{{k}}"] = v
        np.savez({str(out)!r}, **z)
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS="3")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(out) as z:
        got = {k: z[k] for k in z.files}
    for dt in DTYPES:
        ref = _objective_outputs(data, dt, 1)
        _assert_same({k: got[f"obj/{np.dtype(dt).name}/{k}"] for k in ref}, ref, f"objective {np.dtype(dt).name}")
    ref = _fit_outputs(data, np.float32, 1)
    _assert_same({k: got[f"fit/{k}"] for k in ref}, ref, "newton fit")


def test_estimator_newton_with_fixed_blocks_is_thread_independent():
    """``solver_options={"coo_blocks": 16}`` reaches the objective: the estimator's Newton fit
    is then bit-identical at 1 and 2 threads."""
    from fastmf import MatrixFactorization
    from fastmf.data.synthetic import synthetic

    r = synthetic(300, 200, 6000, rank=3, random_state=4)
    fits = [MatrixFactorization(rank=4, max_iter=4, random_state=0, progress=False, n_threads=t,
                                solver_options={"coo_blocks": 16, "parallel": True}).fit(r) for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].user_factors_, fits[1].user_factors_)
    np.testing.assert_array_equal(fits[0].item_factors_, fits[1].item_factors_)
