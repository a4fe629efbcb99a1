"""Block kernels (fastmf.kernels.blocks) against dense blocks of the reference Hessian."""

from __future__ import annotations

import numpy as np
import pytest

from fastmf._packing import unpack
from fastmf.data.ratings import Ratings
from fastmf.kernels._chunks import balanced_chunks
from fastmf.kernels.blocks import (
    PIVOT_RTOL,
    als_solve_rows,
    apply_blocks,
    block_memory,
    factor_blocks,
    gn_diagonal,
)
from fastmf.reference import DenseMF


def small_ratings(rng, m=9, n=7, density=0.45, dtype=np.float64, empty_user=2, empty_item=None):
    M = rng.random((m, n)) < density
    M[empty_user] = False
    if empty_item is not None:
        M[:, empty_item] = False
    users, items = np.nonzero(M)
    vals = rng.integers(1, 6, users.size).astype(np.float64)
    return Ratings.from_codes(users, items, vals, n_users=m, n_items=n, dtype=dtype)


def user_param_index(m, n, k, biases, u):
    idx = list(range(u * k, u * k + k))
    if biases:
        idx.append((m + n) * k + u)
    return idx


def item_param_index(m, n, k, biases, i):
    idx = list(range(m * k + i * k, m * k + i * k + k))
    if biases:
        idx.append((m + n) * k + m + i)
    return idx


def test_balanced_chunks_cover_rows():
    indptr = np.array([0, 5, 5, 5, 100, 101, 150], dtype=np.int64)
    for n_chunks in (1, 2, 3, 10):
        b = balanced_chunks(indptr, n_chunks)
        assert b[0] == 0 and b[-1] == 6
        assert np.all(np.diff(b) > 0)
    assert balanced_chunks(np.zeros(1, dtype=np.int64), 4).tolist() == [0]



@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("weighting", ["uniform", "count", "sqrt-count"])
@pytest.mark.parametrize("hessian", ["gauss-newton", "exact"])
def test_factor_blocks_match_reference_diagonal_blocks(rng, biases, weighting, hessian):
    r = small_ratings(rng, empty_item=3)
    m, n, k = r.n_users, r.n_items, 3
    ref = DenseMF.from_ratings(r, k, reg=0.3, reg_bias=0.2, biases=biases, reg_weighting=weighting)
    x = rng.standard_normal(ref.n_params)
    H = ref.hessian(x, hessian)  # the diagonal blocks of G and H coincide
    P, Q, _, _ = unpack(x, m, n, k, biases)
    K = k + biases
    alpha = {"uniform": 0.0, "sqrt-count": 0.5, "count": 1.0}[weighting]
    w_u = r.user_counts.astype(float) ** alpha
    w_i = r.item_counts.astype(float) ** alpha
    for _side, (indptr, cols, F, w, nrows, index) in {
        "users": (r.user_indptr, r.items, Q, w_u, m, user_param_index),
        "items": (r.item_indptr, r.item_users, P, w_i, n, item_param_index),
    }.items():
        ch = balanced_chunks(indptr, 3)
        L = np.empty((nrows, K, K))
        fixed = np.zeros(len(ch) - 1, dtype=np.int64)
        factor_blocks(indptr, cols, F, w, 0.3, 0.2, biases, ch, PIVOT_RTOL, L, fixed)
        n_empty_singular = 0
        for row in range(nrows):
            idx = index(m, n, k, biases, row)
            B = H[np.ix_(idx, idx)]
            Lr = np.tril(L[row])
            if indptr[row + 1] == indptr[row] and alpha > 0:
                n_empty_singular += 1  # zero block: every pivot replaced, M = I there
                np.testing.assert_allclose(Lr, np.eye(K))
                continue
            np.testing.assert_allclose(Lr @ Lr.T, B, rtol=1e-12, atol=1e-12)
            # apply = solve
            rhs = rng.standard_normal(K)
            rF = np.zeros((nrows, k))
            rb = np.zeros(nrows)
            rF[row] = rhs[:k]
            if biases:
                rb[row] = rhs[k]
            zF = np.empty_like(rF)
            zb = np.empty_like(rb)
            apply_blocks(L, rF, rb, biases, ch, zF, zb)
            z = np.append(zF[row], zb[row]) if biases else zF[row]
            np.testing.assert_allclose(z, np.linalg.solve(B, rhs), rtol=1e-10)
        assert fixed.sum() == n_empty_singular * K


