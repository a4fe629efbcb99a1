"""``MatrixFactorization.fit`` on Dask input: the estimator's cluster branch.

:meth:`fastmf.MatrixFactorization.fit` hands over here when ``X`` is a Dask DataFrame or a
Parquet path/glob (:func:`fastmf.backends.is_dask_input`); nothing else of the estimator
changes.  The fit runs on the current Dask client (:func:`distributed.get_client`: the
client created last, or the one made current with ``with client.as_current():``), with
the same solver classes as in process on :class:`fastmf.backends.dask.DaskBackend`, and
ends as an ordinary fitted model (``model_`` a :class:`fastmf.fitted.FactorModel`):
``predict``, ``recommend``, ``save``/``load`` work as after an in-process fit.

Solvers: ``"als"`` (factors bit-identical to the in-process fit) and ``"newton"``;
``"sgd"``/``"gibbs"`` raise a ``ValueError`` naming them.  Cluster-only settings go in
``solver_options``: ``n_blocks`` (``B``, default from the data size), ``timeout`` (seconds a
round may take before its worker is declared lost), ``columns`` ((user, item, rating)
column names).  Not available on a cluster: ``y`` (``X`` carries the ratings),
``warm_start``, ``init="svd"``.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from .._packing import unpack
from ..fitted import FactorModel

__all__ = ["fit_on_cluster", "factor_model", "CLUSTER_OPTIONS"]

logger = logging.getLogger("fastmf")

#: solver_options read by the cluster branch (not passed to the solver).
CLUSTER_OPTIONS = ("n_blocks", "timeout", "columns")
#: In-process storage options of newton's objective that have no meaning on the shards.
_LOCAL_ONLY = ("format", "parallel", "n_threads")


def factor_model(result, *, solver: str, reg: float, reg_bias, reg_weighting) -> FactorModel:
    """The :class:`FactorModel` of a distributed fit's result (factors copied, in their dtype)."""
    k, biases = int(result["rank"]), bool(result["biases"])
    users, items = np.asarray(result["user_ids"]), np.asarray(result["item_ids"])
    x = np.asarray(result["x"])
    P, Q, b, c = unpack(x, len(users), len(items), k, biases)
    scale = result.get("rating_scale")
    return FactorModel(P.copy(), Q.copy(), None if b is None else b.copy(), None if c is None else c.copy(),
                       float(result["mu"]), users, items, np.asarray(result["seen_indptr"]),
                       np.asarray(result["seen_items"]), None if scale is None else (float(scale[0]), float(scale[1])),
                       solver=solver, rank=k, reg=reg, reg_bias=reg_bias, reg_weighting=reg_weighting)


def _eval_set(eval_set, ds, dtype):
    """``eval_set`` (any estimator form, or Dask input: collected) in the training code space."""
    from ..backends import is_dask_input
    from ..data.convert import as_ratings
    from ..data.ids import IdIndex
    from ..data.ratings import Ratings
    from .coding import read_input

    if eval_set is None:
        return None, 0
    if is_dask_input(eval_set):
        eval_set = read_input(eval_set).compute()
    val = as_ratings(eval_set, dtype, name="eval_set")
    uc = IdIndex(ds.user_ids).codes(val.user_ids, "ignore", "user")[val.users]
    ic = IdIndex(ds.item_ids).codes(val.item_ids, "ignore", "item")[val.items]
    keep = (uc >= 0) & (ic >= 0)
    n_dropped = int(val.nnz - np.count_nonzero(keep))
    if n_dropped == val.nnz:
        raise ValueError(f"none of the {val.nnz} eval_set ratings has a user and an item known in training")
    if n_dropped:
        logger.info("eval_set: dropped %d ratings whose user or item is not in the training data", n_dropped)
    mapped = Ratings.from_codes(uc[keep], ic[keep], val.values[keep], ds.n_users, ds.n_items,
                                user_ids=ds.user_ids, item_ids=ds.item_ids, dtype=dtype)
    return mapped, n_dropped


