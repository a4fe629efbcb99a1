r"""Tiled parallel kernels: loss, gradient and Hessian-vector products for ``format="coo"``
(one fused pass) and ``format="csr"`` (one pass per side, the same kernels without the
scatter; see the section at the end of this module).

The fused COO pass (:mod:`fastmf.kernels.coo`) reads each rating once and scatters
its item-side contribution into ``Q``-shaped buffers.  On ML-20M shapes those item
rows (``Q``, the buffer, and ``dQ`` for a Hessian product: 3.5 MB each at rank 32 in
float32) do not fit in a core's L2 cache, and the scatter runs at L3 latency.  This
module reorders each thread's ratings into *tiles*:

* the users of block ``t`` (``ubounds[t]:ubounds[t+1]``, balanced by rating count;
  ``MFObjective`` uses one block per thread, or a fixed number with ``coo_blocks``) are
  cut into groups of at most ``tile_users`` consecutive users;
* within a group, ratings are ordered by item tile (``item // tile_items``), then user,
  then item.  A *segment* is the run of one user's ratings inside one item tile.

Inside a tile the item rows touched (``tile_items * rank`` floats of ``Q`` and of the
buffer, 256 KiB each by default) stay in L2 while the users stream past in order.
Each segment accumulates its user's row in a scratch row (L1) and adds it to the
output once.  The maths are those of :mod:`fastmf.kernels.coo`; only the summation
order differs.

Layout (:func:`build_tiles`): ``seg_user`` (int32, user of each segment),
``seg_ptr`` (int64, ratings of segment ``s`` are ``seg_ptr[s]:seg_ptr[s+1]``),
``items`` / ``values`` (item code and value of each rating, tiled order) and
``seg_bounds`` (int64, segments of thread block ``t`` are
``seg_bounds[t]:seg_bounds[t+1]``).  Extra memory: 8 bytes per rating in float32
(12 in float64) plus 12 bytes per segment; the segments number at most
``nnz`` and, on ML-20M shapes, about a tenth of it.

Kernel structure (race-free, deterministic): ``prange`` over thread blocks, block
``t`` owns its users' rows and scatters item-side terms into its own buffer
``bufQ[t]``; a second ``prange`` over item chunks owns item rows and adds the buffers
in the fixed order ``t = 0, 1, ...``.  Same inputs and block count give bit-identical
results.  The hot loop is written inside the ``prange`` body, with two-dimensional
(and three-dimensional, for the buffers) indexing and no array views or calls:
numba then proves the arrays do not alias and marks them ``noalias``, which lets LLVM
drop its runtime overlap checks.  The gradient pass processes four ratings of a segment
per step (one load of the user's row for four dot products, a quarter of the
scratch-row updates), the Hessian product two (four was no faster).  Per step there is
one loop over the rank for the dot products (for the exact Hessian, ``delta`` and the
prediction's dot together), one that updates the user's scratch row, and one per item row
for the scatter.  In the serial twins (below) numba cannot mark the arrays ``noalias``, and
a scatter fused into the row update made LLVM guard the loop with run-time overlap checks
between the item rows: separate loops made the serial gradient 0.72x and the Hessian
product 0.91x as long, bit for bit the same, and the parallel kernels 0.95-0.99x.  Row indices are cast
to unsigned before indexing, which removes numba's negative-index wrap test from every
gathered row.  The rank stays a run-time value: a compile-time rank makes LLVM unroll
the loops before vectorising them, into scalar code (1.5x slower).  Measured gains and
losses of these choices and of the tile shape: ``docs/performance.md``
("Kernels toward the machine's limit").
"""

from __future__ import annotations

import types

import numba
import numpy as np
from numba import prange

from .._threading import run_blocks as _run_blocks
from .coo import _reg_rows, _hessp_init

__all__ = ["tile_shape", "build_tiles", "grad_tiled", "hessp_tiled", "side_grad_tiled", "side_hessp_tiled",
           "serial_layout", "grad_serial", "hessp_serial"]

_OPTS = dict(cache=True, nogil=True, error_model="numpy")
_FAST = {"reassoc", "contract"}

#: Bytes of ``Q`` rows per item tile (plus as much again of buffer): a quarter of a
#: 1 MiB L2 each.
TILE_ITEM_BYTES = 256 * 1024
#: Bytes of ``P`` rows per user group.
TILE_USER_BYTES = 2 * 1024 * 1024


