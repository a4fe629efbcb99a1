"""The in-process backend: the ratings in this process, the passes in numba kernels.

:class:`LocalBackend` implements :class:`~fastmf.backends.base.NewtonBackend`,
:class:`~fastmf.backends.base.RowSolveBackend` and :class:`~fastmf.backends.base.PredictBackend`
on a :class:`fastmf.Ratings` and an :class:`~fastmf.problem.MFProblem`.  Loss, gradient and
Hessian products go through an :class:`~fastmf.objective.MFObjective` (built on first use, or
the user's own); row solves through :func:`fastmf.kernels.blocks.als_solve_rows` over fixed
row chunks; the SSE through :func:`fastmf.kernels.predict.squared_error_segments`.

:class:`ObjectiveBackend` wraps a generic scipy-style objective (``fun``, ``jac``, ``hessp``)
for :func:`fastmf.solvers.newton.newton_cg`: no problem structure, no preconditioner.
"""

from __future__ import annotations

import numpy as np

from .._threading import resolve_n_threads
from ..kernels._chunks import balanced_chunks
from ..kernels.blocks import PIVOT_RTOL, als_solve_rows
from ..kernels.predict import rmse_codes
from ..kernels.predict import squared_error_segments
from ..problem import MFProblem

__all__ = ["LocalBackend", "ObjectiveBackend", "make_local_backend"]


class ObjectiveBackend:
    """A generic objective seen as a :class:`~fastmf.backends.base.NewtonBackend` (``problem=None``)."""

    problem = None

    def __init__(self, objective):
        self.objective = objective

    def loss(self, x):
        return float(self.objective.fun(x))

    def gradient(self, x):
        return self.objective.jac(x)

    def hessp(self, x, v):
        return self.objective.hessp(x, v)

    def preconditioner(self, name, max_memory, n_threads=None):
        from ..solvers.preconditioners import IdentityPreconditioner

        if name != "none":
            raise TypeError(
                f"preconditioner={name!r} needs an MFObjective-like objective exposing "
                "ratings, rank, biases, reg; use preconditioner='none' for a generic objective"
            )
        return IdentityPreconditioner()

    def rmse(self, *args, **kwargs):
        return rmse_codes(*args, **kwargs)


