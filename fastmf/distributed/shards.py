r"""Worker-side state: one :class:`BlockShard` per block, a Dask Actor pinned to one worker.

A shard holds both halves of its block (:class:`fastmf.distributed.blocks.BlockHalf`:
the ratings of user block ``b`` in CSR by user, those of item block ``b`` in CSR by
item) for the whole fit, plus the factor rows it last received or computed.  Every
public method is one coarse call, i.e. one network round trip from the client; the
arguments are only factor rows of the rows the block touches (``needed``) or of its own
rows.  All arithmetic uses the in-process kernels:

* ALS row solves: :func:`fastmf.kernels.blocks.als_solve_rows` on the block's CSR with
  the same row systems, weights, ``mu`` and accumulation order as
  :class:`fastmf.solvers.als.ALSSolver` (a row's result does not depend on the
  chunking), so the factors are bit-identical to an in-process fit;
* loss, gradient, Hessian products:
  :class:`fastmf.objective.MFObjective` with ``reg = 0`` on the block's ratings in local
  codes (users of the block x items it touches), plus the penalty of the block's own
  rows added here; the item-side penalty is added once, by the client;
* preconditioners: the Gauss-Newton diagonal (:func:`~fastmf.kernels.blocks.gn_diagonal`)
  and the block-Jacobi factors (:func:`~fastmf.kernels.blocks.factor_blocks`, kept here,
  applied by :meth:`BlockShard.apply_blocks`) of the block's own user rows (user half) and
  item rows (item half), row by row as in process (bit-identical).

The client side is :class:`fastmf.backends.dask.DaskBackend`: every method takes first a
``state`` dict of the kept factor rows that changed (:meth:`BlockShard.hold`).

Threads: Dask runs every actor method of a worker in that worker's single actor
thread, so calls never overlap on a worker; each method runs its kernels with
``n_threads`` numba threads (the worker's ``nthreads``, set per call with
:func:`fastmf._threading.thread_limit`).  No method spawns Dask tasks (no nested
parallelism).
"""

from __future__ import annotations

import functools
import time

import numpy as np

from .._packing import pack, unpack
from .._threading import thread_limit
from .._weights import row_weights
from ..kernels._chunks import balanced_chunks
from ..kernels.blocks import PIVOT_RTOL, als_solve_rows, apply_blocks, factor_blocks, gn_diagonal
from ..kernels.predict import squared_error_segments
from .blocks import BlockHalf

__all__ = ["BlockShard", "ShardSpec"]

#: kernel signatures already warmed in this worker process (one warm-up per worker, not per block)
_WARMED: set = set()


def ShardSpec(rank: int, biases: bool, dtype, mu: float, reg: float, reg_bias: float, reg_weighting,
              hessian: str = "gauss-newton") -> dict:
    """The problem constants every shard needs (a plain dict, cheap to ship)."""
    return dict(rank=int(rank), biases=bool(biases), dtype=np.dtype(dtype).str, mu=float(mu), reg=float(reg),
                reg_bias=float(reg_bias), reg_weighting=reg_weighting, hessian=hessian)


