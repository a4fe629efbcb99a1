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
  many iterations, and the best parameters are returned.  The solver functions'
  default ``early_stopping="auto"`` is a patience of :data:`DEFAULT_PATIENCE` (5) when a
  validation set is given and no early stopping without one; ``None`` only records
  the RMSE (see ``docs/stopping.md``).
* Each run returns a :class:`SolverResult`.

The run loop
------------
:func:`run_iterations` is the one loop of every solver (as scikit-learn's ``NewtonSolver``:
setup / step / check_convergence / finalize).  It owns the stopwatch, the history, the
progress bar, the callbacks, validation scoring with early stopping, the time limit, the
status and message, the restoration of the best parameters, the
:class:`~fastmf.exceptions.ConvergenceWarning` and the :class:`SolverResult`.  A solver is an
:class:`IterativeSolver` and supplies only its hooks:

``setup()``
    Build state; may return ``(status, message)`` to end before any iteration.
``initial_record()``
    Fields of the iteration-0 record (``None``: no such record).
``check_start()``
    After the iteration-0 record: ``(status, message)`` to end at once (e.g. ``gtol`` met).
``step(it)``
    One iteration; returns the record's fields (without ``iteration``, ``val_rmse`` and
    ``elapsed``, which the loop adds; a solver scoring its own validation puts
    ``val_rmse`` in).  May raise (e.g. :class:`~fastmf.exceptions.DivergenceError`).
``scored(fields)``
    Whether the validation set is scored after this step (default True).
``params()``
    ``(P, Q, b, c)`` for the validation monitor.
``check_convergence(it, record)``
    ``(status, message)`` or None, tested first.
``check_progress(it, record)``
    ``(status, message)`` or None, tested after early stopping and the callbacks (e.g. a
    collapsed trust region).
``restore_best(params, iteration)``
    After early stopping: go back to the best validation parameters.
``convergence_warning(status, message)``
    Text of the :class:`ConvergenceWarning` for ``MAX_ITER``/``MAX_TIME`` (None: no warning).
``finalize(status, message)``
    The result's fields (``x``, ``fun``, ``grad_norm``, counters, solver extras).

Stop ladder after each step: the solver's convergence test, early stopping, a callback,
the solver's progress test, ``max_time``; else ``MAX_ITER`` after ``max_iter`` steps.
"""

from __future__ import annotations

import enum
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from .._threading import thread_limit
from .._validation import check_nonnegative_float, check_positive_int
from ..exceptions import ConvergenceWarning
from ..kernels.predict import rmse_codes

__all__ = [
    "Status",
    "SolverResult",
    "IterationRecord",
    "CallbackList",
    "ValidationMonitor",
    "Stopwatch",
    "make_progress",
    "finish_result",
    "RunOptions",
    "IterativeSolver",
    "run_iterations",
    "check_validation",
    "renamed",
    "UNSET",
    "DEFAULT_PATIENCE",
]

#: Patience of ``early_stopping="auto"`` (the solver functions' default) when a validation set
#: is given: 5 iterations (epochs) without a validation-RMSE improvement of ``min_delta``.
DEFAULT_PATIENCE = 5

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


class SolverResult(dict):
    """Result of a fastmf solver run: a ``dict`` with attribute access, as
    :class:`scipy.optimize.OptimizeResult` (not a subclass of it, so that ``import fastmf``
    does not import :mod:`scipy.optimize`; ``scipy.optimize.OptimizeResult(res)`` converts).

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

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__

    def __repr__(self):
        if not self:
            return self.__class__.__name__ + "()"
        width = max(map(len, map(str, self))) + 1
        return "\n".join(f"{str(k).rjust(width)}: {_short(v)}" for k, v in self.items())

    def __dir__(self):
        return list(self.keys())


def _short(v) -> str:
    if isinstance(v, list) and len(v) > 4:
        return f"[{v[0]!r}, ... {len(v) - 1} more]"
    return repr(v)


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


class _NoBar:
    """The disabled progress bar (no tqdm import)."""

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


