r"""CSR kernels: loss, gradient, Hessian-vector products on one side of the ratings.

Every kernel here works on *one side* of the factorization, given as a CSR
structure whose rows are the side's rows ("own" rows, factors ``A`` and biases
``a``) and whose column indices point into the other side ("other" rows, factors
``B`` and biases ``bo``):

* the user side: ``indptr = user_indptr``, ``idx = items``, ``vals = values`` (the
  canonical triplets), ``A = P``, ``B = Q``, ``a = b``, ``bo = c``;
* the item side: ``indptr = item_indptr``, ``idx = item_users``,
  ``vals = item_values`` (the item-major copy, streamed, not gathered through
  ``item_perm``), ``A = Q``, ``B = P``, ``a = c``, ``bo = b``.

A full gradient or Hessian-vector product is one user-side call plus one item-side
call; each pass recomputes the residual of every rating it visits exactly once
(the fused passes of DESIGN §3).  With :math:`e_{ui} = r_{ui} - \mu - b_u - c_i -
p_u^\top q_i` and regularisation weights :math:`\lambda w_u` (uniform :math:`w_u=1`
or count :math:`w_u=n_u`, supplied as the arrays ``regw = reg * w`` and ``regbw =
reg_bias * w``) one pass computes, for each own row ``u``:

.. math::

    g_u = -\sum_{i\in\Omega_u} t_{ui}\, q_i + \lambda w_u p_u, \qquad
    g^b_u = -\sum_{i\in\Omega_u} t_{ui} + \lambda_b w_u b_u

with :math:`t_{ui} = e_{ui}` (squared loss) or :math:`t_{ui} = s_{ui}` (sign loss,
``vals`` then holds the signs :math:`s_{ui}\in\{-1,0,1\}`), and the loss share

.. math::

    \tfrac12 \sum_{i\in\Omega_u} e_{ui}^2 \;(\text{or } -\sum s_{ui} p_u^\top q_i)
    \;[\text{if } \texttt{data\_loss}] \;+\; \tfrac12 \lambda w_u \|p_u\|^2
    + \tfrac12 \lambda_b w_u b_u^2 .

Call the user side with ``data_loss=True`` and the item side with ``False``: the sum
of the two returned values is the loss :math:`L`.

Hessian-vector products (direction ``dA, dB, da, dbo``), per rating
:math:`\delta_{ui} = dp_u^\top q_i + p_u^\top dq_i + db_u + dc_i`:

* ``mode=0`` Gauss-Newton: :math:`(Gv)_u = \sum_i \delta_{ui} q_i + \lambda w_u dp_u`,
  :math:`(Gv)^b_u = \sum_i \delta_{ui} + \lambda_b w_u db_u`;
* ``mode=1`` exact (squared loss): :math:`(Hv)_u = (Gv)_u - \sum_i e_{ui}\, dq_i`;
* ``mode=2`` sign loss (exact): :math:`(Hv)_u = -\sum_i s_{ui}\, dq_i + \lambda w_u dp_u`.

Conventions: factors, values, biases and outputs share one float dtype (float32 or
float64) and the arithmetic stays in it (typed constants); the loss accumulates in
float64.  ``mu`` must be a scalar of that dtype.  Without biases pass any arrays of
the dtype (e.g. length 1) for ``a, bo, gb`` (they are not touched).  Kernels assume
valid input (checked once by :class:`fastmf.objective.MFObjective`).

Chunks: the drivers walk chunks of rows of about equal rating count
(:func:`fastmf.kernels._chunks.balanced_chunks`); each chunk writes only its own rows of
the outputs and its own slot of ``loss_parts``, which are then summed in chunk order.
These are the serial kernels (``MFObjective(format="csr", parallel=False)``); the
parallel CSR passes are the same loops over a tiled copy of each side
(:func:`fastmf.kernels.tiled.side_grad_tiled`, :func:`~fastmf.kernels.tiled.side_hessp_tiled`),
which ``prange`` over the same chunks, so their results do not depend on the thread
count either.  The Gauss-Newton diagonal is
:func:`fastmf.kernels.blocks.gn_diagonal_side` and the residuals
:func:`fastmf.kernels.predict.residuals_codes`.

Memory: the kernels need no extra memory per rating (outputs are O(rows * k));
the item side streams the item-major copy built by :class:`~fastmf.data.ratings.Ratings`
(user code int32 + value, 8 bytes a rating in float32, plus its 8-byte ``item_perm``).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "grad_side_serial",
    "hessp_side_serial",
]

_OPTS = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(fastmath={"reassoc", "contract"}, **_OPTS)
def _dot(x, y, k):
    """``x[:k] . y[:k]`` in the arrays' dtype.

    fastmath here is limited to the ``reassoc`` and ``contract`` flags (no NaN/inf
    assumptions), as in the hot loops of :mod:`~fastmf.kernels.coo`,
    :mod:`~fastmf.kernels.tiled` and :mod:`~fastmf.kernels.sgd`: they let LLVM split
    the sum over SIMD lanes (a tree summation, as accurate as the serial one) and use
    FMA, several times faster than a plain loop (``docs/performance.md``).  The
    compiled summation order is fixed, so results are deterministic.
    """
    s = x.dtype.type(0)
    for f in range(k):
        s += x[f] * y[f]
    return s


@numba.njit(**_OPTS)
def _grad_rows(r0, r1, indptr, idx, vals, A, B, a, bo, mu, regw, regbw, use_biases, sign, data_loss, G, gb):
    k = A.shape[1]
    zero = A.dtype.type(0)
    loss = 0.0
    for u in range(r0, r1):
        Au = A[u]
        Gu = G[u]
        rw = regw[u]
        pen = 0.0
        for f in range(k):
            x = Au[f]
            Gu[f] = rw * x
            pen += np.float64(x) * np.float64(x)
        loss += 0.5 * np.float64(rw) * pen
        base = mu
        gbu = zero
        if use_biases:
            bu = a[u]
            base = mu + bu
            gbu = regbw[u] * bu
            loss += 0.5 * np.float64(regbw[u]) * np.float64(bu) * np.float64(bu)
        for j in range(indptr[u], indptr[u + 1]):
            i = idx[j]
            Bi = B[i]
            d = _dot(Au, Bi, k)
            if sign:
                t = vals[j]
                if data_loss:
                    loss -= np.float64(t) * np.float64(d)
            else:
                pred = base + d
                if use_biases:
                    pred += bo[i]
                t = vals[j] - pred
                if data_loss:
                    loss += 0.5 * np.float64(t) * np.float64(t)
            for f in range(k):
                Gu[f] -= t * Bi[f]
            gbu -= t
        if use_biases:
            gb[u] = gbu
    return loss


@numba.njit(**_OPTS)
def grad_side_serial(chunks, indptr, idx, vals, A, B, a, bo, mu, regw, regbw, use_biases, sign, data_loss,
                     G, gb, loss_parts):
    """One side of the loss and gradient, serial (see the module docstring).

    Writes ``G`` (own rows x k), ``gb`` (own rows, with biases) and ``loss_parts``
    (one float64 per chunk); returns the side's loss share (float64), the chunk
    partial sums added in chunk order.
    """
    nc = chunks.shape[0] - 1
    for ch in range(nc):
        loss_parts[ch] = _grad_rows(chunks[ch], chunks[ch + 1], indptr, idx, vals, A, B, a, bo, mu,
                                    regw, regbw, use_biases, sign, data_loss, G, gb)
    total = 0.0
    for ch in range(nc):
        total += loss_parts[ch]
    return total


@numba.njit(**_OPTS)
def _hessp_rows(r0, r1, indptr, idx, vals, A, B, dA, dB, a, bo, da, dbo, mu, regw, regbw, use_biases, mode,
                H, hb):
    k = A.shape[1]
    zero = A.dtype.type(0)
    for u in range(r0, r1):
        Au = A[u]
        dAu = dA[u]
        Hu = H[u]
        rw = regw[u]
        for f in range(k):
            Hu[f] = rw * dAu[f]
        hbu = zero
        base = mu
        dbu = zero
        if use_biases:
            hbu = regbw[u] * da[u]
            base = mu + a[u]
            dbu = da[u]
        for j in range(indptr[u], indptr[u + 1]):
            i = idx[j]
            Bi = B[i]
            dBi = dB[i]
            if mode == 2:
                t = vals[j]
                for f in range(k):
                    Hu[f] -= t * dBi[f]
            else:
                delta = _dot(dAu, Bi, k) + _dot(Au, dBi, k)
                if use_biases:
                    delta += dbu + dbo[i]
                if mode == 1:
                    pred = base + _dot(Au, Bi, k)
                    if use_biases:
                        pred += bo[i]
                    e = vals[j] - pred
                    for f in range(k):
                        Hu[f] += delta * Bi[f] - e * dBi[f]
                else:
                    for f in range(k):
                        Hu[f] += delta * Bi[f]
                hbu += delta
        if use_biases:
            hb[u] = hbu


@numba.njit(**_OPTS)
def hessp_side_serial(chunks, indptr, idx, vals, A, B, dA, dB, a, bo, da, dbo, mu, regw, regbw, use_biases,
                      mode, H, hb):
    """One side of a Hessian-vector product, serial (modes: see the module docstring).

    Writes ``H`` (own rows x k) and ``hb`` (own rows, with biases).
    """
    for ch in range(chunks.shape[0] - 1):
        _hessp_rows(chunks[ch], chunks[ch + 1], indptr, idx, vals, A, B, dA, dB, a, bo, da, dbo, mu,
                    regw, regbw, use_biases, mode, H, hb)
