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
import warnings
from typing import Callable, Iterable

import numpy as np

from .._packing import pack
from .._threading import resolve_n_threads, thread_limit
from .._weights import reg_exponent
from .._validation import check_dtype, check_nonnegative_float, check_positive_int
from ..kernels.blocks import PIVOT_RTOL, als_solve_rows, row_chunks
from ._base import (
    CallbackList,
    IterationRecord,
    SolverResult,
    Status,
    Stopwatch,
    ValidationMonitor,
    finish_result,
    make_progress,
)
from .newton import ConvergenceWarning, _check_validation, _norm
from .preconditioners import ProblemStructure

__all__ = ["ALSSolver", "als"]

logger = logging.getLogger("fastmf")


class ALSSolver:
    """Exact ALS half-steps for an objective's structure (in place on a packed ``x``).

    Parameters
    ----------
    structure : ProblemStructure
        From :meth:`ProblemStructure.from_objective` (squared loss only).
    n_threads : int, optional
        Used to size the chunking (results do not depend on it).
    """

    def __init__(self, structure: ProblemStructure, n_threads: int | None = None):
        if structure.loss != "squared":
            raise ValueError(f"ALS needs the squared loss, got loss={structure.loss!r}")
        self.s = structure
        n = resolve_n_threads(n_threads)
        r = structure.ratings
        self._uchunks = row_chunks(r.user_indptr, 8 * n)
        self._ichunks = row_chunks(r.item_indptr, 8 * n)
        wu, wi = structure.weights()
        self._wu = wu.astype(np.float64)
        self._wi = wi.astype(np.float64)
        k = structure.rank
        K = k + (1 if structure.biases else 0)
        nc = max(len(self._uchunks), len(self._ichunks)) - 1
        self._A = np.empty((max(nc, 1), K, K))
        self._y = np.empty((max(nc, 1), K))
        self._fixed = np.zeros(max(nc, 1), dtype=np.int64)
        self._dummy = np.zeros(1, dtype=structure.dtype)
        self._no_noise = np.zeros((1, 1))
        self._prior_diag = np.full(K, float(structure.reg))
        if structure.biases:
            self._prior_diag[k] = float(structure.reg_bias)
        self._prior_shift = np.zeros(K)
        self.n_fixed = 0

    def solve_users(self, x: np.ndarray) -> None:
        """Replace ``P`` (and ``b``) in ``x`` by the exact minimiser given ``Q`` (and ``c``)."""
        s = self.s
        r = s.ratings
        P, Q, b, c = s.unpack(x)
        d = self._dummy
        nc = len(self._uchunks) - 1
        als_solve_rows(r.user_indptr, r.items, r.values, Q, c if s.biases else d, s.mu, self._wu,
                       self._prior_diag, self._prior_shift, s.biases, self._uchunks, PIVOT_RTOL, self._A[:nc],
                       self._y[:nc], P, b if s.biases else d, self._fixed[:nc], self._no_noise, 0.0)
        self.n_fixed = int(self._fixed[:nc].sum())

    def solve_items(self, x: np.ndarray) -> None:
        """Replace ``Q`` (and ``c``) in ``x`` by the exact minimiser given ``P`` (and ``b``)."""
        s = self.s
        r = s.ratings
        P, Q, b, c = s.unpack(x)
        d = self._dummy
        nc = len(self._ichunks) - 1
        als_solve_rows(r.item_indptr, r.item_users, r.item_values, P, b if s.biases else d, s.mu, self._wi,
                       self._prior_diag, self._prior_shift, s.biases, self._ichunks, PIVOT_RTOL, self._A[:nc],
                       self._y[:nc], Q, c if s.biases else d, self._fixed[:nc], self._no_noise, 0.0)
        self.n_fixed = int(self._fixed[:nc].sum())


