r"""Numba kernels of the blocked stratified SGD solver (:mod:`fastmf.solvers.sgd`).

Layout (built once by :func:`block_layout`)
-------------------------------------------
Users and items are renumbered by seeded random permutations ("working codes"), so
that a *bin* is a contiguous range of working codes and a factor matrix in working
order holds each bin's rows contiguously.  The ``B`` user bins (item bins) are cut so
that each holds about ``nnz / B`` ratings.  Rating ``(u, i)`` belongs to block
``ubin(u) * B + ibin(i)``; the ratings are copied block by block into three
contiguous arrays (working user code int32, working item code int32, value) with
``block_ptr`` (int64, ``B*B + 1``) delimiting the blocks, and each block is shuffled
by a Fisher-Yates pass driven by a splitmix64 stream seeded by ``(seed, block)``.
Memory: ``4 + 4 + itemsize`` bytes a rating (12 for float32).  The copy is a counting
sort over chunks of the input in parallel (a prefix sum over (block, chunk) gives each
chunk its slots), so it is the serial counting sort's output whatever the thread count;
it is part of every fit's setup, which a short fit pays in full (``docs/performance.md``).

Schedule
--------
An epoch is ``B`` strata; stratum ``t`` is the ``B`` blocks ``schedule[t, 0..B-1]``,
one per user bin and one per item bin (a Latin square), so no two blocks of a stratum
share a factor row.  The blocks of a stratum run in a ``prange``; each block's updates
read and write only the rows of its own user bin and item bin, so the result does not
depend on which thread runs which block, nor on the thread count.

Update (one rating, ``e = r - (mu + b_u + c_i + p_u . q_i)``)
--------------------------------------------------------------
With per-row regularisation weights ``s_u`` (``w_u / n_u``, see the solver) the
stochastic gradient of the rating's share of the objective is::

    g_p = s_u lam p_u - e q_i      g_q = s_i lam q_i - e p_u
    g_b = s_u lam_b b_u - e        g_c = s_i lam_b c_i - e

* constant / decaying rate: ``p_u -= eta g_p``, ``q_i -= eta g_q`` (both from the
  old rows), ``b_u -= eta g_b``, ``c_i -= eta g_c``;
* adaptive (row-wise AdaGrad, as LIBMF): ``p_u -= eta / sqrt(G_u) g_p`` then
  ``G_u += |g_p|^2 / k`` (likewise ``q_i`` with ``H_i``); each bias has its own
  accumulator (``+= g_b^2``).  Accumulators start at 1.

Running loss
------------
The epoch kernels also return the training error *as they go*: every update adds
``e^2`` (its pre-update residual, in float64) to the slot of its block
(``block_loss[blk]``, one float64 slot a block, written only by the thread running
that block); summing the slots in block order gives a total that does not depend on
the thread count.  This is LIBMF's "tr-loss": an estimate of the epoch's squared error
that costs one conversion and one FMA an update instead of a second random-access
pass over the ratings (:func:`squared_error_blocks`, kept for the exact loss).

Performance notes (figures: ``docs/performance.md``)
---------------------------------------------------
* The update loop is bound by the latency of fetching two random factor rows and
  two row records per rating.  The kernel prefetches the rows of the rating
  :data:`PREFETCH_DISTANCE` positions ahead (both ends of each factor row, which
  covers a 128-byte row in two cache lines when rows are 64-byte aligned: the solver
  allocates its working ``P``, ``Q`` and row records 64-byte aligned).  Prefetch plus
  alignment (with the points below) gave about 1.5x the update rate
  (``python -m bench.sgd_throughput``).
* Two ratings at a time (:func:`_sgd_range`): adjacent ratings that share neither user
  nor item are updated together (both residuals, then the two updates), which gives the
  CPU two independent dependency chains; same operations on every row in the same order,
  so bit-identical to one at a time.  The two updates run as two factor loops, not one
  fused loop: with one fused loop (measured) the AdaGrad accumulators came out different in
  the last bits, its ``|g|^2`` sums being vectorised differently.  About 1.2-1.25x the update rate at rank 32.
* Rows are indexed as ``P[u, f]`` (no row views: a view costs reference-count
  calls per update), ``error_model="numpy"`` (no ZeroDivisionError check on
  ``lr / sqrt(G)``; ``G >= 1`` anyway, and a non-finite value is caught by the
  solver's divergence guard), and ``reassoc`` fastmath so the ``k`` loops vectorise.
  ``nnan``/``ninf`` are *not* set, so ``isfinite`` checks keep their meaning.

All arithmetic runs in the factors' dtype; the loss kernels accumulate in float64 (the
exact squared error is :func:`squared_error_blocks`: the products of
:func:`fastmf.kernels.predict.predict_codes`, its float64 sums reassociated so they
vectorise; :func:`fastmf.kernels.predict.squared_error_segments`, re-exported here, is the
strict-order one).
Kernels assume valid input (validation happens once, in Python).
"""