def test_gn_diagonal_matches_reference(rng):
    r = small_ratings(rng)
    m, n, k = r.n_users, r.n_items, 4
    ref = DenseMF.from_ratings(r, k, reg=0.5, reg_bias=0.1, biases=True, reg_weighting="count")
    x = rng.standard_normal(ref.n_params)
    diag = np.diag(ref.hessian(x))
    out = np.empty(ref.n_params)
    P, Q, _, _ = unpack(x, m, n, k, True)
    dP, dQ, db, dc = unpack(out, m, n, k, True)
    gn_diagonal(r.user_indptr, r.items, Q, r.user_counts.astype(float), 0.5, 0.1, True,
                balanced_chunks(r.user_indptr, 2), dP, db)
    gn_diagonal(r.item_indptr, r.item_users, P, r.item_counts.astype(float), 0.5, 0.1, True,
                balanced_chunks(r.item_indptr, 2), dQ, dc)
    np.testing.assert_allclose(out, diag, rtol=1e-12, atol=1e-12)


def test_gn_diagonal_float32_rounding_order(rng):
    """float32: data sum first (in rating order), then ``float32(reg) * w``, as the kernel
    always rounded (the Jacobi preconditioner's bits); ``data_term=False`` writes the
    penalty only."""
    from fastmf.kernels.blocks import gn_diagonal_side

    r = small_ratings(rng, dtype=np.float32)
    f32 = np.float32
    Q = rng.standard_normal((r.n_items, 3)).astype(f32)
    w = (np.arange(r.n_users) * 0.37 + 0.2).astype(f32)
    dP, db = np.empty((r.n_users, 3), f32), np.empty(r.n_users, f32)
    gn_diagonal(r.user_indptr, r.items, Q, w, 0.3, 0.7, True, balanced_chunks(r.user_indptr, 3), dP, db)
    for u in range(r.n_users):
        acc = np.zeros(3, f32)
        for j in range(r.user_indptr[u], r.user_indptr[u + 1]):
            acc = acc + Q[r.items[j]] * Q[r.items[j]]
        np.testing.assert_array_equal(dP[u], acc + f32(0.3) * w[u])
        assert db[u] == f32(r.user_indptr[u + 1] - r.user_indptr[u]) + f32(0.7) * w[u]
    gn_diagonal_side(balanced_chunks(r.user_indptr, 2), r.user_indptr, r.items, Q, f32(0.3) * w, f32(0.7) * w, True,
                     False, dP, db)
    np.testing.assert_array_equal(dP, np.repeat((f32(0.3) * w)[:, None], 3, axis=1))
    np.testing.assert_array_equal(db, f32(0.7) * w)


def test_float32_blocks_stay_float32(rng):
    r = small_ratings(rng, dtype=np.float32)
    Q = rng.standard_normal((r.n_items, 3)).astype(np.float32)
    L = np.empty((r.n_users, 4, 4), dtype=np.float32)
    ch = balanced_chunks(r.user_indptr, 2)
    fixed = np.zeros(len(ch) - 1, dtype=np.int64)
    factor_blocks(r.user_indptr, r.items, Q, np.ones(r.n_users, np.float32), 0.1, 0.1, True, ch, PIVOT_RTOL, L, fixed)
    assert L.dtype == np.float32 and np.isfinite(np.tril(L)).all()


