"""Every public error and warning of fastmf, in one module (all exported from ``fastmf``).

They are re-exported from their historical modules (``fastmf.solvers.newton.ConvergenceWarning``,
``fastmf.solvers.sgd.DivergenceError``, ``fastmf.model.NotFittedError``...), so existing
imports keep working; the documented path is ``fastmf.<Name>``.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DivergenceError",
    "FastMFDeprecationWarning",
    "FitMemoryError",
    "ForkedOpenMPError",
    "NotFittedError",
    "UnknownIdWarning",
    "WorkerLostError",
]


class NotFittedError(ValueError, AttributeError):
    """The model is used before :meth:`MatrixFactorization.fit` (or :meth:`load`).

    A subclass of ``AttributeError`` too, so ``hasattr(model, "user_factors_")`` is False
    on an unfitted model (scikit-learn's convention).
    """


class UnknownIdWarning(UserWarning):
    """Some predictions used the unknown-id fallback (see ``MatrixFactorization(unknown=...)``)."""


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


class ForkedOpenMPError(RuntimeError):
    """A fastmf kernel was called in a process forked after GNU OpenMP started.

    GNU OpenMP cannot run in a child forked from a parent that used it (the child would
    hang).  Install ``tbb`` (fastmf then uses numba's fork-safe TBB layer), or start worker
    processes with the ``spawn``/``forkserver`` method, or set
    ``NUMBA_THREADING_LAYER=workqueue``.
    """


class FitMemoryError(MemoryError, ValueError):
    """A fit was refused before any work: its estimated peak memory exceeds the limit.

    A ``MemoryError`` (and, for the callers of gibbs's former ``max_memory`` check, a
    ``ValueError``).  The message names the estimate, its largest components, the limit
    and what to change.

    Attributes
    ----------
    estimate : fastmf._memory.MemoryEstimate
        The refused estimate (``total`` bytes and ``components``).
    limit : int
        The limit in bytes (and ``limit_source``, where it came from).
    """

    def __init__(self, message: str, estimate=None, limit: int | None = None, limit_source: str = ""):
        super().__init__(message)
        self.estimate = estimate
        self.limit = limit
        self.limit_source = limit_source


class WorkerLostError(RuntimeError):
    """A Dask worker holding blocks of the ratings died or became unreachable during a fit.

    The fit stops (no factors from partial data are returned); the message names the worker
    and its blocks.  Fit again: the blocks are rebuilt from the source on the live workers.
    """
