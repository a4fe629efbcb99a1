"""What every fastmf solver shares: the result object, status codes, callbacks,
progress bars and validation monitoring with early stopping.

Run interface (Newton-CG, ALS and SGD alike)
--------------------------------------------
* ``callbacks``: a callable or a list of callables, each called after every
  iteration (epoch) with that iteration's record (a ``dict``, see
  :class:`IterationRecord`); returning ``True`` stops the run with status
  :data:`Status.CALLBACK`.
* ``progress``: ``True`` shows a tqdm bar (on stderr), ``False`` hides it.
* ``validation``: a :class:`fastmf.Ratings` in the training set's code space; its
  RMSE is recorded each iteration, and with ``early_stopping`` (patience, in
  iterations) the run stops when it has not improved by ``min_delta`` for that
  many iterations, and the best parameters are returned.
* Each run returns a :class:`SolverResult`.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any, Callable, Iterable

import numpy as np
from scipy.optimize import OptimizeResult
from tqdm.auto import tqdm

from ..kernels.predict import rmse_codes

__all__ = [
    "Status",
    "SolverResult",
    "IterationRecord",
    "CallbackList",
    "ValidationMonitor",
    "Stopwatch",
    "make_progress",
]

logger = logging.getLogger("fastmf")


class Status(enum.IntEnum):
    """Why a run ended.  Non-negative codes are normal ends; negative are failures."""

    GTOL = 0  #: relative gradient norm below gtol
    FTOL = 1  #: relative loss decrease below ftol
    MAX_ITER = 2  #: max_iter reached
    MAX_TIME = 3  #: max_time reached
    CALLBACK = 4  #: a callback asked to stop
    EARLY_STOPPING = 5  #: validation RMSE stopped improving
    TRUST_RADIUS = 6  #: trust radius collapsed: no further progress possible in floating point
    UNBOUNDED = -1  #: the objective is unbounded below
    DIVERGED = -2  #: a non-finite loss or parameter appeared

    @property
    def converged(self) -> bool:
        return self in (Status.GTOL, Status.FTOL, Status.EARLY_STOPPING)


class SolverResult(OptimizeResult):
    """Result of a fastmf solver run (a :class:`scipy.optimize.OptimizeResult`).

    Attributes
    ----------
    x : ndarray
        Final (or best, with early stopping) packed parameters.
    fun : float
        Training loss at ``x``.
    grad_norm : float
        Euclidean norm of the gradient at ``x`` (NaN where not computed, e.g. SGD).
    nit : int
        Outer iterations (epochs for SGD).
    n_cg : int
        Total conjugate-gradient steps (Newton-CG only).
    nfev, njev, nhessp : int
        Objective, gradient and Hessian-vector product evaluations.
    status : Status
    success : bool
        ``status.converged`` or a normal stop (max_iter, max_time, callback).
    message : str
    history : list of dict
        One record per iteration (see :class:`IterationRecord`).
    best_iteration : int or None
        Iteration with the best validation RMSE (when a validation set was given).
    elapsed : float
        Wall-clock seconds of the run.
    """


class IterationRecord(dict):
    """One iteration's record: a ``dict`` with at least ``iteration``, ``loss``,
    ``elapsed`` and ``val_rmse`` (``None`` without validation).  Newton-CG adds
    ``grad_norm``, ``n_cg``, ``radius``, ``step_norm``, ``rho``; SGD adds
    ``learning_rate``.  Attribute access works too (``rec.loss``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


class CallbackList:
    """Normalises ``callbacks`` (None, a callable or an iterable of callables)."""

    def __init__(self, callbacks: Callable | Iterable[Callable] | None):
        if callbacks is None:
            self.callbacks: list[Callable] = []
        elif callable(callbacks):
            self.callbacks = [callbacks]
        else:
            try:
                self.callbacks = list(callbacks)
            except TypeError as exc:
                raise TypeError("callbacks must be a callable or a list of callables") from exc
            for cb in self.callbacks:
                if not callable(cb):
                    raise TypeError(f"callback {cb!r} is not callable")

    def __call__(self, record: IterationRecord) -> bool:
        """Call every callback; True if any asked to stop."""
        stop = False
        for cb in self.callbacks:
            if cb(record):
                stop = True
        return stop


class Stopwatch:
    """Elapsed wall-clock time since creation (``perf_counter``)."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def make_progress(total: int | None, enabled: bool, desc: str) -> tqdm:
    """A tqdm bar, disabled when ``enabled`` is false (no output at all)."""
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


class ValidationMonitor:
    """Tracks validation RMSE and early stopping.

    Parameters
    ----------
    validation : Ratings or None
        Held-out ratings in the training code space.
    mu : float
        The model's global offset.
    patience : int or None
        Stop after this many iterations without an improvement of at least
        ``min_delta``; ``None`` records RMSE without stopping.
    min_delta : float
    clip : (low, high) or None
        Clip predictions to the rating scale before scoring.
    """

    def __init__(self, validation, mu: float, patience: int | None = None, min_delta: float = 1e-4, clip=None):
        self.validation = validation
        self.mu = float(mu)
        self.patience = patience
        self.min_delta = float(min_delta)
        self.clip = clip
        self.best_rmse = np.inf
        self.best_iteration: int | None = None
        self.best_params: tuple | None = None
        self._since_best = 0
        if validation is not None:
            self._ratings = validation.values.astype(np.float64)

    @property
    def active(self) -> bool:
        return self.validation is not None

    def rmse(self, P, Q, b=None, c=None) -> float:
        v = self.validation
        return rmse_codes(v.users, v.items, self._ratings, P, Q, b, c, self.mu, self.clip)

    def stop_message(self, unit: str = "iterations") -> str:
        """Why early stopping ended the run (for :class:`SolverResult`.message)."""
        return (f"validation RMSE did not improve by {self.min_delta:g} for {self.patience} {unit} "
                f"(best {self.best_rmse:.5f} at iteration {self.best_iteration})")

    def update(self, iteration: int, P, Q, b=None, c=None) -> tuple[float | None, bool]:
        """Score the current parameters; returns ``(rmse, stop)``.  Keeps a copy of the best."""
        if not self.active:
            return None, False
        score = self.rmse(P, Q, b, c)
        if score < self.best_rmse - self.min_delta or self.best_params is None:
            self.best_rmse = score
            self.best_iteration = iteration
            self.best_params = tuple(None if a is None else a.copy() for a in (P, Q, b, c))
            self._since_best = 0
        else:
            self._since_best += 1
        stop = self.patience is not None and self._since_best >= self.patience
        return score, stop


def finish_result(**fields: Any) -> SolverResult:
    """Build a :class:`SolverResult`, deriving ``success`` from ``status``."""
    status = fields["status"]
    fields.setdefault(
        "success",
        status.converged or status in (Status.MAX_ITER, Status.MAX_TIME, Status.CALLBACK),
    )
    return SolverResult(**fields)
