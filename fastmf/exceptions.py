"""Public errors and warnings of fastmf's solver layer, in one module.

They are re-exported from their historical modules (``fastmf.solvers.newton.ConvergenceWarning``,
``fastmf.solvers.sgd.DivergenceError``), so existing imports keep working.
"""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "DivergenceError", "FastMFDeprecationWarning"]


class ConvergenceWarning(UserWarning):
    """A solver stopped (iteration or time limit) before meeting its tolerance."""


class DivergenceError(FloatingPointError):
    """A solver produced a non-finite loss or parameter.

    Attributes
    ----------
    epoch : int
        The (1-based) iteration at whose end the problem was found.
    learning_rate : float
        The learning rate used in that iteration (SGD; NaN for other solvers).
    history : list of dict
        Records of the iterations before it.
    """

    def __init__(self, message: str, epoch: int, learning_rate: float = float("nan"), history: list | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.learning_rate = learning_rate
        self.history = [] if history is None else history


class FastMFDeprecationWarning(DeprecationWarning):
    """A fastmf name or parameter that will be removed in the next release."""