def _run(p: dict, ds, val):
    """Run ``p["solver"]`` on the sharded ratings ``ds``; the estimator's parameters as in
    :mod:`fastmf.solvers.registry` (``_run_newton`` / ``_run_factored``)."""
    from .als import fit_als
    from .newton import fit_newton, initial_point

    opts = {k: v for k, v in p["solver_options"].items() if k not in _LOCAL_ONLY}
    kw = dict(validation=val, callbacks=p["callbacks"], progress=p["progress"])
    if p["early_stopping"] is not None:
        kw["early_stopping"] = p["early_stopping"]
    if p["clip"]:
        kw["clip"] = ds.rating_scale
    if p["max_iter"] is not None:
        kw["max_iter"] = p["max_iter"]
    if p["tol"] is not None:
        kw["tol"] = p["tol"]
    scale = 0.1 if p["init_scale"] is None else p["init_scale"]
    x0 = initial_point(ds.n_users, ds.n_items, p["rank"], p["biases"], p["random_state"], scale)
    common = dict(reg=p["reg"], reg_bias=p["reg_bias"], biases=p["biases"], reg_weighting=p["reg_weighting"],
                  dtype=p["dtype"], random_state=p["random_state"], x0=x0)
    if p["solver"] == "als":
        return fit_als(ds, p["rank"], **{**common, **kw, **opts})
    if opts.pop("loss", "squared") != "squared":
        raise ValueError("only the squared loss is available on a cluster")
    # as in process (registry._run_newton): the exact Hessian is the estimator's default
    opts.setdefault("hessian", "exact")
    return fit_newton(ds, p["rank"], **{**common, **kw, **opts})


def fit_on_cluster(est, X, y=None, eval_set=None, warm_start: bool = False):
    """Fit the estimator ``est`` on Dask input ``X`` (module docstring); returns ``est``."""
    from ..solvers.registry import check_fit_request
    from . import check_solver
    from .cluster import DEFAULT_TIMEOUT, distribute, resolve_client
    from .model import set_fitted

    t0 = time.perf_counter()
    p = est._validated_params()
    check_solver(p["solver"])
    if y is not None:
        raise ValueError("y is not accepted with Dask input: X must carry the ratings (user, item, rating columns)")
    if not isinstance(warm_start, (bool, np.bool_)):
        raise TypeError(f"warm_start must be a bool, got {warm_start!r}")
    if warm_start:
        raise ValueError("warm_start is not available for Dask input: refit from scratch")
    if p["init"] != "random":
        raise ValueError(f"init={p['init']!r} is not available for Dask input (it needs the whole rating matrix in "
                         "one place): use init='random'")
    if p["early_stopping"] is not None and eval_set is None:
        raise ValueError("early_stopping needs an eval_set to monitor")
    opts = dict(p["solver_options"])
    cluster = {k: opts.pop(k) for k in CLUSTER_OPTIONS if k in opts}
    p = {**p, "solver_options": opts}
    check_fit_request(p, False)
    client = resolve_client(None)
    ds = distribute(X, client, n_blocks=cluster.get("n_blocks"), dtype=p["dtype"], columns=cluster.get("columns"),
                    timeout=cluster.get("timeout", DEFAULT_TIMEOUT))
    try:
        val, n_dropped = _eval_set(eval_set, ds, p["dtype"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _run(p, ds, val)
    finally:
        ds.close()
    fm = factor_model(result, solver=p["solver"], reg=p["reg"], reg_bias=p["reg_bias"],
                      reg_weighting=p["reg_weighting"])
    set_fitted(est, fm, result, n_dropped, time.perf_counter() - t0)
    for w in caught:  # as fit(): re-issued once the model is complete
        warnings.warn(w.message, w.category, stacklevel=3)
    logger.info("fit %s rank=%d on %d blocks: %s (%d iterations, %.3f s)", p["solver"], p["rank"], ds.n_blocks,
                result.get("message", ""), est.n_iter_, est.fit_time_)
    return est
