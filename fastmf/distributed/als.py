r"""Blocked ALS on a Dask cluster: the in-process ALS on the Dask backend.

:func:`fit_als` runs :class:`fastmf.solvers.als.ALS` under
:func:`fastmf.solvers._base.run_iterations` with a :class:`fastmf.backends.dask.DaskBackend`
(Spark MLlib's blocked design on block actors).  The ratings are kept twice, by user
block and by item block (:mod:`fastmf.distributed.blocks`); the factors live on the
client between half-steps.  One iteration is three rounds (one call per block each):

1. **users** (``solve_rows("users")``): block ``b`` solves its users' row systems with the
   item rows :math:`(Q_{I_b}, c_{I_b})` it already holds and returns :math:`(P_b, b_b)`;
2. **items** (``solve_rows("items")``): item block ``b`` receives the user rows
   :math:`(P_{U_b}, b_{U_b})` it touches and returns :math:`(Q_b, c_b)`;
3. **evaluation** (``loss``/``gradient``, one round): block ``b`` receives the new
   :math:`(Q_{I_b}, c_{I_b})` (kept for the next user step) and returns its loss and
   gradient pieces.

The row solves are the in-process kernel on the same row systems, weights, ``mu`` and
accumulation order, from the start ``MFObjective.x0(random_state)`` rebuilt on the client
from the shape and the seed, so the factors are bit-identical to
:func:`fastmf.solvers.als.als` whatever ``B`` and the number of workers.  The loss and
gradient norm in ``history`` equal the in-process ones up to summation order.  ``mu`` is the
global mean summed per partition: equal to the in-process one whenever the float64 sum of
the ratings is exact (e.g. half-star ratings); pass ``mu`` to pin it otherwise.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .._validation import check_dtype, check_nonnegative_float
from ..problem import MFProblem
from ..solvers._base import RunOptions, SolverResult, check_validation, run_iterations

__all__ = ["fit_als"]


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
    comm = dict(ds.stats)
    seen_indptr, seen_items = ds.seen()
    res["user_ids"] = ds.user_ids
    res["item_ids"] = ds.item_ids
    res["rating_scale"] = ds.rating_scale
    res["seen_indptr"] = seen_indptr
    res["seen_items"] = seen_items
    res["n_blocks"] = ds.n_blocks
    res["comm"] = comm
    return res


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
    tol = check_nonnegative_float(tol, "tol")
    problem = MFProblem(rank=rank, biases=biases, reg=reg, reg_bias=reg_bias, reg_weighting=reg_weighting,
                        loss="squared", mu=mu, dtype=dtype)
    run = RunOptions(max_iter=max_iter, max_time=max_time, callbacks=callbacks, progress=progress,
                     validation=validation, early_stopping=early_stopping, min_delta=min_delta, clip=clip).check()
    from ..backends.dask import DaskBackend
    from ..solvers.als import ALS, start_point

    ds, owned = _open(data, client, n_blocks, dtype, columns, timeout)
    try:
        backend = DaskBackend(ds, problem)
        p = backend.problem
        check_validation(validation, p.n_users, p.n_items)
        x = start_point(x0, p, lambda: backend.x0(random_state))
        ds.reset_stats()
        res = run_iterations(ALS(backend, x, tol), run)
        res["n_blocks"] = ds.n_blocks
        return _finish(res, ds)
    finally:
        if owned:
            ds.close()
