r"""Trust-region Newton-CG for matrix factorization.

The driver follows scipy's ``optimize/_trustregion.py`` (radius update, step
acceptance); the subproblem is solved by preconditioned Steihaug-Toint CG
(:mod:`fastmf.solvers.steihaug`), with a preconditioner from
:mod:`fastmf.solvers.preconditioners` (Jacobi by default: it won the wall-clock
measurements of ``bench/solver_curves.py`` against block-Jacobi and none).

Outer iteration ``t`` (with :math:`f_t, g_t` the loss and gradient at :math:`x_t`,
:math:`B_t` the Gauss-Newton matrix :math:`G` or the exact Hessian :math:`H`, and
:math:`M_t` the preconditioner built at :math:`x_t`):

1. Steihaug-CG on :math:`m_t(s) = g_t^\top s + \frac12 s^\top B_t s` in
   :math:`\|s\|_{M_t} \le \Delta_t`, stopped at
   :math:`\|g_t + B_t s\| \le \max(\eta_t \|g_t\|,\ \tfrac12\,\mathrm{gtol}\,\|g_0\|)` with the
   forcing term (``forcing="sqrt"``, default)
   :math:`\eta_t = \min(0.5, \sqrt{\|g_t\|/\|g_0\|})` (superlinear local convergence,
   Nocedal-Wright §7.1), or Eisenstat-Walker's choice 1 (``forcing="eisenstat-walker"``:
   :math:`\eta_t = |\,\|g_t\| - \|g_{t-1} + B_{t-1}s_{t-1}\|\,| / \|g_{t-1}\|`, safeguarded,
   capped at 0.5: loose while the model predicts the new gradient badly), or a fixed
   ``cg_tol``.  The floor :math:`\frac12\mathrm{gtol}\|g_0\|` stops CG from solving more
   accurately than the stopping test needs;
2. :math:`\rho_t = (f(x_t) - f(x_t + s)) / (-m_t(s))`;
3. :math:`\rho_t > \eta` (``eta``, default 0.15): accept; then
   :math:`\rho_t < 1/4 \Rightarrow \Delta \leftarrow \Delta/4`,
   :math:`\rho_t > 3/4` at the boundary :math:`\Rightarrow \Delta \leftarrow \min(2\Delta,
   \Delta_{\max})` (scipy's ``_trustregion.py`` rule);
4. :math:`\rho_t \le \eta`: instead of discarding the CG work, **backtrack along the step**
   (Nocedal & Yuan 1998, ``backtrack`` loss evaluations at most, see :func:`_backtrack`):
   trial :math:`\alpha` from quadratic interpolation of :math:`f(x_t + \alpha s)`, safeguarded
   to :math:`[\alpha/4, \alpha/2]`, accepted when the ratio of actual to model decrease
   along the ray exceeds :math:`\eta`; the radius becomes :math:`\alpha \|s\|_M`.  If no
   trial passes (or ``backtrack=0``) the step is rejected and
   :math:`\Delta \leftarrow \alpha\|s\|_M / 4` (:math:`\Delta/4` without backtracking);
5. after an accepted step, rebuild :math:`M`.

Why backtracking: on MovieLens with the exact Hessian the doubling rule keeps pushing
the radius just past the region where the quadratic model is good (the bilinear
:math:`p_u^\top q_i` terms make :math:`f` quartic along a step), so with plain rejection one
outer iteration in three or four was thrown away with its CG work (ml-latest-small,
rank 32: 25 of 91 iterations).  A loss evaluation costs a tenth to a fifteenth of a
Hessian-vector product, so one or two of them along the step recover those iterations
(0 rejected, 30% less work to ``gtol`` there; see ``bench/solver_curves.py``).

The radius is measured in the :math:`M`-norm (see :mod:`fastmf.solvers.steihaug`);
the default initial radius is :math:`\|M^{-1} g_0\|_M = \sqrt{g_0^\top M^{-1} g_0}`,
the length of the preconditioned steepest-descent step, which is scale-free.

Stopping
--------
``GTOL``: :math:`\|g_t\| \le` ``gtol`` :math:`\cdot \|g_0\|`; ``FTOL``: an accepted step
with :math:`(f_{t-1} - f_t) \le` ``ftol`` :math:`\cdot \max(|f_{t-1}|, |f_t|, 1)`;
``MAX_ITER`` (a :class:`ConvergenceWarning`); ``MAX_TIME``; ``CALLBACK``;
``EARLY_STOPPING`` (validation RMSE; the best parameters are returned);
``TRUST_RADIUS`` (the step no longer changes ``x`` in floating point);
``UNBOUNDED`` (sign loss with :math:`\lambda` below the bound, see
:func:`sign_loss_bound`; detected before any iteration); ``DIVERGED`` (non-finite
loss at the start).

Sign loss
---------
:math:`L = -\sum s_{ui} p_u^\top q_i + \frac12\lambda(\sum_u w_u\|p_u\|^2 + \sum_i w_i\|q_i\|^2)`
is unbounded below iff :math:`\lambda < \sigma_{\max}(W_u^{-1/2} S W_i^{-1/2})`
(substitute :math:`\tilde p_u = \sqrt{w_u} p_u`, :math:`\tilde q_i = \sqrt{w_i} q_i`; with
uniform weights this is :math:`\sigma_{\max}(S)`).  The driver computes that singular
value once (ARPACK on the sparse sign matrix) and returns status ``UNBOUNDED`` with a
message naming the smallest :math:`\lambda` that bounds it.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
import warnings
from typing import Any, Callable, Iterable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._packing import pack
from .._threading import thread_limit
from .._weights import describe_weighting, reg_exponent, row_weights
from .._validation import check_choice, check_nonnegative_float, check_positive_int
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
from .preconditioners import (
    DEFAULT_MAX_BLOCK_MEMORY,
    PRECONDITIONERS,
    ProblemStructure,
    make_preconditioner,
)
from .steihaug import CGStatus, dot64, steihaug_cg

__all__ = ["ConvergenceWarning", "newton_cg", "fit_newton_cg", "sign_loss_bound"]

logger = logging.getLogger("fastmf")


class ConvergenceWarning(UserWarning):
    """A solver stopped (iteration or time limit) before meeting its tolerance."""


HESSIANS = ("gauss-newton", "exact")
FORCING_RULES = ("sqrt", "eisenstat-walker")


# --------------------------------------------------------------------------- helpers
def sign_matrix_sparse(ratings) -> sp.csr_matrix:
    """Sparse ``S`` with :math:`s_{ui} = \\mathrm{sign}(r_{ui} - \\bar r_u)` (float64, CSR)."""
    vals = ratings.values.astype(np.float64)
    counts = ratings.user_counts
    sums = np.bincount(ratings.users, weights=vals, minlength=ratings.n_users)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    s = np.sign(vals - means[ratings.users])
    return sp.csr_matrix((s, ratings.items, ratings.user_indptr), shape=ratings.shape)


def sign_loss_bound(ratings, reg_weighting: str = "uniform") -> float:
    r"""Smallest :math:`\lambda` for which the sign loss is bounded below.

    :math:`\sigma_{\max}(W_u^{-1/2} S W_i^{-1/2})` with :math:`W` the diagonal of the
    row weights (:func:`fastmf._weights.row_weights`: ones for ``"uniform"``, the rating
    counts for ``"count"``, their square roots for ``"sqrt-count"``).  Computed with ARPACK (``svds``, deterministic
    start vector) on the sparse sign matrix, or densely when it has at most 10⁶ cells.
    """
    S = sign_matrix_sparse(ratings)
    if reg_exponent(reg_weighting) != 0.0:
        cu = row_weights(ratings.user_counts, reg_weighting)
        ci = row_weights(ratings.item_counts, reg_weighting)
        du = np.divide(1.0, np.sqrt(cu), out=np.zeros_like(cu), where=cu > 0)
        di = np.divide(1.0, np.sqrt(ci), out=np.zeros_like(ci), where=ci > 0)
        S = sp.diags(du) @ S @ sp.diags(di)
    m, n = S.shape
    if S.nnz == 0:
        return 0.0
    if m * n <= 1_000_000 or min(m, n) < 3:
        return float(np.linalg.norm(S.toarray(), 2))
    v0 = np.ones(min(m, n)) / math.sqrt(min(m, n))
    sigma = spla.svds(S, k=1, v0=v0, return_singular_vectors=False, tol=1e-10)
    return float(sigma[0])


def _check_optional_positive(value, name):
    if value is None:
        return None
    return check_nonnegative_float(value, name, strictly_positive=True)


def _resolve_hessp(objective, hessian):
    """Return (hessp(x, v) callable, hessian name)."""
    own = getattr(objective, "hessian", None)
    if hessian is None:
        return objective.hessp, (own if own is not None else "objective's")
    check_choice(hessian, "hessian", set(HESSIANS))
    if own == hessian:
        return objective.hessp, hessian
    try:
        params = inspect.signature(objective.hessp).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        params = {}
    if "hessian" in params:
        return (lambda x, v: objective.hessp(x, v, hessian=hessian)), hessian
    raise ValueError(
        f"hessian={hessian!r} differs from the objective's hessian={own!r} and its hessp "
        f"takes no 'hessian' argument: build the objective with hessian={hessian!r}"
    )


def _check_validation(validation, structure):
    if validation is None:
        return
    for attr in ("users", "items", "values", "n_users", "n_items"):
        if not hasattr(validation, attr):
            raise TypeError(f"validation must be a Ratings, got {type(validation).__name__}")
    if structure is not None and (validation.n_users, validation.n_items) != (structure.n_users, structure.n_items):
        raise ValueError(
            f"validation has shape ({validation.n_users}, {validation.n_items}) but the training "
            f"ratings have ({structure.n_users}, {structure.n_items}): build both in one code space "
            "(e.g. with fastmf.data.splits)"
        )


def _norm(v: np.ndarray) -> float:
    return math.sqrt(dot64(v, v))


def _ratio(f: float, f_new: float, predicted: float) -> float:
    """Actual over predicted decrease (``-inf`` for a non-finite trial loss)."""
    actual = f - f_new
    if not math.isfinite(f_new):
        return -math.inf
    if predicted > 0:
        return actual / predicted
    return -math.inf if actual < 0 else 0.0


def _backtrack(objective, x, s, f, f1, gs, sBs, eta, max_evals):
    r"""Backtrack along a rejected trust-region step (Nocedal & Yuan 1998).

    On :math:`\varphi(\alpha) = f(x + \alpha s)` with :math:`\varphi(0) = f`,
    :math:`\varphi'(0) = g^\top s < 0` and the last trial :math:`\varphi(\alpha_j)`, the next
    trial is the minimiser of the interpolating quadratic,
    :math:`\alpha_{j+1} = -g^\top s\,\alpha_j^2 / (2(\varphi(\alpha_j) - f - g^\top s\,\alpha_j))`,
    safeguarded to :math:`[\alpha_j/4, \alpha_j/2]` (:math:`\alpha_j/4` after a non-finite
    loss).  :math:`\alpha` is accepted when the same ratio test as the full step passes on
    the model along the ray,
    :math:`\rho(\alpha) = (f - \varphi(\alpha)) / -(\alpha g^\top s + \tfrac12\alpha^2 s^\top B s) > \eta`.

    Returns ``(alpha, f_alpha, n_evals, x_alpha or None, rho_alpha)``; ``x_alpha`` is None
    when no trial passed (``alpha`` is then the last one tried).
    """
    alpha, fa = 1.0, f1
    rho = -math.inf
    if not gs < 0:
        return alpha, fa, 0, None, rho
    for n in range(1, max_evals + 1):
        if math.isfinite(fa):
            denom = 2.0 * (fa - f - gs * alpha)
            a_new = -gs * alpha * alpha / denom if denom > 0 else 0.5 * alpha
            a_new = min(max(a_new, 0.25 * alpha), 0.5 * alpha)
        else:
            a_new = 0.25 * alpha
        alpha = a_new
        x_try = x + x.dtype.type(alpha) * s
        fa = float(objective.fun(x_try))
        rho = _ratio(f, fa, -(alpha * gs + 0.5 * alpha * alpha * sBs))
        if rho > eta and fa < f:
            return alpha, fa, n, x_try, rho
    return alpha, fa, max_evals, None, rho


# --------------------------------------------------------------------------- driver
def newton_cg(
    objective,
    x0: np.ndarray | None = None,
    *,
    gtol: float = 1e-5,
    ftol: float | None = None,
    max_iter: int = 100,
    max_time: float | None = None,
    preconditioner: str = "jacobi",
    hessian: str | None = None,
    initial_radius: float | None = None,
    max_radius: float | None = None,
    eta: float = 0.15,
    cg_tol: float | None = None,
    forcing: str = "sqrt",
    max_cg: int = 250,
    backtrack: int = 3,
    validation=None,
    early_stopping: int | None = None,
    min_delta: float = 1e-4,
    clip: tuple[float, float] | None = None,
    callbacks: Callable | Iterable[Callable] | None = None,
    progress: bool = True,
    random_state=None,
    n_threads: int | None = None,
    max_block_memory: int = DEFAULT_MAX_BLOCK_MEMORY,
    check_bounded: bool = True,
) -> SolverResult:
    r"""Minimise an MF objective by trust-region Newton-CG (see the module docstring).

    Parameters
    ----------
    objective : MFObjective
        Provides ``fun(x)``, ``jac(x)``, ``hessp(x, p)`` (and ``x0(random_state)`` when
        ``x0`` is None).  Preconditioners other than ``"none"`` and the sign-loss check
        also read ``ratings, rank, biases, reg, reg_bias, reg_weighting, loss, dtype, mu``.
    x0 : ndarray, optional
        Packed starting point ``[P, Q, b, c]`` (not modified); default
        ``objective.x0(random_state)``.
    gtol : float
        Relative gradient tolerance: stop when :math:`\|g\| \le \mathrm{gtol}\,\|g_0\|`.
    ftol : float, optional
        Relative loss-decrease tolerance of an accepted step; default ``1e-10`` for
        float64 objectives and ``1e-7`` for float32 ones (whose loss cannot resolve
        smaller relative changes reliably).  ``0`` disables it.
    max_iter : int
        Outer iterations (accepted or rejected steps).
    max_time : float, optional
        Wall-clock limit in seconds, checked after each iteration.
    preconditioner : {"jacobi", "block-jacobi", "none"}
        Default ``"jacobi"``: measured fastest in wall-clock time (``bench/solver_curves.py``;
        ml-latest-small and ML-10M-shaped synthetic data, rank 32: with the exact Hessian it
        reached L-BFGS-B's final loss 10x (ml-latest-small) and 3x (ML-10M@0.1) sooner than
        block-Jacobi).  Block-Jacobi needs fewer CG steps but rebuilding and applying the
        ``(m+n)`` Cholesky-factored ``K x K`` blocks costs more than the CG steps it saves
        (one rebuild ~10 Hessian-vector products, one apply ~2-3 on ml-latest-small, rank
        32).  Re-measured with backtracking (rank 32, count-weighted λ=0.1, float32, exact
        Hessian, one run): time to a loss within 1e-4 of the best, Jacobi 1.26 s vs
        block-Jacobi 3.65 s on ml-latest-small and 0.71 s vs 0.95 s on ml-100k; to
        ``gtol=1e-5`` 4.3 s vs 8.7 s (ml-latest-small) but 2.8 s vs 2.4 s (ml-100k).
    hessian : {"gauss-newton", "exact"}, optional
        Default: the objective's.
    initial_radius, max_radius : float, optional
        Trust radius (``M``-norm) at the start (default :math:`\|M^{-1}g_0\|_M`) and its
        cap (default unbounded).
    eta : float
        Acceptance threshold on :math:`\rho`, in ``[0, 0.25)``.
    cg_tol : float, optional
        Fixed relative CG tolerance in ``(0, 1)`` instead of the forcing sequence.
    forcing : {"sqrt", "eisenstat-walker"}
        Forcing sequence of the CG tolerance (module docstring, step 1).  ``"sqrt"``
        (default) reaches ``gtol`` reliably; ``"eisenstat-walker"`` spends 20-40% fewer
        CG steps on MovieLens but, being looser near the end, often stops on ``ftol`` in
        float32 before ``gtol``.
    max_cg : int
        CG iterations per outer iteration.
    backtrack : int
        Loss evaluations along a step that fails the ratio test before rejecting it
        (module docstring, step 4); ``0`` rejects at once (classic trust region).
    validation : Ratings, optional
        Held-out ratings in the training code space; RMSE recorded per iteration.
    early_stopping : int, optional
        Patience (accepted iterations without an improvement of ``min_delta`` in
        validation RMSE); needs ``validation``.
    min_delta : float
    clip : (low, high), optional
        Clip predictions before scoring the validation set.
    callbacks : callable or list of callables
        Called with each iteration's :class:`IterationRecord`; ``True`` stops the run.
    progress : bool
        Show a tqdm progress bar.
    random_state : None, int or Generator
        Seed of the default starting point.
    n_threads : int, optional
        Threads for the preconditioner kernels (and BLAS), scoped to the call.
    max_block_memory : int
        Byte budget of the block-Jacobi factors (see
        :mod:`fastmf.solvers.preconditioners`).
    check_bounded : bool
        For the sign loss, check boundedness first (one sparse SVD).

    Returns
    -------
    SolverResult
        With ``x, fun, grad_norm, nit, n_cg, nfev, njev, nhessp, status, success,
        message, history, best_iteration, elapsed`` and ``mu, rank, biases,
        preconditioner, hessian, n_rejected, n_backtracks``.  History records have
        ``iteration, loss, grad_norm, n_cg, cg_status, radius, step_norm, rho, accepted,
        step_scale, backtracks, val_rmse, elapsed`` (``step_scale`` is the accepted
        fraction :math:`\alpha` of the CG step, 1 without backtracking; ``rho`` is then
        the ratio along the backtracked step; ``step_norm`` is :math:`\alpha\|s\|_M`).

    Raises
    ------
    ValueError, TypeError
        Bad parameters, before any work.

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` or ``max_time`` ends the run before ``gtol``/``ftol``.
    """
    # ---------------------------------------------------------------- validation
    for meth in ("fun", "jac", "hessp"):
        if not callable(getattr(objective, meth, None)):
            raise TypeError(f"objective must have a callable {meth}(), got {type(objective).__name__}")
    gtol = check_nonnegative_float(gtol, "gtol")
    if ftol is not None:
        ftol = check_nonnegative_float(ftol, "ftol")
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    max_time = _check_optional_positive(max_time, "max_time")
    check_choice(preconditioner, "preconditioner", set(PRECONDITIONERS))
    initial_radius = _check_optional_positive(initial_radius, "initial_radius")
    max_radius = _check_optional_positive(max_radius, "max_radius")
    if initial_radius is not None and max_radius is not None and initial_radius > max_radius:
        raise ValueError(f"initial_radius={initial_radius} exceeds max_radius={max_radius}")
    eta = check_nonnegative_float(eta, "eta")
    if not eta < 0.25:
        raise ValueError(f"eta must be in [0, 0.25), got {eta}")
    if cg_tol is not None:
        cg_tol = check_nonnegative_float(cg_tol, "cg_tol", strictly_positive=True)
        if not cg_tol < 1:
            raise ValueError(f"cg_tol must be in (0, 1), got {cg_tol}")
    max_cg = check_positive_int(max_cg, "max_cg")
    check_choice(forcing, "forcing", set(FORCING_RULES))
    backtrack = check_positive_int(backtrack, "backtrack", minimum=0)
    if early_stopping is not None:
        early_stopping = check_positive_int(early_stopping, "early_stopping")
        if validation is None:
            raise ValueError("early_stopping needs a validation set")
    min_delta = check_nonnegative_float(min_delta, "min_delta")
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    if not isinstance(max_block_memory, numbers.Integral) or max_block_memory <= 0:
        raise ValueError(f"max_block_memory must be a positive integer of bytes, got {max_block_memory!r}")
    callback_list = CallbackList(callbacks)
    hessp, hessian_name = _resolve_hessp(objective, hessian)

    structure = None
    if preconditioner != "none" or (check_bounded and getattr(objective, "loss", "squared") == "sign") or (
        validation is not None
    ):
        structure = ProblemStructure.from_objective(objective) if hasattr(objective, "ratings") else None
        if structure is None and preconditioner != "none":
            raise TypeError(
                f"preconditioner={preconditioner!r} needs an MFObjective-like objective exposing "
                "ratings, rank, biases, reg; use preconditioner='none' for a generic objective"
            )
    loss_name = getattr(objective, "loss", "squared")
    if loss_name == "sign" and hessian_name == "gauss-newton":
        raise ValueError("the sign loss is bilinear: its Gauss-Newton matrix is only the regulariser; use hessian='exact'")
    _check_validation(validation, structure)
    if validation is not None and structure is None:
        raise TypeError("validation needs an MFObjective-like objective (rank, biases, mu)")

    dtype = np.dtype(getattr(objective, "dtype", np.float64))
    if x0 is None:
        if not callable(getattr(objective, "x0", None)):
            raise TypeError("x0 is None and the objective has no x0(random_state) method")
        x = np.array(objective.x0(random_state), dtype=dtype, copy=True)
    else:
        x = np.array(x0, dtype=dtype, copy=True)
        if x.ndim != 1:
            raise ValueError(f"x0 must be 1-D, got shape {x.shape}")
        n_expected = getattr(objective, "n_params", None)
        if n_expected is not None and x.shape[0] != n_expected:
            raise ValueError(f"x0 has length {x.shape[0]}, the objective has {n_expected} parameters")
        if not np.isfinite(x).all():
            raise ValueError("x0 contains NaN or inf")
    if ftol is None:
        ftol = 1e-7 if dtype == np.float32 else 1e-10
    max_radius_v = math.inf if max_radius is None else max_radius

    mu = float(getattr(objective, "mu", 0.0))
    rank = getattr(objective, "rank", None)
    biases = getattr(objective, "biases", None)
    extra = dict(mu=mu, rank=rank, biases=biases, preconditioner=preconditioner, hessian=hessian_name)

    with thread_limit(n_threads) as n_thr:
        return _run(
            objective, x, hessp, structure, validation, callback_list, extra,
            gtol=gtol, ftol=ftol, max_iter=max_iter, max_time=max_time, preconditioner=preconditioner,
            initial_radius=initial_radius, max_radius=max_radius_v, eta=eta, cg_tol=cg_tol,
            max_cg=max_cg, forcing_rule=forcing, backtrack=backtrack, early_stopping=early_stopping, min_delta=min_delta, clip=clip,
            progress=bool(progress), n_threads=n_thr, max_block_memory=int(max_block_memory),
            check_bounded=check_bounded and loss_name == "sign",
        )


def _run(objective, x, hessp, structure, validation, callback_list, extra, *, gtol, ftol, max_iter,
         max_time, preconditioner, initial_radius, max_radius, eta, cg_tol, max_cg, forcing_rule, backtrack, early_stopping,
         min_delta, clip, progress, n_threads, max_block_memory, check_bounded) -> SolverResult:
    clock = Stopwatch()
    counts = dict(nfev=0, njev=0, nhessp=0, n_cg=0)
    history: list[IterationRecord] = []

    def result(status: Status, message: str, x, f, gnorm, nit, best_iteration=None, n_rejected=0,
               n_backtracks=0):
        res = finish_result(
            x=x, fun=float(f), grad_norm=float(gnorm), nit=nit, status=status, message=message,
            history=history, best_iteration=best_iteration, elapsed=clock(), n_rejected=n_rejected,
            n_backtracks=n_backtracks,
            **counts, **extra,
        )
        level = logging.WARNING if status < 0 else logging.INFO
        logger.log(level, "newton_cg: %s (nit=%d, loss=%.6g, |g|=%.3g, n_cg=%d, %.2fs)",
                   message, nit, res.fun, res.grad_norm, counts["n_cg"], res.elapsed)
        return res

    # ---- sign loss: bounded below?
    if check_bounded and structure is not None:
        bound = sign_loss_bound(structure.ratings, structure.reg_weighting)
        if structure.reg < bound:
            msg = (
                f"the sign loss is unbounded below because reg={structure.reg:g} < "
                f"sigma_max(S)={bound:.6g} (largest singular value of the "
                f"{'' if reg_exponent(structure.reg_weighting) == 0 else describe_weighting(structure.reg_weighting) + '-weighted '}sign matrix); "
                f"use reg >= {bound:.6g}"
            )
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            f = objective.fun(x)
            counts["nfev"] += 1
            return result(Status.UNBOUNDED, msg, x, f, math.nan, 0)

    f = float(objective.fun(x))
    g = np.asarray(objective.jac(x), dtype=x.dtype)
    counts["nfev"] += 1
    counts["njev"] += 1
    gnorm = g0norm = _norm(g)
    if not (math.isfinite(f) and math.isfinite(gnorm)):
        return result(Status.DIVERGED, "non-finite loss or gradient at the starting point", x, f, gnorm, 0)

    prec = make_preconditioner(preconditioner, structure, n_threads, max_block_memory)
    prec.update(x)
    precondition = None if prec.is_identity else prec.apply

    monitor = ValidationMonitor(validation, extra["mu"], early_stopping, min_delta, clip)
    val_rmse = None
    if monitor.active:
        val_rmse, _ = monitor.update(0, *structure.unpack(x))

    if initial_radius is None:
        Mg = g if precondition is None else precondition(g)
        radius = math.sqrt(max(dot64(g, Mg), 0.0))
        if not radius > 0:
            radius = 1.0
        radius = min(radius, max_radius)
    else:
        radius = initial_radius
    history.append(IterationRecord(
        iteration=0, loss=f, grad_norm=gnorm, n_cg=0, cg_status=None, radius=radius, step_norm=0.0,
        rho=None, accepted=True, step_scale=1.0, backtracks=0, val_rmse=val_rmse, elapsed=clock(),
    ))
    logger.debug("newton_cg start: loss=%.8g |g|=%.4g radius=%.4g preconditioner=%s", f, gnorm, radius, prec.name)

    if gnorm <= gtol * g0norm or gnorm == 0.0:
        return result(Status.GTOL, "gradient norm below gtol at the starting point", x, f, gnorm, 0)

    bar = make_progress(max_iter, progress, f"newton-cg[{prec.name}]")
    status = Status.MAX_ITER
    message = f"maximum number of iterations ({max_iter}) reached"
    n_rejected = 0
    n_backtracks = 0
    ew_eta = 0.5
    it = 0
    try:
        for it in range(1, max_iter + 1):
            if cg_tol is not None:
                forcing = cg_tol
            elif forcing_rule == "eisenstat-walker":
                forcing = ew_eta
            else:
                forcing = min(0.5, math.sqrt(gnorm / g0norm))
            # never ask CG for more than the stopping test needs: once the model gradient is
            # below gtol·‖g0‖/2 the new point very likely satisfies ‖g‖ <= gtol·‖g0‖
            cg_abs_tol = max(forcing * gnorm, 0.5 * gtol * g0norm)

            def Bv(v, x=x):
                counts["nhessp"] += 1
                return np.asarray(hessp(x, v), dtype=x.dtype)

            sub = steihaug_cg(g, Bv, radius, tol=cg_abs_tol, max_iter=max_cg, precondition=precondition)
            counts["n_cg"] += sub.n_iter
            predicted = -sub.model_change
            x_new = x + sub.step
            f_new = float(objective.fun(x_new))
            counts["nfev"] += 1
            rho = _ratio(f, f_new, predicted)
            accepted = rho > eta
            unchanged = np.array_equal(x_new, x)
            alpha = 1.0
            n_back = 0
            if accepted:
                if rho < 0.25:
                    radius = 0.25 * radius
                elif rho > 0.75 and sub.hits_boundary:
                    radius = min(2.0 * radius, max_radius)
            elif backtrack > 0 and not unchanged:
                # Nocedal-Yuan: keep the CG direction, backtrack along it instead of discarding it
                gs = dot64(g, sub.step)
                sBs = 2.0 * (sub.model_change - gs)
                alpha, f_new, n_back, x_new, rho_bt = _backtrack(
                    objective, x, sub.step, f, f_new, gs, sBs, eta, backtrack)
                counts["nfev"] += n_back
                if x_new is not None:
                    accepted = True
                    rho = rho_bt
                    radius = min(alpha * sub.step_norm_m, max_radius)
                else:
                    radius = 0.25 * alpha * sub.step_norm_m
            else:
                radius = 0.25 * radius
            if not accepted and not radius > 0:
                radius = 0.25 * sub.step_norm_m if sub.step_norm_m > 0 else 0.0
            n_backtracks += n_back
            if accepted:
                f_prev = f
                x = x_new
                f = f_new
                g = np.asarray(objective.jac(x), dtype=x.dtype)
                counts["njev"] += 1
                gnorm_prev = gnorm
                gnorm = _norm(g)
                if alpha == 1.0:
                    # Eisenstat-Walker choice 1: how well the model predicted the new gradient
                    eta_new = abs(gnorm - sub.residual_norm) / gnorm_prev
                    safe = ew_eta ** ((1 + math.sqrt(5)) / 2)
                    if safe > 0.1:
                        eta_new = max(eta_new, safe)
                    ew_eta = min(eta_new, 0.5)
                prec.update(x)
                if monitor.active:
                    val_rmse, es_stop = monitor.update(it, *structure.unpack(x))
                else:
                    es_stop = False
            else:
                n_rejected += 1
                es_stop = False
            rec = IterationRecord(
                iteration=it, loss=f, grad_norm=gnorm, n_cg=sub.n_iter, cg_status=sub.status.name.lower(),
                radius=radius, step_norm=alpha * sub.step_norm_m, rho=rho, accepted=accepted,
                step_scale=alpha, backtracks=n_back, val_rmse=val_rmse, elapsed=clock(),
            )
            history.append(rec)
            logger.debug(
                "it %d: loss=%.10g |g|=%.4g cg=%d (%s) |s|_M=%.3g alpha=%.3g rho=%.3g radius=%.3g %s",
                it, f, gnorm, sub.n_iter, rec.cg_status, sub.step_norm_m, alpha, rho, radius,
                "accepted" if accepted else "rejected",
            )
            bar.update(1)
            bar.set_postfix(loss=f"{f:.6g}", gnorm=f"{gnorm:.3g}", cg=sub.n_iter, refresh=False)
            stop_cb = callback_list(rec)
            # order: convergence first, then user stops, then limits
            if accepted and gnorm <= gtol * g0norm:
                status, message = Status.GTOL, f"relative gradient norm {gnorm / g0norm:.3g} <= gtol={gtol:g}"
                break
            if accepted and (f_prev - f) <= ftol * max(abs(f_prev), abs(f), 1.0):
                status = Status.FTOL
                message = f"relative loss decrease {(f_prev - f) / max(abs(f_prev), abs(f), 1.0):.3g} <= ftol={ftol:g}"
                break
            if es_stop:
                status = Status.EARLY_STOPPING
                message = monitor.stop_message()
                break
            if stop_cb:
                status, message = Status.CALLBACK, "stopped by a callback"
                break
            if (not accepted and unchanged) or radius < 1e-300:
                status = Status.TRUST_RADIUS
                message = ("trust radius too small: the step no longer changes x in floating point "
                           f"(relative gradient norm {gnorm / g0norm:.3g}, gtol={gtol:g})")
                break
            if max_time is not None and clock() >= max_time:
                status, message = Status.MAX_TIME, f"time limit max_time={max_time:g}s reached"
                break
    finally:
        bar.close()

    best_iteration = monitor.best_iteration if monitor.active else None
    if status is Status.EARLY_STOPPING and monitor.best_params is not None:
        x = pack(*monitor.best_params, dtype=x.dtype)
        f = float(objective.fun(x))
        g = np.asarray(objective.jac(x), dtype=x.dtype)
        counts["nfev"] += 1
        counts["njev"] += 1
        gnorm = _norm(g)
    if status in (Status.MAX_ITER, Status.MAX_TIME):
        warnings.warn(
            f"newton_cg did not converge: {message}; relative gradient norm {gnorm / g0norm:.3g} "
            f"(gtol={gtol:g})", ConvergenceWarning, stacklevel=3,
        )
    return result(status, message, x, f, gnorm, it, best_iteration, n_rejected, n_backtracks)


def fit_newton_cg(ratings, rank: int = 32, *, reg: float = 0.1, reg_bias: float | None = None,
                  biases: bool = True, loss: str = "squared", reg_weighting: str = "uniform",
                  dtype=np.float32, hessian: str = "gauss-newton", mu: float | None = None,
                  n_threads: int | None = None, x0=None, random_state=None, **kwargs: Any) -> SolverResult:
    """Build an :class:`~fastmf.objective.MFObjective` on ``ratings`` and run :func:`newton_cg`.

    ``kwargs`` go to :func:`newton_cg` (``gtol``, ``max_iter``, ``preconditioner``,
    ``validation``, ``early_stopping``, ``callbacks``, ``progress``, ...).  This is the
    entry point with the same shape as :func:`fastmf.solvers.als.als`.
    """
    from ..objective import MFObjective

    objective = MFObjective(ratings, rank, reg=reg, reg_bias=reg_bias, biases=biases, loss=loss,
                            reg_weighting=reg_weighting, dtype=dtype, hessian=hessian, mu=mu,
                            n_threads=n_threads)
    return newton_cg(objective, x0, random_state=random_state, n_threads=n_threads, **kwargs)
