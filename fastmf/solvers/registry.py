"""Solver dispatch for :class:`~fastmf.model.MatrixFactorization`.

The estimator hands over its validated parameters (a dict, see
``MatrixFactorization._validated_params``) and never inspects a solver itself:

* :func:`check_fit_request` rejects options and parameters that the chosen solver does
  not take, before any work;
* :func:`run_solver` runs the solver on the training (and validation) ratings and
  returns ``(SolverResult, mu)``.
"""

from __future__ import annotations

import inspect

import numpy as np

from .._packing import pack
from .._validation import check_nonnegative_float
from ..data.ratings import Ratings
from ..initialization import initial_factors

__all__ = ["check_fit_request", "run_solver"]

_GIBBS_DEFAULTS = {"reg": 0.1, "reg_bias": None, "reg_weighting": "count"}


def check_fit_request(p: dict, warm_start: bool) -> None:
    """Raise ``ValueError`` for solver options or parameters the solver does not take."""
    _, obj_keys, solver_keys = _solver_entry(p["solver"])
    allowed = set(obj_keys) | set(solver_keys)
    bad = sorted(set(p["solver_options"]) - allowed)
    if bad:
        raise ValueError(
            f"solver_options {bad} are not options of solver={p['solver']!r}; accepted: {sorted(allowed)}"
        )
    reserved = {"validation", "x0", "callbacks", "progress", "early_stopping", "rank", "ratings", "objective"}
    clash = sorted(set(p["solver_options"]) & reserved)
    if clash:
        raise ValueError(f"solver_options may not set {clash}: use the estimator's own parameters")
    if p["solver"] == "gibbs":
        _check_gibbs_params(p, warm_start)


def run_solver(p: dict, train: Ratings, val: Ratings | None, x0: np.ndarray | None):
    """Run ``p["solver"]``; return ``(result, mu)``."""
    fn, obj_keys, _ = _solver_entry(p["solver"])
    return _run_solver(fn, obj_keys, p, train, val, x0)


def _rating_scale(train: Ratings) -> tuple[float, float]:
    from ..model import _rating_scale as rs

    return rs(train)


def _solver_entry(solver: str):
    """(solver function, objective option names, solver option names) for ``solver``."""
    if solver == "newton":
        from ..objective import MFObjective
        from .newton import newton_cg

        obj_keys = [k for k in inspect.signature(MFObjective).parameters
                    if k not in ("ratings", "rank", "reg", "reg_bias", "biases", "dtype", "n_threads",
                                 "reg_weighting")]
        fn = newton_cg
    elif solver == "als":
        from .als import als as fn

        obj_keys = []
    elif solver == "gibbs":
        from .gibbs import gibbs as fn

        obj_keys = []
    else:
        from .sgd import sgd as fn

        obj_keys = []
    params = inspect.signature(fn).parameters
    solver_keys = [k for k in params if params[k].kind in (inspect.Parameter.KEYWORD_ONLY,
                                                           inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return fn, obj_keys, solver_keys


_DEFAULT_ROW_SCALE = 0.1  # MFObjective.x0's default row norm


def _initial_point(train: Ratings, p: dict, accepted, opts: dict) -> np.ndarray:
    """Packed start (zero biases) for ALS and SGD from ``init`` / ``init_scale``."""
    k = p["rank"]
    scale = p["init_scale"]
    if scale is None:
        if p["solver"] == "sgd":  # SGD draws entries with std init_scale: rows of norm init_scale * sqrt(k)
            entry = opts.get("init_scale", accepted["init_scale"].default)
            scale = check_nonnegative_float(entry, "solver_options['init_scale']") * np.sqrt(k)
        else:
            scale = _DEFAULT_ROW_SCALE
    mu = train.global_mean if p["biases"] else 0.0
    P0, Q0 = initial_factors(train, k, p["init"], scale, mu=mu, random_state=p["random_state"])
    if p["biases"]:
        return pack(P0, Q0, np.zeros(train.n_users), np.zeros(train.n_items))
    return pack(P0, Q0, None, None)


def _check_gibbs_params(p: dict, warm_start: bool) -> None:
    """Parameters that have no meaning for ``solver="gibbs"`` raise instead of being ignored.

    The penalty parameters keep their defaults (which gibbs does not read) or raise.
    """
    changed = [name for name in ("reg", "reg_bias") if p[name] != _GIBBS_DEFAULTS[name]]
    if p["reg_weighting"] not in (_GIBBS_DEFAULTS["reg_weighting"], "uniform"):
        changed.append("reg_weighting")
    if changed:
        raise ValueError(f"solver='gibbs' samples the prior precisions: {', '.join(changed)} do(es) not apply "
                         "(leave them at their defaults)")
    if p["tol"] is not None:
        raise ValueError("solver='gibbs' runs a fixed number of sweeps: tol does not apply (set max_iter, the "
                         "number of draws after the burn-in)")
    if p["early_stopping"] is not None:
        raise ValueError("solver='gibbs' averages draws, which does not overfit: early_stopping does not apply "
                         "(an eval_set is still scored each sweep)")
    if warm_start:
        raise ValueError("warm_start is not available for solver='gibbs' (its model stacks posterior draws): "
                         "refit from scratch")


def _run_solver(fn, obj_keys, p: dict, train: Ratings, val: Ratings | None, x0: np.ndarray | None):
    """Call the solver; return ``(result, mu)``."""
    opts = dict(p["solver_options"])
    accepted = inspect.signature(fn).parameters
    common = {
        "validation": val,
        "callbacks": p["callbacks"],
        "progress": p["progress"],
    }
    if p["early_stopping"] is not None:
        common["early_stopping"] = p["early_stopping"]
    if p["clip"] and "clip" in accepted:
        # validation RMSE in the history is then the RMSE that score() reports
        common["clip"] = _rating_scale(train)
    if p["solver"] == "newton":
        from ..objective import MFObjective

        obj_opts = {k: opts.pop(k) for k in list(opts) if k in obj_keys}
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
        kw = dict(common)
        if p["max_iter"] is not None:
            kw["max_iter"] = p["max_iter"]
        if p["tol"] is not None:
            kw["gtol"] = p["tol"]
        if "random_state" in accepted:
            kw["random_state"] = p["random_state"]
        if "n_threads" in accepted:
            kw["n_threads"] = p["n_threads"]
        kw.update(opts)
        result = fn(objective, x0, **kw)
        mu = result.get("mu", objective.mu)
        return result, mu
    if p["init_scale"] is not None and "init_scale" in opts:
        raise ValueError("init_scale is given twice (the estimator's init_scale and solver_options['init_scale']): "
                         "keep one")
    if x0 is None and (p["init"] != "random" or p["init_scale"] is not None):
        x0 = _initial_point(train, p, accepted, opts)
    kw = dict(common)
    kw.update(biases=p["biases"], dtype=p["dtype"], n_threads=p["n_threads"], random_state=p["random_state"], x0=x0)
    if p["solver"] != "gibbs":
        kw.update(reg=p["reg"], reg_bias=p["reg_bias"], reg_weighting=p["reg_weighting"])
    if p["max_iter"] is not None:
        kw[{"sgd": "n_epochs", "gibbs": "n_samples"}.get(p["solver"], "max_iter")] = p["max_iter"]
    if p["tol"] is not None:
        kw["tol"] = p["tol"]
    kw.update(opts)
    result = fn(train, p["rank"], **kw)
    if "mu" not in result:
        raise RuntimeError(f"solver {p['solver']!r} returned a result without 'mu'; cannot build a model")
    return result, result["mu"]
