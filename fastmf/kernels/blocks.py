r"""Per-row k×k (or (k+1)×(k+1)) Gauss-Newton blocks: assembly, Cholesky, solves.

These kernels serve two solvers:

* the block-Jacobi preconditioner of Newton-CG (:mod:`fastmf.solvers.preconditioners`),
* ALS (:mod:`fastmf.solvers.als`), whose row solves use the same block.

The block of a user ``u`` (items are symmetric: swap the roles of P and Q, b and c)
-------------------------------------------------------------------------------------
Write :math:`\tilde q_i = [q_i; 1]` with biases and :math:`\tilde q_i = q_i` without.
The diagonal block of the Gauss-Newton matrix :math:`G` for the parameters
:math:`(p_u, b_u)` of user ``u`` is

.. math::

    B_u = \sum_{i \in \Omega_u} \tilde q_i \tilde q_i^\top
          + \mathrm{diag}(\lambda_f w_u I_k,\ \lambda_b w_u)

(``w_u = 1`` or ``n_u``).  It is also the diagonal block of the exact Hessian (the
residual term of the exact Hessian only couples ``p_u`` with ``q_i``), and it is the
matrix of the normal equations of ALS's exact row solve given Q and c:

.. math::

    B_u \begin{bmatrix} p_u \\ b_u \end{bmatrix}
      = \sum_{i \in \Omega_u} (r_ui - \mu - c_i)\, \tilde q_i .

Conventions
-----------
* Blocks are stored as ``(n_rows, K, K)`` arrays, ``K = k + 1`` with biases; only
  the lower triangle is assembled and factored (``L`` with ``B = L L^T``); the upper
  triangle is left untouched (garbage).
* Cholesky is done per row, in place, with no allocation.  A pivot that is not
  positive, or smaller than ``PIVOT_RTOL`` times the block's original diagonal entry
  (a singular block: e.g. ``λ = 0`` and a row with fewer ratings than ``K``, or a
  row with no ratings at all), is *replaced*: the pivot becomes
  ``sqrt(max(original diagonal, 1))`` and the column below it is zeroed, which turns
  that direction into a decoupled diagonal entry.  The factor is then that of a
  symmetric positive definite matrix close to ``B`` on the well-determined
  directions; the kernels return how many pivots were replaced so callers can log it.
  For ALS this gives *a* minimiser of a singular row problem, not the minimum-norm
  one.
* Rows are processed in ``prange`` over chunks of rows of (roughly) equal rating
  count (:func:`fastmf.kernels._chunks.balanced_chunks`);
  each chunk owns its rows (and its scratch), so the kernels are race-free and the result of each
  row does not depend on the chunking
  or the thread count.
* Accumulation happens in the output array's dtype for the preconditioner (float32
  by default: it is an approximation anyway) and in float64 scratch for ALS.
* Assembly.  The preconditioner adds one rank-1 update per rating (:func:`_assemble`).
  ALS, whose cost is this assembly (:math:`|\Omega| K^2/2` multiply-adds per half-step),
  gathers a row's ratings ``PANEL`` at a time into a transposed float64 panel
  :math:`[\tilde q_i; t_i]` and adds the panel's Gram matrix in 2x4 register tiles
  (:func:`_gram_panel`); the right-hand side is the Gram's last row.  About 2x the
  throughput of the rank-1 loop (docs/performance.md, "ALS row systems").  The summation
  order depends on the row's own ratings only (panels counted from its first rating).

Memory: the block-Jacobi factors take ``(m + n) K^2`` floats (e.g. 160k users, k=128,
float32: 10.5 GB); :func:`block_memory` computes it and the preconditioner refuses
beyond a budget.  ALS needs ``n_chunks (K^2 + K)`` float64 scratch from the caller, plus
``n_chunks R (PANEL + R)`` float64 allocated per call, ``R = K + 5..8`` (0.5 MB for 16
chunks at k = 32).
"""

from __future__ import annotations

import numba
import numpy as np

from ._chunks import PARALLEL_MIN_RATINGS


__all__ = [
    "PIVOT_RTOL",
    "block_memory",
    "factor_blocks",
    "apply_blocks",
    "gn_diagonal",
    "gn_diagonal_side",
    "gn_diagonal_rows",
    "als_solve_rows",
]

PIVOT_RTOL = 1e-12


#: Alias of :func:`fastmf.kernels._chunks.balanced_chunks`, the kernels' one row-chunking
#: helper (kept under this name for the solver layer).


