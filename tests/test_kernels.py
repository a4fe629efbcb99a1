"""Kernels of fastmf.kernels.{csr,coo,tiled,predict,blocks,_chunks} against the dense reference.

Every kernel (COO/CSR x serial/parallel x float32/float64 x biases on/off x
uniform/count reg x squared/sign x Gauss-Newton/exact) is checked through
``MFObjective`` (which only dispatches to them) against ``fastmf.reference.DenseMF``;
the kernels are also called directly for the determinism properties.
"""

from __future__ import annotations

import itertools
import re

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmf.data.ratings import Ratings
from fastmf.kernels import coo, csr, tiled
from fastmf.kernels._chunks import balanced_chunks
from fastmf.objective import MFObjective
from fastmf.reference import DenseMF

TOL = {np.float64: 1e-10, np.float32: 1e-4}


def random_ratings(m, n, density, seed, empty_user=True, empty_item=True, dtype=np.float64):
    """Small random ratings with (optionally) one user and one item without ratings."""
    rng = np.random.default_rng(seed)
    mask = rng.random((m, n)) < density
    if empty_user and m > 1:
        mask[rng.integers(m)] = False
    if empty_item and n > 1:
        mask[:, rng.integers(n)] = False
    if not mask.any():
        mask[0, 0] = True
    u, i = np.nonzero(mask)
    r = rng.integers(1, 6, size=u.size) + 0.5 * rng.integers(0, 2, size=u.size)
    return Ratings.from_codes(u, i, r.astype(float), n_users=m, n_items=n, dtype=dtype)