class _Side:
    """One half of a block with its ALS scratch and (lazily) a reg-free MFObjective."""

    def __init__(self, half: BlockHalf, spec: dict, n_threads: int):
        self.h = half
        self.spec = spec
        dt = np.dtype(spec["dtype"])
        self.dt = dt
        self.k = spec["rank"]
        self.biases = spec["biases"]
        counts = np.diff(half.indptr)
        w = row_weights(counts, spec["reg_weighting"])
        # as ALSSolver: structure.weights() (dtype) then float64
        self.w = w.astype(dt)  # as the preconditioners: problem.row_weights(..., dtype)
        self.w_als = self.w.astype(np.float64)
        self.L = None
        # as MFObjective: (reg * w).astype(dtype)
        self.regw = (spec["reg"] * w).astype(dt)
        self.regbw = (spec["reg_bias"] * w).astype(dt)
        self.chunks = balanced_chunks(half.indptr, 8 * n_threads)
        K = self.k + (1 if self.biases else 0)
        nc = max(len(self.chunks) - 1, 1)
        self.A = np.empty((nc, K, K))
        self.y = np.empty((nc, K))
        self.fixed = np.zeros(nc, dtype=np.int64)
        self.prior_diag = np.full(K, spec["reg"])
        if self.biases:
            self.prior_diag[self.k] = spec["reg_bias"]
        self.prior_shift = np.zeros(K)
        self.dummy = np.zeros(1, dtype=dt)
        self.no_noise = np.zeros((1, 1))
        self._obj = None
        self.n_threads = n_threads

    # ---------------------------------------------------------------- ALS
    def solve(self, F, fbias, prior_diag=None, prior_shift=None, weights=True):
        """Exact row solves of this side's rows given the other side's rows ``F``, ``fbias``."""
        h = self.h
        prior_diag = self.prior_diag if prior_diag is None else np.asarray(prior_diag, dtype=np.float64)
        prior_shift = self.prior_shift if prior_shift is None else np.asarray(prior_shift, dtype=np.float64)
        w = self.w_als if weights else np.ones(h.n_rows)
        out_F = np.empty((h.n_rows, self.k), dtype=self.dt)
        out_b = np.empty(h.n_rows, dtype=self.dt) if self.biases else self.dummy
        nc = len(self.chunks) - 1
        if nc > 0:
            als_solve_rows(h.indptr, h.cols, h.vals, F, fbias if self.biases else self.dummy, self.spec["mu"],
                           w, prior_diag, prior_shift, self.biases, self.chunks, PIVOT_RTOL,
                           self.A[:nc], self.y[:nc], out_F, out_b, self.fixed[:nc], self.no_noise, 0.0)
        return out_F, (out_b if self.biases else None), int(self.fixed[:nc].sum())

    # ---------------------------------------------------------------- preconditioner pieces
    def diagonal(self, F):
        """Gauss-Newton diagonal of this side's rows given the other side's rows ``F``
        (:func:`fastmf.kernels.blocks.gn_diagonal`, as ``JacobiPreconditioner.update``)."""
        h = self.h
        dF = np.empty((h.n_rows, self.k), dtype=self.dt)
        db = np.empty(h.n_rows, dtype=self.dt) if self.biases else self.dummy
        gn_diagonal(h.indptr, h.cols, F, self.w, self.spec["reg"], self.spec["reg_bias"], self.biases, self.chunks,
                    dF, db)
        return dF, (db if self.biases else None)

    def factor(self, F) -> int:
        """Cholesky factors of this side's rows' Gauss-Newton blocks (kept for :meth:`apply`)."""
        h = self.h
        K = self.k + (1 if self.biases else 0)
        if self.L is None:
            self.L = np.empty((h.n_rows, K, K), dtype=self.dt)
        fixed = np.zeros(max(len(self.chunks) - 1, 1), dtype=np.int64)
        factor_blocks(h.indptr, h.cols, F, self.w, self.spec["reg"], self.spec["reg_bias"], self.biases, self.chunks,
                      PIVOT_RTOL, self.L, fixed[:len(self.chunks) - 1])
        return int(fixed.sum())

    def apply(self, rF, rb):
        """``L Lᵀ z = r`` per row with the factors of :meth:`factor`."""
        zF = np.empty_like(rF)
        if self.biases:
            zb = np.empty_like(rb)
            apply_blocks(self.L, rF, rb, True, self.chunks, zF, zb)
            return zF, zb
        apply_blocks(self.L, rF, self.dummy, False, self.chunks, zF, self.dummy)
        return zF, None

    # ---------------------------------------------------------------- objective pieces
    def objective(self):
        """MFObjective (``reg = 0``) on this side's ratings: rows x needed columns."""
        if self._obj is None and self.h.nnz > 0:
            from ..data.ratings import Ratings
            from ..objective import MFObjective

            h = self.h
            rows = np.repeat(np.arange(h.n_rows, dtype=np.int32), np.diff(h.indptr))
            R = Ratings.from_codes(rows, h.cols, h.vals, n_users=h.n_rows, n_items=len(h.needed), dtype=self.dt)
            self._obj = MFObjective(R, self.k, reg=0.0, reg_bias=0.0, biases=self.biases, loss="squared",
                                    dtype=self.dt, n_threads=self.n_threads, hessian=self.spec["hessian"],
                                    mu=self.spec["mu"])
        return self._obj

    def pack_local(self, F, fb, G, gb):
        """Local packed vector: this side's rows ``F, fb`` and the needed other rows ``G, gb``."""
        return pack(F, G, fb, gb, dtype=self.dt) if self.biases else pack(F, G, dtype=self.dt)

    def unpack_local(self, v):
        return unpack(v, self.h.n_rows, len(self.h.needed), self.k, self.biases)

    def penalty(self, F, fb) -> float:
        """½ Σ regw ‖f_r‖² (+ ½ Σ regbw b_r²) in float64."""
        s = 0.5 * float(np.dot(self.regw.astype(np.float64), np.einsum("ij,ij->i", F, F, dtype=np.float64)))
        if self.biases:
            s += 0.5 * float(np.dot(self.regbw.astype(np.float64), fb.astype(np.float64) ** 2))
        return s

    def fun_and_jac(self, F, fb, G, gb):
        """Loss of the side's ratings plus its own rows' penalty, and the gradient
        (own rows complete, other rows partial: data term only)."""
        obj = self.objective()
        if obj is None:
            gF = (self.regw[:, None] * F).astype(self.dt)
            gfb = (self.regbw * fb).astype(self.dt) if self.biases else None
            gG = np.zeros_like(G)
            ggb = np.zeros_like(gb) if self.biases else None
            return self.penalty(F, fb), gF, gfb, gG, ggb
        f, g = obj.fun_and_jac(self.pack_local(F, fb, G, gb))
        gF, gG, gfb, ggb = self.unpack_local(g)
        gF += self.regw[:, None] * F
        if self.biases:
            gfb += self.regbw * fb
        return f + self.penalty(F, fb), gF, gfb, gG, ggb


