r"""Blocked ALS on a Dask cluster (Spark MLlib's design on block actors).

The ratings are kept twice, by user block and by item block
(:mod:`fastmf.distributed.blocks`); the factors live on the client between
half-steps.  One iteration is three rounds (one call per block each):

1. **users** (``solve_users``): block ``b`` solves its users' row systems with the
   item rows :math:`(Q_{I_b}, c_{I_b})` it received in the previous round (or, at the
   first iteration, with the starting point) and returns :math:`(P_b, b_b)`;
2. **items** (``solve_items``): item block ``b`` receives the user rows
   :math:`(P_{U_b}, b_{U_b})` it touches, solves its items' row systems and returns
   :math:`(Q_b, c_b)` with the item penalty and item gradient norm;
3. **evaluation** (``eval_users``): block ``b`` receives the new
   :math:`(Q_{I_b}, c_{I_b})`, returns its loss and user gradient norm, and keeps those
   rows for the next user half-step.

The row solves are those of :class:`fastmf.solvers.als.ALSSolver` (same kernel, same
row systems, same accumulation order, start ``MFObjective.x0(random_state)`` rebuilt on
the client from the shape and the seed), so the factors are bit-identical to
:func:`fastmf.solvers.als.als` whatever ``B`` and the number of workers.  The
loss and gradient norm in ``history`` equal the in-process ones up to rounding
(different summation order).  ``mu`` is the global mean summed per block/partition: equal
to the in-process one whenever the float64 sum of the ratings is exact (e.g. half-star
ratings); pass ``mu`` to pin it otherwise.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Callable, Iterable

import numpy as np

from .._packing import pack
from .._validation import check_dtype, check_nonnegative_float, check_positive_int
from .._weights import reg_exponent
from ..solvers._base import (
    CallbackList,
    IterationRecord,
    SolverResult,
    Status,
    Stopwatch,
    ValidationMonitor,
    finish_result,
    make_progress,
)
from ..solvers.newton import ConvergenceWarning

__all__ = ["fit_als"]

logger = logging.getLogger("fastmf")


def _open(data, client, n_blocks, dtype, columns, timeout):
    """``(DistributedRatings, owned)`` for any accepted input."""
    from .cluster import DEFAULT_TIMEOUT, DistributedRatings, distribute

    if isinstance(data, DistributedRatings):
        if n_blocks is not None and n_blocks != data.n_blocks:
            raise ValueError(f"n_blocks={n_blocks} but the DistributedRatings has {data.n_blocks} blocks")
        if timeout is not None:
            data.timeout = float(timeout)
        return data, False
    ds = distribute(data, client, n_blocks=n_blocks, dtype=dtype, columns=columns,
                    timeout=DEFAULT_TIMEOUT if timeout is None else float(timeout))
    return ds, True


def _finish(res: SolverResult, ds) -> SolverResult:
    """Add what a fitted model needs besides the factors (ids, seen items, scale) and the traffic."""
    seen_indptr, seen_items = ds.seen()
    res["user_ids"] = ds.user_ids
    res["item_ids"] = ds.item_ids
    scale = ds.rating_scale
    res["rating_scale"] = scale
    res["seen_indptr"] = seen_indptr
    res["seen_items"] = seen_items
    res["n_blocks"] = ds.n_blocks
    res["comm"] = dict(ds.stats)
    return res


def _check_validation(validation, m: int, n: int):
    if validation is None:
        return
    for attr in ("users", "items", "values", "n_users", "n_items"):
        if not hasattr(validation, attr):
            raise TypeError(f"validation must be a Ratings in the training code space, got {type(validation).__name__}")
    if (validation.n_users, validation.n_items) != (m, n):
        raise ValueError(f"validation has shape ({validation.n_users}, {validation.n_items}) but the training "
                         f"ratings have ({m}, {n}): code it with the training ids (result user_ids/item_ids)")


def fit_als(
    data,
    rank: int = 32,
    *,
    client=None,
    n_blocks: int | None = None,
    reg: float = 0.1,
    reg_bias: float | None = None,
    biases: bool = True,
    reg_weighting="uniform",
    dtype=np.float32,
    max_iter: int = 20,
    tol: float = 1e-6,
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
    timeout: float | None = None,
    columns=None,
) -> SolverResult:
    r"""Fit the biased MF model by blocked ALS on a Dask cluster (module docstring).

    Parameters
    ----------
    data : dask DataFrame, Parquet path/glob, fastmf.Ratings or DistributedRatings
        Training ratings.  A ``DistributedRatings`` is used as is (not closed, must hold
        ``dtype`` ratings or is cast per block); anything else is distributed with
        :func:`fastmf.distributed.distribute` and released when the fit ends.
    rank, reg, reg_bias, biases, reg_weighting, dtype, mu, max_iter, tol, random_state, x0
        As :func:`fastmf.solvers.als.als`.
    client : distributed.Client, optional
        Default :func:`distributed.get_client`.
    n_blocks : int, optional
        ``B`` (default from the data size).  The factors do not depend on it.
    validation, early_stopping, min_delta, clip, callbacks, progress, max_time
        The shared run interface; ``validation`` is a local Ratings in the training code space.
    timeout : float, optional
        Seconds a round may take before its worker is declared lost (default 600).
    columns : (user, item, rating), optional
        Column names of a Dask frame.

    Returns
    -------
    SolverResult
        As :func:`fastmf.solvers.als.als`, plus ``user_ids, item_ids`` (raw id of each
        code), ``rating_scale``, ``seen_indptr, seen_items`` (training items of each
        user, global codes), ``n_blocks`` and ``comm`` (rounds, calls, bytes sent and
        received by the client during the fit).

    Raises
    ------
    WorkerLostError
        A worker holding blocks died or stopped answering; no factors are returned.
    """
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
    from .newton import DistributedObjective

    ds, owned = _open(data, client, n_blocks, dtype, columns, timeout)
    try:
        objective = DistributedObjective(ds, rank, reg=reg, reg_bias=reg_bias, biases=biases, dtype=dtype,
                                         reg_weighting=reg_weighting, mu=mu)
        _check_validation(validation, ds.n_users, ds.n_items)
        if x0 is None:
            x = np.asarray(objective.x0(random_state), dtype=objective.dtype).copy()
        else:
            x = np.array(x0, dtype=objective.dtype, copy=True)
            if x.ndim != 1 or x.shape[0] != objective.n_params:
                raise ValueError(f"x0 must have shape ({objective.n_params},), got {x.shape}")
            if not np.isfinite(x).all():
                raise ValueError("x0 contains NaN or inf")
        ds.reset_stats()
        res = _run(objective, ds, x, validation, callback_list, max_iter=max_iter, tol=tol,
                   early_stopping=early_stopping, min_delta=min_delta, clip=clip, progress=bool(progress),
                   max_time=max_time)
        return _finish(res, ds)
    finally:
        if owned:
            ds.close()


def _run(objective, ds, x, validation, callback_list, *, max_iter, tol, early_stopping, min_delta, clip,
         progress, max_time) -> SolverResult:
    clock = Stopwatch()
    history: list[IterationRecord] = []
    counts = dict(nfev=0, njev=0, nhessp=0, n_cg=0)
    P, Q, b, c = objective.unpack(x)  # views into x, updated in place
    ub, ib = ds.layout.user_bounds, ds.layout.item_bounds
    B = ds.n_blocks

    def evaluate_full(x):
        f, g = objective.fun_and_jac(x)  # also leaves x's item rows on the blocks
        counts["nfev"] += 1
        counts["njev"] += 1
        return float(f), math.sqrt(float(np.dot(g.astype(np.float64), g.astype(np.float64))))

    def rows(F, fb, idx):
        return (F[idx], None if fb is None else fb[idx])

    f, gnorm = evaluate_full(x)
    monitor = ValidationMonitor(validation, objective.mu, early_stopping, min_delta, clip)
    val_rmse = monitor.update(0, P, Q, b, c)[0] if monitor.active else None
    history.append(IterationRecord(iteration=0, loss=f, grad_norm=gnorm, val_rmse=val_rmse, elapsed=clock()))
    bar = make_progress(max_iter, progress, "als[dask]")
    status = Status.MAX_ITER
    message = f"maximum number of iterations ({max_iter}) reached"
    it = 0
    try:
        for it in range(1, max_iter + 1):
            # 1. users, with the item rows the blocks already hold
            out = ds.round("solve_users")
            fixed = 0
            for blk, (Pb, bb, nf) in enumerate(out):
                P[ub[blk]:ub[blk + 1]] = Pb
                if b is not None:
                    b[ub[blk]:ub[blk + 1]] = bb
                fixed += nf
            # 2. items, each block gets the user rows it touches
            out = ds.round("solve_items", [rows(P, b, ds.users_needed[blk]) for blk in range(B)])
            pen = 0.0
            gsq = 0.0
            for blk, (Qb, cb, nf, pen_b, gsq_b) in enumerate(out):
                Q[ib[blk]:ib[blk + 1]] = Qb
                if c is not None:
                    c[ib[blk]:ib[blk + 1]] = cb
                fixed += nf
                pen += pen_b
                gsq += gsq_b
            if fixed:
                logger.debug("als[dask] it %d: %d singular pivots replaced", it, fixed)
            # 3. evaluation; leaves the new item rows on the blocks for the next user step
            out = ds.round("eval_users", [rows(Q, c, ds.items_needed[blk]) for blk in range(B)])
            objective._held = None  # the blocks now hold the ALS point, not a Newton point
            objective._fg_x = None
            f_prev = f
            f = pen
            for f_b, gsq_b in out:
                f += f_b
                gsq += gsq_b
            gnorm = math.sqrt(gsq)
            counts["nfev"] += 1
            counts["njev"] += 1
            es_stop = False
            if monitor.active:
                val_rmse, es_stop = monitor.update(it, P, Q, b, c)
            rec = IterationRecord(iteration=it, loss=f, grad_norm=gnorm, val_rmse=val_rmse, elapsed=clock())
            history.append(rec)
            logger.debug("als[dask] it %d: loss=%.10g |g|=%.4g val_rmse=%s", it, f, gnorm, val_rmse)
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
        f, gnorm = evaluate_full(x)
    if status in (Status.MAX_ITER, Status.MAX_TIME):
        warnings.warn(f"als did not converge: {message} (tol={tol:g})", ConvergenceWarning, stacklevel=3)
    res = finish_result(
        x=x, fun=f, grad_norm=gnorm, nit=it, status=status, message=message, history=history,
        best_iteration=monitor.best_iteration if monitor.active else None, elapsed=clock(),
        mu=objective.mu, rank=objective.rank, biases=objective.biases, n_blocks=B, **counts,
    )
    logger.log(logging.WARNING if status < 0 else logging.INFO, "als[dask]: %s (nit=%d, loss=%.6g, %.2fs)",
               message, it, f, res.elapsed)
    return res