def relerr(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = max(np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / den)


def compare_to_reference(R, k, dtype, fmt, parallel, biases, weighting, loss, hessian, seed=0, obj_kw=None, **kw):
    opts = dict(reg=0.3, reg_bias=0.7, biases=biases, loss=loss, reg_weighting=weighting, **kw)
    ref = DenseMF.from_ratings(R.astype(np.float64), k, **opts)
    obj = MFObjective(R, k, dtype=dtype, format=fmt, parallel=parallel, hessian=hessian, **opts, **(obj_kw or {}))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(obj.n_params)
    p = rng.standard_normal(obj.n_params)
    if dtype == np.float32:  # compare at the points the float32 kernels actually see
        x = x.astype(np.float32).astype(np.float64)
        p = p.astype(np.float32).astype(np.float64)
    tol = TOL[dtype]
    f_ref = ref.fun(x)
    assert abs(obj.fun(x) - f_ref) <= tol * max(abs(f_ref), 1.0)
    assert relerr(obj.jac(x), ref.jac(x)) <= tol
    assert relerr(obj.hessp(x, p), ref.hessp(x, p, hessian)) <= tol
    E = ref.residuals(x)
    assert relerr(obj.residuals(x), E[R.users, R.items]) <= tol
    return obj, ref, x, p


# ---------------------------------------------------------------------------- balanced_chunks
def test_balanced_chunks_properties():
    rng = np.random.default_rng(3)
    counts = (rng.pareto(1.2, size=500) * 10).astype(np.int64)
    indptr = np.concatenate(([0], np.cumsum(counts)))
    for n_chunks in (1, 2, 7, 64, 499, 500, 10_000):
        b = balanced_chunks(indptr, n_chunks)
        assert b.dtype == np.int64
        assert b[0] == 0 and b[-1] == 500
        assert np.all(np.diff(b) > 0)
        assert len(b) - 1 <= min(n_chunks, 500)
        work = indptr[b[1:]] - indptr[b[:-1]] + np.diff(b)
        target = (indptr[-1] + 500) / min(n_chunks, 500)
        # a chunk exceeds the target by at most one row's work
        assert work.max() <= target + counts.max() + 1


def test_balanced_chunks_equal_split_of_uniform_rows():
    indptr = np.arange(0, 101 * 3, 3, dtype=np.int64)  # 100 rows of 3 ratings
    b = balanced_chunks(indptr, 4)
    np.testing.assert_array_equal(b, [0, 25, 50, 75, 100])


def test_balanced_chunks_edge_cases():
    np.testing.assert_array_equal(balanced_chunks(np.zeros(1, dtype=np.int64), 4), [0])
    np.testing.assert_array_equal(balanced_chunks(np.array([0, 0, 0]), 8), [0, 1, 2])  # empty rows still split
    np.testing.assert_array_equal(balanced_chunks(np.array([0, 1000, 1001]), 2), [0, 1, 2])
    for bad, exc in [(np.array([1, 2]), ValueError), (np.array([0, 3, 2]), ValueError),
                     (np.zeros((2, 2), dtype=np.int64), ValueError), (np.array([0.0, 1.0]), TypeError)]:
        with pytest.raises(exc):
            balanced_chunks(bad, 2)
    for bad_n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_chunks"):
            balanced_chunks(np.array([0, 1]), bad_n)


# ---------------------------------------------------------------------------- full grid vs reference
GRID = [
    (fmt, par, dt, biases, w, loss, hess)
    for fmt, par, dt, biases, w, (loss, hess) in itertools.product(
        ["csr", "coo"], [False, True], [np.float64, np.float32], [True, False], ["uniform", "count"],
        [("squared", "gauss-newton"), ("squared", "exact"), ("sign", "exact")],
    )
    if not (loss == "sign" and biases)
]


@pytest.mark.parametrize("fmt,parallel,dtype,biases,weighting,loss,hessian", GRID,
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_kernels_match_reference(fmt, parallel, dtype, biases, weighting, loss, hessian):
    R = random_ratings(17, 11, 0.35, seed=len(fmt) + 7 * parallel + 3 * biases)
    compare_to_reference(R, 4, dtype, fmt, parallel, biases, weighting, loss, hessian)


# ---------------------------------------------------------------------------- blocked serial COO
BLOCKED = [(dt, biases, loss, hess, nb)
           for dt, biases, (loss, hess), nb in itertools.product(
               [np.float64, np.float32], [True, False],
               [("squared", "gauss-newton"), ("squared", "exact"), ("sign", "exact")], [2, 3])
           if not (loss == "sign" and biases)]


@pytest.mark.parametrize("dtype,biases,loss,hessian,nb", BLOCKED)
def test_blocked_serial_coo_matches_reference(monkeypatch, dtype, biases, loss, hessian, nb):
    """The serial COO kernels cut into user blocks (item terms of blocks 1.. in buffers added in
    block order, blocks on Python threads) match the dense reference, with an empty user and
    item, and give the same bits on 1 and 2 threads and with ``parallel=False``."""
    import fastmf.objective as fobj

    monkeypatch.setattr(fobj, "SERIAL_BLOCK_MIN_RATINGS", 4)
    R = random_ratings(23, 13, 0.4, seed=nb + 5 * biases, dtype=dtype)
    obj, ref, x, p = compare_to_reference(R, 4, dtype, "coo", None, biases, "count", loss, hessian,
                                          obj_kw={"coo_blocks": nb, "n_threads": 2})
    assert len(obj._serial_layout()["ubounds"]) - 1 == nb
    outs = []
    for kw in ({"n_threads": 2}, {"n_threads": 1}, {"parallel": False}):
        o = MFObjective(R, 4, dtype=dtype, reg=0.3, reg_bias=0.7, biases=biases, loss=loss, hessian=hessian,
                        reg_weighting="count", coo_blocks=nb, **kw)
        f, g = o.fun_and_jac(x)
        outs.append((f, g, o.hessp(x, p)))
    for f, g, h in outs[1:]:
        assert f == outs[0][0]
        np.testing.assert_array_equal(g, outs[0][1])
        np.testing.assert_array_equal(h, outs[0][2])


def test_serial_blocks_count(monkeypatch):
    """min(coo blocks, nnz // SERIAL_BLOCK_MIN_RATINGS) blocks, at least one, at most one per user."""
    import fastmf.objective as fobj

    R = random_ratings(30, 20, 0.5, seed=1)
    for minr, cb, want in [(1 << 15, 4, 1), (R.nnz // 2, 4, 2), (1, 4, 4), (1, 64, 30)]:
        monkeypatch.setattr(fobj, "SERIAL_BLOCK_MIN_RATINGS", minr)
        o = MFObjective(R, 3, coo_blocks=cb)
        ub = o._serial_layout()["ubounds"]
        # balanced by rating count; balanced_chunks merges repeated boundaries
        np.testing.assert_array_equal(ub, balanced_chunks(R.user_indptr, want))
        assert 1 <= len(ub) - 1 <= want


@pytest.mark.parametrize("fmt,parallel", [("csr", True), ("coo", True), ("coo", False)])
@pytest.mark.parametrize("weighting", ["sqrt-count", 0.3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_power_weightings_match_reference(fmt, parallel, weighting, dtype):
    """w = n**alpha penalties (the dense reference computes its own weights from the mask)."""
    R = random_ratings(17, 11, 0.35, seed=4)
    for loss, biases, hess in [("squared", True, "exact"), ("squared", True, "gauss-newton"), ("sign", False, "exact")]:
        compare_to_reference(R, 4, dtype, fmt, parallel, biases, weighting, loss, hess)


@pytest.mark.parametrize("fmt", ["csr", "coo"])
def test_diag_matches_reference_hessian_diagonal(fmt):
    R = random_ratings(9, 7, 0.4, seed=5)
    for loss, biases, hess in [("squared", True, "gauss-newton"), ("squared", False, "exact"), ("sign", False, "exact")]:
        for w in ("uniform", "count", "sqrt-count"):
            kw = dict(reg=0.3, reg_bias=0.2, biases=biases, loss=loss, reg_weighting=w)
            ref = DenseMF.from_ratings(R, 3, **kw)
            obj = MFObjective(R, 3, dtype=np.float64, format=fmt, hessian=hess, **kw)
            x = np.random.default_rng(1).standard_normal(obj.n_params)
            np.testing.assert_allclose(obj.diag_gauss_newton(x), np.diag(ref.hessian(x, hess)), rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=st.integers(1, 12),
    n=st.integers(1, 12),
    k=st.sampled_from([1, 2, 3, 5, 8, 256]),
    density=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**31 - 1),
    biases=st.booleans(),
    fmt=st.sampled_from(["csr", "coo"]),
)
def test_hypothesis_shapes(m, n, k, density, seed, biases, fmt):
    """Drawn shapes and seeds: empty rows, a single rating (density 0 -> one rating), k=1, k=256."""
    R = random_ratings(m, n, density, seed, empty_user=seed % 2 == 0, empty_item=seed % 3 == 0)
    compare_to_reference(R, k, np.float64, fmt, True, biases, "count" if seed % 5 == 0 else "uniform",
                         "squared", "exact" if seed % 2 else "gauss-newton", seed=seed)


def test_single_rating():
    R = Ratings.from_codes([2], [1], [4.0], n_users=3, n_items=2, dtype=np.float64)
    assert R.nnz == 1
    for fmt, par in itertools.product(["csr", "coo"], [False, True]):
        compare_to_reference(R, 1, np.float64, fmt, par, True, "uniform", "squared", "exact")
        compare_to_reference(R, 2, np.float64, fmt, par, False, "count", "sign", "exact")


# ---------------------------------------------------------------------------- direct kernel properties
def _side_args(R, k, dtype, seed):
    rng = np.random.default_rng(seed)
    m, n = R.shape
    P = rng.standard_normal((m, k)).astype(dtype)
    Q = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    c = rng.standard_normal(n).astype(dtype)
    return P, Q, b, c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csr_tiled_sides_bit_identical_any_thread_count(dtype):
    """The parallel CSR side passes MFObjective runs (tiled, fixed chunks) give the same bits
    at one thread and at all threads; closeness to the serial CSR passes is checked by
    :func:`test_tiled_csr_sides_match_serial_csr`."""
    R = random_ratings(60, 40, 0.3, seed=11, dtype=dtype)
    k = 6
    P, Q, b, c = _side_args(R, k, dtype, 0)
    dP, dQ, db, dc = _side_args(R, k, dtype, 1)
    ch = balanced_chunks(R.item_indptr, 8)
    nc = len(ch) - 1
    T = tiled.build_tiles(R.item_indptr, R.item_users, R.item_values, ch, R.n_users, 7, 9)
    rw = np.full(R.n_items, 0.3, dtype=dtype)
    mu = dtype(3.5)
    outs = []
    for nt in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(nt)
        try:
            G = np.empty_like(Q)
            gc = np.empty_like(c)
            loss = tiled.side_grad_tiled(T, Q, P, c, b, mu, rw, rw, True, False, True, G, gc,
                                         np.empty((nc, k), dtype=dtype), np.empty(nc), np.empty(nc))
            H = np.empty_like(Q)
            hc = np.empty_like(c)
            tiled.side_hessp_tiled(T, Q, P, dQ, dP, c, b, dc, db, mu, rw, rw, True, 1, H, hc,
                                   np.empty((nc, k), dtype=dtype))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        assert G.dtype == dtype and H.dtype == dtype
        outs.append((loss, G, gc, H, hc))
    assert outs[1][0] == outs[0][0]
    for a, b_ in zip(outs[0][1:], outs[1][1:]):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("tile", [(4, 5), (1000, 1000), (1, 1)])
def test_tiled_parallel_deterministic_and_close(tile):
    """The tiled parallel kernels match the serial COO pass (1e-12 in float64), for any
    block count and tile shape, and repeat bit for bit for a given block count."""
    R = random_ratings(50, 30, 0.3, seed=2)
    k = 5
    P, Q, b, c = _side_args(R, k, np.float64, 0)
    dP, dQ, db, dc = _side_args(R, k, np.float64, 1)
    m, n = R.shape
    w_u, w_i = np.full(m, 0.2), np.full(n, 0.3)
    ich = balanced_chunks(np.zeros(n + 1, dtype=np.int64), 4)

    def run(nb, mode):
        ub = balanced_chunks(R.user_indptr, nb)
        nb = len(ub) - 1
        T = tiled.build_tiles(R.user_indptr, R.items, R.values, ub, n, *tile)
        # every rating appears once, each segment is one user's ratings inside one item tile
        seg = np.repeat(np.arange(len(T["seg_user"])), np.diff(T["seg_ptr"]))
        order = np.lexsort((T["items"], T["seg_user"][seg]))
        np.testing.assert_array_equal(T["items"][order], R.items)
        np.testing.assert_array_equal(T["values"][order], R.values)
        assert np.all(np.diff(T["items"] // tile[1])[np.diff(seg) == 0] == 0)
        scratch = (np.empty((nb, n, k)), np.empty((nb, n)), np.empty((nb, k)))
        out = [np.empty_like(P), np.empty_like(Q), np.empty_like(b), np.empty_like(c)]
        loss = tiled.grad_tiled(T, ich, P, Q, b, c, 3.0, w_u, w_u, w_i, w_i, True, False, *out, *scratch,
                                np.empty(nb), np.empty(len(ich) - 1))
        h = [np.empty_like(P), np.empty_like(Q), np.empty_like(b), np.empty_like(c)]
        tiled.hessp_tiled(T, ich, P, Q, dP, dQ, b, c, db, dc, 3.0, w_u, w_u, w_i, w_i, True, mode, *h, *scratch)
        return loss, out, h

    for mode in (0, 1):
        serial_out = [np.empty_like(P), np.empty_like(Q), np.empty_like(b), np.empty_like(c)]
        serial_loss = coo.grad_serial(R.user_indptr, R.items, R.values, P, Q, b, c, 3.0, w_u, w_u, w_i, w_i, True,
                                      False, *serial_out)
        serial_h = [np.empty_like(P), np.empty_like(Q), np.empty_like(b), np.empty_like(c)]
        coo.hessp_serial(R.user_indptr, R.items, R.values, P, Q, dP, dQ, b, c, db, dc, 3.0, w_u, w_u, w_i, w_i,
                         True, mode, *serial_h)
        l1, o1, h1 = run(1, mode)
        l3, o3, h3 = run(3, mode)
        l3b, o3b, h3b = run(3, mode)
        assert l3 == l3b
        for a, b_ in zip(o3 + h3, o3b + h3b):
            np.testing.assert_array_equal(a, b_)
        for loss, out, h in [(l1, o1, h1), (l3, o3, h3)]:
            assert abs(loss - serial_loss) <= 1e-12 * abs(serial_loss)
            for a, b_ in zip(out + h, serial_out + serial_h):
                assert relerr(a, b_) <= 1e-12


def test_coo_and_csr_agree():
    R = random_ratings(30, 25, 0.3, seed=9)
    for loss, biases, hess in [("squared", True, "exact"), ("sign", False, "exact")]:
        objs = [MFObjective(R, 4, loss=loss, biases=biases, hessian=hess, dtype=np.float64, format=f) for f in ("csr", "coo")]
        x = objs[0].x0(3, scale=1.0)
        p = objs[0].x0(4, scale=1.0)
        assert abs(objs[0].fun(x) - objs[1].fun(x)) <= 1e-12 * abs(objs[0].fun(x))
        assert relerr(objs[0].jac(x), objs[1].jac(x)) <= 1e-12
        assert relerr(objs[0].hessp(x, p), objs[1].hessp(x, p)) <= 1e-12
        assert relerr(objs[0].diag_gauss_newton(x), objs[1].diag_gauss_newton(x)) <= 1e-12


def test_float32_hessp_kernel_has_no_float64_arithmetic():
    """Typed constants: the float32 Hessian-vector row kernel never widens to double.

    Cached code cannot be inspected, so an uncached copy of the same Python function
    is compiled for the float32 signature and its LLVM IR searched for double math.
    """
    R = random_ratings(8, 6, 0.5, seed=1, dtype=np.float32)
    f32 = np.float32
    P, Q, b, c = _side_args(R, 3, f32, 0)
    rw = np.full(R.n_users, 0.3, dtype=f32)
    fresh = numba.njit(error_model="numpy")(csr._hessp_rows.py_func)
    H = np.empty_like(P)
    hb = np.empty_like(b)
    for mode in (0, 1, 2):
        fresh(0, R.n_users, R.user_indptr, R.items, R.values, P, Q, P, Q, b, c, b, c, f32(3.0), rw, rw, True, mode, H, hb)
    assert H.dtype == f32
    (sig,) = fresh.signatures
    ir = fresh.inspect_llvm(sig)
    assert "fpext float" not in ir
    assert not re.search(r"f(add|sub|mul) double", ir)


def test_float32_tiled_hessp_kernel_has_no_float64_arithmetic():
    """The tiled parallel Hessian pass stays in float32 too (uncached copy, LLVM IR searched)."""
    R = random_ratings(8, 6, 0.5, seed=1, dtype=np.float32)
    f32 = np.float32
    k = 3
    P, Q, b, c = _side_args(R, k, f32, 0)
    ub = balanced_chunks(R.user_indptr, 2)
    nb = len(ub) - 1
    T = tiled.build_tiles(R.user_indptr, R.items, R.values, ub, R.n_items, 4, 4)
    fresh = numba.njit(parallel=True, error_model="numpy", fastmath={"reassoc", "contract"})(
        tiled._hessp_data.py_func)
    H = np.zeros_like(P)
    hb = np.zeros_like(b)
    for mode in (0, 1, 2):
        fresh(T["seg_bounds"], T["seg_user"], T["seg_ptr"], T["items"], T["values"], P, Q, P, Q, b, c, b, c,
              f32(3.0), True, mode, H, hb, True, np.zeros((nb, R.n_items, k), f32), np.zeros((nb, R.n_items), f32),
              np.zeros((nb, k), f32))
    (sig,) = fresh.signatures
    ir = fresh.inspect_llvm(sig)
    assert "fpext float" not in ir
    assert not re.search(r"f(add|sub|mul) double", ir)


@pytest.mark.parametrize("tile", [(4, 5), (1, 1), (1000, 1000)])
def test_tiled_csr_sides_match_serial_csr(tile):
    """The tiled one-side kernels against the serial CSR side kernels (float64, 1e-12), both sides,
    squared loss (data loss on and off), the sign loss and every Hessian mode."""
    R = random_ratings(40, 30, 0.3, seed=3)
    k = 4
    P, Q, b, c = _side_args(R, k, np.float64, 0)
    dP, dQ, db, dc = _side_args(R, k, np.float64, 1)
    signs = np.sign(R.values - 3.0)
    for side in ("user", "item"):
        if side == "user":
            indptr, idx, vals, A, B, a, bo, dA, dB, da, dbo = (R.user_indptr, R.items, R.values, P, Q, b, c, dP, dQ,
                                                                db, dc)
        else:
            indptr, idx, vals, A, B, a, bo, dA, dB, da, dbo = (R.item_indptr, R.item_users, R.item_values, Q, P, c, b,
                                                                dQ, dP, dc, db)
        nrows, nother = A.shape[0], B.shape[0]
        w = np.linspace(0.1, 0.5, nrows)
        ch = balanced_chunks(indptr, 5)
        nc = len(ch) - 1
        for sign, v in ((False, vals), (True, signs[R.item_perm] if side == "item" else signs)):
            T = tiled.build_tiles(indptr, idx, v, ch, nother, *tile)
            for data_loss in (True, False):
                G0, gb0, G1, gb1 = np.empty_like(A), np.empty_like(a), np.empty_like(A), np.empty_like(a)
                ub = not sign
                l0 = csr.grad_side_serial(ch, indptr, idx, v, A, B, a, bo, 3.0, w, w, ub, sign, data_loss, G0, gb0,
                                          np.empty(nc))
                l1 = tiled.side_grad_tiled(T, A, B, a, bo, 3.0, w, w, ub, sign, data_loss, G1, gb1, np.empty((nc, k)),
                                           np.empty(nc), np.empty(nc))
                assert abs(l1 - l0) <= 1e-12 * abs(l0)
                assert relerr(G1, G0) <= 1e-12
                if ub:
                    assert relerr(gb1, gb0) <= 1e-12
            for mode in ((2,) if sign else (0, 1)):
                H0, hb0, H1, hb1 = np.empty_like(A), np.empty_like(a), np.empty_like(A), np.empty_like(a)
                csr.hessp_side_serial(ch, indptr, idx, v, A, B, dA, dB, a, bo, da, dbo, 3.0, w, w, not sign, mode,
                                      H0, hb0)
                tiled.side_hessp_tiled(T, A, B, dA, dB, a, bo, da, dbo, 3.0, w, w, not sign, mode, H1, hb1,
                                       np.empty((nc, k)))
                assert relerr(H1, H0) <= 1e-12
                if not sign:
                    assert relerr(hb1, hb0) <= 1e-12


@pytest.mark.parametrize("fmt", ["coo", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_objective_with_many_tiles_matches_reference(monkeypatch, fmt, dtype, n_threads):
    """MFObjective's parallel COO and CSR paths with tiles of a few rows (many segments,
    empty rows, rows split over tiles and thread blocks) against the dense reference."""
    if n_threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 numba threads")
    monkeypatch.setattr(tiled, "TILE_ITEM_BYTES", 1)  # tile_shape -> 64 items per tile (the minimum)
    monkeypatch.setattr(tiled, "TILE_USER_BYTES", 1)  # 64 users per group
    R = random_ratings(150, 200, 0.1, seed=11)
    for biases, loss, hess, w in [(True, "squared", "exact", "sqrt-count"), (True, "squared", "gauss-newton", "count"),
                                  (False, "sign", "exact", "uniform")]:
        obj, *_ = compare_to_reference(R, 3, dtype, fmt, True, biases, w, loss, hess,
                                      obj_kw=dict(n_threads=n_threads))
        for T in ([obj._tiles()] if fmt == "coo" else obj._csr_tiles()):
            assert T["tile_items"] == 64 and T["tile_users"] == 64
            assert len(T["seg_user"]) > len(T["ubounds"])  # rows really are split over tiles


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("biases", [True, False])
def test_prediction_family_matches_reference(dtype, biases):
    """predict_codes, residuals_codes and squared_error_segments (one prediction helper)
    against the dense reference's residuals."""
    from fastmf.kernels import sgd as ksgd
    from fastmf.kernels.predict import predict_codes, residuals_codes, squared_error_segments

    assert ksgd.squared_error_segments is squared_error_segments
    R = random_ratings(23, 19, 0.3, seed=2, dtype=dtype)
    ref = DenseMF.from_ratings(R.astype(np.float64), 3, reg=0.0, biases=biases)
    x = np.random.default_rng(0).standard_normal(ref.n_params).astype(dtype).astype(np.float64)
    E = ref.residuals(x)[R.users, R.items]
    P, Q, b, c = (None if a is None else a.astype(dtype) for a in ref.unpack(x))
    bb, cc = (b, c) if biases else (np.zeros(1, dtype), np.zeros(1, dtype))
    tol = TOL[dtype]
    pred = predict_codes(R.users, R.items, P, Q, b, c, ref.mu)
    assert relerr(R.values - pred, E) <= tol
    out = np.empty(R.nnz, dtype=dtype)
    residuals_codes(R.users, R.items, R.values, P, Q, bb, cc, ref.mu, biases, out)
    np.testing.assert_array_equal(out, (R.values.astype(np.float64) - pred).astype(dtype))
    seg = np.array([0, 5, 5, R.nnz // 2, R.nnz], dtype=np.int64)
    sse = np.empty(len(seg) - 1)
    squared_error_segments(R.users, R.items, R.values, seg, P, Q, bb, cc, ref.mu, biases, sse)
    direct = R.values.astype(np.float64) - pred
    np.testing.assert_allclose(sse, [np.sum(direct[seg[s]:seg[s + 1]] ** 2) for s in range(len(seg) - 1)],
                               rtol=1e-12)
    assert sse[1] == 0.0
    assert abs(sse.sum() - float(E @ E)) <= tol * float(E @ E)
