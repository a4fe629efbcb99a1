"""Solvers: trust-region Newton-CG, ALS, parallel blocked SGD and Gibbs sampling, with one run interface.

All return a :class:`SolverResult` (packed ``x = [P, Q, b, c]`` plus ``mu``, ``rank``,
``biases``, a per-iteration ``history``); all take ``validation``, ``early_stopping``,
``callbacks`` and ``progress``.
"""

from ._base import IterationRecord, SolverResult, Status
from .als import als
from .gibbs import gibbs
from .newton import ConvergenceWarning, fit_newton_cg, newton_cg, sign_loss_bound
from .sgd import DivergenceError, sgd

__all__ = [
    "ConvergenceWarning",
    "DivergenceError",
    "IterationRecord",
    "SolverResult",
    "Status",
    "als",
    "fit_newton_cg",
    "gibbs",
    "newton_cg",
    "sgd",
    "sign_loss_bound",
]