def als(
    ratings,
    rank: int = 32,
    *,
    reg: float = 0.1,
    reg_bias: float | None = None,
    biases: bool = True,
    reg_weighting: str = "uniform",
    dtype=np.float32,
    max_iter: int = 20,
    tol: float = 1e-6,
    n_threads: int | None = None,
    random_state=0,
    x0: np.ndarray | None = None,
    validation=None,
    early_stopping: int | None = None,
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
        The shared run interface (:mod:`fastmf.solvers._base`).

    Returns
    -------
    SolverResult
        ``x, fun, grad_norm, nit, nfev, njev, status, message, history,
        best_iteration, elapsed`` plus ``mu, rank, biases``; ``n_cg = nhessp = 0``.
        Records hold ``iteration, loss, grad_norm, val_rmse, elapsed``.
    """
    from ..objective import MFObjective

    # validation (MFObjective checks rank, reg, reg_bias, biases, dtype, reg_weighting, mu, n_threads)
    check_dtype(dtype)
    reg_exponent(reg_weighting)
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    tol = check_nonnegative_float(tol, "tol")
    if max_time is not None:
        max_time = check_nonnegative_float(max_time, "max_time", strictly_positive=True)
    if early_stopping is not None:
        early_stopping = check_positive_int(early_stopping, "early_stopping")
        if validation is None:
            raise ValueError("early_stopping needs a validation set")
    min_delta = check_nonnegative_float(min_delta, "min_delta")
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    callback_list = CallbackList(callbacks)
    objective = MFObjective(ratings, rank, reg=reg, reg_bias=reg_bias, biases=biases, loss="squared",
                            dtype=dtype, n_threads=n_threads, reg_weighting=reg_weighting, mu=mu)
    structure = ProblemStructure.from_objective(objective)
    _check_validation(validation, structure)
    if x0 is None:
        x = np.asarray(objective.x0(random_state), dtype=objective.dtype).copy()
    else:
        x = np.array(x0, dtype=objective.dtype, copy=True)
        if x.ndim != 1 or x.shape[0] != objective.n_params:
            raise ValueError(f"x0 must have shape ({objective.n_params},), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x0 contains NaN or inf")

    with thread_limit(n_threads) as n_thr:
        return _run_als(objective, structure, x, n_thr, validation, callback_list, max_iter=max_iter, tol=tol,
                        early_stopping=early_stopping, min_delta=min_delta, clip=clip, progress=bool(progress),
                        max_time=max_time)


def _run_als(objective, structure, x, n_threads, validation, callback_list, *, max_iter, tol, early_stopping,
             min_delta, clip, progress, max_time) -> SolverResult:
    clock = Stopwatch()
    solver = ALSSolver(structure, n_threads)
    history: list[IterationRecord] = []
    counts = dict(nfev=0, njev=0, nhessp=0, n_cg=0)

    def evaluate(x):
        f = float(objective.fun(x))
        g = objective.jac(x)
        counts["nfev"] += 1
        counts["njev"] += 1
        return f, _norm(g)

    f, gnorm = evaluate(x)
    monitor = ValidationMonitor(validation, structure.mu, early_stopping, min_delta, clip)
    val_rmse = monitor.update(0, *structure.unpack(x))[0] if monitor.active else None
    history.append(IterationRecord(iteration=0, loss=f, grad_norm=gnorm, val_rmse=val_rmse, elapsed=clock()))
    bar = make_progress(max_iter, progress, "als")
    status = Status.MAX_ITER
    message = f"maximum number of iterations ({max_iter}) reached"
    it = 0
    try:
        for it in range(1, max_iter + 1):
            solver.solve_users(x)
            fixed = solver.n_fixed
            solver.solve_items(x)
            fixed += solver.n_fixed
            if fixed:
                logger.debug("als it %d: %d singular pivots replaced", it, fixed)
            f_prev = f
            f, gnorm = evaluate(x)
            es_stop = False
            if monitor.active:
                val_rmse, es_stop = monitor.update(it, *structure.unpack(x))
            rec = IterationRecord(iteration=it, loss=f, grad_norm=gnorm, val_rmse=val_rmse, elapsed=clock())
            history.append(rec)
            logger.debug("als it %d: loss=%.10g |g|=%.4g val_rmse=%s", it, f, gnorm, val_rmse)
            bar.update(1)
            bar.set_postfix(loss=f"{f:.6g}", refresh=False)
            stop_cb = callback_list(rec)
            if not math.isfinite(f):
                status, message = Status.DIVERGED, f"non-finite loss at iteration {it}"
                break
            if (f_prev - f) <= tol * max(abs(f), 1.0):
                status = Status.FTOL
                message = f"relative loss decrease {(f_prev - f) / max(abs(f), 1.0):.3g} <= tol={tol:g}"
                break
            if es_stop:
                status = Status.EARLY_STOPPING
                message = monitor.stop_message()
                break
            if stop_cb:
                status, message = Status.CALLBACK, "stopped by a callback"
                break
            if max_time is not None and clock() >= max_time:
                status, message = Status.MAX_TIME, f"time limit max_time={max_time:g}s reached"
                break
    finally:
        bar.close()
    if status is Status.EARLY_STOPPING and monitor.best_params is not None:
        x = pack(*monitor.best_params, dtype=x.dtype)
        f, gnorm = evaluate(x)
    if status in (Status.MAX_ITER, Status.MAX_TIME):
        warnings.warn(f"als did not converge: {message} (tol={tol:g})", ConvergenceWarning, stacklevel=3)
    res = finish_result(
        x=x, fun=f, grad_norm=gnorm, nit=it, status=status, message=message, history=history,
        best_iteration=monitor.best_iteration if monitor.active else None, elapsed=clock(),
        mu=structure.mu, rank=structure.rank, biases=structure.biases, **counts,
    )
    logger.log(logging.WARNING if status < 0 else logging.INFO, "als: %s (nit=%d, loss=%.6g, %.2fs)",
               message, it, f, res.elapsed)
    return res