def test_singular_block_gets_replaced_pivot_not_nan(rng):
    # reg = 0 and a user with one rating: the 4x4 block has rank 1
    r = Ratings.from_codes(np.array([0, 1, 1, 1, 1]), np.array([0, 0, 1, 2, 3]), np.arange(1.0, 6.0),
                           n_users=2, n_items=4, dtype=np.float64)
    Q = rng.standard_normal((4, 3))
    L = np.empty((2, 4, 4))
    ch = balanced_chunks(r.user_indptr, 1)
    fixed = np.zeros(len(ch) - 1, dtype=np.int64)
    factor_blocks(r.user_indptr, r.items, Q, np.ones(2), 0.0, 0.0, True, ch, PIVOT_RTOL, L, fixed)
    assert fixed.sum() == 3
    assert np.isfinite(np.tril(L)).all() and np.all(np.diag(L[0]) > 0)


@pytest.mark.parametrize("biases", [True, False])
def test_als_rows_solve_normal_equations(rng, biases):
    r = small_ratings(rng)
    m, n, k = r.n_users, r.n_items, 3
    ref = DenseMF.from_ratings(r, k, reg=0.4, reg_bias=0.3, biases=biases)
    x = rng.standard_normal(ref.n_params)
    P, Q, b, c = unpack(x, m, n, k, biases)
    ch = balanced_chunks(r.user_indptr, 3)
    K = k + biases
    A = np.empty((len(ch) - 1, K, K))
    y = np.empty((len(ch) - 1, K))
    fixed = np.zeros(len(ch) - 1, dtype=np.int64)
    d = np.zeros(1)
    diag = np.array([0.4] * k + [0.3] * biases)
    als_solve_rows(r.user_indptr, r.items, r.values, Q, c if biases else d, ref.mu, np.ones(m), diag, np.zeros(K),
                   biases, ch, PIVOT_RTOL, A, y, P, b if biases else d, fixed, np.zeros((1, 1)), 0.0)
    g = ref.jac(x)
    gP, _, gb, _ = unpack(g, m, n, k, biases)
    np.testing.assert_allclose(gP, 0, atol=1e-10)
    if biases:
        np.testing.assert_allclose(gb, 0, atol=1e-10)


def test_block_memory():
    assert block_memory(160_000, 0, 128, False, np.float32) == 160_000 * 128 * 128 * 4
    assert block_memory(10, 20, 3, True, np.float64) == 30 * 16 * 8


def _long_rows(rng, dtype=np.float64):
    """Users with 0, 1, 7, 8, 63, 64, 65, 129 and 200 ratings (one and several ratings panels,
    counts that are and are not multiples of the panel padding), 220 items, one item unrated."""
    counts = [0, 1, 7, 8, 63, 64, 65, 129, 200]
    users, items = [], []
    for u, cnt in enumerate(counts):
        users += [u] * cnt
        items += sorted(rng.choice(219, cnt, replace=False).tolist())
    vals = rng.integers(1, 11, len(users)) / 2.0
    return Ratings.from_codes(np.array(users), np.array(items), vals, n_users=len(counts), n_items=220, dtype=dtype)


def _als_rows(r, Q, c, mu, w, diag, shift, biases, n_chunks, noise=None, sd=0.0):
    m, k = r.n_users, Q.shape[1]
    K = k + biases
    ch = balanced_chunks(r.user_indptr, n_chunks)
    nc = len(ch) - 1
    P, b = np.empty((m, k), Q.dtype), np.empty(m, Q.dtype)
    d = np.zeros(1, Q.dtype)
    fixed = np.zeros(nc, dtype=np.int64)
    als_solve_rows(r.user_indptr, r.items, r.values, Q, c if biases else d, mu, w, diag, shift, biases, ch, PIVOT_RTOL,
                   np.empty((nc, K, K)), np.empty((nc, K)), P, b if biases else d, fixed,
                   np.zeros((1, 1)) if noise is None else noise, sd)
    return P, (b if biases else None), int(fixed.sum())


