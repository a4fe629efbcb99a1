"""The solver registry, and the estimator's dispatch built on it.

Every solver is described once by a :class:`SolverSpec` (:data:`SOLVERS`): its run function,
how it is called, the options it accepts, its defaults and what it supports.
:class:`~fastmf.model.MatrixFactorization` hands over its validated parameters (a dict, see
``MatrixFactorization._validated_params``) and never inspects a solver itself:

* :func:`check_fit_request` rejects options and parameters that the chosen solver does
  not take, before any work;
* :func:`run_solver` checks the fit's estimated peak memory (:mod:`fastmf._memory`;
  solver option ``max_memory``, every solver) before any allocation, then runs the solver on the
  training (and validation) ratings and
  returns ``(SolverResult, mu)``;
* :func:`get_solver_spec` answers "does solver X support fold-in / warm start / early stopping".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._memory import check_fit_memory, estimate_fit_memory, parse_memory
from .._packing import pack
from .._validation import check_nonnegative_float
from ..data.ratings import Ratings
from ..initialization import initial_factors
from ..problem import solver_default

__all__ = ["SolverSpec", "SOLVERS", "get_solver_spec", "check_fit_request", "run_solver", "check_memory"]

_DEFAULT_ROW_SCALE = 0.1  # MFObjective.x0's default row norm
#: Estimator parameters that solver_options may not set.
_RESERVED = ("validation", "x0", "callbacks", "progress", "early_stopping", "rank", "ratings", "objective")
#: Options every solver takes from the estimator's own parameters.
_RUN = ("max_iter", "tol", "max_time", "callbacks", "progress", "validation", "early_stopping", "min_delta",
        "clip", "random_state", "n_threads", "x0", "mu")


@dataclass(frozen=True)
class SolverSpec:
    """One solver, as the estimator sees it.

    Attributes
    ----------
    name : str
    run : callable
        ``run(spec, p, train, val, x0) -> (SolverResult, mu)`` (``p``: the estimator's parameters).
    options : tuple of str
        Names accepted in ``solver_options``.
    deprecated_options : dict
        Old option name -> new name (accepted for one release, with a DeprecationWarning).
    defaults : dict
        Problem defaults of the solver function (:data:`fastmf.problem.SOLVER_DEFAULTS`).
    penalised : bool
        Whether ``reg``, ``reg_bias``, ``reg_weighting`` apply (gibbs samples its priors).
    has_tol, supports_warm_start, supports_fold_in, supports_early_stopping : bool
    thread_deterministic : bool
        Same result for a seed whatever ``n_threads``.
    """

    name: str
    run: Callable
    options: tuple
    deprecated_options: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    penalised: bool = True
    has_tol: bool = True
    supports_warm_start: bool = True
    supports_fold_in: bool = True
    supports_early_stopping: bool = True
    thread_deterministic: bool = True

    @property
    def accepted(self) -> list[str]:
        return sorted(self.options)


def _run_newton(spec, p, train, val, x0):
    from ..objective import MFObjective
    from .newton import newton_cg

    opts = dict(p["solver_options"])
    obj_opts = {k: opts.pop(k) for k in list(opts) if k in _NEWTON_OBJECTIVE}
    # The exact Hessian is the estimator's default: matrix factorization keeps non-zero
    # residuals at its minimum, so Gauss-Newton converges only linearly there, while
    # Steihaug-CG handles the exact Hessian's indefiniteness (bench.solver_curves: 2-2.3x
    # sooner to L-BFGS-B's final loss than Gauss-Newton).  solver_options={"hessian":
    # "gauss-newton"} selects Gauss-Newton.
    obj_opts.setdefault("hessian", "exact")
    objective = MFObjective(
        train, p["rank"], reg=p["reg"], reg_bias=p["reg_bias"], biases=p["biases"], dtype=p["dtype"],
        n_threads=p["n_threads"], reg_weighting=p["reg_weighting"], **obj_opts,
    )
    if x0 is None:
        x0 = objective.x0(random_state=p["random_state"], init=p["init"],
                          scale=_DEFAULT_ROW_SCALE if p["init_scale"] is None else p["init_scale"])
    kw = _common(p, train, val)
    kw.update(random_state=p["random_state"], n_threads=p["n_threads"])
    kw.update(opts)
    result = newton_cg(objective, x0, **kw)
    return result, result.get("mu", objective.mu)


def _run_factored(spec, p, train, val, x0):
    """ALS, SGD and Gibbs: ``fn(train, rank, ...)`` with the problem parameters passed through."""
    opts = dict(p["solver_options"])
    if p["init_scale"] is not None and "init_scale" in opts:
        raise ValueError("init_scale is given twice (the estimator's init_scale and solver_options['init_scale']): "
                         "keep one")
    if x0 is None and (p["init"] != "random" or p["init_scale"] is not None):
        x0 = _initial_point(train, p, opts)
    kw = _common(p, train, val)
    kw.update(biases=p["biases"], dtype=p["dtype"], n_threads=p["n_threads"], random_state=p["random_state"], x0=x0)
    if spec.penalised:
        kw.update(reg=p["reg"], reg_bias=p["reg_bias"], reg_weighting=p["reg_weighting"])
    kw.update(opts)
    result = spec_function(spec.name)(train, p["rank"], **kw)
    if "mu" not in result:
        raise RuntimeError(f"solver {p['solver']!r} returned a result without 'mu'; cannot build a model")
    return result, result["mu"]


def _common(p, train, val) -> dict:
    """The shared run interface from the estimator's parameters."""
    # The estimator's early_stopping=None keeps its eval_set a monitor only (the solver functions'
    # default "auto" would early-stop on it: the estimator cannot tell a validation set from a test set)
    kw = {"validation": val, "callbacks": p["callbacks"], "progress": p["progress"]}
    if get_solver_spec(p["solver"]).supports_early_stopping:
        kw["early_stopping"] = p["early_stopping"]
    if p["clip"]:
        # validation RMSE in the history is then the RMSE that score() reports
        kw["clip"] = _rating_scale(train)
    if p["max_iter"] is not None:
        kw["max_iter"] = p["max_iter"]
    if p["tol"] is not None:
        kw["tol"] = p["tol"]
    return kw


def spec_function(name: str) -> Callable:
    """The public solver function of ``name`` (imported on use)."""
    if name == "newton":
        from .newton import newton_cg as fn
    elif name == "als":
        from .als import als as fn
    elif name == "sgd":
        from .sgd import sgd as fn
    else:
        from .gibbs import gibbs as fn
    return fn


#: MFObjective options that newton passes to the objective (the rest go to newton_cg).
_NEWTON_OBJECTIVE = ("loss", "format", "hessian", "mu", "parallel", "coo_blocks")

SOLVERS: dict[str, SolverSpec] = {
    "newton": SolverSpec(
        "newton", _run_newton,
        options=_NEWTON_OBJECTIVE + ("x0", "tol", "ftol", "ftol_iter", "max_iter", "max_time", "preconditioner",
                                     "initial_radius", "max_radius", "eta", "cg_tol", "forcing", "max_cg", "backtrack",
                                     "validation", "early_stopping", "min_delta", "clip", "callbacks", "progress",
                                     "random_state", "n_threads", "max_block_memory", "check_bounded", "max_memory"),
        deprecated_options={"gtol": "tol"},
        defaults={k: solver_default("newton", k) for k in ("reg", "reg_weighting")},
        # Newton's default objective format is COO, whose gradient reduction order follows the threads
        thread_deterministic=False,
    ),
    "als": SolverSpec(
        "als", _run_factored,
        options=("reg", "reg_bias", "biases", "reg_weighting", "dtype", "max_memory") + _RUN,
        defaults={k: solver_default("als", k) for k in ("reg", "reg_weighting")},
    ),
    "sgd": SolverSpec(
        "sgd", _run_factored,
        options=("reg", "reg_bias", "reg_weighting", "biases", "mu", "dtype", "learning_rate", "schedule", "decay",
                 "n_blocks", "mode", "reshuffle", "init_scale", "train_loss", "max_memory") + _RUN,
        deprecated_options={"n_epochs": "max_iter"},
        defaults={k: solver_default("sgd", k) for k in ("reg", "reg_weighting")},
    ),
    "gibbs": SolverSpec(
        "gibbs", _run_factored,
        options=("burn_in", "thin", "biases", "dtype", "noise_variance", "prior_shape", "prior_rate",
                 "prior_mean_precision", "max_memory") + tuple(k for k in _RUN if k not in ("tol", "early_stopping",
                                                                                          "min_delta")),
        deprecated_options={"n_samples": "max_iter"},
        penalised=False, has_tol=False, supports_warm_start=False, supports_fold_in=False,
        supports_early_stopping=False,
    ),
}


def get_solver_spec(name: str) -> SolverSpec:
    """The :class:`SolverSpec` of solver ``name`` (``ValueError`` naming the known solvers)."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; known: {sorted(SOLVERS)}") from None


#: The estimator's penalty defaults (gibbs accepts only these: it does not read them).
_ESTIMATOR_PENALTY = {"reg": solver_default("estimator", "reg"), "reg_bias": None,
                      "reg_weighting": solver_default("estimator", "reg_weighting")}


def check_fit_request(p: dict, warm_start: bool) -> None:
    """Raise ``ValueError`` for solver options or parameters the solver does not take."""
    spec = get_solver_spec(p["solver"])
    allowed = set(spec.options) | set(spec.deprecated_options)
    bad = sorted(set(p["solver_options"]) - allowed)
    if bad:
        raise ValueError(
            f"solver_options {bad} are not options of solver={p['solver']!r}; accepted: {spec.accepted}"
        )
    clash = sorted(set(p["solver_options"]) & set(_RESERVED))
    if clash:
        raise ValueError(f"solver_options may not set {clash}: use the estimator's own parameters")
    if not spec.penalised:
        changed = [name for name in ("reg", "reg_bias") if p[name] != _ESTIMATOR_PENALTY[name]]
        if p["reg_weighting"] not in (_ESTIMATOR_PENALTY["reg_weighting"], "uniform"):
            changed.append("reg_weighting")
        if changed:
            raise ValueError(f"solver={spec.name!r} samples the prior precisions: {', '.join(changed)} do(es) not "
                             "apply (leave them at their defaults)")
    if not spec.has_tol and p["tol"] is not None:
        raise ValueError(f"solver={spec.name!r} runs a fixed number of sweeps: tol does not apply (set max_iter, "
                         "the number of draws after the burn-in)")
    if not spec.supports_early_stopping and p["early_stopping"] is not None:
        raise ValueError(f"solver={spec.name!r} averages draws, which does not overfit: early_stopping does not "
                         "apply (an eval_set is still scored each sweep)")
    if p["solver_options"].get("max_memory") is not None:
        parse_memory(p["solver_options"]["max_memory"], "solver_options['max_memory']")
    if warm_start and not spec.supports_warm_start:
        raise ValueError(f"warm_start is not available for solver={spec.name!r} (its model stacks posterior draws): "
                         "refit from scratch")


def run_solver(p: dict, train: Ratings, val: Ratings | None, x0: np.ndarray | None):
    """Check the fit's memory, then run ``p["solver"]``; return ``(result, mu)``.

    Raises
    ------
    FitMemoryError
        The estimated peak memory (:func:`fastmf._memory.estimate_fit_memory`) exceeds
        ``solver_options["max_memory"]``, ``$FASTMF_MAX_MEMORY`` or the available memory;
        before any allocation.
    """
    spec = get_solver_spec(p["solver"])
    check_memory(p, train, val)
    if spec.name != "gibbs" and "max_memory" in p["solver_options"]:
        opts = dict(p["solver_options"])
        del opts["max_memory"]
        p = dict(p, solver_options=opts)
    return spec.run(spec, p, train, val, x0)


def check_memory(p: dict, train: Ratings, val: Ratings | None) -> None:
    """Raise :class:`~fastmf.exceptions.FitMemoryError` when the fit ``p`` on ``train`` would not fit in memory."""
    opts = dict(p["solver_options"])
    for name in ("max_iter",):
        if p.get(name) is not None:
            opts.setdefault(name, p[name])
    opts.setdefault("max_iter", opts.get("n_samples", 200))
    estimate = estimate_fit_memory(p["solver"], train.n_users, train.n_items, train.nnz, p["rank"], p["biases"],
                                   p["dtype"], p["n_threads"], opts, n_validation=0 if val is None else val.nnz)
    check_fit_memory(estimate, opts.get("max_memory"))


def _rating_scale(train: Ratings) -> tuple[float, float]:
    from ..model import _rating_scale as rs

    return rs(train)


def _initial_point(train: Ratings, p: dict, opts: dict) -> np.ndarray:
    """Packed start (zero biases) for ALS, SGD and Gibbs from ``init`` / ``init_scale``."""
    k = p["rank"]
    scale = p["init_scale"]
    if scale is None:
        if p["solver"] == "sgd":  # SGD draws entries with std init_scale: rows of norm init_scale * sqrt(k)
            entry = opts.get("init_scale", _SGD_INIT_SCALE)
            scale = check_nonnegative_float(entry, "solver_options['init_scale']") * np.sqrt(k)
        else:
            scale = _DEFAULT_ROW_SCALE
    mu = train.global_mean if p["biases"] else 0.0
    P0, Q0 = initial_factors(train, k, p["init"], scale, mu=mu, random_state=p["random_state"])
    if p["biases"]:
        return pack(P0, Q0, np.zeros(train.n_users), np.zeros(train.n_items))
    return pack(P0, Q0, None, None)


_SGD_INIT_SCALE = 0.01  # sgd()'s init_scale default