def _cpu_timed(method):
    """Add the worker process's CPU seconds spent in ``method`` to ``self.cpu[name]`` (what a round
    costs on the worker, whatever else the machine runs; read by :meth:`BlockShard.cpu_times`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        t0 = time.process_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.cpu[method.__name__] = self.cpu.get(method.__name__, 0.0) + time.process_time() - t0

    return wrapper


class BlockShard:
    """The Dask Actor of one block (see the module docstring).

    Parameters
    ----------
    index : int
        Block number ``b``.
    user_half, item_half : BlockHalf
        The ratings of user block ``b`` and of item block ``b``.
    spec : dict
        From :func:`ShardSpec`.
    n_threads : int
        Numba threads per call (the worker's ``nthreads``, capped by numba's maximum).
    """

    def __init__(self, index: int, user_half: BlockHalf, item_half: BlockHalf, n_threads: int):
        import numba

        self.index = int(index)
        self.n_threads = int(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
        self.user_half = user_half
        self.item_half = item_half
        self.spec = None
        self.users = self.items = None
        self._uown = self._uneed = self._iown = self._ineed = None  # kept rows, see hold()
        self.calls = 0
        self.cpu: dict = {}  # method name -> process CPU seconds (see _cpu_timed)

    def configure(self, spec: dict) -> None:
        """Set the problem constants (:func:`ShardSpec`) and reset the kept rows."""
        dt = np.dtype(spec["dtype"])
        for name in ("user_half", "item_half"):
            h = getattr(self, name)
            if h.vals.dtype != dt:
                setattr(self, name, BlockHalf(h.lo, h.hi, h.indptr, h.cols, h.vals.astype(dt), h.needed))
        self.spec = dict(spec)
        self.users = _Side(self.user_half, self.spec, self.n_threads)
        self.items = _Side(self.item_half, self.spec, self.n_threads)
        self._uown = self._uneed = self._iown = self._ineed = None

    # ---------------------------------------------------------------- bookkeeping
    def describe(self) -> dict:
        """Sizes and the ``needed`` index arrays (fetched once by the client)."""
        import os
        import numba

        u, i = self.user_half, self.item_half
        return dict(index=self.index, pid=os.getpid(), n_threads=self.n_threads,
                    threading_layer=numba.config.THREADING_LAYER, user_lo=u.lo, user_hi=u.hi, item_lo=i.lo,
                    item_hi=i.hi, user_nnz=u.nnz, item_nnz=i.nnz, items_needed=u.needed, users_needed=i.needed,
                    nbytes=u.nbytes + i.nbytes)

    def cpu_times(self, reset: bool = False) -> dict:
        """``{"pid": worker pid, "cpu": {method: CPU seconds}}`` accumulated since the last reset
        (process CPU time: the kernels' numba threads included)."""
        import os

        out = dict(pid=os.getpid(), cpu=dict(self.cpu))
        if reset:
            self.cpu = {}
        return out

    def ping(self) -> int:
        """An empty call (for latency measurements and liveness checks)."""
        return self.index

    def seen_items(self) -> tuple[np.ndarray, np.ndarray]:
        """The block's user CSR in global item codes: ``(indptr, items)``."""
        h = self.user_half
        return h.indptr, h.needed[h.cols].astype(np.int32)

    def warm(self) -> None:
        """Compile or load the kernels once in this process (tiny problem, same dtypes)."""
        from ..data.ratings import Ratings
        from ..objective import MFObjective

        dt = np.dtype(self.spec["dtype"])
        k = self.spec["rank"]
        key = (dt.str, self.spec["biases"], self.spec["hessian"], self.n_threads)
        if key in _WARMED:
            return
        _WARMED.add(key)
        with thread_limit(self.n_threads, limit_blas=False):
            R = Ratings.from_codes(np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([3.0, 4.0, 5.0]), dtype=dt)
            obj = MFObjective(R, k, biases=self.spec["biases"], dtype=dt, hessian=self.spec["hessian"], mu=4.0,
                              n_threads=self.n_threads)
            x = np.full(obj.n_params, 0.1, dtype=dt)
            obj.fun_and_jac(x)
            obj.hessp(x, x)
            obj.diag_gauss_newton(x)
            tiny = BlockHalf(lo=0, hi=2, indptr=np.array([0, 2, 3]), cols=np.array([0, 1, 1], np.int32),
                             vals=np.array([3.0, 4.0, 5.0], dt), needed=np.arange(2))
            side = _Side(tiny, self.spec, self.n_threads)
            F, fb = np.full((2, k), 0.1, dt), np.zeros(2, dt)
            side.solve(F, fb)
            side.diagonal(F)
            side.factor(F)
            side.apply(F, fb)

    # ---------------------------------------------------------------- kept rows
    def hold(self, state: dict | None) -> None:
        """Keep the factor rows of ``state`` (keys ``uown`` (this block's user rows), ``uneed``
        (the item rows its user half touches), ``iown`` (this block's item rows), ``ineed``
        (the user rows its item half touches), each ``(F, fbias)``); missing keys keep the
        rows held before.  The client tracks what each block holds and sends only changes."""
        if state:
            for key, rows in state.items():
                setattr(self, "_" + key, rows)

    # ---------------------------------------------------------------- row solves (ALS)
    @_cpu_timed
    def solve_rows(self, state, side: str, prior_diag, prior_shift, weights: bool = True):
        """Exact row solves of this block's rows of ``side`` given the other side's rows it holds
        (``RowSolveBackend.solve_rows``); returns ``(F_b, fbias_b, n_fixed)`` and keeps them."""
        self.calls += 1
        self.hold(state)
        s, other = (self.users, self._uneed) if side == "users" else (self.items, self._ineed)
        with thread_limit(self.n_threads, limit_blas=False):
            F, fb, nf = s.solve(other[0], other[1], prior_diag, prior_shift, weights)
        setattr(self, "_uown" if side == "users" else "_iown", (F, fb))
        return F, fb, nf

    @_cpu_timed
    def sse(self, state) -> float:
        """Sum of squared residuals of the block's user half at the kept rows (float64)."""
        self.calls += 1
        self.hold(state)
        s = self.users
        h = s.h
        (P, b), (Q, c) = self._uown, self._uneed
        parts = np.zeros(max(len(s.chunks) - 1, 1))
        if h.nnz:
            if getattr(self, "_sse_rows", None) is None:  # row code of each rating, built once per shard
                self._sse_rows = np.repeat(np.arange(len(h.indptr) - 1, dtype=np.int32), np.diff(h.indptr))
                self._sse_segments = np.ascontiguousarray(h.indptr[s.chunks])
            with thread_limit(self.n_threads, limit_blas=False):
                squared_error_segments(self._sse_rows, h.cols, h.vals, self._sse_segments, P, Q,
                                       b if s.biases else s.dummy, c if s.biases else s.dummy, self.spec["mu"],
                                       s.biases, parts[:len(s.chunks) - 1])
        return float(parts.sum())

    # ---------------------------------------------------------------- Newton-CG
    @_cpu_timed
    def fun_and_jac(self, state):
        """Loss (data + user penalty) and gradient pieces at the kept user-half rows.

        Returns ``(loss, gP_b, gb_b, gQ_partial, gc_partial)``: user rows complete,
        item rows partial (this block's data term only).
        """
        self.calls += 1
        self.hold(state)
        (P, b), (Q, c) = self._uown, self._uneed
        with thread_limit(self.n_threads, limit_blas=False):
            return self.users.fun_and_jac(P, b, Q, c)

    @_cpu_timed
    def hessp(self, state, dP, db, dQn, dcn):
        """Hessian (per ``spec['hessian']``) product pieces at the kept user-half rows with the
        direction's block rows; same layout as :meth:`fun_and_jac`'s gradient."""
        self.calls += 1
        self.hold(state)
        s = self.users
        with thread_limit(self.n_threads, limit_blas=False):
            obj = s.objective()
            if obj is None:
                hP = (s.regw[:, None] * dP).astype(s.dt)
                hb = (s.regbw * db).astype(s.dt) if s.biases else None
                return hP, hb, np.zeros_like(dQn), (np.zeros_like(dcn) if s.biases else None)
            (P, b), (Q, c) = self._uown, self._uneed
            h = obj.hessp(s.pack_local(P, b, Q, c), s.pack_local(dP, db, dQn, dcn))
        hP, hQ, hb, hc = s.unpack_local(h)
        hP += s.regw[:, None] * dP
        if s.biases:
            hb += s.regbw * db
        return hP, hb, hQ, hc

    # ---------------------------------------------------------------- preconditioners
    @_cpu_timed
    def gn_diagonal(self, state):
        """Gauss-Newton diagonal of this block's user rows (from the item rows its user half
        holds) and item rows (from the user rows its item half holds): complete rows, the
        in-process kernel on the same CSR order, so equal to the in-process diagonal bit for bit.
        Returns ``(dP_b, db_b, dQ_b, dc_b)``."""
        self.calls += 1
        self.hold(state)
        with thread_limit(self.n_threads, limit_blas=False):
            dP, db = self.users.diagonal(self._uneed[0])
            dQ, dc = self.items.diagonal(self._ineed[0])
        return dP, db, dQ, dc

    @_cpu_timed
    def factor_blocks(self, state, max_memory: int) -> int:
        """Cholesky-factor the Gauss-Newton blocks of this block's user and item rows (kept
        here for :meth:`apply_blocks`); returns the number of replaced pivots."""
        self.calls += 1
        self.hold(state)
        with thread_limit(self.n_threads, limit_blas=False):
            return self.users.factor(self._uneed[0]) + self.items.factor(self._ineed[0])

    @_cpu_timed
    def apply_blocks(self, rP, rb, rQ, rc):
        """Block-Jacobi solve on this block's own user rows and item rows."""
        self.calls += 1
        with thread_limit(self.n_threads, limit_blas=False):
            zP, zb = self.users.apply(rP, rb)
            zQ, zc = self.items.apply(rQ, rc)
        return zP, zb, zQ, zc