def block_memory(n_users: int, n_items: int, rank: int, biases: bool, dtype) -> int:
    """Bytes needed to store the block-Jacobi factors of all users and items."""
    K = rank + (1 if biases else 0)
    return int((n_users + n_items) * K * K * np.dtype(dtype).itemsize)


@numba.njit(cache=True, nogil=True, inline="always")
def _cholesky_inplace(A, rtol):
    """Lower Cholesky of the lower triangle of ``A`` (K×K) in place; returns the
    number of replaced pivots (see module docstring)."""
    K = A.shape[0]
    one = A.dtype.type(1)
    zero = A.dtype.type(0)
    fixed = 0
    for j in range(K):
        d0 = A[j, j]
        s = d0
        for l in range(j):
            s -= A[j, l] * A[j, l]
        if not (s > rtol * d0) or not (s > zero):
            fixed += 1
            piv = np.sqrt(d0) if d0 > one else one
            A[j, j] = piv
            for i in range(j + 1, K):
                A[i, j] = zero
            continue
        piv = np.sqrt(s)
        A[j, j] = piv
        for i in range(j + 1, K):
            t = A[i, j]
            for l in range(j):
                t -= A[i, l] * A[j, l]
            A[i, j] = t / piv
    return fixed


@numba.njit(cache=True, nogil=True, inline="always")
def _assemble(A, indptr, cols, F, row, k, biases):
    """Add Σ_i q̃_i q̃_iᵀ (lower triangle) of ``row`` into ``A`` (zeroed by the caller)."""
    one = A.dtype.type(1)
    for j in range(indptr[row], indptr[row + 1]):
        q = F[cols[j]]
        for a in range(k):
            qa = A.dtype.type(q[a])
            for b in range(a + 1):
                A[a, b] += qa * q[b]
        if biases:
            for b in range(k):
                A[k, b] += q[b]
            A[k, k] += one


@numba.njit(parallel=True, cache=True, nogil=True)
def factor_blocks(indptr, cols, F, w, reg_f, reg_b, biases, chunks, rtol, out, fixed):
    """Assemble and Cholesky-factor every row's Gauss-Newton block, in place in ``out``.

    Parameters
    ----------
    indptr, cols : CSR of the rows (users: ``user_indptr, items``; items:
        ``item_indptr, item_users``).
    F : (n_other, k) factors of the other side (Q for users, P for items).
    w : (n_rows,) regularisation weights (ones or counts), ``out``'s dtype.
    reg_f, reg_b : λ_f and λ_b.
    biases : bool, whether blocks are augmented by the bias row/column.
    chunks : int64 row boundaries (:func:`~fastmf.kernels._chunks.balanced_chunks`).
    rtol : relative pivot tolerance.
    out : (n_rows, K, K) output, K = k + biases; lower triangle = L.
    fixed : (len(chunks) - 1,) int64 output, replaced pivots per chunk.
    """
    k = F.shape[1]
    K = out.shape[1]
    zero = out.dtype.type(0)
    lf = out.dtype.type(reg_f)
    lb = out.dtype.type(reg_b)
    tol = out.dtype.type(rtol)
    for c in numba.prange(chunks.shape[0] - 1):
        nf = 0
        for row in range(chunks[c], chunks[c + 1]):
            A = out[row]
            for a in range(K):
                for b in range(a + 1):
                    A[a, b] = zero
            _assemble(A, indptr, cols, F, row, k, biases)
            for a in range(k):
                A[a, a] += lf * w[row]
            if biases:
                A[k, k] += lb * w[row]
            nf += _cholesky_inplace(A, tol)
        fixed[c] = nf


@numba.njit(parallel=True, cache=True, nogil=True)
def apply_blocks(L, rF, rb, biases, chunks, zF, zb):
    """Solve ``L_u L_uᵀ [zF_u; zb_u] = [rF_u; rb_u]`` for every row ``u``.

    ``rF``/``zF`` are (n_rows, k); ``rb``/``zb`` are (n_rows,) (ignored without
    biases: pass length-1 dummies).  ``zF``/``zb`` may alias ``rF``/``rb``.
    """
    k = rF.shape[1]
    K = L.shape[1]
    for c in numba.prange(chunks.shape[0] - 1):
        for row in range(chunks[c], chunks[c + 1]):
            A = L[row]
            # forward: L y = r  (y stored in z)
            for a in range(K):
                s = rF[row, a] if a < k else rb[row]
                for l in range(a):
                    yl = zF[row, l] if l < k else zb[row]
                    s -= A[a, l] * yl
                if a < k:
                    zF[row, a] = s / A[a, a]
                else:
                    zb[row] = s / A[a, a]
            # backward: Lᵀ z = y
            for a in range(K - 1, -1, -1):
                s = zF[row, a] if a < k else zb[row]
                for l in range(a + 1, K):
                    zl = zF[row, l] if l < k else zb[row]
                    s -= A[l, a] * zl
                if a < k:
                    zF[row, a] = s / A[a, a]
                else:
                    zb[row] = s / A[a, a]