from __future__ import annotations

import numba
import numpy as np

from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.extending import intrinsic

from ._rng import GOLDEN as _GOLDEN
from ._rng import mix64 as _mix64
from .predict import squared_error_segments  # the exact loss, re-exported (in __all__)

__all__ = [
    "block_layout",
    "code_counts",
    "shuffle_blocks",
    "sgd_epoch_blocked",
    "sgd_epoch_hogwild",
    "squared_error_segments",
    "squared_error_blocks",
    "penalty_chunks",
    "PREFETCH_DISTANCE",
    "bind_update",
]

# reassoc lets LLVM vectorise the dot products; nnan/ninf are deliberately *not* set so
# that the non-finite checks of the divergence guard keep their meaning.  The compiled
# code is the same whatever thread runs a block, so results stay deterministic.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}



# ---------------------------------------------------------------------------- RNG

@numba.njit(cache=True)
def stream_seed(seed, a, b):
    """A uint64 seed derived from ``(seed, a, b)`` (a, b non-negative ints)."""
    z = _mix64(seed + _GOLDEN)
    z = _mix64(z ^ (np.uint64(a) + _GOLDEN))
    z = _mix64(z ^ (np.uint64(b) + _GOLDEN))
    return z


# ---------------------------------------------------------------------------- layout
@numba.njit(parallel=True, cache=True, nogil=True)
def code_counts(codes, n, n_chunks):
    """Occurrences of each code ``0..n-1`` in ``codes`` (int64): per-chunk histograms in
    parallel, summed in chunk order (integers: the same whatever ``n_chunks``)."""
    size = codes.shape[0]
    per = np.zeros((n_chunks, n), dtype=np.int64)
    for c in prange(n_chunks):
        for j in range(c * size // n_chunks, (c + 1) * size // n_chunks):
            per[c, codes[j]] += 1
    out = np.empty(n, dtype=np.int64)
    for i in prange(n):
        t = per[0, i]
        for c in range(1, n_chunks):
            t += per[c, i]
        out[i] = t
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def block_layout(users, items, values, user_work, item_work, user_bin, item_bin, n_blocks, n_chunks,
                 out_users, out_items, out_values, block_ptr):
    """Counting sort of the ratings into block-major order, in working codes.

    ``user_work[u]`` / ``item_work[i]`` are the working codes, ``user_bin[w]`` /
    ``item_bin[w]`` the bin of a working code.  Within a block the ratings keep their
    input order (shuffle them afterwards with :func:`shuffle_blocks`).  ``values`` are
    cast to ``out_values``' dtype.

    The input is cut into ``n_chunks`` contiguous chunks, counted and scattered in
    parallel; each chunk writes the slots that a prefix sum over (block, chunk) gives
    it, so every block holds its ratings in input order and the output is the same
    whatever ``n_chunks`` and the thread count (it is the serial counting sort's).
    """
    nnz = users.shape[0]
    nb = n_blocks * n_blocks
    m = user_work.shape[0]
    n = item_work.shape[0]
    # bin of each original code: one lookup a rating and side instead of two dependent ones
    ubin = np.empty(m, dtype=np.int64)
    ibin = np.empty(n, dtype=np.int64)
    for u in prange(m):
        ubin[u] = user_bin[user_work[u]] * n_blocks
    for i in prange(n):
        ibin[i] = item_bin[item_work[i]]
    counts = np.zeros((n_chunks, nb), dtype=np.int64)
    for c in prange(n_chunks):
        for j in range(c * nnz // n_chunks, (c + 1) * nnz // n_chunks):
            counts[c, ubin[users[j]] + ibin[items[j]]] += 1
    run = np.int64(0)
    for b in range(nb):  # exclusive prefix sum over (block, chunk): chunk c's first slot in block b
        block_ptr[b] = run
        for c in range(n_chunks):
            cnt = counts[c, b]
            counts[c, b] = run
            run += cnt
    block_ptr[nb] = run
    for c in prange(n_chunks):
        for j in range(c * nnz // n_chunks, (c + 1) * nnz // n_chunks):
            u = users[j]
            i = items[j]
            blk = ubin[u] + ibin[i]
            pos = counts[c, blk]
            counts[c, blk] = pos + 1
            out_users[pos] = user_work[u]
            out_items[pos] = item_work[i]
            out_values[pos] = values[j]


@numba.njit(parallel=True, cache=True, nogil=True)
def shuffle_blocks(bu, bi, bv, block_ptr, seed, epoch):
    """Fisher-Yates shuffle of every block in place, block ``b`` driven by the
    splitmix64 stream seeded by ``(seed, epoch, b)``: deterministic whatever the
    thread count.

    The index in ``0..t`` is Lemire's multiply-shift of the draw's high 32 bits,
    ``(x >> 32) * (t + 1) >> 32`` (bias below ``(t + 1) / 2**32``), not ``x % (t + 1)``:
    a 64-bit division costs tens of cycles and made the shuffle about 1.6x slower.
    """
    nb = block_ptr.shape[0] - 1
    lim = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    for b in prange(nb):
        start = block_ptr[b]
        size = block_ptr[b + 1] - start
        state = stream_seed(seed, epoch, b)
        for t in range(size - 1, 0, -1):
            state += _GOLDEN
            draw = _mix64(state)
            bound = np.uint64(t + 1)
            if bound <= lim:
                r = np.int64(((draw >> s32) * bound) >> s32)
            else:  # a block of 2**32 ratings or more
                r = np.int64(draw % bound)
            x = start + t
            y = start + r
            tu = bu[x]
            bu[x] = bu[y]
            bu[y] = tu
            ti = bi[x]
            bi[x] = bi[y]
            bi[y] = ti
            tv = bv[x]
            bv[x] = bv[y]
            bv[y] = tv


# ---------------------------------------------------------------------------- updates
# Columns of the per-row state arrays ``AU`` (users, shape (m, 4)) and ``AI`` (items):
#: bias, AdaGrad accumulator of the factor row, AdaGrad accumulator of the bias,
#: regularisation weight ``s = w / n``.  One 16-byte record a row, so an update touches
#: one cache line of row state per side instead of four.
BIAS, G_ROW, G_BIAS, REG_SCALE = 0, 1, 2, 3


#: How many ratings ahead of the current one the update loop prefetches factor rows.
PREFETCH_DISTANCE = 8


@intrinsic
def _prefetch(typingctx, arr, row, col):
    """Prefetch the cache line holding ``arr[row, col]`` of a 2-D array (read intent,
    keep in all cache levels).  A hint only: no effect on results, no fault on
    any address.  ``row``/``col`` must be in range (no wraparound)."""
    sig = types.void(arr, row, col)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        inds = [context.cast(builder, args[1], signature.args[1], types.intp),
                context.cast(builder, args[2], signature.args[2], types.intp)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, inds, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, rw=0 read, locality=3 keep in all levels, cache type=1 data)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True, error_model="numpy")
def _sgd_range(bu, bi, bv, start, stop, P, Q, AU, AI, mu, lr, reg, reg_b, inv_k, use_biases, adaptive):
    """SGD updates for ratings ``start..stop-1`` of the block-major arrays, in order.

    Returns the float64 sum of the squared pre-update residuals ``e^2`` (the running
    loss of the range).  Every rating's rows are prefetched ``PREFETCH_DISTANCE``
    ratings ahead.

    Two at a time: when ratings ``j`` and ``j + 1`` share neither their user nor their
    item, neither update reads a row the other writes, so both residuals are computed
    first and the two updates run interleaved in one loop over the factors.  That is the
    same sequence of updates as one after the other, with the same operations on each
    row in the same order, but it gives the CPU two independent dependency chains (the
    loop is bound by latency, not arithmetic).  When they share a row, rating ``j`` is
    updated alone and the pairing resumes at ``j + 1``.

    The pair's statements repeat the single update's on purpose, not through a per-rating
    helper: the interleaving is the point, a helper called from here is one more function
    whose cached and freshly compiled copies :func:`bind_update` would have to keep apart,
    and in this codebase a shared helper in a byte-level hot loop cost 1.3-1.5x
    (:func:`fastmf.data._csv._parse_range`).

    Four at a time (four ratings on pairwise disjoint rows, then pair, then single) was
    measured and not kept: bit-identical only with the four dots in two loops of two (one
    loop of four dots vectorises its reductions differently), and then slower than pairs
    (best-of 0.90-0.96x the update rate, 0.57-0.77x at low load); three at a time was no
    faster (``docs/performance.md``).
    """
    k = P.shape[1]
    zero = lr - lr
    last = k - 1
    acc = 0.0
    ahead = stop - PREFETCH_DISTANCE
    j = start
    while j < stop:
        # prefetch rating j + PREFETCH_DISTANCE; a pair also prefetches the one after it, so
        # every rating is prefetched once, the same distance ahead, in either path
        if j < ahead:
            un = bu[j + PREFETCH_DISTANCE]
            iq = bi[j + PREFETCH_DISTANCE]
            _prefetch(P, un, 0)
            _prefetch(P, un, last)
            _prefetch(Q, iq, 0)
            _prefetch(Q, iq, last)
            _prefetch(AU, un, 0)
            _prefetch(AI, iq, 0)
        u = bu[j]
        i = bi[j]
        if j + 1 < stop and bu[j + 1] != u and bi[j + 1] != i:
            # ---- pair (j, j + 1) on disjoint rows
            if j + 1 < ahead:
                un = bu[j + 1 + PREFETCH_DISTANCE]
                iq = bi[j + 1 + PREFETCH_DISTANCE]
                _prefetch(P, un, 0)
                _prefetch(P, un, last)
                _prefetch(Q, iq, 0)
                _prefetch(Q, iq, last)
                _prefetch(AU, un, 0)
                _prefetch(AI, iq, 0)
            v = bu[j + 1]
            h = bi[j + 1]
            dot = zero
            dot2 = zero
            for f in range(k):
                dot += P[u, f] * Q[i, f]
                dot2 += P[v, f] * Q[h, f]
            pred = mu + dot
            pred2 = mu + dot2
            if use_biases:
                pred += AU[u, 0] + AI[i, 0]
                pred2 += AU[v, 0] + AI[h, 0]
            e = bv[j] - pred
            e2 = bv[j + 1] - pred2
            acc += np.float64(e) * np.float64(e)
            acc += np.float64(e2) * np.float64(e2)
            su = AU[u, 3]
            si = AI[i, 3]
            sv = AU[v, 3]
            sh = AI[h, 3]
            ru = reg * su
            ri = reg * si
            rv = reg * sv
            rh = reg * sh
            if adaptive:
                etp = lr / np.sqrt(AU[u, 1])
                etq = lr / np.sqrt(AI[i, 1])
                etp2 = lr / np.sqrt(AU[v, 1])
                etq2 = lr / np.sqrt(AI[h, 1])
                gpp = zero
                gqq = zero
                gpp2 = zero
                gqq2 = zero
                for f in range(k):
                    pf = P[u, f]
                    qf = Q[i, f]
                    gp = ru * pf - e * qf
                    gq = ri * qf - e * pf
                    P[u, f] = pf - etp * gp
                    Q[i, f] = qf - etq * gq
                    gpp += gp * gp
                    gqq += gq * gq
                for f in range(k):
                    pf2 = P[v, f]
                    qf2 = Q[h, f]
                    gp2 = rv * pf2 - e2 * qf2
                    gq2 = rh * qf2 - e2 * pf2
                    P[v, f] = pf2 - etp2 * gp2
                    Q[h, f] = qf2 - etq2 * gq2
                    gpp2 += gp2 * gp2
                    gqq2 += gq2 * gq2
                AU[u, 1] += gpp * inv_k
                AI[i, 1] += gqq * inv_k
                AU[v, 1] += gpp2 * inv_k
                AI[h, 1] += gqq2 * inv_k
                if use_biases:
                    b_u = AU[u, 0]
                    c_i = AI[i, 0]
                    b_v = AU[v, 0]
                    c_h = AI[h, 0]
                    gb = reg_b * su * b_u - e
                    gc = reg_b * si * c_i - e
                    gb2 = reg_b * sv * b_v - e2
                    gc2 = reg_b * sh * c_h - e2
                    AU[u, 0] = b_u - lr / np.sqrt(AU[u, 2]) * gb
                    AI[i, 0] = c_i - lr / np.sqrt(AI[i, 2]) * gc
                    AU[v, 0] = b_v - lr / np.sqrt(AU[v, 2]) * gb2
                    AI[h, 0] = c_h - lr / np.sqrt(AI[h, 2]) * gc2
                    AU[u, 2] += gb * gb
                    AI[i, 2] += gc * gc
                    AU[v, 2] += gb2 * gb2
                    AI[h, 2] += gc2 * gc2
            else:
                for f in range(k):
                    pf = P[u, f]
                    qf = Q[i, f]
                    pf2 = P[v, f]
                    qf2 = Q[h, f]
                    P[u, f] = pf + lr * (e * qf - ru * pf)
                    Q[i, f] = qf + lr * (e * pf - ri * qf)
                    P[v, f] = pf2 + lr * (e2 * qf2 - rv * pf2)
                    Q[h, f] = qf2 + lr * (e2 * pf2 - rh * qf2)
                if use_biases:
                    b_u = AU[u, 0]
                    c_i = AI[i, 0]
                    b_v = AU[v, 0]
                    c_h = AI[h, 0]
                    AU[u, 0] = b_u + lr * (e - reg_b * su * b_u)
                    AI[i, 0] = c_i + lr * (e - reg_b * si * c_i)
                    AU[v, 0] = b_v + lr * (e2 - reg_b * sv * b_v)
                    AI[h, 0] = c_h + lr * (e2 - reg_b * sh * c_h)
            j += 2
            continue
        # ---- rating j alone (it shares a row with j + 1, or it is the last one)
        dot = zero
        for f in range(k):
            dot += P[u, f] * Q[i, f]
        pred = mu + dot
        if use_biases:
            pred += AU[u, 0] + AI[i, 0]
        e = bv[j] - pred
        acc += np.float64(e) * np.float64(e)
        su = AU[u, 3]
        si = AI[i, 3]
        ru = reg * su
        ri = reg * si
        if adaptive:
            etp = lr / np.sqrt(AU[u, 1])
            etq = lr / np.sqrt(AI[i, 1])
            gpp = zero
            gqq = zero
            for f in range(k):
                pf = P[u, f]
                qf = Q[i, f]
                gp = ru * pf - e * qf
                gq = ri * qf - e * pf
                P[u, f] = pf - etp * gp
                Q[i, f] = qf - etq * gq
                gpp += gp * gp
                gqq += gq * gq
            AU[u, 1] += gpp * inv_k
            AI[i, 1] += gqq * inv_k
            if use_biases:
                b_u = AU[u, 0]
                c_i = AI[i, 0]
                gb = reg_b * su * b_u - e
                gc = reg_b * si * c_i - e
                AU[u, 0] = b_u - lr / np.sqrt(AU[u, 2]) * gb
                AI[i, 0] = c_i - lr / np.sqrt(AI[i, 2]) * gc
                AU[u, 2] += gb * gb
                AI[i, 2] += gc * gc
        else:
            for f in range(k):
                pf = P[u, f]
                qf = Q[i, f]
                P[u, f] = pf + lr * (e * qf - ru * pf)
                Q[i, f] = qf + lr * (e * pf - ri * qf)
            if use_biases:
                b_u = AU[u, 0]
                c_i = AI[i, 0]
                AU[u, 0] = b_u + lr * (e - reg_b * su * b_u)
                AI[i, 0] = c_i + lr * (e - reg_b * si * c_i)
        j += 1
    return acc


def bind_update(bu, bi, bv, P, Q, AU, AI, mu, lr, reg, reg_b, inv_k, use_biases, adaptive) -> None:
    """Load (or compile) the standalone :func:`_sgd_range` for these argument types.

    Call it before the first :func:`sgd_epoch_blocked` / :func:`sgd_epoch_hogwild` call of
    a process, with the arguments the epoch kernel gets (it runs an empty range).

    Why: numba links a *copy* of ``_sgd_range`` into each kernel that calls it
    (``linkonce_odr``, re-optimised with the kernel's module), and the JIT binds the
    kernel's call to whichever definition of that symbol was loaded first.  A process that
    compiles the kernel has always compiled and loaded the standalone ``_sgd_range``
    first; a process that loads the kernel from numba's on-disk cache would otherwise run
    the kernel's own copy.  Under ``reassoc`` / ``contract`` the two copies round
    differently in the last bit, so without this call SGD's factors depended on the state
    of the cache (found when pinning the regression arrays of issue #12).
    """
    _sgd_range(bu, bi, bv, 0, 0, P, Q, AU, AI, mu, lr, reg, reg_b, inv_k, use_biases, adaptive)


@numba.njit(parallel=True, cache=True, fastmath=_FASTMATH, nogil=True)
def sgd_epoch_blocked(bu, bi, bv, block_ptr, schedule, P, Q, AU, AI, mu, lr, reg, reg_b, inv_k,
                      use_biases, adaptive, block_loss):
    """One epoch of blocked stratified SGD.

    ``schedule`` (int64, ``(B, B)``): row ``t`` lists the blocks of stratum ``t``; the
    strata run one after the other, the blocks of a stratum in parallel (they share
    no factor row, so there is no race and no dependence on the thread count).
    ``AU``/``AI`` are the per-row state arrays (columns :data:`BIAS`, :data:`G_ROW`,
    :data:`G_BIAS`, :data:`REG_SCALE`).  ``block_loss`` (float64, ``B*B``) receives
    each block's sum of squared pre-update residuals (the running loss); sum it in
    block order.
    """
    n_strata = schedule.shape[0]
    width = schedule.shape[1]
    for t in range(n_strata):
        for s in prange(width):
            blk = schedule[t, s]
            block_loss[blk] = _sgd_range(bu, bi, bv, block_ptr[blk], block_ptr[blk + 1], P, Q, AU, AI,
                                         mu, lr, reg, reg_b, inv_k, use_biases, adaptive)


@numba.njit(parallel=True, cache=True, fastmath=_FASTMATH, nogil=True)
def sgd_epoch_hogwild(bu, bi, bv, chunk_ptr, P, Q, AU, AI, mu, lr, reg, reg_b, inv_k, use_biases, adaptive,
                      chunk_loss):
    """One lock-free (Hogwild) epoch: the chunks of the shuffled ratings run in a
    ``prange`` with no ownership, so threads may update the same row concurrently.
    **Not deterministic** with more than one thread (kept for comparison).
    ``chunk_loss[ch]`` receives the chunk's sum of squared pre-update residuals."""
    for ch in prange(chunk_ptr.shape[0] - 1):
        chunk_loss[ch] = _sgd_range(bu, bi, bv, chunk_ptr[ch], chunk_ptr[ch + 1], P, Q, AU, AI,
                                    mu, lr, reg, reg_b, inv_k, use_biases, adaptive)


# ---------------------------------------------------------------------------- loss
@numba.njit(parallel=True, cache=True, fastmath=_FASTMATH, nogil=True)
def penalty_chunks(P, b, w, use_biases, chunk_ptr, out_f, out_b):
    """Per chunk of rows: ``out_f[ch] = sum w_u |p_u|^2`` and ``out_b[ch] = sum w_u b_u^2``
    (float64).  A non-finite row makes its chunk non-finite (even where ``w_u = 0``)."""
    k = P.shape[1]
    for ch in prange(chunk_ptr.shape[0] - 1):
        af = 0.0
        ab = 0.0
        for u in range(chunk_ptr[ch], chunk_ptr[ch + 1]):
            sq = 0.0
            for f in range(k):
                x = np.float64(P[u, f])
                sq += x * x
            wu = w[u]
            if not np.isfinite(sq):
                af += sq
            else:
                af += wu * sq
            if use_biases:
                x = np.float64(b[u])
                if not np.isfinite(x):
                    ab += x * x
                else:
                    ab += wu * x * x
        out_f[ch] = af
        out_b[ch] = ab


@numba.njit(parallel=True, cache=True, fastmath=_FASTMATH, nogil=True)
def squared_error_blocks(bu, bi, bv, seg_ptr, P, Q, b, c, mu, use_biases, low, high, out):
    """``out[s] = Σ (r - r̂)²`` (float64) over the ratings ``seg_ptr[s]:seg_ptr[s + 1]``.

    ``r̂ = mu + (Σ_f P[u, f] Q[i, f] + b[u] + c[i])``, clipped to ``[low, high]`` (pass
    ``-inf, inf`` for no clipping): each product in the factors' dtype, the sums in float64
    as :func:`fastmf.kernels.predict.squared_error_segments`, but reassociated
    (``reassoc`` fastmath) so that the ``k`` loop vectorises instead of running one
    dependent float64 add a factor (about 4x faster).  A non-finite prediction stays
    non-finite.  The solver's exact loss (block-major ratings) and its validation RMSE
    (validation ratings laid out block by block, so the factor rows they touch stay in
    cache).  Sum ``out`` in order (or with ``math.fsum``) for a total that does not depend
    on the thread count.
    """
    k = P.shape[1]
    last = k - 1
    for s in prange(seg_ptr.shape[0] - 1):
        acc = 0.0
        stop = seg_ptr[s + 1]
        ahead = stop - PREFETCH_DISTANCE
        for j in range(seg_ptr[s], stop):
            if j < ahead:  # as the update loop: the rows' fetch latency, not arithmetic, is the cost
                un = bu[j + PREFETCH_DISTANCE]
                iq = bi[j + PREFETCH_DISTANCE]
                _prefetch(P, un, 0)
                _prefetch(P, un, last)
                _prefetch(Q, iq, 0)
                _prefetch(Q, iq, last)
            u = bu[j]
            i = bi[j]
            d = 0.0
            for f in range(k):
                d += np.float64(P[u, f] * Q[i, f])
            if use_biases:
                d += np.float64(b[u]) + np.float64(c[i])
            pred = mu + d
            if pred < low:
                pred = low
            elif pred > high:
                pred = high
            e = np.float64(bv[j]) - pred
            acc += e * e
        out[s] = acc
