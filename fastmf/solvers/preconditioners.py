r"""Preconditioners for Newton-CG on the matrix-factorization objective.

Each preconditioner is a symmetric positive definite :math:`M` that approximates the
(Gauss-Newton) Hessian; CG needs only :math:`z = M^{-1} r`.  It is rebuilt at every
accepted outer iterate (:meth:`Preconditioner.update`) and applied at every CG step
(:meth:`Preconditioner.apply`).

``"none"``
    :math:`M = I`.
``"jacobi"``
    :math:`M = \mathrm{diag}(G)`: per factor entry
    :math:`G_{p_{uf}p_{uf}} = \sum_{i\in\Omega_u} q_{if}^2 + \lambda_f w_u`, per bias
    :math:`G_{b_u b_u} = n_u + \lambda_b w_u` (items alike).  ``O(|Ω| k)`` to build.
``"block-jacobi"``
    :math:`M = \mathrm{blockdiag}(B_1, \dots, B_m, C_1, \dots, C_n)` where :math:`B_u`
    is the diagonal block of :math:`G` for :math:`(p_u, b_u)` (see
    :mod:`fastmf.kernels.blocks`: :math:`\sum_i \tilde q_i\tilde q_i^\top +
    \mathrm{diag}(\lambda_f w_u I, \lambda_b w_u)`, the matrix ALS solves) and
    :math:`C_i` likewise for :math:`(q_i, c_i)`; only these diagonal blocks, not the
    user-item cross terms.  Each block is Cholesky-factored once per update, in
    parallel; ``O(|Ω| K^2 + (m+n) K^3)`` to build and ``O((m+n) K^2)`` to apply,
    ``K = k + 1`` with biases.  The user-user and item-item diagonal blocks of the
    exact Hessian are the same as those of :math:`G`, so the same :math:`M` serves
    ``hessian="exact"``.

    Memory: the factors take ``(m + n) K^2`` floats of the objective's dtype.  Above
    ``max_memory`` bytes (default :data:`DEFAULT_MAX_BLOCK_MEMORY`, 2 GiB) the
    preconditioner refuses with a ``ValueError`` that gives the figure and suggests
    ``preconditioner="jacobi"`` (or raising ``max_block_memory``).  We refuse rather
    than silently degrading: chunked re-factorisation at every CG step would cost an
    assembly pass (``O(|Ω| K^2)``, several Hessian-vector products) per CG step.

For the sign loss the Hessian's diagonal blocks are :math:`\lambda_f w_u I` (the data
term only couples :math:`p_u` with :math:`q_i`), so both ``"jacobi"`` and
``"block-jacobi"`` reduce to the diagonal :math:`\lambda_f w`.

Singular blocks or zero diagonal entries (``λ = 0`` with a row of few or no
ratings) are handled as documented in :mod:`fastmf.kernels.blocks`: the offending
pivot is replaced, which keeps :math:`M` positive definite; the number of such pivots
is logged at DEBUG level and kept in :attr:`Preconditioner.n_fixed`.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from .._threading import resolve_n_threads, run_blocks
from ..kernels._chunks import PARALLEL_MIN_RATINGS, balanced_chunks
from ..kernels.blocks import PIVOT_RTOL, apply_blocks, block_memory, factor_blocks, gn_diagonal

__all__ = [
    "PRECONDITIONERS",
    "DEFAULT_MAX_BLOCK_MEMORY",
    "Preconditioner",
    "IdentityPreconditioner",
    "JacobiPreconditioner",
    "BlockJacobiPreconditioner",
    "make_preconditioner",
]

logger = logging.getLogger("fastmf")

PRECONDITIONERS = ("none", "jacobi", "block-jacobi")
DEFAULT_MAX_BLOCK_MEMORY = 2 * 1024**3


class _Data:
    """A problem bound to its ratings (in the problem's dtype), as the preconditioners read it."""

    def __init__(self, problem, ratings):
        self.problem = problem
        self.ratings = ratings
        for name in ("rank", "biases", "reg", "reg_bias", "reg_weighting", "loss", "dtype", "mu", "n_users",
                     "n_items"):
            setattr(self, name, getattr(problem, name))

    def weights(self):
        r = self.ratings
        return self.problem.row_weights(r.user_counts, r.item_counts, self.dtype)

    def unpack(self, x):
        return self.problem.unpack(x)


class Preconditioner:
    """Base class: ``update(x)`` at each accepted iterate, ``apply(r) -> M⁻¹ r``."""

    name = "base"
    n_fixed = 0

    def update(self, x: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, r: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def is_identity(self) -> bool:
        return False


class IdentityPreconditioner(Preconditioner):
    """``M = I``."""

    name = "none"

    def update(self, x):
        pass

    def apply(self, r):
        return r.copy()

    @property
    def is_identity(self) -> bool:
        return True


class JacobiPreconditioner(Preconditioner):
    """``M = diag(G)`` (non-positive entries replaced by 1)."""

    name = "jacobi"

    def __init__(self, structure: _Data, n_threads: int | None = None):
        self.s = structure
        n = resolve_n_threads(n_threads)
        self._n_threads = n
        r = structure.ratings
        self._uchunks = balanced_chunks(r.user_indptr, 8 * n)
        self._ichunks = balanced_chunks(r.item_indptr, 8 * n)
        self._wu, self._wi = structure.weights()
        self.inv_diag: np.ndarray | None = None

    def update(self, x):
        s = self.s
        r = s.ratings
        diag = np.empty(x.shape[0], dtype=s.dtype)
        dP, dQ, db, dc = s.unpack(diag)
        if s.loss == "sign":
            dP[:] = s.reg * self._wu[:, None]
            dQ[:] = s.reg * self._wi[:, None]
        else:
            P, Q, _, _ = s.unpack(x)
            dummy = np.zeros(1, dtype=s.dtype)
            item_indptr, item_users = r.item_indptr, r.item_users  # built here, not in a block

            def side(t: int) -> None:
                if t == 0:
                    gn_diagonal(r.user_indptr, r.items, Q, self._wu, s.reg, s.reg_bias, s.biases, self._uchunks,
                                dP, db if s.biases else dummy)
                else:
                    gn_diagonal(item_indptr, item_users, P, self._wi, s.reg, s.reg_bias, s.biases, self._ichunks,
                                dQ, dc if s.biases else dummy)

            # below PARALLEL_MIN_RATINGS the sides are serial kernels (nogil): both at once on two
            # threads; above, each side is a prange kernel on every thread, one after the other
            run_blocks(side, 2, self._n_threads if r.nnz < PARALLEL_MIN_RATINGS else 1)
        bad = ~(diag > 0)
        self.n_fixed = int(bad.sum())
        if self.n_fixed:
            logger.debug("jacobi preconditioner: %d zero diagonal entries replaced by 1", self.n_fixed)
            diag[bad] = 1
        self.inv_diag = (1 / diag).astype(s.dtype)

    def apply(self, r):
        return r * self.inv_diag


class BlockJacobiPreconditioner(Preconditioner):
    """Per-user and per-item Cholesky-factored Gauss-Newton blocks (see module docstring)."""

    name = "block-jacobi"

    def __init__(self, structure: _Data, n_threads: int | None = None,
                 max_memory: int = DEFAULT_MAX_BLOCK_MEMORY):
        s = structure
        need = block_memory(s.n_users, s.n_items, s.rank, s.biases, s.dtype)
        if need > max_memory:
            raise ValueError(
                f"block-Jacobi factors need {need / 2**30:.2f} GiB ((n_users + n_items) * K^2 * "
                f"{s.dtype.itemsize} bytes, K = {s.rank + s.biases}) > max_block_memory = "
                f"{max_memory / 2**30:.2f} GiB: use preconditioner='jacobi', a smaller rank, "
                f"or raise max_block_memory"
            )
        self.s = s
        n = resolve_n_threads(n_threads)
        r = s.ratings
        self._uchunks = balanced_chunks(r.user_indptr, 8 * n)
        self._ichunks = balanced_chunks(r.item_indptr, 8 * n)
        self._wu, self._wi = s.weights()
        K = s.rank + (1 if s.biases else 0)
        self.K = K
        self.Lu = np.empty((s.n_users, K, K), dtype=s.dtype)
        self.Li = np.empty((s.n_items, K, K), dtype=s.dtype)
        self._fu = np.zeros(len(self._uchunks) - 1, dtype=np.int64)
        self._fi = np.zeros(len(self._ichunks) - 1, dtype=np.int64)
        self._dummy = np.zeros(1, dtype=s.dtype)
        self._sign_diag: JacobiPreconditioner | None = None
        if s.loss == "sign":
            self._sign_diag = JacobiPreconditioner(s, n_threads)
        self.nbytes = need

    def update(self, x):
        if self._sign_diag is not None:
            self._sign_diag.update(x)
            self.n_fixed = self._sign_diag.n_fixed
            return
        s = self.s
        r = s.ratings
        P, Q, _, _ = s.unpack(x)
        factor_blocks(r.user_indptr, r.items, Q, self._wu, s.reg, s.reg_bias, s.biases, self._uchunks,
                      PIVOT_RTOL, self.Lu, self._fu)
        factor_blocks(r.item_indptr, r.item_users, P, self._wi, s.reg, s.reg_bias, s.biases, self._ichunks,
                      PIVOT_RTOL, self.Li, self._fi)
        self.n_fixed = int(self._fu.sum() + self._fi.sum())
        if self.n_fixed:
            logger.debug("block-jacobi preconditioner: %d singular pivots replaced", self.n_fixed)

    def apply(self, r):
        if self._sign_diag is not None:
            return self._sign_diag.apply(r)
        s = self.s
        z = np.empty_like(r)
        rP, rQ, rb, rc = s.unpack(r)
        zP, zQ, zb, zc = s.unpack(z)
        d = self._dummy
        if s.biases:
            apply_blocks(self.Lu, rP, rb, True, self._uchunks, zP, zb)
            apply_blocks(self.Li, rQ, rc, True, self._ichunks, zQ, zc)
        else:
            apply_blocks(self.Lu, rP, d, False, self._uchunks, zP, d)
            apply_blocks(self.Li, rQ, d, False, self._ichunks, zQ, d)
        return z


def make_preconditioner(name: str, problem, ratings=None, n_threads: int | None = None,
                        max_memory: int = DEFAULT_MAX_BLOCK_MEMORY) -> Preconditioner:
    """Build the preconditioner called ``name`` (one of :data:`PRECONDITIONERS`) for a bound
    :class:`~fastmf.problem.MFProblem` on ``ratings`` (cast to the problem's dtype)."""
    if name == "none":
        return IdentityPreconditioner()
    if problem is None or ratings is None:
        raise ValueError(f"preconditioner={name!r} needs an MFObjective-like objective")
    if ratings.dtype != problem.dtype:
        ratings = ratings.astype(problem.dtype)
    structure = _Data(problem, ratings)
    if name == "jacobi":
        return JacobiPreconditioner(structure, n_threads)
    if name == "block-jacobi":
        return BlockJacobiPreconditioner(structure, n_threads, max_memory)
    raise ValueError(f"preconditioner must be one of {list(PRECONDITIONERS)}, got {name!r}")


def __getattr__(name):
    if name == "ProblemStructure":
        warnings.warn("fastmf.solvers.preconditioners.ProblemStructure is deprecated and will be removed in the "
                      "next release: use fastmf.problem.MFProblem", DeprecationWarning, stacklevel=2)
        from ._compat import ProblemStructure

        return ProblemStructure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