@numba.njit(cache=True, nogil=True)
def gn_diagonal_rows(r0, r1, indptr, cols, F, regw, regbw, biases, data_term, dF, db):
    r"""Rows ``r0:r1`` of one side of the diagonal of the Gauss-Newton matrix (the one diagonal kernel).

    :math:`dF_{ua} = \sum_{i\in\Omega_u} q_{ia}^2 + \mathrm{regw}_u` (the data sum first,
    then the penalty) and :math:`db_u = n_u + \mathrm{regbw}_u` (with ``biases``;
    ``db`` is not touched otherwise).  ``regw``/``regbw`` are the per-row penalty weights
    (:math:`\lambda_f w_u`, :math:`\lambda_b w_u`).  With ``data_term=False`` only the
    penalty is written (the sign loss: its bilinear term has a zero diagonal).  The exact
    Hessian of the squared loss has the same diagonal (its residual term couples ``p_u``
    with ``q_i`` only).  Serial: small problems call it for all rows, :func:`gn_diagonal_side`
    runs it over chunks in parallel; rows are independent, so both give the same result.
    """
    k = F.shape[1]
    zero = dF.dtype.type(0)
    for row in range(r0, r1):
        for a in range(k):
            dF[row, a] = zero
        if data_term:
            for j in range(indptr[row], indptr[row + 1]):
                q = cols[j]
                for a in range(k):
                    dF[row, a] += F[q, a] * F[q, a]
        for a in range(k):
            dF[row, a] += regw[row]
        if biases:
            cnt = dF.dtype.type(indptr[row + 1] - indptr[row]) if data_term else zero
            db[row] = cnt + regbw[row]


@numba.njit(parallel=True, cache=True, nogil=True)
def gn_diagonal_side(chunks, indptr, cols, F, regw, regbw, biases, data_term, dF, db):
    """:func:`gn_diagonal_rows` over the row chunks ``chunks[c]:chunks[c + 1]`` in parallel (the
    result does not depend on ``chunks``)."""
    for c in numba.prange(chunks.shape[0] - 1):
        gn_diagonal_rows(chunks[c], chunks[c + 1], indptr, cols, F, regw, regbw, biases, data_term, dF, db)


def gn_diagonal(indptr, cols, F, w, reg_f, reg_b, biases, chunks, dF, db) -> None:
    """Diagonal of the Gauss-Newton matrix for one side, penalties ``reg_f * w`` and ``reg_b * w``.

    ``dF[u, a] = Σ_{i∈Ω_u} q_ia² + λ_f w_u`` and ``db[u] = n_u + λ_b w_u`` (with biases):
    :func:`gn_diagonal_side` with ``regw = dF.dtype.type(reg_f) * w`` (likewise ``regbw``),
    the products rounded as the kernel used to round them in place.
    """
    dt = dF.dtype.type
    if int(indptr[-1]) >= PARALLEL_MIN_RATINGS:
        gn_diagonal_side(chunks, indptr, cols, F, dt(reg_f) * w, dt(reg_b) * w, biases, True, dF, db)
    else:  # the same values (rows are independent), no prange to compile for a small problem
        gn_diagonal_rows(0, indptr.shape[0] - 1, indptr, cols, F, dt(reg_f) * w, dt(reg_b) * w, biases, True, dF, db)


#: Ratings per panel of the ALS Gram accumulation (:func:`_gram_panel`): the panel's transposed
#: float64 copy (``(K + 1) x PANEL``, 20 KB at k = 32) stays in a core's L1 cache.
PANEL = 64


