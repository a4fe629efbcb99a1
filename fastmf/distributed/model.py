"""A fitted :class:`fastmf.MatrixFactorization` from a distributed fit's result."""

from __future__ import annotations

__all__ = ["to_model", "set_fitted"]


def set_fitted(est, fm, result, n_dropped: int, fit_time: float) -> None:
    """Set ``est``'s fitted state as ``MatrixFactorization.fit`` does (``model_``, ``result_``,
    ``history_``, ``n_iter_``, ``n_eval_dropped_``, ``fit_time_``)."""
    est.__dict__.pop("_parts", None)
    est.__dict__["model_"] = fm
    est.result_ = result
    est.history_ = [dict(rec) for rec in (result.get("history") or [])]
    est.n_iter_ = int(result.get("nit", len(est.history_)))
    est.n_eval_dropped_ = int(n_dropped)
    est.fit_time_ = float(fit_time)


def to_model(result, model=None, *, eval_dropped: int = 0):
    """A fitted ``MatrixFactorization`` (``model``, default a new one with the result's rank and
    biases) from :func:`fit_als` / :func:`fit_newton`'s result.

    The factors are already on the client; nothing else is fetched.  (The estimator's
    ``fit`` on Dask input does this itself: :mod:`fastmf.distributed.estimator`.)
    """
    from ..model import MatrixFactorization
    from .estimator import factor_model

    if model is None:
        model = MatrixFactorization(rank=int(result["rank"]), biases=bool(result["biases"]))
    solver = "newton" if "hessian" in result else "als"
    fm = factor_model(result, solver=solver, reg=model.reg, reg_bias=model.reg_bias,
                      reg_weighting=model.reg_weighting)
    set_fitted(model, fm, result, eval_dropped, result.get("elapsed", 0.0))
    return model