@pytest.mark.parametrize("biases", [True, False])
def test_als_rows_with_several_panels_match_dense_normal_equations(rng, biases):
    """Rows longer than one ratings panel (``PANEL``), with a prior shift and count weights:
    the solution of the dense normal equations (float64, 1e-10)."""
    from fastmf.kernels.blocks import PANEL

    r = _long_rows(rng)
    assert np.diff(r.user_indptr).max() > 2 * PANEL
    m, n, k = r.n_users, r.n_items, 5
    K = k + biases
    Q = rng.standard_normal((n, k))
    c = rng.standard_normal(n)
    mu = 3.1
    w = np.maximum(np.diff(r.user_indptr), 1).astype(np.float64)
    diag = np.array([0.3] * k + [0.2] * biases)
    shift = rng.standard_normal(K) * 0.1
    P, b, nf = _als_rows(r, Q, c, mu, w, diag, shift, biases, 3)
    assert nf == 0
    for u in range(m):
        its = r.items[r.user_indptr[u]:r.user_indptr[u + 1]]
        vals = r.values[r.user_indptr[u]:r.user_indptr[u + 1]]
        X = np.hstack([Q[its], np.ones((its.size, 1))]) if biases else Q[its]
        t = vals - mu - (c[its] if biases else 0.0)
        x = np.linalg.solve(X.T @ X + np.diag(diag * w[u]), X.T @ t + shift * w[u])
        np.testing.assert_allclose(P[u], x[:k], rtol=1e-10, atol=1e-12, err_msg=f"user {u}")
        if biases:
            np.testing.assert_allclose(b[u], x[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_als_rows_do_not_depend_on_the_chunking(rng, dtype):
    """Each row's panels are counted from its own first rating: 1, 2, 5 and 9 chunks give the
    same bits (the thread count only changes the chunking, see LocalBackend)."""
    r = _long_rows(rng, dtype)
    k = 6
    Q = rng.standard_normal((r.n_items, k)).astype(dtype)
    c = rng.standard_normal(r.n_items).astype(dtype)
    w = np.ones(r.n_users)
    diag, shift = np.full(k + 1, 0.5), np.zeros(k + 1)
    P1, b1, _ = _als_rows(r, Q, c, 3.0, w, diag, shift, True, 1)
    for nc in (2, 5, 9):
        P, b, _ = _als_rows(r, Q, c, 3.0, w, diag, shift, True, nc)
        np.testing.assert_array_equal(P, P1)
        np.testing.assert_array_equal(b, b1)


def test_als_rows_agree_with_the_block_jacobi_factors_on_singular_rows(rng):
    """``reg = 0``: rows with fewer ratings than K (and the empty row) are singular; the ALS
    kernel replaces the same pivots as ``factor_blocks`` and its solve equals ``apply_blocks``
    on the same right-hand side (float64)."""
    r = _long_rows(rng)
    m, n, k = r.n_users, r.n_items, 12
    K = k + 1
    Q = rng.standard_normal((n, k))
    c = np.zeros(n)
    mu = 0.0
    P, b, nf = _als_rows(r, Q, c, mu, np.ones(m), np.zeros(K), np.zeros(K), True, 2)
    ch = balanced_chunks(r.user_indptr, 2)
    L = np.empty((m, K, K))
    fixed = np.zeros(len(ch) - 1, dtype=np.int64)
    factor_blocks(r.user_indptr, r.items, Q, np.ones(m), 0.0, 0.0, True, ch, PIVOT_RTOL, L, fixed)
    assert nf == fixed.sum() > 0
    rF = np.zeros((m, k))
    rb = np.zeros(m)
    for u in range(m):
        sl = slice(r.user_indptr[u], r.user_indptr[u + 1])
        rF[u] = r.values[sl] @ Q[r.items[sl]]
        rb[u] = r.values[sl].sum()
    zF, zb = np.empty_like(rF), np.empty_like(rb)
    apply_blocks(L, rF, rb, True, ch, zF, zb)
    np.testing.assert_allclose(P, zF, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(b, zb, rtol=1e-8, atol=1e-8)
