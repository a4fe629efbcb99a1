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
``GTOL``: :math:`\|g_t\| \le` ``gtol`` :math:`\cdot \|g_0\|`; ``FTOL``: ``ftol_iter``
consecutive accepted steps with :math:`(f_{t-1} - f_t) \le` ``ftol``
:math:`\cdot \max(|f_{t-1}|, |f_t|, 1)` (the loss has stalled: float32 defaults
``ftol=2e-4``, ``ftol_iter=3``, with :math:`\|g_t\| \le 10^{-2}\|g_0\|`; float64 ``1e-10``,
``1``; see ``docs/stopping.md``);
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

import logging
import math
import numbers
import warnings
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from .._packing import pack
from .._validation import check_choice, check_nonnegative_float, check_positive_int
from .._weights import describe_weighting, reg_exponent, row_weights
from ..backends.local import make_local_backend
from ..exceptions import ConvergenceWarning
from ..kernels.reductions import dot64
from ._base import UNSET, IterativeSolver, RunOptions, SolverResult, Status, check_validation, renamed, run_iterations
from .preconditioners import DEFAULT_MAX_BLOCK_MEMORY, PRECONDITIONERS
from .steihaug import steihaug_cg

__all__ = ["ConvergenceWarning", "newton_cg", "sign_loss_bound", "NewtonCG"]

if TYPE_CHECKING:  # imported on use (sign loss only): a fit does not import scipy.sparse
    import scipy.sparse as sp

logger = logging.getLogger("fastmf")


HESSIANS = ("gauss-newton", "exact")
#: Default ``ftol`` / ``ftol_iter`` (stalled loss) of float32 fits: three consecutive steps that
#: each lower the objective by under 0.02 % move the training RMSE by under ~1e-4 a step, below
#: what a held-out RMSE resolves; on ml-latest-small and the ml-100k folds the test RMSE is
#: unchanged to 1e-4 against 1e-5 (and 1e-7), at half the iterations (``docs/stopping.md``).
FTOL_FLOAT32, FTOL_ITER_FLOAT32, FTOL_FLOAT64 = 2e-4, 3, 1e-10
#: With ``ftol_iter > 1`` the stall also needs :math:`\|g\| \le 10^{-2}\|g_0\|`: a slow phase of
#: the trust region far from a minimum (small steps, small decreases) is not a stall.
STALL_GTOL = 1e-2
FORCING_RULES = ("sqrt", "eisenstat-walker")


# --------------------------------------------------------------------------- helpers
def sign_matrix_sparse(ratings) -> sp.csr_matrix:
    """Sparse ``S`` with :math:`s_{ui} = \\mathrm{sign}(r_{ui} - \\bar r_u)` (float64, CSR)."""
    vals = ratings.values.astype(np.float64)
    counts = ratings.user_counts
    sums = np.bincount(ratings.users, weights=vals, minlength=ratings.n_users)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    s = np.sign(vals - means[ratings.users])
    import scipy.sparse as sp

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
        import scipy.sparse as sp

        S = sp.diags(du) @ S @ sp.diags(di)
    m, n = S.shape
    if S.nnz == 0:
        return 0.0
    if m * n <= 1_000_000 or min(m, n) < 3:
        return float(np.linalg.norm(S.toarray(), 2))
    import scipy.sparse.linalg as spla

    v0 = np.ones(min(m, n)) / math.sqrt(min(m, n))
    sigma = spla.svds(S, k=1, v0=v0, return_singular_vectors=False, tol=1e-10)
    return float(sigma[0])