@numba.njit(cache=True, nogil=True)
def _panel_rows(K):
    """Rows of the panel and Gram scratch for blocks of size ``K``: ``K`` factor rows (+ bias row),
    the target row, then zero rows so that every 2x4 tile of :func:`_gram_panel` stays inside."""
    return (K + 1 + 3) // 4 * 4 + 4


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _gram_panel(XT, n, rows, G):
    """Add the lower triangle of ``XT[:rows, :n] @ XT[:rows, :n].T`` to ``G`` (2x4 tiles).

    ``XT`` holds one panel of a row's ratings transposed (one rating per column), so each tile
    entry is a dot product over contiguous memory; ``reassoc`` lets LLVM vectorise those
    reductions and keep the eight accumulators of a tile in registers across the panel (the
    scalar rank-1 loop of :func:`_assemble` reloads and stores the block entry for every
    product: about half this throughput at K = 33, docs/performance.md).  The summation order
    is fixed by the compiled code and the panel boundaries (counted from the row's first
    rating), never by the thread count or the chunking.  ``n`` is a multiple of 8
    (zero-padded columns), so no scalar remainder loop runs.
    Entries above the diagonal of a tile that crosses it, and rows/columns ``>= rows``, are
    garbage (never read).
    """
    for a0 in range(0, rows, 2):
        r0 = XT[a0]
        r1 = XT[a0 + 1]
        for b0 in range(0, a0 + 2, 4):
            c0 = XT[b0]
            c1 = XT[b0 + 1]
            c2 = XT[b0 + 2]
            c3 = XT[b0 + 3]
            s00 = s01 = s02 = s03 = 0.0
            s10 = s11 = s12 = s13 = 0.0
            for j in range(n):
                u0 = r0[j]
                u1 = r1[j]
                v0 = c0[j]
                v1 = c1[j]
                v2 = c2[j]
                v3 = c3[j]
                s00 += u0 * v0
                s01 += u0 * v1
                s02 += u0 * v2
                s03 += u0 * v3
                s10 += u1 * v0
                s11 += u1 * v1
                s12 += u1 * v2
                s13 += u1 * v3
            G[a0, b0] += s00
            G[a0, b0 + 1] += s01
            G[a0, b0 + 2] += s02
            G[a0, b0 + 3] += s03
            G[a0 + 1, b0] += s10
            G[a0 + 1, b0 + 1] += s11
            G[a0 + 1, b0 + 2] += s12
            G[a0 + 1, b0 + 3] += s13


@numba.njit(cache=True, nogil=True)
def _normal_equations(indptr, cols, vals, F, other_bias, mu, biases, row, XT, G):
    r"""The data part of row ``row``'s normal equations, in float64: ``G[:K, :K]`` (lower triangle)
    :math:`= \sum_i \tilde q_i \tilde q_i^\top` and ``G[K, :K]`` :math:`= \sum_i t_i \tilde q_i`,
    :math:`t_i = r_{ui} - \mu - c_i`, as one Gram matrix of the rows :math:`[\tilde q_i; t_i]`.

    The ratings are gathered ``PANEL`` at a time into ``XT`` (transposed, float64) and each panel's
    Gram is added to ``G`` by :func:`_gram_panel`; the right-hand side comes out of the same pass
    as the Gram's last row.  ``XT``'s rows ``>= K + 1`` are zero and stay zero.
    """
    k = F.shape[1]
    K = k + 1 if biases else k
    rows = K + 1
    G[:] = 0.0  # the tiles also touch a few entries above the diagonal and past row K: reset all
    s = indptr[row]
    e = indptr[row + 1]
    while s < e:
        n = min(PANEL, e - s)
        for j in range(n):
            col = cols[s + j]
            q = F[col]
            for a in range(k):
                XT[a, j] = q[a]
            t = np.float64(vals[s + j]) - mu
            if biases:
                t -= other_bias[col]
                XT[k, j] = 1.0
            XT[K, j] = t
        n8 = (n + 7) // 8 * 8
        for j in range(n, n8):  # zero columns: the tiles' loops then need no scalar remainder
            for a in range(rows):
                XT[a, j] = 0.0
        _gram_panel(XT, n8, rows, G)
        s += n


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _cholesky_dots(A, rtol):
    """:func:`_cholesky_inplace` (same pivot rule) for ALS's float64 row systems, with its inner
    products vectorised (``reassoc``: ~0.7x the time at K = 33); a separate copy so that the
    block-Jacobi factors keep their own rounding."""
    K = A.shape[0]
    fixed = 0
    for j in range(K):
        d0 = A[j, j]
        s = d0
        for l in range(j):
            s -= A[j, l] * A[j, l]
        if not (s > rtol * d0) or not (s > 0.0):
            fixed += 1
            piv = np.sqrt(d0) if d0 > 1.0 else 1.0
            A[j, j] = piv
            for i in range(j + 1, K):
                A[i, j] = 0.0
            continue
        piv = np.sqrt(s)
        A[j, j] = piv
        for i in range(j + 1, K):
            t = A[i, j]
            for l in range(j):
                t -= A[i, l] * A[j, l]
            A[i, j] = t / piv
    return fixed


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _forward_solve(A, y):
    """``y <- L^{-1} y`` with ``L`` the lower triangle of ``A`` (row-wise inner products)."""
    K = A.shape[0]
    for a in range(K):
        s = y[a]
        for l in range(a):
            s -= A[a, l] * y[l]
        y[a] = s / A[a, a]


