"""Fitting and scoring on a Dask cluster (optional extra: ``pip install fastmf[dask]``).

Entry points
------------
* :func:`distribute`: ratings (Dask DataFrame, Parquet path or local ``Ratings``) to
  ``B`` block actors pinned to the workers (:class:`DistributedRatings`);
* :func:`fit_als`: blocked ALS, factors bit-identical to :func:`fastmf.solvers.als.als`;
* :func:`fit_newton`: trust-region Newton-CG, the in-process solver on the Dask backend
  (:class:`fastmf.backends.dask.DaskBackend`; :class:`DistributedObjective` builds one);
* ``MatrixFactorization(solver="als"|"newton").fit(ddf)``: the estimator on Dask input
  (:mod:`fastmf.distributed.estimator`);
* :func:`to_model`: a fitted :class:`fastmf.MatrixFactorization` from such a result;
* :func:`predict`, :func:`recommend`: batch scoring of Dask collections
  (:mod:`fastmf.distributed.scoring`).

Importing this package does not import Dask; the functions do.  See
``docs/distributed.md`` for the design and the network cost model.
"""

from .als import fit_als
from .cluster import DistributedRatings, WorkerLostError, distribute
from .model import to_model
from .newton import DistributedObjective, fit_newton
from .scoring import predict, recommend

__all__ = ["distribute", "DistributedRatings", "WorkerLostError", "fit_als", "fit_newton", "DistributedObjective",
           "to_model", "predict", "recommend", "check_solver"]

#: Solvers with a distributed implementation.
DISTRIBUTED_SOLVERS = ("als", "newton", "newton-cg")


def check_solver(solver: str) -> None:
    """Raise a clear error for a solver that cannot run on Dask input (``sgd``, ``gibbs``)."""
    if solver not in DISTRIBUTED_SOLVERS:
        raise ValueError(
            f"solver={solver!r} cannot fit Dask input: the distributed solvers are 'als' and 'newton' "
            "(MatrixFactorization(solver='als'|'newton'), fastmf.distributed.fit_als / fit_newton); for sgd or "
            "gibbs, collect the ratings into a local fastmf.Ratings first (e.g. Ratings.from_dataframe(ddf.compute()))"
        )