def make_progress(total: int | None, enabled: bool, desc: str):
    """A tqdm bar, or a no-op stand-in when ``enabled`` is false (no output at all; tqdm is
    imported only when a bar is shown)."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=False, leave=False, dynamic_ncols=True)


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

    def __init__(self, validation, mu: float, patience: int | None = None, min_delta: float = 1e-4, clip=None,
                 rmse=rmse_codes):
        self.validation = validation
        self._rmse = rmse
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
        return self._rmse(v.users, v.items, self._ratings, P, Q, b, c, self.mu, self.clip)

    def stop_message(self, unit: str = "iterations") -> str:
        """Why early stopping ended the run (for :class:`SolverResult`.message)."""
        return (f"validation RMSE did not improve by {self.min_delta:g} for {self.patience} {unit} "
                f"(best {self.best_rmse:.5f} at iteration {self.best_iteration})")

    def update(self, iteration: int, P, Q, b=None, c=None) -> tuple[float | None, bool]:
        """Score the current parameters; returns ``(rmse, stop)``.  With a patience, keeps a copy of the best."""
        if not self.active:
            return None, False
        score = self.rmse(P, Q, b, c)
        if score < self.best_rmse - self.min_delta or self.best_iteration is None:
            self.best_rmse = score
            self.best_iteration = iteration
            if self.patience is not None:
                # only early stopping restores the best parameters: a monitor-only run (the
                # estimator's eval_set) does not pay a copy of the factors per improvement
                # (21 MB an epoch at the ML-20M shape, rank 32)
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


def check_validation(validation, n_users: int, n_items: int) -> None:
    """``validation`` must be a Ratings-like object in the training code space (shape ``(m, n)``)."""
    if validation is None:
        return
    for attr in ("users", "items", "values", "n_users", "n_items"):
        if not hasattr(validation, attr):
            raise TypeError(f"validation must be a fastmf Ratings, got {type(validation).__name__}")
    if (validation.n_users, validation.n_items) != (n_users, n_items):
        raise ValueError(
            f"validation has shape ({validation.n_users}, {validation.n_items}) but the training "
            f"ratings have ({n_users}, {n_items}): build both in one code space "
            "(e.g. with fastmf.data.splits or Ratings.subset)"
        )


@dataclass
class RunOptions:
    """The run interface every solver shares (validated by :meth:`check`).

    ``max_iter`` counts iterations (ALS, Newton-CG), epochs (SGD) or sweeps (Gibbs).
    """

    max_iter: int
    max_time: float | None = None
    callbacks: Any = None
    progress: bool = True
    validation: Any = None
    early_stopping: int | str | None = None
    min_delta: float = 1e-4
    clip: tuple | None = None
    n_threads: int | None = None

    def check(self, min_iter: int = 0) -> "RunOptions":
        """Validate in place (``ValueError``/``TypeError`` naming the parameter); returns self."""
        self.max_iter = check_positive_int(self.max_iter, "max_iter", minimum=min_iter)
        if self.max_time is not None:
            self.max_time = check_nonnegative_float(self.max_time, "max_time", strictly_positive=True)
        if isinstance(self.early_stopping, str):
            if self.early_stopping != "auto":
                raise ValueError(f"early_stopping must be a positive int, 'auto' or None, got {self.early_stopping!r}")
            self.early_stopping = DEFAULT_PATIENCE if self.validation is not None else None
        if self.early_stopping is not None:
            self.early_stopping = check_positive_int(self.early_stopping, "early_stopping")
            if self.validation is None:
                raise ValueError("early_stopping needs a validation set (validation=...)")
        self.min_delta = check_nonnegative_float(self.min_delta, "min_delta")
        if not isinstance(self.progress, (bool, np.bool_)):
            raise TypeError(f"progress must be a bool, got {self.progress!r}")
        self.progress = bool(self.progress)
        if not isinstance(self.callbacks, CallbackList):
            self.callbacks = CallbackList(self.callbacks)
        return self


class IterativeSolver:
    """Base of a solver driven by :func:`run_iterations` (hooks: see the module docstring).

    Attributes set by the loop before ``setup``: ``options`` (:class:`RunOptions`),
    ``n_threads`` (the effective thread count), ``clock`` (:class:`Stopwatch`),
    ``history`` (list of :class:`IterationRecord`) and ``monitor`` (a
    :class:`ValidationMonitor`, which ``setup`` may replace, or None without validation).
    """

    name = "solver"
    #: the progress bar's label (default: ``name``)
    desc = None
    #: the word in the early-stopping message
    unit = "iterations"
    #: the ``mu`` and ``min_iter`` of the run (overridden by solvers)
    mu = 0.0
    min_iter = 0

    def setup(self):
        return None

    def initial_record(self) -> dict | None:
        return None

    def check_start(self):
        return None

    def step(self, it: int) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def scored(self, fields: dict) -> bool:
        return True

    def params(self):  # pragma: no cover - interface
        raise NotImplementedError

    def check_convergence(self, it: int, record: IterationRecord):
        return None

    def check_progress(self, it: int, record: IterationRecord):
        return None

    def restore_best(self, params: tuple, iteration: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def convergence_warning(self, status: Status, message: str) -> str | None:
        return None

    def max_iter_message(self) -> str:
        return f"maximum number of iterations ({self.options.max_iter}) reached"

    def postfix(self, record: IterationRecord) -> dict:
        return {"loss": f"{record['loss']:.6g}"}

    def finalize(self, status: Status, message: str) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


def run_iterations(solver: IterativeSolver, options: RunOptions, *, stacklevel: int = 2) -> SolverResult:
    """Run ``solver`` under ``options`` (thread count scoped to the call); see the module docstring.

    ``stacklevel`` of the :class:`ConvergenceWarning` counts from the caller of this function.
    """
    with thread_limit(options.n_threads) as n_threads:
        solver.options = options
        solver.n_threads = n_threads
        solver.clock = clock = Stopwatch()
        solver.history = history = []
        solver.monitor = None
        if options.validation is not None:
            patience = options.early_stopping
            assert not isinstance(patience, str), "RunOptions.check() resolves 'auto'"
            solver.monitor = ValidationMonitor(options.validation, solver.mu, patience, options.min_delta, options.clip)
        early = solver.setup()
        it = 0
        if early is None:
            first = solver.initial_record()
            if first is not None:
                val_rmse = None
                if solver.monitor is not None and solver.monitor.active:
                    val_rmse, _ = solver.monitor.update(0, *solver.params())
                history.append(IterationRecord(iteration=0, **first, val_rmse=val_rmse, elapsed=clock()))
            early = solver.check_start()
        if early is not None:
            status, message = early
            best_iteration = None
        else:
            status, message, it = _loop(solver, options, clock, history)
            monitor = solver.monitor
            best_iteration = monitor.best_iteration if monitor is not None and monitor.active else None
            if status is Status.EARLY_STOPPING and monitor.best_params is not None:
                solver.restore_best(monitor.best_params, monitor.best_iteration)
            if status in (Status.MAX_ITER, Status.MAX_TIME):
                text = solver.convergence_warning(status, message)
                if text is not None:
                    warnings.warn(text, ConvergenceWarning, stacklevel=stacklevel + 1)
        fields = solver.finalize(status, message)
        res = finish_result(nit=it, status=status, message=message, history=history,
                            best_iteration=best_iteration, elapsed=clock(), **fields)
    level = logging.WARNING if status < 0 else logging.INFO
    logger.log(level, "%s: %s (nit=%d, loss=%.6g, %.2fs)", solver.name, message, it, res.fun, res.elapsed)
    return res


def _loop(solver: IterativeSolver, options: RunOptions, clock: Stopwatch, history: list):
    """The iterations and the stop ladder; returns ``(status, message, iterations run)``."""
    monitor = solver.monitor if solver.monitor is not None and solver.monitor.active else None
    status, message = Status.MAX_ITER, solver.max_iter_message()
    val_rmse = history[-1]["val_rmse"] if history else None
    bar = make_progress(options.max_iter, options.progress, solver.desc or solver.name)
    it = 0
    try:
        for it in range(1, options.max_iter + 1):
            fields = solver.step(it)
            es_stop = False
            if "val_rmse" in fields:
                val_rmse = fields.pop("val_rmse")
            elif monitor is not None and solver.scored(fields):
                val_rmse, es_stop = monitor.update(it, *solver.params())
            rec = IterationRecord(iteration=it, **fields, val_rmse=val_rmse, elapsed=clock())
            history.append(rec)
            bar.update(1)
            bar.set_postfix(**solver.postfix(rec), refresh=False)
            stop_cb = options.callbacks(rec)
            stop = solver.check_convergence(it, rec)
            if stop is None and es_stop:
                stop = Status.EARLY_STOPPING, monitor.stop_message(solver.unit)
            if stop is None and stop_cb:
                stop = Status.CALLBACK, "stopped by a callback"
            if stop is None:
                stop = solver.check_progress(it, rec)
            if stop is None and options.max_time is not None and clock() >= options.max_time:
                stop = Status.MAX_TIME, f"time limit max_time={options.max_time:g}s reached"
            if stop is not None:
                status, message = stop
                break
    finally:
        bar.close()
    return status, message, it


#: Marks a deprecated keyword that was not given.
UNSET = object()


def renamed(owner: str, new_name: str, new_value, default, old_name: str, old_value):
    """Resolve a renamed keyword: ``(value, name the caller used)``.

    A given ``old_value`` warns (:class:`~fastmf.exceptions.FastMFDeprecationWarning`, removed in
    the next release) and wins; given with a non-default new value it is a ``TypeError``.
    """
    from ..exceptions import FastMFDeprecationWarning

    if old_value is UNSET:
        return new_value, new_name
    if new_value is not UNSET and new_value != default:
        raise TypeError(f"{owner}: {old_name} is the deprecated name of {new_name}: give only {new_name}")
    warnings.warn(f"{owner}: {old_name} is deprecated and will be removed in the next release; use {new_name}",
                  FastMFDeprecationWarning, stacklevel=3)
    return old_value, old_name
