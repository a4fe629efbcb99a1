"""Compute backends: where the ratings live and the data passes run.

The solvers reach the ratings only through the interface of :mod:`fastmf.backends.base`;
:class:`~fastmf.backends.local.LocalBackend` is today's in-process numba implementation.
"""

from .base import NewtonBackend, PredictBackend, RowSolveBackend
from .local import LocalBackend, ObjectiveBackend, make_local_backend

__all__ = ["NewtonBackend", "RowSolveBackend", "PredictBackend", "LocalBackend", "ObjectiveBackend",
           "make_local_backend"]
