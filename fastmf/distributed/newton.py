r"""Newton-CG on sharded ratings: the in-process solver on the Dask backend.

:func:`fit_newton` runs :func:`fastmf.solvers.newton.newton_cg` (hence
:class:`~fastmf.solvers.newton.NewtonCG` under :func:`~fastmf.solvers._base.run_iterations`)
with a :class:`fastmf.backends.dask.DaskBackend` as its objective: every loss + gradient,
Hessian product and preconditioner update is one round over the blocks (see that module
for what moves).  Preconditioners: ``"jacobi"`` (default, as in process: the diagonal in
one round per accepted iterate, applied on the client), ``"block-jacobi"`` (factored on
the shards, one round per CG step to apply) and ``"none"``.  Validation and early stopping
are the run loop's (scored on the client, where the factors are).

:class:`DistributedObjective` is the backend built from objective-style arguments
(``rank, reg, ...``) as :class:`fastmf.objective.MFObjective` takes them.
"""

from __future__ import annotations

import numpy as np

from .._packing import n_params as _n_params
from .._validation import check_random_state
from ..backends.dask import DaskBackend
from ..problem import MFProblem

__all__ = ["DistributedObjective", "fit_newton", "initial_point"]


def initial_point(n_users: int, n_items: int, rank: int, biases: bool, random_state=None,
                  scale: float = 0.1) -> np.ndarray:
    """The in-process random start, ``MFObjective.x0(random_state)``, from the shape alone.

    Same draws as :func:`fastmf.initialization.initial_factors` (``init="random"``):
    ``(m + n) k`` standard normals scaled by ``scale / sqrt(k)``, zero biases (float64).
    """
    rng = check_random_state(random_state)
    m, n, k = n_users, n_items, rank
    Z = rng.standard_normal((m + n) * k) * (scale / np.sqrt(k))
    x = np.zeros(_n_params(m, n, k, biases))
    x[: m * k] = Z[: m * k]
    x[m * k:(m + n) * k] = Z[m * k:]
    return x


class DistributedObjective(DaskBackend):
    """:class:`~fastmf.backends.dask.DaskBackend` with :class:`~fastmf.objective.MFObjective`'s arguments.

    Parameters
    ----------
    ratings : DistributedRatings
        From :func:`fastmf.distributed.distribute`.
    rank, reg, reg_bias, biases, dtype, hessian, reg_weighting, mu
        As :class:`fastmf.objective.MFObjective` (squared loss only).
    """

    def __init__(self, ratings, rank: int, reg: float = 0.1, reg_bias: float | None = None, biases: bool = True,
                 dtype=np.float32, hessian: str = "gauss-newton", reg_weighting="uniform", mu: float | None = None):
        problem = MFProblem(rank=rank, biases=biases, reg=reg, reg_bias=reg_bias, reg_weighting=reg_weighting,
                            loss="squared", mu=mu, dtype=dtype)
        super().__init__(ratings, problem, hessian=hessian)


def fit_newton(data, rank: int = 32, *, client=None, n_blocks: int | None = None, reg: float = 0.1,
               reg_bias: float | None = None, biases: bool = True, reg_weighting="uniform", dtype=np.float32,
               hessian: str = "gauss-newton", mu: float | None = None, random_state=0, x0=None,
               preconditioner: str = "jacobi", timeout: float | None = None, columns=None, **kwargs):
    """Fit by trust-region Newton-CG on a cluster (:func:`~fastmf.solvers.newton.newton_cg` on the Dask backend).

    Parameters
    ----------
    data : dask DataFrame, Parquet path, fastmf.Ratings or DistributedRatings
        A ``DistributedRatings`` is used as is (and not closed); anything else is
        distributed with :func:`fastmf.distributed.distribute` and released at the end.
    rank, reg, reg_bias, biases, reg_weighting, dtype, hessian, mu, random_state, x0
        As :class:`fastmf.objective.MFObjective` and :func:`~fastmf.solvers.newton.newton_cg`.
    client, n_blocks, columns, timeout
        As :func:`fastmf.distributed.distribute`.
    preconditioner : {"jacobi", "block-jacobi", "none"}
    **kwargs
        To :func:`~fastmf.solvers.newton.newton_cg` (``tol``, ``ftol``, ``max_iter``, ``max_cg``,
        ``validation``, ``early_stopping``, ``callbacks``, ``progress``, ``max_time``, ...);
        ``validation`` is a local ``Ratings`` in the training code space.

    Returns
    -------
    SolverResult
        As in process, plus ``user_ids, item_ids, rating_scale, seen_indptr,
        seen_items, n_blocks, comm`` (see :func:`fastmf.distributed.als.fit_als`).
    """
    from ..solvers.newton import newton_cg
    from .als import _finish, _open

    ds, owned = _open(data, client, n_blocks, dtype, columns, timeout)
    try:
        backend = DistributedObjective(ds, rank, reg=reg, reg_bias=reg_bias, biases=biases, dtype=dtype,
                                       hessian=hessian, reg_weighting=reg_weighting, mu=mu)
        if x0 is None:
            x0 = backend.x0(random_state)
        ds.reset_stats()
        res = newton_cg(backend, x0, random_state=random_state, preconditioner=preconditioner, **kwargs)
        return _finish(res, ds)
    finally:
        if owned:
            ds.close()