def tile_shape(rank: int, itemsize: int) -> tuple[int, int]:
    """``(tile_users, tile_items)`` for factors of ``rank`` entries of ``itemsize`` bytes.

    ``tile_items = 256 KiB / (rank * itemsize)`` (2,048 items at rank 32 in float32)
    and ``tile_users = 2 MiB / (rank * itemsize)`` (16,384 users), each at least 64:
    the item rows a tile touches (``Q`` and the buffer) stay in a 1 MiB L2.  They were
    chosen by timing a few shapes on the ML-20M shape (rank 32, one thread;
    ``docs/performance.md``).
    """
    row = max(1, int(rank) * int(itemsize))
    return max(64, TILE_USER_BYTES // row), max(64, TILE_ITEM_BYTES // row)


def _groups(ubounds: np.ndarray, tile_users: int) -> tuple[np.ndarray, np.ndarray]:
    """User boundaries of the groups (each block cut into near-equal groups of at most
    ``tile_users`` users) and, per block, its first group."""
    gb = [0]
    first = [0]
    for t in range(len(ubounds) - 1):
        u0, u1 = int(ubounds[t]), int(ubounds[t + 1])
        ng = max(1, -(-(u1 - u0) // tile_users))
        cuts = u0 + (np.arange(1, ng + 1, dtype=np.int64) * (u1 - u0)) // ng
        gb.extend(int(x) for x in cuts)
        first.append(len(gb) - 1)
    return np.asarray(gb, dtype=np.int64), np.asarray(first, dtype=np.int64)


@numba.njit(parallel=True, **_OPTS)
def _count_segments(gbounds, user_indptr, items, tile_items, nseg):
    """``nseg[g]`` = number of (user, item tile) segments of group ``g``."""
    for g in prange(gbounds.shape[0] - 1):
        s = 0
        for u in range(gbounds[g], gbounds[g + 1]):
            last = -1
            for j in range(user_indptr[u], user_indptr[u + 1]):
                tile = items[j] // tile_items
                if tile != last:
                    s += 1
                    last = tile
        nseg[g] = s


@numba.njit(parallel=True, **_OPTS)
def _fill_tiles(gbounds, seg_off, user_indptr, items, vals, tile_items, n_tiles, rcount, scount,
                seg_user, seg_ptr, t_items, t_vals):
    """Write the tiled order of every group (``prange`` over groups; each writes its own range).

    ``rcount``/``scount`` (n_groups, n_tiles) int64 are scratch: per tile, the group's
    rating and segment counts, then the running write positions.
    """
    for g in prange(gbounds.shape[0] - 1):
        u0 = gbounds[g]
        u1 = gbounds[g + 1]
        rc = rcount[g]
        sc = scount[g]
        for tt in range(n_tiles):
            rc[tt] = 0
            sc[tt] = 0
        for u in range(u0, u1):
            last = -1
            for j in range(user_indptr[u], user_indptr[u + 1]):
                tile = items[j] // tile_items
                rc[tile] += 1
                if tile != last:
                    sc[tile] += 1
                    last = tile
        # exclusive prefix sums -> write positions (ratings from the group's first
        # canonical position: a group's ratings keep their range, only permuted)
        rpos = user_indptr[u0]
        spos = seg_off[g]
        for tt in range(n_tiles):
            r = rc[tt]
            s = sc[tt]
            rc[tt] = rpos
            sc[tt] = spos
            rpos += r
            spos += s
        for u in range(u0, u1):
            j = user_indptr[u]
            end = user_indptr[u + 1]
            while j < end:
                tile = items[j] // tile_items
                s = sc[tile]
                sc[tile] = s + 1
                r = rc[tile]
                seg_user[s] = u
                seg_ptr[s] = r
                while j < end and items[j] // tile_items == tile:
                    t_items[r] = items[j]
                    t_vals[r] = vals[j]
                    r += 1
                    j += 1
                rc[tile] = r
    if seg_user.shape[0] > 0:
        seg_ptr[seg_user.shape[0]] = user_indptr[gbounds[gbounds.shape[0] - 1]]


def build_tiles(user_indptr: np.ndarray, items: np.ndarray, vals: np.ndarray, ubounds: np.ndarray,
                n_items: int, tile_users: int, tile_items: int) -> dict:
    """Tiled copy of canonical triplets for the parallel kernels (see the module docstring).

    Parameters
    ----------
    user_indptr : int64 (m + 1,)
        CSR row pointer of the canonical (user, item)-sorted triplets.
    items : int32 (nnz,)
    vals : float32 or float64 (nnz,)
        Item codes and values in canonical order.
    ubounds : int64 (nb + 1,)
        User boundaries of the thread blocks (from :func:`balanced_chunks`).
    n_items, tile_users, tile_items : int

    Returns
    -------
    dict with ``seg_user`` (int32), ``seg_ptr`` (int64, n_seg + 1), ``items`` (int32),
    ``values`` (vals' dtype), ``seg_bounds`` (int64, nb + 1), ``ubounds`` and the tile
    sizes.  O(nnz) time (two parallel passes), nothing of size m x n.
    """
    gbounds, first = _groups(np.asarray(ubounds, dtype=np.int64), int(tile_users))
    ng = len(gbounds) - 1
    n_tiles = max(1, -(-int(n_items) // int(tile_items)))
    nseg = np.zeros(ng, dtype=np.int64)
    _count_segments(gbounds, user_indptr, items, np.int32(tile_items), nseg)
    seg_off = np.zeros(ng + 1, dtype=np.int64)
    np.cumsum(nseg, out=seg_off[1:])
    total = int(seg_off[-1])
    seg_user = np.empty(total, dtype=np.int32)
    seg_ptr = np.empty(total + 1, dtype=np.int64)
    seg_ptr[0] = 0
    t_items = np.empty_like(items)
    t_vals = np.empty_like(vals)
    _fill_tiles(gbounds, seg_off, user_indptr, items, vals, np.int32(tile_items), n_tiles,
                np.empty((ng, n_tiles), dtype=np.int64), np.empty((ng, n_tiles), dtype=np.int64),
                seg_user, seg_ptr, t_items, t_vals)
    return {
        "seg_user": seg_user,
        "seg_ptr": seg_ptr,
        "items": t_items,
        "values": t_vals,
        "seg_bounds": np.ascontiguousarray(seg_off[first]),
        "ubounds": np.asarray(ubounds, dtype=np.int64),
        "tile_users": int(tile_users),
        "tile_items": int(tile_items),
    }


@numba.njit(**_OPTS)
def _zero_block(bQ, bc):
    zero = bQ.dtype.type(0)
    for i in range(bQ.shape[0]):
        for f in range(bQ.shape[1]):
            bQ[i, f] = zero
        bc[i] = zero


@numba.njit(parallel=True, **_OPTS)
def _prepare_blocks(ubounds, P, b, regw, regbw, use_biases, G, gb, scatter, bufQ, bufc, pen_parts):
    """Write the penalty part of each block's rows (``G = λ w P``) and, with ``scatter``, zero
    the block's buffers."""
    nb = ubounds.shape[0] - 1
    for t in prange(nb):
        if scatter:
            _zero_block(bufQ[t], bufc[t])
        pen_parts[t] = _reg_rows(ubounds[t], ubounds[t + 1], P, b, regw, regbw, use_biases, G, gb)


@numba.njit(parallel=True, **_OPTS)
def _finish_items(ichunks, Q, c, regw, regbw, use_biases, bufQ, bufc, G, gc, item_parts, penalty):
    """Item rows: ``G = λ w Q + Σ_t bufQ[t]`` in the fixed order t = 0, 1, ... (and biases).

    With ``penalty`` false ``Q``/``c`` hold the direction and ``G = λ w dQ + Σ_t bufQ[t]``
    (the Hessian product); ``item_parts`` gets the penalty values of the chunks.
    """
    nb = bufQ.shape[0]
    k = G.shape[1]
    for ch in prange(ichunks.shape[0] - 1):
        i0 = ichunks[ch]
        i1 = ichunks[ch + 1]
        if penalty:
            item_parts[ch] = _reg_rows(i0, i1, Q, c, regw, regbw, use_biases, G, gc)
        else:
            _hessp_init(i0, i1, Q, c, regw, regbw, use_biases, G, gc)
        for i in range(i0, i1):
            for t in range(nb):
                for f in range(k):
                    G[i, f] += bufQ[t, i, f]
                if use_biases:
                    gc[i] += bufc[t, i]


@numba.njit(parallel=True, fastmath=_FAST, **_OPTS)
def _grad_data(seg_bounds, seg_user, seg_ptr, items, vals, P, Q, b, c, mu, use_biases, sign,
               gP, gb, scatter, bufQ, bufc, rows, loss_parts):
    """Data part of the loss and gradient over the segments of each block ``t``.

    The rows named by ``seg_user`` (users for COO, either side's rows for a CSR side
    pass) accumulate into ``gP``/``gb``, which must hold the penalty part already
    (:func:`_prepare_blocks`).  With ``scatter`` (COO) the other side's terms are added
    into the block's buffer ``bufQ[t]``/``bufc[t]``; without (a CSR side pass) they are
    skipped and the buffers may be empty.  ``loss_parts[t]`` receives block ``t``'s data
    loss.  Inline hot loop, no views: see the module docstring.
    """
    nb = seg_bounds.shape[0] - 1
    k = P.shape[1]
    for t in prange(nb):
        zero = P.dtype.type(0)
        loss = 0.0
        for s in range(seg_bounds[t], seg_bounds[t + 1]):
            # unsigned row indices: numba wraps negative indices, and for a signed index
            # loaded from memory LLVM cannot drop that test (one per row and loop)
            u = np.uint64(seg_user[s])
            j = seg_ptr[s]
            end = seg_ptr[s + 1]
            for f in range(k):
                rows[t, f] = zero
            base = mu
            if use_biases:
                base = mu + b[u]
            gbu = zero
            while j + 3 < end:
                i1 = np.uint64(items[j])
                i2 = np.uint64(items[j + 1])
                i3 = np.uint64(items[j + 2])
                i4 = np.uint64(items[j + 3])
                d1 = zero
                d2 = zero
                d3 = zero
                d4 = zero
                for f in range(k):
                    pf = P[u, f]
                    d1 += pf * Q[i1, f]
                    d2 += pf * Q[i2, f]
                    d3 += pf * Q[i3, f]
                    d4 += pf * Q[i4, f]
                if sign:
                    e1 = vals[j]
                    e2 = vals[j + 1]
                    e3 = vals[j + 2]
                    e4 = vals[j + 3]
                    loss -= (np.float64(e1) * np.float64(d1) + np.float64(e2) * np.float64(d2)
                             + np.float64(e3) * np.float64(d3) + np.float64(e4) * np.float64(d4))
                else:
                    if use_biases:
                        d1 += c[i1]
                        d2 += c[i2]
                        d3 += c[i3]
                        d4 += c[i4]
                    e1 = vals[j] - (base + d1)
                    e2 = vals[j + 1] - (base + d2)
                    e3 = vals[j + 2] - (base + d3)
                    e4 = vals[j + 3] - (base + d4)
                    loss += 0.5 * (np.float64(e1) * np.float64(e1) + np.float64(e2) * np.float64(e2)
                                   + np.float64(e3) * np.float64(e3) + np.float64(e4) * np.float64(e4))
                if scatter:
                    # the user row, then one loop per item row (see the module docstring)
                    for f in range(k):
                        rows[t, f] -= e1 * Q[i1, f] + e2 * Q[i2, f] + e3 * Q[i3, f] + e4 * Q[i4, f]
                    for f in range(k):
                        bufQ[t, i1, f] -= e1 * P[u, f]
                    for f in range(k):
                        bufQ[t, i2, f] -= e2 * P[u, f]
                    for f in range(k):
                        bufQ[t, i3, f] -= e3 * P[u, f]
                    for f in range(k):
                        bufQ[t, i4, f] -= e4 * P[u, f]
                    if use_biases:
                        bufc[t, i1] -= e1
                        bufc[t, i2] -= e2
                        bufc[t, i3] -= e3
                        bufc[t, i4] -= e4
                else:
                    for f in range(k):
                        rows[t, f] -= e1 * Q[i1, f] + e2 * Q[i2, f] + e3 * Q[i3, f] + e4 * Q[i4, f]
                gbu -= (e1 + e2) + (e3 + e4)
                j += 4
            while j < end:
                i = np.uint64(items[j])
                d = zero
                for f in range(k):
                    d += P[u, f] * Q[i, f]
                if sign:
                    e = vals[j]
                    loss -= np.float64(e) * np.float64(d)
                else:
                    p1 = base + d
                    if use_biases:
                        p1 += c[i]
                    e = vals[j] - p1
                    loss += 0.5 * np.float64(e) * np.float64(e)
                if scatter:
                    for f in range(k):
                        rows[t, f] -= e * Q[i, f]
                        bufQ[t, i, f] -= e * P[u, f]
                    if use_biases:
                        bufc[t, i] -= e
                else:
                    for f in range(k):
                        rows[t, f] -= e * Q[i, f]
                gbu -= e
                j += 1
            for f in range(k):
                gP[u, f] += rows[t, f]
            if use_biases:
                gb[u] += gbu
        loss_parts[t] = loss


def grad_tiled(tiles, ichunks, P, Q, b, c, mu, regw_u, regbw_u, regw_i, regbw_i, use_biases, sign,
               gP, gQ, gb, gc, bufQ, bufc, rows, loss_parts, item_parts) -> float:
    """Loss and full gradient over a tiled layout (:func:`build_tiles`); returns the loss.

    Three parallel regions: zero buffers + user penalties, the tiled data pass, and
    the item rows (penalty + fixed-order buffer reduction).  ``bufQ`` (nb, n, k),
    ``bufc`` (nb, n), ``rows`` (nb, >= k), ``loss_parts`` (nb,) and ``item_parts``
    (len(ichunks) - 1,) are scratch; ``nb = len(tiles["ubounds"]) - 1``.  The loss is
    summed in float64 in a fixed order.
    """
    ub = tiles["ubounds"]
    nb = len(ub) - 1
    pen = np.empty(nb)
    _prepare_blocks(ub, P, b, regw_u, regbw_u, use_biases, gP, gb, True, bufQ, bufc, pen)
    _grad_data(tiles["seg_bounds"], tiles["seg_user"], tiles["seg_ptr"], tiles["items"], tiles["values"],
               P, Q, b, c, mu, use_biases, sign, gP, gb, True, bufQ, bufc, rows, loss_parts)
    _finish_items(ichunks, Q, c, regw_i, regbw_i, use_biases, bufQ, bufc, gQ, gc, item_parts, True)
    total = 0.0
    for t in range(nb):
        total += float(pen[t]) + float(loss_parts[t])
    for ch in range(len(item_parts)):
        total += float(item_parts[ch])
    return total


@numba.njit(parallel=True, fastmath=_FAST, **_OPTS)
def _hessp_data(seg_bounds, seg_user, seg_ptr, items, vals, P, Q, dP, dQ, b, c, db, dc, mu, use_biases, mode,
                hP, hb, scatter, bufQ, bufc, rows):
    """Data part of the Hessian-vector product over the segments of each block ``t``.

    ``mode`` 0: Gauss-Newton, 1: exact (squared loss), 2: sign loss (``vals`` hold the
    signs), as in :mod:`fastmf.kernels.coo`.  ``hP``/``hb`` must hold the penalty part;
    ``scatter`` as in :func:`_grad_data`.

    Two ratings per step: one loop over the rank computes ``delta`` (and, exact, the
    prediction's dot) from one load of each row, one updates the user's scratch row, and
    one per item row scatters (see the module docstring).
    """
    nb = seg_bounds.shape[0] - 1
    k = P.shape[1]
    exact = mode == 1
    for t in prange(nb):
        zero = P.dtype.type(0)
        for s in range(seg_bounds[t], seg_bounds[t + 1]):
            u = np.uint64(seg_user[s])  # unsigned: no negative-index wrap test (see _grad_data)
            j = seg_ptr[s]
            end = seg_ptr[s + 1]
            for f in range(k):
                rows[t, f] = zero
            hbu = zero
            if mode == 2:
                for jj in range(j, end):
                    i = np.uint64(items[jj])
                    sv = vals[jj]
                    for f in range(k):
                        rows[t, f] -= sv * dQ[i, f]
                    if scatter:
                        for f in range(k):
                            bufQ[t, i, f] -= sv * dP[u, f]
                for f in range(k):
                    hP[u, f] += rows[t, f]
                continue
            base = mu
            dbu = zero
            if use_biases:
                base = mu + b[u]
                dbu = db[u]
            while j + 1 < end:
                i1 = np.uint64(items[j])
                i2 = np.uint64(items[j + 1])
                x1 = zero
                x2 = zero
                if exact:
                    d1 = zero
                    d2 = zero
                    for f in range(k):
                        pf = P[u, f]
                        dpf = dP[u, f]
                        q1 = Q[i1, f]
                        q2 = Q[i2, f]
                        x1 += dpf * q1 + pf * dQ[i1, f]
                        x2 += dpf * q2 + pf * dQ[i2, f]
                        d1 += pf * q1
                        d2 += pf * q2
                    p1 = base + d1
                    p2 = base + d2
                    if use_biases:
                        p1 += c[i1]
                        p2 += c[i2]
                    e1 = vals[j] - p1
                    e2 = vals[j + 1] - p2
                else:
                    for f in range(k):
                        x1 += dP[u, f] * Q[i1, f] + P[u, f] * dQ[i1, f]
                        x2 += dP[u, f] * Q[i2, f] + P[u, f] * dQ[i2, f]
                if use_biases:
                    x1 += dbu + dc[i1]
                    x2 += dbu + dc[i2]
                if exact:
                    if scatter:
                        for f in range(k):
                            rows[t, f] += x1 * Q[i1, f] + x2 * Q[i2, f] - e1 * dQ[i1, f] - e2 * dQ[i2, f]
                        for f in range(k):
                            bufQ[t, i1, f] += x1 * P[u, f] - e1 * dP[u, f]
                        for f in range(k):
                            bufQ[t, i2, f] += x2 * P[u, f] - e2 * dP[u, f]
                    else:
                        for f in range(k):
                            rows[t, f] += x1 * Q[i1, f] + x2 * Q[i2, f] - e1 * dQ[i1, f] - e2 * dQ[i2, f]
                else:
                    if scatter:
                        for f in range(k):
                            rows[t, f] += x1 * Q[i1, f] + x2 * Q[i2, f]
                        for f in range(k):
                            bufQ[t, i1, f] += x1 * P[u, f]
                        for f in range(k):
                            bufQ[t, i2, f] += x2 * P[u, f]
                    else:
                        for f in range(k):
                            rows[t, f] += x1 * Q[i1, f] + x2 * Q[i2, f]
                hbu += x1 + x2
                if scatter and use_biases:
                    bufc[t, i1] += x1
                    bufc[t, i2] += x2
                j += 2
            if j < end:
                i = np.uint64(items[j])
                x1 = zero
                if exact:
                    d = zero
                    for f in range(k):
                        pf = P[u, f]
                        qf = Q[i, f]
                        x1 += dP[u, f] * qf + pf * dQ[i, f]
                        d += pf * qf
                    p1 = base + d
                    if use_biases:
                        p1 += c[i]
                    e = vals[j] - p1
                else:
                    for f in range(k):
                        x1 += dP[u, f] * Q[i, f] + P[u, f] * dQ[i, f]
                if use_biases:
                    x1 += dbu + dc[i]
                if exact:
                    for f in range(k):
                        rows[t, f] += x1 * Q[i, f] - e * dQ[i, f]
                    if scatter:
                        for f in range(k):
                            bufQ[t, i, f] += x1 * P[u, f] - e * dP[u, f]
                else:
                    for f in range(k):
                        rows[t, f] += x1 * Q[i, f]
                    if scatter:
                        for f in range(k):
                            bufQ[t, i, f] += x1 * P[u, f]
                hbu += x1
                if scatter and use_biases:
                    bufc[t, i] += x1
            for f in range(k):
                hP[u, f] += rows[t, f]
            if use_biases:
                hb[u] += hbu


@numba.njit(parallel=True, **_OPTS)
def _prepare_hessp(ubounds, dP, db, regw, regbw, use_biases, H, hb, scatter, bufQ, bufc):
    """Write the penalty part ``H = λ w dP`` of each block's rows and, with ``scatter``, zero the
    block's buffers."""
    for t in prange(ubounds.shape[0] - 1):
        if scatter:
            _zero_block(bufQ[t], bufc[t])
        _hessp_init(ubounds[t], ubounds[t + 1], dP, db, regw, regbw, use_biases, H, hb)


def hessp_tiled(tiles, ichunks, P, Q, dP, dQ, b, c, db, dc, mu, regw_u, regbw_u, regw_i, regbw_i, use_biases,
                mode, hP, hQ, hb, hc, bufQ, bufc, rows) -> None:
    """Hessian-vector product over a tiled layout (:func:`build_tiles`); writes ``hP, hQ, hb, hc``.

    Same three parallel regions and scratch as :func:`grad_tiled`.
    """
    ub = tiles["ubounds"]
    _prepare_hessp(ub, dP, db, regw_u, regbw_u, use_biases, hP, hb, True, bufQ, bufc)
    _hessp_data(tiles["seg_bounds"], tiles["seg_user"], tiles["seg_ptr"], tiles["items"], tiles["values"],
                P, Q, dP, dQ, b, c, db, dc, mu, use_biases, mode, hP, hb, True, bufQ, bufc, rows)
    _finish_items(ichunks, dQ, dc, regw_i, regbw_i, use_biases, bufQ, bufc, hQ, hc, np.empty(0), False)


# ---------------------------------------------------------------------------------------------------------------------
# Small problems: the same data passes, serial kernels over a few user blocks, no tiles
# ---------------------------------------------------------------------------------------------------------------------
# Below ``fastmf.objective.PARALLEL_MIN_RATINGS`` ratings the objective runs the data passes above
# over the canonical (user, item) order, one segment per user (no tiles), in a few fixed user
# blocks run on Python threads (``fastmf._threading.run_blocks``): block 0 scatters its item side
# straight into the output (which holds the penalty part already), the others into buffers added
# in block order.  One block runs on the calling thread alone.  The passes are *serial twins* of
# ``_grad_data`` and ``_hessp_data``: the same Python functions compiled without ``parallel=True``
# (``prange`` then runs as ``range``), under their own names so that numba caches them apart.  A
# first fit then compiles two serial functions instead of seven parallel ones (docs/performance.md,
# "Cold start").  The parallel kernels keep their loop inside the ``prange`` body: moved into a
# called function (even one inlined by numba) they ran 1.3-1.6x slower at the ML-20M shape.


def _serial_twin(kernel, doc: str):
    """``kernel``'s Python function compiled without ``parallel=True``, named ``<name>_serial``
    (its own numba cache entry: the cache is keyed by the function's qualified name)."""
    f = kernel.py_func
    twin = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    twin.__qualname__ = f.__qualname__ + "_serial"
    twin.__module__ = f.__module__
    twin.__doc__ = doc
    return numba.njit(fastmath=_FAST, **_OPTS)(twin)


_grad_data_serial = _serial_twin(_grad_data, "_grad_data on the calling thread (see the section comment).")
_hessp_data_serial = _serial_twin(_hessp_data, "_hessp_data on the calling thread (see the section comment).")


def serial_layout(user_indptr: np.ndarray, items: np.ndarray, vals: np.ndarray,
                  ubounds: np.ndarray | None = None) -> dict:
    """The canonical triplets as per-user segments, for :func:`grad_serial` and
    :func:`hessp_serial` (no copy: views of the arrays given, plus 4 bytes per user).

    ``ubounds`` (int64, ``nb + 1``) cuts the users into ``nb`` blocks (default: one block);
    ``"blocks"`` holds each block's ``[u0, u1]`` as the one-block segment bounds of a kernel call.
    """
    m = user_indptr.shape[0] - 1
    ub = np.array([0, m], dtype=np.int64) if ubounds is None else np.asarray(ubounds, dtype=np.int64)
    return {"seg_user": np.arange(m, dtype=np.int32), "seg_ptr": user_indptr, "items": items, "values": vals,
            "ubounds": ub, "blocks": [np.ascontiguousarray(ub[t:t + 2]) for t in range(len(ub) - 1)]}


def _block_target(t, G, g, bufQ, bufc):
    """Where block ``t`` of a blocked serial pass scatters its item terms: the output itself
    (block 0, which must hold the penalty part already) or its own buffer, zeroed here (with
    numpy, which releases the GIL too: no kernel to compile on a cold start)."""
    if t == 0:
        return G[None], g[None]
    tQ, tc = bufQ[t - 1:t], bufc[t - 1:t]
    tQ.fill(0)
    tc.fill(0)
    return tQ, tc


def _add_buffers(G, g, bufQ, bufc, nb, use_biases) -> None:
    """``G += bufQ[0] + ... `` in block order (blocks 1.. of a blocked serial pass; numpy, in place)."""
    for t in range(nb - 1):
        np.add(G, bufQ[t], out=G)
        if use_biases:
            np.add(g, bufc[t], out=g)


def grad_serial(layout, P, Q, b, c, mu, regw_u, regbw_u, regw_i, regbw_i, use_biases, sign, gP, gQ, gb, gc,
                rows, bufQ=None, bufc=None, parts=None, n_threads: int = 1) -> float:
    """Loss and full gradient over :func:`serial_layout` by the serial twin of :func:`_grad_data`;
    returns the loss.

    With one block (the default layout) everything runs on the calling thread: the penalties
    are written first (``G = λ w P``, ``λ w Q``), then one pass adds the data terms, the item
    side into ``gQ``/``gc`` directly.  With ``nb`` blocks (``layout["ubounds"]``) block ``t``
    writes its users' rows and scatters its item terms into ``gQ`` (``t = 0``, after the item
    penalties) or into its own zeroed buffer ``bufQ[t - 1]``/``bufc[t - 1]``; the blocks run
    on up to ``n_threads`` threads (:func:`fastmf._threading.run_blocks`, the kernels release
    the GIL) and the buffers are then added in block order.  ``rows`` (nb, >= k) and ``parts``
    (nb, 2) float64 are scratch; ``bufQ`` (nb - 1, n, k) and ``bufc`` (nb - 1, n).  The loss
    is the user penalties, the item penalty and the data losses summed in block order in
    float64, so the result depends on the blocks, never on ``n_threads``.  Same maths as
    :func:`grad_tiled`; the summation order differs.
    """
    ub = layout["ubounds"]
    nb = len(ub) - 1
    if parts is None:
        parts = np.empty((nb, 2))
    item_pen = np.zeros(1)

    def block(t: int) -> None:
        if t == 0:
            item_pen[0] = _reg_rows(0, Q.shape[0], Q, c, regw_i, regbw_i, use_biases, gQ, gc)
        tQ, tc = _block_target(t, gQ, gc, bufQ, bufc)
        parts[t, 0] = _reg_rows(ub[t], ub[t + 1], P, b, regw_u, regbw_u, use_biases, gP, gb)
        _grad_data_serial(layout["blocks"][t], layout["seg_user"], layout["seg_ptr"], layout["items"],
                          layout["values"], P, Q, b, c, mu, use_biases, sign, gP, gb, True, tQ, tc, rows[t:t + 1],
                          parts[t, 1:])

    _run_blocks(block, nb, n_threads)
    _add_buffers(gQ, gc, bufQ, bufc, nb, use_biases)
    total = float(parts[0, 0]) + float(item_pen[0])  # one block: (user + item penalties) + data
    for t in range(1, nb):
        total += float(parts[t, 0])
    for t in range(nb):
        total += float(parts[t, 1])
    return total


def hessp_serial(layout, P, Q, dP, dQ, b, c, db, dc, mu, regw_u, regbw_u, regw_i, regbw_i, use_biases, mode,
                 hP, hQ, hb, hc, rows, bufQ=None, bufc=None, n_threads: int = 1) -> None:
    """Hessian-vector product over :func:`serial_layout` by the serial twin of :func:`_hessp_data`;
    writes ``hP, hQ, hb, hc`` (penalty part first, then the data terms; with several blocks the
    item terms of block ``t >= 1`` go to ``bufQ[t - 1]`` and are added in block order, as in
    :func:`grad_serial`).  Same maths as :func:`hessp_tiled`."""
    ub = layout["ubounds"]
    nb = len(ub) - 1

    def block(t: int) -> None:
        if t == 0:
            _hessp_init(0, Q.shape[0], dQ, dc, regw_i, regbw_i, use_biases, hQ, hc)
        tQ, tc = _block_target(t, hQ, hc, bufQ, bufc)
        _hessp_init(ub[t], ub[t + 1], dP, db, regw_u, regbw_u, use_biases, hP, hb)
        _hessp_data_serial(layout["blocks"][t], layout["seg_user"], layout["seg_ptr"], layout["items"],
                           layout["values"], P, Q, dP, dQ, b, c, db, dc, mu, use_biases, mode, hP, hb, True, tQ, tc,
                           rows[t:t + 1])

    _run_blocks(block, nb, n_threads)
    _add_buffers(hQ, hc, bufQ, bufc, nb, use_biases)


# ---------------------------------------------------------------------------------------------------------------------
# One side of the two-pass CSR scheme (fastmf.kernels.csr) over a tiled layout of that side
# ---------------------------------------------------------------------------------------------------------------------
# ``build_tiles(indptr, idx, vals, chunks, n_other, tile_rows, tile_cols)`` of a side (own rows =
# the CSR rows, columns = the other side's rows) cuts each chunk's rows into (own row, tile of other
# rows) segments.  The passes are the COO kernels above with ``scatter=False``: each chunk writes
# only its own rows, no buffers.  With the chunks fixed
# (MFObjective uses 16 per thread of numba's maximum, at least 32) the results do not depend on the
# thread count.  Tiling pays most for the Hessian product, which gathers two rows per rating (B and
# dB); the gradient gathers one (figures in docs/performance.md).


def _no_buffers(dtype):
    """Empty scatter buffers of ``dtype`` for the side passes (``scatter=False`` never reads them)."""
    return np.empty((0, 0, 0), dtype=dtype), np.empty((0, 0), dtype=dtype)


def side_grad_tiled(tiles, A, B, a, bo, mu, regw, regbw, use_biases, sign, data_loss, G, gb, rows, loss_parts,
                    pen_parts) -> float:
    """One side of the loss and gradient (as :func:`fastmf.kernels.csr.grad_side_serial`) over
    a tiled layout of that side, in parallel; returns the side's loss share (float64).

    ``tiles`` from :func:`build_tiles` with the side's CSR arrays and its row chunks;
    ``rows`` (n_chunks, >= k), ``loss_parts`` and ``pen_parts`` (n_chunks,) are scratch.
    The share is summed chunk by chunk in chunk order (penalty, then data loss when
    ``data_loss``): the result does not depend on the thread count.
    """
    chunks = tiles["ubounds"]
    nobuf, nobufc = _no_buffers(A.dtype)
    _prepare_blocks(chunks, A, a, regw, regbw, use_biases, G, gb, False, nobuf, nobufc, pen_parts)
    _grad_data(tiles["seg_bounds"], tiles["seg_user"], tiles["seg_ptr"], tiles["items"], tiles["values"],
               A, B, a, bo, mu, use_biases, sign, G, gb, False, nobuf, nobufc, rows, loss_parts)
    total = 0.0
    for ch in range(len(chunks) - 1):
        total += float(pen_parts[ch])
        if data_loss:
            total += float(loss_parts[ch])
    return total


def side_hessp_tiled(tiles, A, B, dA, dB, a, bo, da, dbo, mu, regw, regbw, use_biases, mode, H, hb, rows) -> None:
    """One side of a Hessian-vector product (as :func:`fastmf.kernels.csr.hessp_side_serial`)
    over a tiled layout of that side, in parallel; writes ``H`` and ``hb``."""
    nobuf, nobufc = _no_buffers(A.dtype)
    _prepare_hessp(tiles["ubounds"], dA, da, regw, regbw, use_biases, H, hb, False, nobuf, nobufc)
    _hessp_data(tiles["seg_bounds"], tiles["seg_user"], tiles["seg_ptr"], tiles["items"], tiles["values"],
                A, B, dA, dB, a, bo, da, dbo, mu, use_biases, mode, H, hb, False, nobuf, nobufc, rows)