@numba.njit(parallel=True, cache=True, nogil=True)
def als_solve_rows(indptr, cols, vals, F, other_bias, mu, w, prior_diag, prior_shift, biases, chunks, rtol,
                   scratch_A, scratch_r, out_F, out_b, fixed, noise, noise_scale):
    r"""Exact ALS row solves (or Gibbs draws) for one side, in parallel over chunks of rows.

    For each row ``u`` solves (in float64 scratch)

    .. math::
        B_u [p_u; b_u] = \sum_{i\in\Omega_u} (r_{ui} - \mu - c_i)\,\tilde q_i

    and writes ``out_F[u]`` (and ``out_b[u]`` with biases).  ``other_bias`` is ``c``
    (for users) or ``b`` (for items); ignored without biases.  ``scratch_A`` is
    (n_chunks, K, K) float64, ``scratch_r`` (n_chunks, K) float64.  The data sums are
    accumulated by :func:`_normal_equations` (panels of ``PANEL`` ratings, tiled Gram in
    float64, scratch allocated here once per call, outside the parallel loop); the result
    of a row depends only on its own ratings, never on the chunking or the thread count.

    The penalty is given per coordinate: ``prior_diag`` (K,) float64 holds
    :math:`(\lambda_f, \dots, \lambda_f, \lambda_b)` for ALS, and the row's block gets
    :math:`w_u\,\mathrm{diag}(\text{prior\_diag})` on its diagonal and
    :math:`w_u\,\text{prior\_shift}` on its right-hand side, i.e. the penalty
    :math:`\tfrac12 w_u \sum_a d_a (x_a - s_a/d_a)^2` of a Gaussian prior centred at
    ``prior_shift / prior_diag`` (``prior_shift = 0`` for ALS).

    With ``noise_scale = σ > 0`` the row is instead *drawn* from its Gaussian
    conditional :math:`\mathcal N(B_u^{-1} y_u,\ \sigma^2 B_u^{-1})` (Gibbs sampling,
    :mod:`fastmf.solvers.gibbs`): with :math:`B_u = L L^\top`, the draw is
    :math:`L^{-\top}(L^{-1} y_u + \sigma z_u)`, ``z_u = noise[u]`` (K standard normals,
    float64, drawn by the caller so that the result does not depend on the threads).
    With ``noise_scale = 0`` ``noise`` is not read (pass a (1, 1) dummy).
    """
    k = F.shape[1]
    K = scratch_A.shape[1]
    n_chunks = chunks.shape[0] - 1
    R = _panel_rows(K)
    # per-chunk panel and Gram scratch (zeroed once: rows >= K + 1 of a panel must stay zero)
    XTs = np.zeros((max(n_chunks, 1), R, PANEL))
    Gs = np.zeros((max(n_chunks, 1), R, R))
    for c in numba.prange(n_chunks):
        A = scratch_A[c]
        y = scratch_r[c]
        XT = XTs[c]
        G = Gs[c]
        nf = 0
        for row in range(chunks[c], chunks[c + 1]):
            _normal_equations(indptr, cols, vals, F, other_bias, mu, biases, row, XT, G)
            for a in range(K):
                for b in range(a + 1):
                    A[a, b] = G[a, b]
                A[a, a] += prior_diag[a] * w[row]
                y[a] = G[K, a] + prior_shift[a] * w[row]
            nf += _cholesky_dots(A, rtol)
            _forward_solve(A, y)
            if noise_scale > 0.0:
                for a in range(K):
                    y[a] += noise_scale * noise[row, a]
            for a in range(K - 1, -1, -1):
                s = y[a]
                for l in range(a + 1, K):
                    s -= A[l, a] * y[l]
                y[a] = s / A[a, a]
            for a in range(k):
                out_F[row, a] = y[a]
            if biases:
                out_b[row] = y[k]
        fixed[c] = nf