class LocalBackend(ObjectiveBackend):
    """In-process backend on ``ratings`` (cast to ``problem.dtype``) for the bound ``problem``.

    Parameters
    ----------
    ratings : Ratings
    problem : MFProblem
        Bound to ``ratings`` here if it is not yet.
    n_threads : int, optional
        Sizes the preconditioners' chunking (results do not depend on it).
    n_chunks : int, optional
        Row chunks of ``solve_rows`` and ``sse`` (default ``8 * threads``).  The SSE's float64
        sum runs over these chunks in order: fix it for results independent of the threads.
    objective : MFObjective, optional
        The objective for ``loss``, ``gradient``, ``hessp`` (default: built from ``problem``
        with ``objective_options``).
    cast_ratings : bool
        Cast the ratings to ``problem.dtype`` (default); the Gibbs sampler reads them as given.
    """

    def __init__(self, ratings, problem: MFProblem, *, n_threads: int | None = None, n_chunks: int | None = None,
                 objective=None, cast_ratings: bool = True, **objective_options):
        if problem.n_users is None:
            problem = problem.bind(ratings)
        self.problem = problem
        if cast_ratings and ratings.dtype != problem.dtype:
            ratings = ratings.astype(problem.dtype)
        self.ratings = ratings
        self.n_threads = n_threads
        self._objective = objective
        self._objective_options = objective_options
        self._n_chunks = 8 * resolve_n_threads(n_threads) if n_chunks is None else int(n_chunks)
        self._chunks = None
        self._scratch = {}

    # ------------------------------------------------------------------ Newton
    @property
    def objective(self):
        if self._objective is None:
            from ..objective import MFObjective

            p = self.problem
            self._objective = MFObjective(self.ratings, p.rank, reg=p.reg, reg_bias=p.reg_bias, biases=p.biases,
                                          loss=p.loss, dtype=p.dtype, n_threads=self.n_threads,
                                          reg_weighting=p.reg_weighting, mu=p.mu, **self._objective_options)
        return self._objective

    def preconditioner(self, name, max_memory, n_threads=None):
        from ..solvers.preconditioners import make_preconditioner

        return make_preconditioner(name, self.problem, self.ratings, n_threads, max_memory)

    def sign_loss_bound(self) -> float:
        from ..solvers.newton import sign_loss_bound

        return sign_loss_bound(self.ratings, self.problem.reg_weighting)

    # ------------------------------------------------------------------ ALS / Gibbs
    def _side(self, side: str):
        r = self.ratings
        if self._chunks is None:
            self._chunks = (balanced_chunks(r.user_indptr, self._n_chunks), balanced_chunks(r.item_indptr, self._n_chunks))
        if side == "users":
            return r.user_indptr, r.items, r.values, self._chunks[0], r.user_counts
        if side == "items":
            return r.item_indptr, r.item_users, r.item_values, self._chunks[1], r.item_counts
        raise ValueError(f"side must be 'users' or 'items', got {side!r}")

    def _buffers(self):
        """Per-chunk float64 scratch and the row weights (cached: they depend on nothing else)."""
        if "A" not in self._scratch:
            p = self.problem
            K = p.block_size
            nc = max(max(len(self._chunks[0]), len(self._chunks[1])) - 1, 1)
            # the weights in the problem's dtype, then float64 (as the kernels always got them)
            wu, wi = p.row_weights(self.ratings.user_counts, self.ratings.item_counts, p.dtype)
            self._scratch.update(A=np.empty((nc, K, K)), y=np.empty((nc, K)), fixed=np.zeros(nc, dtype=np.int64),
                                 dummy=np.zeros(1, dtype=p.dtype), no_noise=np.zeros((1, 1)),
                                 users=wu.astype(np.float64), items=wi.astype(np.float64))
        return self._scratch

    def solve_rows(self, side, x, prior_diag, prior_shift, weights=True, noise=None, noise_sd=0.0) -> int:
        p = self.problem
        indptr, cols, vals, chunks, counts = self._side(side)
        s = self._buffers()
        P, Q, b, c = p.unpack(x)
        d = s["dummy"]
        if side == "users":
            F, bias, other, other_bias = P, b, Q, c
        else:
            F, bias, other, other_bias = Q, c, P, b
        w = s[side] if weights else np.ones(F.shape[0])
        nc = len(chunks) - 1
        als_solve_rows(indptr, cols, vals, other, other_bias if p.biases else d, p.mu, w, prior_diag, prior_shift,
                       p.biases, chunks, PIVOT_RTOL, s["A"][:nc], s["y"][:nc], F, bias if p.biases else d,
                       s["fixed"][:nc], s["no_noise"] if noise is None else noise, float(noise_sd))
        return int(s["fixed"][:nc].sum())

    def sse(self, x) -> float:
        p = self.problem
        indptr, _, _, chunks, _ = self._side("users")
        r = self.ratings
        P, Q, b, c = p.unpack(x)
        d = self._buffers()["dummy"]
        # segments = the user chunks' rating ranges: a fixed partition, so the total does not
        # depend on the thread count
        seg_ptr = self._scratch.setdefault("sse_segments", np.ascontiguousarray(indptr[chunks]))
        parts = self._scratch.setdefault("sse", np.empty(len(chunks) - 1))
        squared_error_segments(r.users, r.items, r.values, seg_ptr, P, Q, b if p.biases else d,
                               c if p.biases else d, p.mu, p.biases, parts)
        return float(parts.sum())


def make_local_backend(objective) -> ObjectiveBackend:
    """The backend of :func:`~fastmf.solvers.newton.newton_cg`'s ``objective``: the object's own
    backend when it has an ``as_backend()`` method (the Dask backend), a :class:`LocalBackend`
    around an :class:`~fastmf.objective.MFObjective` (or an object exposing its ``ratings, rank, biases,
    reg, reg_bias, reg_weighting, loss, dtype, mu, n_users, n_items``), else an :class:`ObjectiveBackend`."""
    if callable(getattr(objective, "as_backend", None)):  # e.g. fastmf.backends.dask.DaskBackend
        return objective.as_backend()
    if not hasattr(objective, "ratings"):
        return ObjectiveBackend(objective)
    try:
        problem = MFProblem.from_objective(objective)
    except AttributeError as exc:
        raise TypeError(
            f"objective {type(objective).__name__} has ratings but does not expose the MFObjective attributes "
            f"({exc}); a preconditioned Newton-CG needs an MFObjective-like object"
        ) from exc
    return LocalBackend(objective.ratings, problem, objective=objective)