def _check_optional_positive(value, name):
    if value is None:
        return None
    return check_nonnegative_float(value, name, strictly_positive=True)


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
    tol: float = 1e-5,
    ftol: float | None = None,
    ftol_iter: int | None = None,
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
    early_stopping: int | str | None = "auto",
    min_delta: float = 1e-4,
    clip: tuple[float, float] | None = None,
    callbacks: Callable | Iterable[Callable] | None = None,
    progress: bool = True,
    random_state=None,
    n_threads: int | None = None,
    max_block_memory: int = DEFAULT_MAX_BLOCK_MEMORY,
    check_bounded: bool = True,
    gtol=UNSET,
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
    tol : float
        Relative gradient tolerance: stop when :math:`\|g\| \le \mathrm{tol}\,\|g_0\|`
        (``gtol`` in the module docstring; ``gtol=`` is its deprecated name).
    ftol : float, optional
        Relative loss-decrease tolerance of an accepted step; default ``1e-10`` for
        float64 objectives and ``2e-4`` for float32 ones.  ``0`` disables it.
    ftol_iter : int >= 1, optional
        Stop (``FTOL``) after this many consecutive accepted steps whose relative loss
        decrease is at most ``ftol``; default 3 for float32, 1 for float64.  With
        ``ftol_iter > 1`` the gradient must also have dropped to ``1e-2`` of its start
        (a slow phase of the trust region far from a minimum is not a stall).  The float32
        default (three steps each lowering the loss by under 0.02 %) ends a default
        ml-latest-small fit near iteration 35 instead of 66 (``ftol=1e-5``) or 77
        (``ftol=1e-7``) at no cost in test RMSE: the late iterations take 10-40 CG steps
        each and move the test RMSE by less than 1e-4 (``docs/stopping.md``,
        ``bench/stopping.py``).  Earlier float32 defaults: ``ftol=1e-5`` (3 steps,
        ``1e-3`` gradient guard), before it ``ftol=1e-7`` after one step.
    max_iter : int
        Outer iterations (accepted or rejected steps).
    max_time : float, optional
        Wall-clock limit in seconds, checked after each iteration (shared run interface).
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
    validation, early_stopping, min_delta, clip, callbacks, progress
        The shared run interface (:mod:`fastmf.solvers._base`); ``early_stopping`` counts
        accepted iterations.  ``early_stopping="auto"`` (default): with a ``validation`` set,
        stop after 5 accepted iterations without a validation-RMSE improvement of
        ``min_delta`` (1e-4) and return the best iterate; ``None``: only record the RMSE.
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
    tol, tol_name = renamed("newton_cg", "tol", tol, 1e-5, "gtol", gtol)
    return run_iterations(*_make_solver(**locals()))


def _make_solver(*, objective, x0, tol, tol_name, gtol, ftol, ftol_iter, max_iter, max_time, preconditioner, hessian,
                 initial_radius, max_radius, eta, cg_tol, forcing, max_cg, backtrack, validation, early_stopping,
                 min_delta, clip, callbacks, progress, random_state, n_threads, max_block_memory, check_bounded):
    """Validate :func:`newton_cg`'s arguments (before any work); return ``(NewtonCG solver, RunOptions)``."""
    for meth in ("fun", "jac", "hessp"):
        if not callable(getattr(objective, meth, None)):
            raise TypeError(f"objective must have a callable {meth}(), got {type(objective).__name__}")
    opts = _check_options(tol=tol, tol_name=tol_name, ftol=ftol, ftol_iter=ftol_iter, preconditioner=preconditioner,
                          initial_radius=initial_radius, max_radius=max_radius, eta=eta, cg_tol=cg_tol,
                          max_cg=max_cg, forcing=forcing, backtrack=backtrack, max_block_memory=max_block_memory)
    run = RunOptions(max_iter=max_iter, max_time=max_time, callbacks=callbacks, progress=progress,
                     validation=validation, early_stopping=early_stopping, min_delta=min_delta, clip=clip,
                     n_threads=n_threads).check(min_iter=0)
    backend = make_local_backend(objective)
    problem = backend.problem
    hessian_name = _check_hessian(objective, problem, hessian)
    if validation is not None and problem is None:
        raise TypeError("validation needs an MFObjective-like objective (rank, biases, mu)")
    if problem is not None:
        check_validation(validation, problem.n_users, problem.n_items)
    x = _start(objective, problem, x0, random_state)
    if opts["ftol"] is None:
        opts["ftol"] = FTOL_FLOAT32 if x.dtype == np.float32 else FTOL_FLOAT64
    if opts["ftol_iter"] is None:
        opts["ftol_iter"] = FTOL_ITER_FLOAT32 if x.dtype == np.float32 else 1
    solver = NewtonCG(backend, x, hessian_name, check_bounded=check_bounded, **opts)
    return solver, run


