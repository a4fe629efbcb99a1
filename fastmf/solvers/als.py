r"""Alternating least squares (ALS) on the fastmf objective.

The objective is exactly :class:`fastmf.objective.MFObjective`'s squared loss
(biases optional, uniform or count-weighted regularisation).  One ALS iteration is
two exact half-steps:

1. users: with :math:`Q, c` fixed, every :math:`(p_u, b_u)` minimises its own
   convex quadratic, i.e. solves the normal equations

   .. math::
       \Big(\sum_{i\in\Omega_u} \tilde q_i \tilde q_i^\top
            + \mathrm{diag}(\lambda_f w_u I_k, \lambda_b w_u)\Big)
       \begin{bmatrix} p_u \\ b_u \end{bmatrix}
       = \sum_{i\in\Omega_u} (r_{ui} - \mu - c_i)\,\tilde q_i,
       \qquad \tilde q_i = [q_i; 1]

   (without biases drop the last row and column);
2. items: the same with the roles of users and items swapped.

Each half-step is the exact minimiser of the loss over that block (the gradient
with respect to the solved side vanishes), so the loss never increases.  The row
systems are the block-Jacobi blocks of Newton-CG (:mod:`fastmf.kernels.blocks`):
assembled, Cholesky-factored and solved in one parallel pass over chunks of rows of
equal rating count, each chunk owning its rows and its float64 scratch.  Cost per
iteration: :math:`O(|\Omega| K^2 + (m+n) K^3)`, :math:`K = k + 1` with biases.

This is the method of Spark MLlib, LensKit and implicit (explicit-feedback form).
Singular row systems (``reg = 0`` and a row with fewer than ``K`` ratings) are
solved with the pivot replacement described in :mod:`fastmf.kernels.blocks`.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Iterable

import numpy as np

from .._packing import pack
from .._validation import check_dtype, check_nonnegative_float
from ..backends.local import LocalBackend
from ..kernels.reductions import dot64
from ..problem import MFProblem, solver_default
from ._base import IterativeSolver, RunOptions, SolverResult, Status, check_validation, run_iterations

__all__ = ["ALSSolver", "ALS", "als"]

logger = logging.getLogger("fastmf")

#: From this many ratings ALS reports its loss and gradient norm with the parallel objective
#: kernels (see :func:`als`); below, with the serial one.
REPORT_PARALLEL_MIN = 1 << 20


class ALSSolver:
    """Exact ALS half-steps (in place on a packed ``x``) through a row-solve backend.

    Parameters
    ----------
    backend : RowSolveBackend
        E.g. :class:`fastmf.backends.local.LocalBackend` (squared loss only).  A deprecated
        ``ProblemStructure`` is still accepted.
    n_threads : int, optional
        Used to size the chunking of a backend built here (results do not depend on it).
    """

    def __init__(self, backend, n_threads: int | None = None):
        if not hasattr(backend, "solve_rows"):  # a deprecated ProblemStructure
            backend = LocalBackend(backend.ratings, backend.to_problem(), n_threads=n_threads)
        p = backend.problem
        if p.loss != "squared":
            raise ValueError(f"ALS needs the squared loss, got loss={p.loss!r}")
        self.backend = backend
        self._prior_diag = np.full(p.block_size, float(p.reg))
        if p.biases:
            self._prior_diag[p.rank] = float(p.reg_bias)
        self._prior_shift = np.zeros(p.block_size)
        self.n_fixed = 0

    def solve_users(self, x: np.ndarray) -> None:
        """Replace ``P`` (and ``b``) in ``x`` by the exact minimiser given ``Q`` (and ``c``)."""
        self.n_fixed = self.backend.solve_rows("users", x, self._prior_diag, self._prior_shift)

    def solve_items(self, x: np.ndarray) -> None:
        """Replace ``Q`` (and ``c``) in ``x`` by the exact minimiser given ``P`` (and ``b``)."""
        self.n_fixed = self.backend.solve_rows("items", x, self._prior_diag, self._prior_shift)


class ALS(IterativeSolver):
    """ALS iterations as hooks of :func:`~fastmf.solvers._base.run_iterations`."""

    name = "als"

    def __init__(self, backend, x, tol):
        self.backend, self.problem, self.x, self.tol = backend, backend.problem, x, tol
        self.mu = self.problem.mu
        self.counts = dict(nfev=0, njev=0, nhessp=0, n_cg=0)

    def _evaluate(self):
        self.f = float(self.backend.loss(self.x))
        g = self.backend.gradient(self.x)
        self.counts["nfev"] += 1
        self.counts["njev"] += 1
        self.gnorm = math.sqrt(dot64(g, g))

    def params(self):
        return self.problem.unpack(self.x)

    def setup(self):
        self.solver = ALSSolver(self.backend)
        self._evaluate()

    def initial_record(self):
        return dict(loss=self.f, grad_norm=self.gnorm)

    def step(self, it):
        self.solver.solve_users(self.x)
        fixed = self.solver.n_fixed
        self.solver.solve_items(self.x)
        fixed += self.solver.n_fixed
        if fixed:
            logger.debug("als it %d: %d singular pivots replaced", it, fixed)
        self.f_prev = self.f
        self._evaluate()
        logger.debug("als it %d: loss=%.10g |g|=%.4g", it, self.f, self.gnorm)
        return dict(loss=self.f, grad_norm=self.gnorm)

    def check_convergence(self, it, rec):
        f, f_prev = self.f, self.f_prev
        if not math.isfinite(f):
            return Status.DIVERGED, f"non-finite loss at iteration {it}"
        if (f_prev - f) <= self.tol * max(abs(f), 1.0):
            return Status.FTOL, f"relative loss decrease {(f_prev - f) / max(abs(f), 1.0):.3g} <= tol={self.tol:g}"
        return None

    def restore_best(self, params, iteration):
        self.x = pack(*params, dtype=self.x.dtype)
        self._evaluate()

    def convergence_warning(self, status, message):
        return f"als did not converge: {message} (tol={self.tol:g})"

    def finalize(self, status, message):
        p = self.problem
        return dict(x=self.x, fun=self.f, grad_norm=self.gnorm, mu=p.mu, rank=p.rank, biases=p.biases, **self.counts)


def als(
    ratings,
    rank: int = 32,
    *,
    reg: float = solver_default("als", "reg"),
    reg_bias: float | None = None,
    biases: bool = True,
    reg_weighting: str = solver_default("als", "reg_weighting"),
    dtype=np.float32,
    max_iter: int = 20,
    tol: float = 1e-6,
    n_threads: int | None = None,
    random_state=0,
    x0: np.ndarray | None = None,
    validation=None,
    early_stopping: int | str | None = "auto",
    min_delta: float = 1e-4,
    clip: tuple[float, float] | None = None,
    callbacks: Callable | Iterable[Callable] | None = None,
    progress: bool = True,
    mu: float | None = None,
    max_time: float | None = None,
) -> SolverResult:
    r"""Fit the biased MF model by alternating least squares (see the module docstring).

    Parameters
    ----------
    ratings : Ratings
        Training ratings.
    rank, reg, reg_bias, biases, reg_weighting, dtype, mu
        The objective, as in :class:`fastmf.objective.MFObjective` (squared loss).
    max_iter : int
        ALS iterations (each = a user half-step then an item half-step).
    tol : float
        Stop (status ``FTOL``) when an iteration lowers the loss by at most
        ``tol * max(|L|, 1)``.
    n_threads : int, optional
        Numba threads for the call.
    random_state : None, int or Generator
        Seed of the starting factors (``MFObjective.x0``); only ``Q`` and ``c`` of the
        start matter, since the first half-step overwrites ``P`` and ``b``.
    x0 : ndarray, optional
        Packed starting point (not modified).
    validation, early_stopping, min_delta, clip, callbacks, progress, max_time
        The shared run interface (:mod:`fastmf.solvers._base`).  ``early_stopping="auto"``
        (default): with a ``validation`` set, stop after 5 iterations without a validation-RMSE
        improvement of ``min_delta`` and return the best iterate (``docs/stopping.md``);
        ``None``: only record the validation RMSE.

    Returns
    -------
    SolverResult
        ``x, fun, grad_norm, nit, nfev, njev, status, message, history,
        best_iteration, elapsed`` plus ``mu, rank, biases``; ``n_cg = nhessp = 0``.
        Records hold ``iteration, loss, grad_norm, val_rmse, elapsed``.
    """
    check_dtype(dtype)
    problem = MFProblem(rank=rank, biases=biases, reg=reg, reg_bias=reg_bias, reg_weighting=reg_weighting,
                        loss="squared", mu=mu, dtype=dtype)
    tol = check_nonnegative_float(tol, "tol")
    run = RunOptions(max_iter=max_iter, max_time=max_time, callbacks=callbacks, progress=progress,
                     validation=validation, early_stopping=early_stopping, min_delta=min_delta, clip=clip,
                     n_threads=n_threads).check(min_iter=0)
    # The objective only reports the loss and gradient norm (and draws the start).  Below
    # REPORT_PARALLEL_MIN ratings its serial kernel (parallel=False) reports: it compiles in a
    # fraction of the time of the tiled parallel ones (about 30 s of a first ALS fit) and is
    # thread-count independent.  Above, the parallel kernels pay: at the ML-20M shape the serial
    # report took 5-9 s an iteration against 2.4-2.8 s (row solves: 53-55 s; load 9, 2 threads).
    parallel = getattr(ratings, "nnz", 0) >= REPORT_PARALLEL_MIN  # (not a Ratings: MFObjective refuses it)
    backend = LocalBackend(ratings, problem, n_threads=n_threads, parallel=parallel)  # checks the ratings
    objective = backend.objective
    problem = backend.problem
    check_validation(validation, problem.n_users, problem.n_items)
    x = start_point(x0, problem, lambda: objective.x0(random_state))
    return run_iterations(ALS(backend, x, tol), run)


def start_point(x0, problem, default) -> np.ndarray:
    """ALS's working copy of the start: ``x0`` checked (shape, finite), or ``default()``."""
    if x0 is None:
        return np.asarray(default(), dtype=problem.dtype).copy()
    x = np.array(x0, dtype=problem.dtype, copy=True)
    if x.ndim != 1 or x.shape[0] != problem.n_params:
        raise ValueError(f"x0 must have shape ({problem.n_params},), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x0 contains NaN or inf")
    return x
