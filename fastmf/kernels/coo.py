r"""COO kernels: loss, gradient, Hessian-vector products over the canonical triplets.

The canonical triplets ``users, items, vals`` are sorted by (user, item), so the
ratings of user ``u`` are the contiguous range ``user_indptr[u]:user_indptr[u+1]``.
One pass over the triplets computes everything (residual once per rating): the
P-side rows are written by the owner of the user's range, the Q-side rows are
*scattered*.

Maths (same conventions as :mod:`fastmf.kernels.csr`): with :math:`t_{ui} = e_{ui}`
(squared loss) or :math:`s_{ui}` (sign loss, ``vals`` holding the signs),

.. math::

    g_{p_u} = -\sum_i t_{ui} q_i + \lambda w_u p_u,\quad
    g_{q_i} = -\sum_u t_{ui} p_u + \lambda w_i q_i,\quad
    g_{b_u} = -\sum_i t_{ui} + \lambda_b w_u b_u,\quad
    g_{c_i} = -\sum_u t_{ui} + \lambda_b w_i c_i

and the loss :math:`\tfrac12\sum e^2` (or :math:`-\sum s\,p_u^\top q_i`) plus the
penalties, accumulated in float64.  Hessian-vector products: ``mode`` 0
(Gauss-Newton), 1 (exact, squared loss), 2 (sign loss), as in the CSR module.

The serial kernels here walk the canonical order and are the reference for the
parallel ones in :mod:`fastmf.kernels.tiled`, which run the same loops over a
cache-tiled copy of the triplets (per-thread item buffers reduced in a fixed order).

Memory: no extra memory per rating.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "grad_serial",
    "hessp_serial",
]

_OPTS = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(**_OPTS)
def _reg_rows(r0, r1, A, a, regw, regbw, use_biases, G, gb):
    """``G[r] = regw[r] * A[r]`` (and biases) for rows ``r0:r1``; returns the penalty (float64)."""
    k = A.shape[1]
    pen = 0.0
    for r in range(r0, r1):
        Ar = A[r]
        Gr = G[r]
        rw = regw[r]
        s = 0.0
        for f in range(k):
            x = Ar[f]
            Gr[f] = rw * x
            s += np.float64(x) * np.float64(x)
        pen += 0.5 * np.float64(rw) * s
        if use_biases:
            br = a[r]
            gb[r] = regbw[r] * br
            pen += 0.5 * np.float64(regbw[r]) * np.float64(br) * np.float64(br)
    return pen


@numba.njit(fastmath={"reassoc", "contract"}, **_OPTS)
def _grad_block(r0, r1, user_indptr, items, vals, P, Q, b, c, mu, use_biases, sign, gP, gb, gQ, gc, row):
    """Data part of the gradient for the ratings of users ``r0:r1``; returns the data loss.

    Rows are indexed in two dimensions (``P[u, f]``), never taken as views (``P[u]``):
    a view per rating costs reference counting in the inner loop (a large share of the
    time: ``docs/performance.md``).

    ``gP``/``gb`` rows of these users must hold their penalty part already: the data
    part of a user's row is accumulated in the scratch ``row`` (length k, in L1) and
    added once at the end of the row; the item side is scattered into ``gQ``/``gc``.
    ``fastmath`` is limited to ``reassoc`` and ``contract`` (SIMD tree sums and FMA; no
    NaN/inf assumptions), and the compiled order is fixed, so results are deterministic.
    """
    k = P.shape[1]
    zero = P.dtype.type(0)
    loss = 0.0
    for u in range(r0, r1):
        for f in range(k):
            row[f] = zero
        base = mu
        if use_biases:
            base = mu + b[u]
        gbu = zero
        for j in range(user_indptr[u], user_indptr[u + 1]):
            i = items[j]
            d = zero
            for f in range(k):
                d += P[u, f] * Q[i, f]
            if sign:
                t = vals[j]
                loss -= np.float64(t) * np.float64(d)
            else:
                pred = base + d
                if use_biases:
                    pred += c[i]
                t = vals[j] - pred
                loss += 0.5 * np.float64(t) * np.float64(t)
            for f in range(k):
                row[f] -= t * Q[i, f]
            for f in range(k):
                gQ[i, f] -= t * P[u, f]
            gbu -= t
            if use_biases:
                gc[i] -= t
        for f in range(k):
            gP[u, f] += row[f]
        if use_biases:
            gb[u] += gbu
    return loss


@numba.njit(**_OPTS)
def grad_serial(user_indptr, items, vals, P, Q, b, c, mu, regw_u, regbw_u, regw_i, regbw_i, use_biases, sign,
                gP, gQ, gb, gc):
    """Loss and full gradient in one serial pass; writes ``gP, gQ, gb, gc``, returns the loss (float64)."""
    pen = _reg_rows(0, P.shape[0], P, b, regw_u, regbw_u, use_biases, gP, gb)
    pen += _reg_rows(0, Q.shape[0], Q, c, regw_i, regbw_i, use_biases, gQ, gc)
    row = np.empty(P.shape[1], dtype=P.dtype)
    return _grad_block(0, P.shape[0], user_indptr, items, vals, P, Q, b, c, mu, use_biases, sign,
                       gP, gb, gQ, gc, row) + pen


@numba.njit(**_OPTS)
def _hessp_init(r0, r1, dA, da, regw, regbw, use_biases, H, hb):
    k = dA.shape[1]
    for r in range(r0, r1):
        rw = regw[r]
        for f in range(k):
            H[r, f] = rw * dA[r, f]
        if use_biases:
            hb[r] = regbw[r] * da[r]


@numba.njit(fastmath={"reassoc", "contract"}, **_OPTS)
def _hessp_block(r0, r1, user_indptr, items, vals, P, Q, dP, dQ, b, c, db, dc, mu, use_biases, mode,
                 hP, hb, hQ, hc, row):
    """Data part of the Hessian-vector product for the ratings of users ``r0:r1``.

    As :func:`_grad_block`: each user's row is accumulated in ``row`` and added to
    ``hP`` once; the item side is scattered into ``hQ``/``hc``.  ``delta`` (and, for
    the exact Hessian, the residual) is computed once per rating for both sides.
    """
    k = P.shape[1]
    zero = P.dtype.type(0)
    for u in range(r0, r1):
        for f in range(k):
            row[f] = zero
        hbu = zero
        for j in range(user_indptr[u], user_indptr[u + 1]):
            i = items[j]
            if mode == 2:
                s = vals[j]
                for f in range(k):
                    row[f] -= s * dQ[i, f]
                for f in range(k):
                    hQ[i, f] -= s * dP[u, f]
                continue
            d1 = zero
            d2 = zero
            for f in range(k):
                d1 += dP[u, f] * Q[i, f]
                d2 += P[u, f] * dQ[i, f]
            delta = d1 + d2
            if use_biases:
                delta += db[u] + dc[i]
            if mode == 1:
                d = zero
                for f in range(k):
                    d += P[u, f] * Q[i, f]
                pred = mu + d
                if use_biases:
                    pred += b[u] + c[i]
                e = vals[j] - pred
                for f in range(k):
                    row[f] += delta * Q[i, f] - e * dQ[i, f]
                for f in range(k):
                    hQ[i, f] += delta * P[u, f] - e * dP[u, f]
            else:
                for f in range(k):
                    row[f] += delta * Q[i, f]
                for f in range(k):
                    hQ[i, f] += delta * P[u, f]
            hbu += delta
            if use_biases:
                hc[i] += delta
        for f in range(k):
            hP[u, f] += row[f]
        if use_biases:
            hb[u] += hbu


@numba.njit(**_OPTS)
def hessp_serial(user_indptr, items, vals, P, Q, dP, dQ, b, c, db, dc, mu, regw_u, regbw_u, regw_i, regbw_i,
                 use_biases, mode, hP, hQ, hb, hc):
    """Hessian-vector product in one serial pass; writes ``hP, hQ, hb, hc``."""
    _hessp_init(0, P.shape[0], dP, db, regw_u, regbw_u, use_biases, hP, hb)
    _hessp_init(0, Q.shape[0], dQ, dc, regw_i, regbw_i, use_biases, hQ, hc)
    row = np.empty(P.shape[1], dtype=P.dtype)
    _hessp_block(0, P.shape[0], user_indptr, items, vals, P, Q, dP, dQ, b, c, db, dc, mu, use_biases, mode,
                 hP, hb, hQ, hc, row)
