"""Solvers: trust-region Newton-CG, ALS and parallel SGD, with a shared run interface."""

from ._base import IterationRecord, SolverResult, Status

__all__ = ["IterationRecord", "SolverResult", "Status"]