def _check_options(*, tol, tol_name, ftol, ftol_iter, preconditioner, initial_radius, max_radius, eta, cg_tol, max_cg,
                   forcing, backtrack, max_block_memory) -> dict:
    """Validate newton_cg's own options (ValueError/TypeError naming the parameter)."""
    tol = check_nonnegative_float(tol, tol_name)
    if ftol is not None:
        ftol = check_nonnegative_float(ftol, "ftol")
    if ftol_iter is not None:
        ftol_iter = check_positive_int(ftol_iter, "ftol_iter")
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
    if not isinstance(max_block_memory, numbers.Integral) or max_block_memory <= 0:
        raise ValueError(f"max_block_memory must be a positive integer of bytes, got {max_block_memory!r}")
    return dict(gtol=tol, ftol=ftol, ftol_iter=ftol_iter, preconditioner=preconditioner, initial_radius=initial_radius,
                max_radius=math.inf if max_radius is None else max_radius, eta=eta, cg_tol=cg_tol, max_cg=max_cg,
                forcing_rule=forcing, backtrack=backtrack, max_block_memory=int(max_block_memory))


def _check_hessian(objective, problem, hessian) -> str:
    """The Hessian the run uses: the objective's (only an MFObjective declares one)."""
    own = objective.hessian if problem is not None else None
    if hessian is not None:
        check_choice(hessian, "hessian", set(HESSIANS))
        if own != hessian:
            raise ValueError(
                f"hessian={hessian!r} differs from the objective's hessian={own!r}: "
                f"build the objective with hessian={hessian!r}"
            )
    if problem is not None and problem.loss == "sign" and own == "gauss-newton":
        raise ValueError("the sign loss is bilinear: its Gauss-Newton matrix is only the regulariser; "
                         "use hessian='exact'")
    return own if own is not None else "objective's"


def _start(objective, problem, x0, random_state) -> np.ndarray:
    """A private copy of the starting point in the problem's dtype (checked)."""
    dtype = problem.dtype if problem is not None else np.dtype(np.float64)
    if x0 is None:
        if not callable(getattr(objective, "x0", None)):
            raise TypeError("x0 is None and the objective has no x0(random_state) method")
        return np.array(objective.x0(random_state), dtype=dtype, copy=True)
    x = np.array(x0, dtype=dtype, copy=True)
    if x.ndim != 1:
        raise ValueError(f"x0 must be 1-D, got shape {x.shape}")
    if problem is not None and x.shape[0] != problem.n_params:
        raise ValueError(f"x0 has length {x.shape[0]}, the objective has {problem.n_params} parameters")
    if not np.isfinite(x).all():
        raise ValueError("x0 contains NaN or inf")
    return x


