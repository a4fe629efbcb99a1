"""Compute backends: where the ratings live and the data passes run.

The solvers reach the ratings only through the interface of :mod:`fastmf.backends.base`;
:class:`~fastmf.backends.local.LocalBackend` is the in-process numba implementation and
:class:`~fastmf.backends.dask.DaskBackend` (``fastmf.backends.dask``, imported on use: the
optional ``dask`` extra) the same passes on ratings sharded over a Dask cluster.
"""

import os

from .base import NewtonBackend, PredictBackend, RowSolveBackend
from .local import LocalBackend, ObjectiveBackend, make_local_backend

__all__ = ["NewtonBackend", "RowSolveBackend", "PredictBackend", "LocalBackend", "ObjectiveBackend",
           "make_local_backend", "is_dask_input"]

#: Path endings of Parquet input (a path with a glob character is taken as Parquet too).
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


def is_dask_input(X) -> bool:
    """Whether ``X`` is fitted on a Dask cluster: a Dask collection (detected by its type's
    module, without importing Dask), or a Parquet path (str or PathLike ending in ``.parquet``,
    ``.parq``, ``.pq``, containing a glob character, or naming a directory)."""
    if type(X).__module__.split(".")[0] in ("dask", "dask_expr"):
        return True
    if isinstance(X, (str, os.PathLike)):
        s = os.fspath(X)
        return isinstance(s, str) and (s.lower().endswith(PARQUET_SUFFIXES) or any(ch in s for ch in "*?[")
                                       or os.path.isdir(s))
    return False
