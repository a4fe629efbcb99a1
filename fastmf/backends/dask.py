r"""The Dask backend: the ratings sharded over a cluster, every data pass one round trip.

:class:`DaskBackend` implements :class:`~fastmf.backends.base.NewtonBackend`,
:class:`~fastmf.backends.base.RowSolveBackend` and :class:`~fastmf.backends.base.PredictBackend`
on a :class:`fastmf.distributed.DistributedRatings` (``B`` block actors, see
:mod:`fastmf.distributed.shards`), so the in-process solvers run unchanged on a cluster:
:class:`fastmf.solvers.als.ALS` and :class:`fastmf.solvers.newton.NewtonCG` under
:func:`fastmf.solvers._base.run_iterations` (history, callbacks, progress, validation,
early stopping, time limit all come from there).

One method = one *round*: the same actor method on every block, results reduced on the
client in block order (so results depend on ``B``, never on the number of workers).

State kept on the blocks
------------------------
Each block keeps four sets of factor rows: ``uown`` (its users' rows), ``uneed`` (the item
rows its user half touches), ``iown`` (its items' rows) and ``ineed`` (the user rows its
item half touches).  The client keeps a copy of what it last shipped or received for each
and ships a set again only when the corresponding part of ``x`` changed (compared by
content), so an ALS iteration ships each side once and a Hessian product ships only the
direction.

Calls
-----
==========================  ==============================================  ===========================
method                      client -> blocks                                blocks -> client
==========================  ==============================================  ===========================
``loss`` + ``gradient``     changed ``uown``/``uneed`` rows                 loss, user rows, item partials
``hessp``                   the direction's ``uown``/``uneed`` rows         same layout
``solve_rows("users")``     changed ``uneed`` rows                          the block's user rows
``solve_rows("items")``     changed ``ineed`` rows                          the block's item rows
Jacobi ``update``           changed ``uneed``/``ineed`` rows                the block's diagonal rows
Jacobi ``apply``            (local on the client)
block-Jacobi ``update``     changed ``uneed``/``ineed`` rows                replaced pivots
block-Jacobi ``apply``      the residual's own rows                         the solved own rows
``sse``                     changed ``uown``/``uneed`` rows                 one float per block
==========================  ==============================================  ===========================

``loss``/``gradient`` share one round (cached by ``x``'s content).  Loss, gradient and
Hessian products equal the in-process ones up to summation order (float64: ~1e-16
relative); the row solves, the Gauss-Newton diagonal and the block factors are computed
row by row with the in-process kernels on the same CSR order, so they are bit-identical.

Importing this module does not import Dask.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice
from ..kernels.blocks import block_memory
from ..kernels.predict import rmse_codes
from ..problem import MFProblem

__all__ = ["DaskBackend"]

_KEYS = ("uown", "uneed", "iown", "ineed")


def _same(held, F, fb) -> bool:
    return held is not None and np.array_equal(held[0], F) and (fb is None or np.array_equal(held[1], fb))


class DaskBackend:
    """A compute backend on ratings sharded over a Dask cluster (see the module docstring).

    Parameters
    ----------
    data : DistributedRatings
        From :func:`fastmf.distributed.distribute` (configured here for ``problem``).
    problem : MFProblem
        Squared loss only; bound to ``data`` here if it is not yet (``mu`` = the
        distributed global mean).
    hessian : {"gauss-newton", "exact"}
        What :meth:`hessp` multiplies by.

    Besides the backend protocols it exposes the scipy-style objective interface
    (``fun``, ``jac``, ``fun_and_jac``, ``hessp``, ``x0``, ``diag_gauss_newton`` and the
    problem attributes), and :meth:`as_backend`, so that
    :func:`fastmf.solvers.newton.newton_cg` accepts it as its ``objective``.
    """

    def __init__(self, data, problem: MFProblem, *, hessian: str = "gauss-newton"):
        from ..distributed.shards import ShardSpec

        if problem.loss != "squared":
            raise ValueError(f"the Dask backend supports the squared loss only, got loss={problem.loss!r}")
        if problem.n_users is None:
            problem = problem.bind(data)
        self.data = data
        self.problem = problem
        self.hessian = check_choice(hessian, "hessian", {"gauss-newton", "exact"})
        p = problem
        _, wi = p.row_weights(data.user_counts, data.item_counts)
        self._regw_i = (p.reg * wi).astype(p.dtype)
        self._regbw_i = (p.reg_bias * wi).astype(p.dtype)
        self.spec = ShardSpec(p.rank, p.biases, p.dtype, p.mu, p.reg, p.reg_bias, p.reg_weighting, self.hessian)
        data.configure(self.spec)
        data.round("warm")
        self._forget()

    # ------------------------------------------------------------------ problem attributes
    rank = property(lambda self: self.problem.rank)
    biases = property(lambda self: self.problem.biases)
    reg = property(lambda self: self.problem.reg)
    reg_bias = property(lambda self: self.problem.reg_bias)
    reg_weighting = property(lambda self: self.problem.reg_weighting)
    dtype = property(lambda self: self.problem.dtype)
    mu = property(lambda self: self.problem.mu)
    n_users = property(lambda self: self.problem.n_users)
    n_items = property(lambda self: self.problem.n_items)
    n_params = property(lambda self: self.problem.n_params)

    def unpack(self, x):
        return self.problem.unpack(np.asarray(x))

    def as_backend(self) -> "DaskBackend":
        """This object (what :func:`fastmf.backends.local.make_local_backend` looks for)."""
        return self

    def x0(self, random_state=None, scale: float = 0.1, init: str = "random") -> np.ndarray:
        """``MFObjective.x0`` from the shape alone (``init="random"`` only: the spectral start needs
        the whole rating matrix in one place)."""
        from ..distributed.newton import initial_point

        if init != "random":
            raise ValueError(f"init={init!r} is not available on a cluster (it needs the whole rating matrix): "
                             "use init='random'")
        p = self.problem
        return initial_point(p.n_users, p.n_items, p.rank, p.biases, random_state, scale)

    # ------------------------------------------------------------------ rounds and kept rows
    def _forget(self) -> None:
        """Assume nothing is kept on the blocks (after a failed round, or at the start)."""
        self._held = dict.fromkeys(_KEYS)
        self._fg_x = None
        self._fg = None

    def _cast(self, v) -> np.ndarray:
        v = np.asarray(v)
        if v.ndim != 1 or v.shape[0] != self.problem.n_params:
            raise ValueError(f"vector must have shape ({self.problem.n_params},), got {v.shape}")
        return np.ascontiguousarray(v, dtype=self.problem.dtype)

    def _rows(self, key: str, F, fb, blk: int):
        """The rows of block ``blk`` for kept set ``key`` (copies: the blocks must never see later
        in-place changes of the client's arrays, which in-process workers would)."""
        ds = self.data
        if key in ("uown", "iown"):
            bounds = ds.layout.user_bounds if key == "uown" else ds.layout.item_bounds
            sel = slice(int(bounds[blk]), int(bounds[blk + 1]))
            return F[sel].copy(), None if fb is None else fb[sel].copy()
        # fancy indexing already copies (a second copy cost ~70 MB per ALS iteration on 18M ratings)
        sel = ds.items_needed[blk] if key == "uneed" else ds.users_needed[blk]
        return F[sel], None if fb is None else fb[sel]

    def _states(self, x, keys):
        """Per block, the kept sets among ``keys`` whose rows in ``x`` changed; and the new client copies."""
        P, Q, b, c = self.problem.unpack(x)
        src = {"uown": (P, b), "uneed": (Q, c), "iown": (Q, c), "ineed": (P, b)}
        states = [{} for _ in range(self.data.n_blocks)]
        new = {}
        for key in keys:
            F, fb = src[key]
            if _same(self._held[key], F, fb):
                continue
            for blk, st in enumerate(states):
                st[key] = self._rows(key, F, fb, blk)
            new[key] = (F.copy(), None if fb is None else fb.copy())
        return states, new

    def _round(self, method: str, args: list, new: dict | None = None) -> list:
        try:
            out = self.data.round(method, args)
        except BaseException:
            self._forget()
            raise
        if new:
            self._held.update(new)
        return out

    def _reduce(self, parts) -> np.ndarray:
        """Per-block (user rows, user bias, item partial, item bias partial) into a packed vector;
        item partials added in block order."""
        p = self.problem
        out = np.zeros(p.n_params, dtype=p.dtype)
        P, Q, b, c = p.unpack(out)
        ub = self.data.layout.user_bounds
        for blk, (gP, gb, gQ, gc) in enumerate(parts):
            lo, hi = int(ub[blk]), int(ub[blk + 1])
            need = self.data.items_needed[blk]
            P[lo:hi] = gP
            Q[need] += gQ
            if p.biases:
                b[lo:hi] = gb
                c[need] += gc
        return out

    def _own(self, parts, out) -> None:
        """Write per-block own rows ``(F_u, fb_u, F_i, fb_i)`` into the packed ``out``."""
        P, Q, b, c = self.problem.unpack(out)
        ub, ib = self.data.layout.user_bounds, self.data.layout.item_bounds
        for blk, (dP, db, dQ, dc) in enumerate(parts):
            u, i = slice(int(ub[blk]), int(ub[blk + 1])), slice(int(ib[blk]), int(ib[blk + 1]))
            if dP is not None:
                P[u] = dP
                if b is not None:
                    b[u] = db
            if dQ is not None:
                Q[i] = dQ
                if c is not None:
                    c[i] = dc

    # ------------------------------------------------------------------ NewtonBackend
    def _fun_and_jac(self, x):
        x = self._cast(x)
        if self._fg_x is not None and np.array_equal(self._fg_x, x):
            return self._fg
        states, new = self._states(x, ("uown", "uneed"))
        parts = self._round("fun_and_jac", [(s,) for s in states], new)
        loss = 0.0
        for part in parts:  # block order
            loss += part[0]
        g = self._reduce([part[1:] for part in parts])
        _, Q, _, c = self.problem.unpack(x)
        _, gQ, _, gc = self.problem.unpack(g)
        gQ += self._regw_i[:, None] * Q
        loss += 0.5 * float(np.dot(self._regw_i.astype(np.float64), np.einsum("ij,ij->i", Q, Q, dtype=np.float64)))
        if self.problem.biases:
            gc += self._regbw_i * c
            loss += 0.5 * float(np.dot(self._regbw_i.astype(np.float64), c.astype(np.float64) ** 2))
        self._fg_x = x.copy()
        self._fg = (float(loss), g)
        return self._fg

    def loss(self, x) -> float:
        return self._fun_and_jac(x)[0]

    def gradient(self, x) -> np.ndarray:
        return self._fun_and_jac(x)[1].copy()

    def hessp(self, x, v) -> np.ndarray:
        x, v = self._cast(x), self._cast(v)
        states, new = self._states(x, ("uown", "uneed"))
        dP, dQ, db, dc = self.problem.unpack(v)
        args = [(st, *self._rows("uown", dP, db, blk), *self._rows("uneed", dQ, dc, blk))
                for blk, st in enumerate(states)]
        h = self._reduce(self._round("hessp", args, new))
        _, hQ, _, hc = self.problem.unpack(h)
        hQ += self._regw_i[:, None] * dQ
        if self.problem.biases:
            hc += self._regbw_i * dc
        return h

    def preconditioner(self, name: str, max_memory: int, n_threads=None):
        """``"none"``; ``"jacobi"`` (the diagonal in one round per update, ``apply`` on the client);
        ``"block-jacobi"`` (blocks factored on the shards in one round per update, ``apply`` one round)."""
        from ..solvers.preconditioners import IdentityPreconditioner

        if name == "none":
            return IdentityPreconditioner()
        if name == "jacobi":
            return DaskJacobi(self)
        if name == "block-jacobi":
            return DaskBlockJacobi(self, max_memory)
        raise ValueError(f"preconditioner must be one of ['none', 'jacobi', 'block-jacobi'], got {name!r}")

    def sign_loss_bound(self) -> float:
        raise NotImplementedError("the Dask backend supports the squared loss only")

    def diag_gauss_newton(self, x) -> np.ndarray:
        """The Gauss-Newton diagonal at ``x`` (one round; bit-identical to the in-process kernel)."""
        x = self._cast(x)
        states, new = self._states(x, ("uneed", "ineed"))
        out = np.empty(self.problem.n_params, dtype=self.problem.dtype)
        self._own(self._round("gn_diagonal", [(s,) for s in states], new), out)
        return out

    # ------------------------------------------------------------------ RowSolveBackend
    def solve_rows(self, side, x, prior_diag, prior_shift, weights=True, noise=None, noise_sd=0.0) -> int:
        if noise is not None or noise_sd:
            raise NotImplementedError("sampled row solves (gibbs) are not available on a cluster")
        if side not in ("users", "items"):
            raise ValueError(f"side must be 'users' or 'items', got {side!r}")
        states, new = self._states(x, ("uneed",) if side == "users" else ("ineed",))
        pd_, ps = np.asarray(prior_diag, dtype=np.float64), np.asarray(prior_shift, dtype=np.float64)
        out = self._round("solve_rows", [(s, side, pd_, ps, bool(weights)) for s in states], new)
        if side == "users":
            self._own([(F, fb, None, None) for F, fb, _ in out], x)
        else:
            self._own([(None, None, F, fb) for F, fb, _ in out], x)
        P, Q, b, c = self.problem.unpack(x)
        F, fb = (P, b) if side == "users" else (Q, c)
        self._held["uown" if side == "users" else "iown"] = (F.copy(), None if fb is None else fb.copy())
        return int(sum(nf for _, _, nf in out))

    def sse(self, x) -> float:
        states, new = self._states(self._cast(x), ("uown", "uneed"))
        total = 0.0
        for s in self._round("sse", [(st,) for st in states], new):
            total += s
        return total

    # ------------------------------------------------------------------ PredictBackend
    def rmse(self, *args, **kwargs) -> float:
        """Validation RMSE on the client (the validation pairs are local)."""
        return rmse_codes(*args, **kwargs)

    # ------------------------------------------------------------------ scipy-style objective
    def fun(self, x) -> float:
        return self._fun_and_jac(x)[0]

    def jac(self, x) -> np.ndarray:
        return self.gradient(x)

    def fun_and_jac(self, x):
        f, g = self._fun_and_jac(x)
        return f, g.copy()


class DaskJacobi:
    """``M = diag(G)`` (non-positive entries replaced by 1), as ``JacobiPreconditioner``: the
    diagonal comes from the shards in one round per ``update``; ``apply`` is local."""

    name = "jacobi"
    is_identity = False

    def __init__(self, backend: DaskBackend):
        self.backend = backend
        self.n_fixed = 0
        self.inv_diag = None

    def update(self, x):
        diag = self.backend.diag_gauss_newton(x)
        bad = ~(diag > 0)
        self.n_fixed = int(bad.sum())
        if self.n_fixed:
            diag[bad] = 1
        self.inv_diag = (1 / diag).astype(self.backend.problem.dtype)

    def apply(self, r):
        return r * self.inv_diag


class DaskBlockJacobi:
    """Per-row Cholesky-factored Gauss-Newton blocks, factored and kept on the shards
    (``update``: one round), applied on the shards (``apply``: one round with the residual's
    own rows out and the solved rows back)."""

    name = "block-jacobi"
    is_identity = False

    def __init__(self, backend: DaskBackend, max_memory: int):
        p = backend.problem
        need = block_memory(p.n_users, p.n_items, p.rank, p.biases, p.dtype)
        if need > max_memory:
            raise ValueError(
                f"block-Jacobi factors need {need / 2**30:.2f} GiB ((n_users + n_items) * K^2 * {p.dtype.itemsize} "
                f"bytes, K = {p.block_size}, spread over the workers) > max_block_memory = "
                f"{max_memory / 2**30:.2f} GiB: use preconditioner='jacobi', a smaller rank, or raise max_block_memory"
            )
        self.backend = backend
        self.max_memory = int(max_memory)
        self.n_fixed = 0
        self.nbytes = need

    def update(self, x):
        be = self.backend
        states, new = be._states(be._cast(x), ("uneed", "ineed"))
        self.n_fixed = int(sum(be._round("factor_blocks", [(s, self.max_memory) for s in states], new)))

    def apply(self, r):
        be = self.backend
        rP, rQ, rb, rc = be.problem.unpack(r)
        args = [(*be._rows("uown", rP, rb, blk), *be._rows("iown", rQ, rc, blk)) for blk in range(be.data.n_blocks)]
        z = np.empty_like(r)
        be._own(be._round("apply_blocks", args), z)
        return z