class NewtonCG(IterativeSolver):
    """The trust-region Newton-CG iteration (module docstring) as hooks of :func:`run_iterations`."""

    name = "newton_cg"

    def __init__(self, backend, x, hessian, *, gtol, ftol, ftol_iter, preconditioner, initial_radius, max_radius, eta,
                 cg_tol, max_cg, forcing_rule, backtrack, max_block_memory, check_bounded):
        self.backend, self.problem, self.x, self.hessian = backend, backend.problem, x, hessian
        self.gtol, self.ftol, self.eta, self.cg_tol, self.max_cg = gtol, ftol, eta, cg_tol, max_cg
        self.ftol_iter, self.n_stalled = ftol_iter, 0
        self.preconditioner_name, self.max_block_memory = preconditioner, max_block_memory
        self.initial_radius, self.max_radius = initial_radius, max_radius
        self.forcing_rule, self.backtrack = forcing_rule, backtrack
        self.check_bounded = check_bounded and self.problem is not None and self.problem.loss == "sign"
        self.mu = self.problem.mu if self.problem is not None else 0.0
        self.counts = dict(nfev=0, njev=0, nhessp=0, n_cg=0)
        self.n_rejected = self.n_backtracks = 0
        self.ew_eta = 0.5
        self.f = math.nan
        self.gnorm = math.nan

    # ---- evaluations (counted)
    def _fun(self, x) -> float:
        self.counts["nfev"] += 1
        return float(self.backend.loss(x))

    def _grad(self, x) -> np.ndarray:
        self.counts["njev"] += 1
        return np.asarray(self.backend.gradient(x), dtype=x.dtype)

    def _Bv(self, v):
        self.counts["nhessp"] += 1
        return np.asarray(self.backend.hessp(self.x, v), dtype=self.x.dtype)

    def params(self):
        return self.problem.unpack(self.x)

    def setup(self):
        x = self.x
        if self.check_bounded:
            early = self._check_bounded()
            if early is not None:
                return early
        self.f = self._fun(x)
        self.g = self._grad(x)
        self.gnorm = self.g0norm = _norm(self.g)
        if not (math.isfinite(self.f) and math.isfinite(self.gnorm)):
            return Status.DIVERGED, "non-finite loss or gradient at the starting point"
        self.prec = self.backend.preconditioner(self.preconditioner_name, self.max_block_memory, self.n_threads)
        self.prec.update(x)
        self.precondition = None if self.prec.is_identity else self.prec.apply
        if self.initial_radius is None:
            Mg = self.g if self.precondition is None else self.precondition(self.g)
            radius = math.sqrt(max(dot64(self.g, Mg), 0.0))
            self.radius = min(radius if radius > 0 else 1.0, self.max_radius)
        else:
            self.radius = self.initial_radius
        self.desc = f"newton-cg[{self.prec.name}]"
        return None

    def _check_bounded(self):
        p = self.problem
        bound = self.backend.sign_loss_bound()
        if not p.reg < bound:
            return None
        weighted = "" if reg_exponent(p.reg_weighting) == 0 else describe_weighting(p.reg_weighting) + "-weighted "
        msg = (f"the sign loss is unbounded below because reg={p.reg:g} < sigma_max(S)={bound:.6g} (largest "
               f"singular value of the {weighted}sign matrix); use reg >= {bound:.6g}")
        warnings.warn(msg, RuntimeWarning, stacklevel=5)
        self.f = self._fun(self.x)
        return Status.UNBOUNDED, msg

    def initial_record(self):
        logger.debug("newton_cg start: loss=%.8g |g|=%.4g radius=%.4g preconditioner=%s", self.f, self.gnorm,
                     self.radius, self.prec.name)
        return dict(loss=self.f, grad_norm=self.gnorm, n_cg=0, cg_status=None, radius=self.radius, step_norm=0.0,
                    rho=None, accepted=True, step_scale=1.0, backtracks=0)

    def check_start(self):
        if self.gnorm <= self.gtol * self.g0norm or self.gnorm == 0.0:
            return Status.GTOL, "gradient norm below gtol at the starting point"
        return None

    def _forcing(self) -> float:
        if self.cg_tol is not None:
            return self.cg_tol
        if self.forcing_rule == "eisenstat-walker":
            return self.ew_eta
        return min(0.5, math.sqrt(self.gnorm / self.g0norm))

    def step(self, it):
        x, f, g, radius = self.x, self.f, self.g, self.radius
        # never ask CG for more than the stopping test needs: once the model gradient is
        # below gtol·‖g0‖/2 the new point very likely satisfies ‖g‖ <= gtol·‖g0‖
        cg_abs_tol = max(self._forcing() * self.gnorm, 0.5 * self.gtol * self.g0norm)
        sub = steihaug_cg(g, self._Bv, radius, tol=cg_abs_tol, max_iter=self.max_cg, precondition=self.precondition)
        self.counts["n_cg"] += sub.n_iter
        x_new = x + sub.step
        f_new = self._fun(x_new)
        rho = _ratio(f, f_new, -sub.model_change)
        accepted = rho > self.eta
        self.unchanged = np.array_equal(x_new, x)
        alpha, n_back = 1.0, 0
        if accepted:
            if rho < 0.25:
                radius = 0.25 * radius
            elif rho > 0.75 and sub.hits_boundary:
                radius = min(2.0 * radius, self.max_radius)
        elif self.backtrack > 0 and not self.unchanged:
            # Nocedal-Yuan: keep the CG direction, backtrack along it instead of discarding it
            gs = dot64(g, sub.step)
            sBs = 2.0 * (sub.model_change - gs)
            alpha, f_new, n_back, x_new, rho_bt = _backtrack(_Counted(self), x, sub.step, f, f_new, gs, sBs,
                                                             self.eta, self.backtrack)
            if x_new is not None:
                accepted, rho = True, rho_bt
                radius = min(alpha * sub.step_norm_m, self.max_radius)
            else:
                radius = 0.25 * alpha * sub.step_norm_m
        else:
            radius = 0.25 * radius
        if not accepted and not radius > 0:
            radius = 0.25 * sub.step_norm_m if sub.step_norm_m > 0 else 0.0
        self.n_backtracks += n_back
        self.radius, self.f_prev = radius, f
        if accepted:
            self._accept(x_new, f_new, sub, alpha)
        else:
            self.n_rejected += 1
        rec = dict(loss=self.f, grad_norm=self.gnorm, n_cg=sub.n_iter, cg_status=sub.status.name.lower(),
                   radius=radius, step_norm=alpha * sub.step_norm_m, rho=rho, accepted=accepted, step_scale=alpha,
                   backtracks=n_back)
        logger.debug("it %d: loss=%.10g |g|=%.4g cg=%d (%s) |s|_M=%.3g alpha=%.3g rho=%.3g radius=%.3g %s", it,
                     self.f, self.gnorm, sub.n_iter, rec["cg_status"], sub.step_norm_m, alpha, rho, radius,
                     "accepted" if accepted else "rejected")
        return rec

    def _accept(self, x_new, f_new, sub, alpha):
        self.x, self.f = x_new, f_new
        self.g = self._grad(x_new)
        gnorm_prev, self.gnorm = self.gnorm, _norm(self.g)
        if alpha == 1.0:
            # Eisenstat-Walker choice 1: how well the model predicted the new gradient
            eta_new = abs(self.gnorm - sub.residual_norm) / gnorm_prev
            safe = self.ew_eta ** ((1 + math.sqrt(5)) / 2)
            if safe > 0.1:
                eta_new = max(eta_new, safe)
            self.ew_eta = min(eta_new, 0.5)
        self.prec.update(x_new)

    def scored(self, fields):
        return fields["accepted"]

    def postfix(self, rec):
        return dict(loss=f"{rec['loss']:.6g}", gnorm=f"{rec['grad_norm']:.3g}", cg=rec["n_cg"])

    def check_convergence(self, it, rec):
        if not rec["accepted"]:
            return None
        f, f_prev, gnorm, g0norm = self.f, self.f_prev, self.gnorm, self.g0norm
        if gnorm <= self.gtol * g0norm:
            return Status.GTOL, f"relative gradient norm {gnorm / g0norm:.3g} <= gtol={self.gtol:g}"
        scale = max(abs(f_prev), abs(f), 1.0)
        if (f_prev - f) <= self.ftol * scale:
            self.n_stalled += 1
        else:
            self.n_stalled = 0
        if self.n_stalled >= self.ftol_iter and (self.ftol_iter == 1 or gnorm <= STALL_GTOL * g0norm):
            times = "" if self.ftol_iter == 1 else f" for {self.ftol_iter} consecutive steps"
            return Status.FTOL, f"relative loss decrease {(f_prev - f) / scale:.3g} <= ftol={self.ftol:g}{times}"
        return None

    def check_progress(self, it, rec):
        if (not rec["accepted"] and self.unchanged) or self.radius < 1e-300:
            return Status.TRUST_RADIUS, ("trust radius too small: the step no longer changes x in floating point "
                                         f"(relative gradient norm {self.gnorm / self.g0norm:.3g}, gtol={self.gtol:g})")
        return None

    def restore_best(self, params, iteration):
        self.x = pack(*params, dtype=self.x.dtype)
        self.f = self._fun(self.x)
        self.g = self._grad(self.x)
        self.gnorm = _norm(self.g)

    def convergence_warning(self, status, message):
        return (f"newton_cg did not converge: {message}; relative gradient norm {self.gnorm / self.g0norm:.3g} "
                f"(gtol={self.gtol:g})")

    def finalize(self, status, message):
        p = self.problem
        return dict(x=self.x, fun=float(self.f), grad_norm=float(self.gnorm), n_rejected=self.n_rejected,
                    n_backtracks=self.n_backtracks, **self.counts, mu=float(self.mu),
                    rank=None if p is None else p.rank, biases=None if p is None else p.biases,
                    preconditioner=self.preconditioner_name, hessian=self.hessian)


class _Counted:
    """The backend's loss as ``fun`` for :func:`_backtrack`, counted."""

    def __init__(self, solver):
        self.fun = solver._fun


def __getattr__(name):
    if name == "fit_newton_cg":
        warnings.warn("fastmf.solvers.newton.fit_newton_cg is deprecated and will be removed in the next release: "
                      "use MatrixFactorization(solver='newton') or newton_cg(MFObjective(...))",
                      DeprecationWarning, stacklevel=2)
        from ._compat import fit_newton_cg

        return fit_newton_cg
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
