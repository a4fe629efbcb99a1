r"""``MatrixFactorization``: the scikit-learn-style estimator over fastmf's solvers.

Model
-----
For a user ``u`` and an item ``i`` the prediction is

.. math::

    \hat r_{ui} = \mu + b_u + c_i + p_u \cdot q_i

with :math:`\mu` the training mean (fixed, not fitted; 0 without biases), user and
item biases :math:`b_u, c_i` (when ``biases=True``) and rank-``k`` factors
:math:`p_u, q_i`.  ``fit`` minimises the squared error over the observed ratings
plus the L2 penalty of :mod:`fastmf.objective`:

.. math::

    L = \tfrac12 \sum_{(u,i)\in\Omega} (r_{ui} - \hat r_{ui})^2
        + \tfrac12 \lambda_f \Big(\sum_u w_u \|p_u\|^2 + \sum_i w_i \|q_i\|^2\Big)
        + \tfrac12 \lambda_b \Big(\sum_u w_u b_u^2 + \sum_i w_i c_i^2\Big)

with :math:`w_u = n_u` (the user's number of ratings, ``reg_weighting="count"``, as
ALS-WR; the default) or :math:`w_u = 1` (``"uniform"``), by trust-region Newton-CG
(``solver="newton"``), alternating least squares (``"als"``) or parallel blocked
SGD (``"sgd"``).

Ids
---
Users and items are addressed by their *raw* ids (ints or strings) everywhere:
``fit`` maps them to dense codes and every method maps back.  The orientation is
always users x items.

Unknown ids (``unknown=``)
--------------------------
A prediction for a user or item absent from the training data uses:

* ``"mean"`` (default): :math:`\mu` plus whatever bias is known, i.e.
  :math:`\mu + c_i` for an unknown user, :math:`\mu + b_u` for an unknown item,
  :math:`\mu` when both are unknown (no factor term);
* ``"nan"``: NaN;
* ``"raise"``: :class:`KeyError` naming the first unknown id.

Whenever the fallback is used, an :class:`UnknownIdWarning` says how many
predictions it concerned.  A user or item that exists in the training code space
but has no rating (possible with :meth:`Ratings.from_codes`) is *known*: its
factors are whatever the regularised fit gives it (zero for ALS).

Clipping (``clip=True``)
------------------------
:meth:`predict` clips to the training data's ``rating_scale`` when it declares one
and otherwise to the observed ``[min, max]`` of the training ratings (stored as
``rating_scale_``).  :meth:`recommend` ranks and reports *unclipped* scores
(clipping would create ties at the top of the scale).
"""

from __future__ import annotations

import inspect
import json
import logging
import numbers
import os
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._io import atomic_open
from ._packing import pack, unpack
from ._threading import resolve_n_threads, thread_limit
from ._weights import reg_exponent, row_weights
from ._validation import (
    check_choice,
    check_dtype,
    check_nonnegative_float,
    check_positive_int,
    check_random_state,
)
from .data.ratings import Ratings
from .initialization import INITS
from .kernels.predict import predict_codes
from .solvers._base import CallbackList
from .solvers.registry import check_fit_request, run_solver

__all__ = [
    "MatrixFactorization",
    "NotFittedError",
    "UnknownIdWarning",
    "as_ratings",
    "FORMAT_VERSION",
]

logger = logging.getLogger("fastmf")

#: Version of the ``.npz`` model format written by :meth:`MatrixFactorization.save`.
FORMAT_VERSION = 1
#: Default budget (number of floats) of one block of scores in recommend / similar_items.
DEFAULT_BLOCK_SIZE = 1 << 22

_SOLVERS = ("newton", "als", "sgd", "gibbs")
_UNKNOWN = ("mean", "nan", "raise")


class NotFittedError(ValueError, AttributeError):
    """The model is used before :meth:`MatrixFactorization.fit` (or :meth:`load`)."""


class UnknownIdWarning(UserWarning):
    """Some predictions used the unknown-id fallback (see ``unknown=``)."""


# ---------------------------------------------------------------------------- input conversion
def as_ratings(X, dtype=np.float32, *, name: str = "X") -> Ratings:
    """Convert any accepted input to :class:`~fastmf.data.ratings.Ratings`.

    Parameters
    ----------
    X : Ratings, pandas.DataFrame, scipy sparse matrix/array, or tuple
        * ``Ratings``: used as is (cast to ``dtype``, sharing its index arrays);
        * ``DataFrame`` with user/item/rating columns (names guessed as in
          :meth:`Ratings.from_dataframe`);
        * a scipy sparse matrix (users x items; every *stored* entry is a rating;
          row and column indices are the raw ids);
        * ``(users, items, ratings)`` or ``(users, items, ratings, timestamps)``
          arrays of raw ids and ratings (tuple or list).
    dtype : {np.float32, np.float64}
    name : str
        Name of the argument, for error messages.

    Raises
    ------
    TypeError
        An unsupported type.
    ValueError
        Anything :class:`Ratings` refuses (empty data, NaN ratings, duplicates...).
    """
    dt = check_dtype(dtype)
    if isinstance(X, Ratings):
        return X.astype(dt)
    if isinstance(X, pd.DataFrame):
        return Ratings.from_dataframe(X, dtype=dt)
    if sp.issparse(X):
        return Ratings.from_scipy(X, dtype=dt)
    if isinstance(X, (tuple, list)) and len(X) in (3, 4) and all(np.ndim(a) == 1 for a in X):
        return Ratings.from_arrays(*X, dtype=dt)
    raise TypeError(
        f"{name} must be a fastmf Ratings, a pandas DataFrame with user/item/rating columns, "
        f"a scipy sparse matrix, or a (users, items, ratings) tuple of 1-D arrays; got {type(X).__name__}"
    )


def _raw_triplets(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw user ids, raw item ids and ratings of an input (no id coding, no sorting)."""
    if isinstance(X, Ratings):
        return X.user_ids[X.users], X.item_ids[X.items], X.values
    if isinstance(X, (tuple, list)) and len(X) in (3, 4) and all(np.ndim(a) == 1 for a in X):
        # pairs to score need no id coding: take the arrays as they are (duplicates allowed)
        u, i, r = (np.asarray(a) for a in X[:3])
        if not len(u) == len(i) == len(r):
            raise ValueError(f"users, items and ratings have mismatched lengths: {len(u)}, {len(i)}, {len(r)}")
        if r.dtype.kind not in "iuf":
            raise TypeError(f"ratings must be numeric, got dtype {r.dtype}")
        return u, i, r
    r = as_ratings(X, np.float64)
    return r.user_ids[r.users], r.item_ids[r.items], r.values


def _same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    if a is b:
        return True
    if a.shape != b.shape or (a.dtype.kind in "iu") != (b.dtype.kind in "iu"):
        return False
    try:
        return bool(np.array_equal(a, b))
    except TypeError:
        return False


def _to_code_space(ratings: Ratings, train: Ratings, what: str) -> tuple[Ratings, int]:
    """Map ``ratings`` into ``train``'s code space; drop ratings of unknown users/items."""
    if _same_ids(ratings.user_ids, train.user_ids) and _same_ids(ratings.item_ids, train.item_ids):
        return ratings, 0
    uc = train.user_codes(ratings.user_ids, missing="ignore")[ratings.users]
    ic = train.item_codes(ratings.item_ids, missing="ignore")[ratings.items]
    keep = (uc >= 0) & (ic >= 0)
    n_dropped = int(ratings.nnz - np.count_nonzero(keep))
    if n_dropped == ratings.nnz:
        raise ValueError(f"none of the {ratings.nnz} {what} ratings has a user and an item known in training")
    mapped = Ratings.from_codes(
        uc[keep], ic[keep], ratings.values[keep], train.n_users, train.n_items,
        None if ratings.timestamps is None else ratings.timestamps[keep],
        user_ids=train.user_ids, item_ids=train.item_ids, dtype=train.dtype,
        rating_scale=ratings.rating_scale, name=ratings.name,
    )
    return mapped, n_dropped


def _py(x):
    return x.item() if isinstance(x, np.generic) else x


def _index_codes(index: pd.Index, raw) -> np.ndarray:
    """Codes (int64, -1 when unknown) of raw ids in ``index``."""
    arr = np.atleast_1d(np.asarray(raw))
    if arr.ndim != 1:
        raise ValueError(f"ids must be a scalar or 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        # float ids such as 3.0 (from pandas) address the integer id 3
        whole = np.isfinite(arr) & (arr == np.floor(arr))
        if whole.all() and index.dtype.kind in "iu":
            arr = arr.astype(np.int64)
    try:
        return index.get_indexer(arr).astype(np.int64)
    except (TypeError, ValueError):
        # Ids of a type the index cannot compare with are unknown ids.
        return np.full(arr.shape[0], -1, dtype=np.int64)


# ---------------------------------------------------------------------------- the estimator
class MatrixFactorization:
    r"""Biased matrix factorization of explicit ratings (see the module docstring for the model).

    ``__init__`` only stores the parameters (as scikit-learn estimators do);
    :meth:`fit` validates them before any work.

    Parameters
    ----------
    rank : int >= 1
        Number of latent factors ``k`` (for ``"gibbs"``: of each posterior draw; the
        fitted factors then have ``rank`` times the number of kept draws columns).
    solver : {"newton", "als", "sgd", "gibbs"}
        Trust-region Newton-CG (:func:`fastmf.solvers.newton.newton_cg` on
        :class:`fastmf.objective.MFObjective`, with the *exact* Hessian by default:
        the residuals stay non-zero at a minimum, so Gauss-Newton converges only
        linearly; pass ``solver_options={"hessian": "gauss-newton"}`` for it),
        alternating least squares
        (:func:`fastmf.solvers.als.als`), parallel blocked SGD
        (:func:`fastmf.solvers.sgd.sgd`), or Gibbs sampling of Bayesian biased MF
        (:func:`fastmf.solvers.gibbs.gibbs`: hierarchical priors whose precisions are
        sampled, prediction = posterior mean; the most accurate on ml-100k, see the
        README).  ``"gibbs"`` takes no ``reg``, ``reg_bias``, ``tol`` or
        ``early_stopping`` (they raise unless left at their defaults; nor
        ``reg_weighting``), reads
        ``max_iter`` as its number of draws after the burn-in, and its models
        support neither ``warm_start`` nor fold-in.
    reg : float >= 0
        :math:`\lambda_f`, the L2 weight of the factors.  The default 0.1 (with
        ``reg_weighting="count"``) was the best of {0.05, 0.1, 0.2} for ALS at rank 32
        on ml-100k u1 (test RMSE 0.979 / 0.929 / 0.939) and on a 90/10 split of
        ml-latest-small (0.856 / 0.829 / 0.842).
    reg_bias : float >= 0, optional
        :math:`\lambda_b`, the L2 weight of the biases; defaults to ``reg``.
    biases : bool
        Fit user and item biases (and offset by the training mean :math:`\mu`).
    reg_weighting : {"uniform", "sqrt-count", "count"} or float >= 0
        Penalty row weights :math:`w_u = n_u^{\alpha}`: α = 1 (``"count"``, ALS-WR style),
        0.5 (``"sqrt-count"``), 0 (``"uniform"``) or the float given
        (:mod:`fastmf._weights`).
    dtype : {np.float32, np.float64}
        Storage dtype of the ratings and the parameters.
    n_threads : int, optional
        Threads for numba kernels and BLAS during each call (``fit``, ``predict``,
        ``recommend``...), restored afterwards; ``None`` = all, ``-1`` = all.
    max_iter : int >= 1, optional
        Newton/ALS outer iterations, SGD epochs or Gibbs draws after the burn-in;
        ``None`` = the solver's default.
    tol : float >= 0, optional
        Newton: ``gtol`` (relative gradient norm); ALS and SGD: their ``tol``
        (relative loss decrease); ``None`` = the solver's default.
    random_state : None, int or numpy Generator
        Seed of the initial factors (and SGD's shuffles).  An int makes ``fit``
        deterministic (for a given thread count; SGD whatever the count).
    init : {"random", "svd"}
        Starting factors (:func:`fastmf.initialization.initial_factors`): random
        draws, or the spectral start (top-``rank`` singular vectors of the centred
        training ratings, no random component; needs ``rank < min(n_users,
        n_items)``).  The spectral start matters most with ``early_stopping``.
        Ignored by ``fit(..., warm_start=True)``, which starts from the model.
    init_scale : float >= 0, optional
        Root mean squared norm of a starting factor row.  ``None``: the solver's
        default (0.1 for ``"newton"`` and ``"als"``; for ``"sgd"`` its
        ``init_scale`` option times :math:`\sqrt{\mathrm{rank}}`).
    progress : bool
        Show a progress bar while fitting.
    callbacks : callable or list of callables, optional
        Called after every iteration with the iteration record (a dict);
        returning True stops the run.  Not saved by :meth:`save`.
    early_stopping : int >= 1, optional
        Patience (iterations) of early stopping on the RMSE of ``eval_set``
        (required then); the best parameters are kept.
    unknown : {"mean", "nan", "raise"}
        Unknown-id policy of :meth:`predict` (see the module docstring).
    clip : bool
        Clip predictions to the rating scale.
    solver_options : dict, optional
        Extra keyword arguments for the solver (and, for ``"newton"``, for
        :class:`~fastmf.objective.MFObjective`, e.g. ``{"hessian": "gauss-newton",
        "preconditioner": "block-jacobi"}``); unknown keys raise in :meth:`fit`.

    Attributes
    ----------
    user_factors_ : ndarray, shape (n_users, rank)
    item_factors_ : ndarray, shape (n_items, rank)
    user_biases_, item_biases_ : ndarray or None
    global_mean_ : float
        :math:`\mu`.
    user_ids_, item_ids_ : ndarray
        Raw id of each row of the factors.
    rating_scale_ : (float, float)
        Scale used for clipping.
    item_titles_ : dict or None
        Raw item id -> title, when the training data had titles.
    result_ : SolverResult
        The solver's result (status, message, counts...).
    history_ : list of dict
        One record per iteration (loss, elapsed, val_rmse, solver-specific keys).
    n_iter_ : int
    fit_time_ : float
        Seconds spent in :meth:`fit`.
    n_eval_dropped_ : int
        ``eval_set`` ratings dropped because their user or item is not in training.
    seen_indptr_, seen_items_ : ndarray
        CSR (by user code) of the items each user rated in training, for
        ``recommend(exclude_seen=True)``.
    """

    def __init__(
        self,
        rank: int = 32,
        solver: str = "newton",
        reg: float = 0.1,
        reg_bias: float | None = None,
        biases: bool = True,
        reg_weighting: str = "count",
        dtype=np.float32,
        n_threads: int | None = None,
        max_iter: int | None = None,
        tol: float | None = None,
        random_state=None,
        init: str = "random",
        init_scale: float | None = None,
        progress: bool = True,
        callbacks: Callable | Iterable[Callable] | None = None,
        early_stopping: int | None = None,
        unknown: str = "mean",
        clip: bool = True,
        solver_options: dict | None = None,
    ):
        self.rank = rank
        self.solver = solver
        self.reg = reg
        self.reg_bias = reg_bias
        self.biases = biases
        self.reg_weighting = reg_weighting
        self.dtype = dtype
        self.n_threads = n_threads
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.init = init
        self.init_scale = init_scale
        self.progress = progress
        self.callbacks = callbacks
        self.early_stopping = early_stopping
        self.unknown = unknown
        self.clip = clip
        self.solver_options = solver_options

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (as stored; scikit-learn's ``clone`` relies on this)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> "MatrixFactorization":
        """Set constructor parameters; unknown names raise ``ValueError``.  Returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for MatrixFactorization; valid parameters: {valid}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name, p in sig.parameters.items():
            if name == "self":
                continue
            value = getattr(self, name)
            default = p.default
            try:
                same = value is default or (type(value) is type(default) and value == default)
            except Exception:  # arrays and other odd values
                same = False
            if name == "dtype":
                try:
                    same = np.dtype(value) == np.dtype(default)
                    value = np.dtype(value).name if same is False else value
                except TypeError:
                    pass
            if not same:
                parts.append(f"{name}={value!r}")
        return f"MatrixFactorization({', '.join(parts)})"

    def _validated_params(self) -> dict[str, Any]:
        """Check every parameter; return the normalised values.  Raises before any work."""
        p: dict[str, Any] = {}
        p["rank"] = check_positive_int(self.rank, "rank")
        if not isinstance(self.solver, str):
            raise TypeError(f"solver must be a string, got {self.solver!r}")
        p["solver"] = check_choice(self.solver, "solver", _SOLVERS)
        p["reg"] = check_nonnegative_float(self.reg, "reg")
        p["reg_bias"] = None if self.reg_bias is None else check_nonnegative_float(self.reg_bias, "reg_bias")
        if not isinstance(self.biases, (bool, np.bool_)):
            raise TypeError(f"biases must be a bool, got {self.biases!r}")
        p["biases"] = bool(self.biases)
        reg_exponent(self.reg_weighting)
        p["reg_weighting"] = self.reg_weighting
        p["dtype"] = check_dtype(self.dtype)
        resolve_n_threads(self.n_threads)
        p["n_threads"] = self.n_threads
        p["max_iter"] = None if self.max_iter is None else check_positive_int(self.max_iter, "max_iter")
        p["tol"] = None if self.tol is None else check_nonnegative_float(self.tol, "tol")
        rs = self.random_state
        if isinstance(rs, bool) or not (
            rs is None or isinstance(rs, (numbers.Integral, np.random.Generator))
        ):
            raise TypeError(f"random_state must be None, an int or a numpy Generator, got {rs!r}")
        if isinstance(rs, numbers.Integral) and rs < 0:
            raise ValueError(f"random_state must be a non-negative int, got {rs}")
        p["random_state"] = rs
        if not isinstance(self.init, str):
            raise TypeError(f"init must be a string, got {self.init!r}")
        p["init"] = check_choice(self.init, "init", set(INITS))
        p["init_scale"] = None if self.init_scale is None else check_nonnegative_float(self.init_scale, "init_scale")
        if not isinstance(self.progress, (bool, np.bool_)):
            raise TypeError(f"progress must be a bool, got {self.progress!r}")
        p["progress"] = bool(self.progress)
        CallbackList(self.callbacks)  # raises TypeError for non-callables
        p["callbacks"] = self.callbacks
        p["early_stopping"] = (
            None if self.early_stopping is None else check_positive_int(self.early_stopping, "early_stopping")
        )
        p["unknown"] = check_choice(self.unknown, "unknown", _UNKNOWN)
        if not isinstance(self.clip, (bool, np.bool_)):
            raise TypeError(f"clip must be a bool, got {self.clip!r}")
        p["clip"] = bool(self.clip)
        opts = self.solver_options
        if opts is None:
            opts = {}
        elif not isinstance(opts, dict) or not all(isinstance(k, str) for k in opts):
            raise TypeError(f"solver_options must be a dict with string keys, got {opts!r}")
        p["solver_options"] = dict(opts)
        return p

    # ------------------------------------------------------------------ fitting
    def fit(self, X, eval_set=None, *, warm_start: bool = False) -> "MatrixFactorization":
        r"""Fit the factors to the ratings ``X``.

        Parameters
        ----------
        X : Ratings, DataFrame, scipy sparse matrix or (users, items, ratings)
            Training ratings with raw ids (see :func:`as_ratings`).
        eval_set : same forms, optional
            Held-out ratings whose RMSE is recorded each iteration (``val_rmse``
            in ``history_``) and drives ``early_stopping``.  They are mapped into
            the training code space; ratings of users or items unknown to
            training are dropped (count in ``n_eval_dropped_``, logged).
        warm_start : bool
            Continue from the current factors instead of a random start.  The
            model must be fitted (or loaded) with the same ``rank`` and
            ``biases``.  Users and items of ``X`` that the model does not know
            are added (small random factors, zero biases); known ones keep their
            rows; known ones absent from ``X`` keep their rows too (with an empty
            row of ratings they are only regularised).  :math:`\mu` is the mean
            of the new ``X`` (unchanged when refitting on the same data).

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            A bad parameter (named) or bad input, before any work.
        """
        t0 = time.perf_counter()
        p = self._validated_params()
        if not isinstance(warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool, got {warm_start!r}")
        if p["early_stopping"] is not None and eval_set is None:
            raise ValueError("early_stopping needs an eval_set to monitor")
        check_fit_request(p, warm_start)
        if warm_start:
            self._check_fitted()
            if self.user_factors_.shape[1] != p["rank"]:
                raise ValueError(
                    f"warm_start needs the same rank: the model has rank {self.user_factors_.shape[1]}, rank={p['rank']}"
                )
            if (self.user_biases_ is not None) != p["biases"]:
                raise ValueError(f"warm_start needs the same biases setting as the fitted model (biases={p['biases']})")

        train = as_ratings(X, p["dtype"], name="X")
        x0 = None
        if warm_start:
            train, x0 = self._warm_start_point(train, p)
        val = None
        n_dropped = 0
        if eval_set is not None:
            val = as_ratings(eval_set, p["dtype"], name="eval_set")
            val, n_dropped = _to_code_space(val, train, "eval_set")
            if n_dropped:
                logger.info("eval_set: dropped %d ratings whose user or item is not in the training data", n_dropped)

        with thread_limit(p["n_threads"]), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result, mu = run_solver(p, train, val, x0)

        m, n = train.n_users, train.n_items
        # gibbs returns its kept draws stacked: a model of rank (draws x rank)
        P, Q, b, c = unpack(np.asarray(result.x), m, n, int(result.get("rank", p["rank"])), p["biases"])
        dt = p["dtype"]
        self.user_factors_ = np.array(P, dtype=dt, copy=True)
        self.item_factors_ = np.array(Q, dtype=dt, copy=True)
        self.user_biases_ = None if b is None else np.array(b, dtype=dt, copy=True)
        self.item_biases_ = None if c is None else np.array(c, dtype=dt, copy=True)
        self.global_mean_ = float(mu)
        self.user_ids_ = train.user_ids
        self.item_ids_ = train.item_ids
        self.rating_scale_ = _rating_scale(train)
        titles = train.item_titles
        if titles:
            self.item_titles_ = {k: titles[k] for k in train.item_ids.tolist() if titles.get(k) is not None}
        else:
            self.item_titles_ = None
        self.seen_indptr_ = train.user_indptr
        self.seen_items_ = train.items
        self.result_ = result
        self.history_ = [dict(rec) for rec in (result.get("history") or [])]
        self.n_iter_ = int(result.get("nit", len(self.history_)))
        self.n_eval_dropped_ = n_dropped
        self.dataset_name_ = train.name
        self._user_index = None
        self._item_index = None
        self.fit_time_ = time.perf_counter() - t0
        # the solver's warnings (e.g. ConvergenceWarning), re-issued at the caller's fit() line,
        # once the model is complete, so that an "error" filter still leaves a usable model
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=2)
        logger.info(
            "fit %s rank=%d: %s (%d iterations, %.3f s)",
            p["solver"], p["rank"], result.get("message", ""), self.n_iter_, self.fit_time_,
        )
        return self

    def _warm_start_point(self, train: Ratings, p: dict) -> tuple[Ratings, np.ndarray]:
        """Training data in the union code space of the model and ``train``, and the packed start."""
        old_u, old_i = self.user_ids_, self.item_ids_
        # checked first: numpy would silently turn ints into strings in a union with strings
        if (old_u.dtype.kind in "iu") != (train.user_ids.dtype.kind in "iu") or (
            old_i.dtype.kind in "iu"
        ) != (train.item_ids.dtype.kind in "iu"):
            raise ValueError("warm_start: X's ids are not of the same kind (int/str) as the model's ids")
        try:
            users = np.union1d(old_u, train.user_ids)
            items = np.union1d(old_i, train.item_ids)
        except TypeError as exc:
            raise ValueError(f"warm_start: the ids of X cannot be combined with the model's ids ({exc})") from exc
        if not (_same_ids(users, train.user_ids) and _same_ids(items, train.item_ids)):
            uidx, iidx = pd.Index(users), pd.Index(items)
            ucode = uidx.get_indexer(train.user_ids)[train.users]
            icode = iidx.get_indexer(train.item_ids)[train.items]
            titles = train.item_titles
            train = Ratings.from_codes(
                ucode, icode, train.values, len(users), len(items), train.timestamps,
                user_ids=users, item_ids=items, dtype=p["dtype"], rating_scale=train.rating_scale,
                name=train.name,
            )
            train.item_titles = titles
        m, n, k = len(users), len(items), p["rank"]
        rng = check_random_state(p["random_state"])
        scale = 0.1 / np.sqrt(k)
        P = rng.normal(0.0, scale, size=(m, k))
        Q = rng.normal(0.0, scale, size=(n, k))
        urows = pd.Index(users).get_indexer(old_u)
        irows = pd.Index(items).get_indexer(old_i)
        P[urows] = self.user_factors_
        Q[irows] = self.item_factors_
        b = c = None
        if p["biases"]:
            b = np.zeros(m)
            c = np.zeros(n)
            b[urows] = self.user_biases_
            c[irows] = self.item_biases_
        n_new = (m - len(old_u), n - len(old_i))
        if any(n_new):
            logger.info("warm_start: %d new users and %d new items start from random factors", *n_new)
        return train, pack(P, Q, b, c, dtype=p["dtype"])

    # ------------------------------------------------------------------ fitted state
    def _check_fitted(self) -> None:
        if not hasattr(self, "user_factors_"):
            raise NotFittedError("this MatrixFactorization is not fitted yet: call fit() or MatrixFactorization.load()")

    @property
    def n_users_(self) -> int:
        self._check_fitted()
        return self.user_factors_.shape[0]

    @property
    def n_items_(self) -> int:
        self._check_fitted()
        return self.item_factors_.shape[0]

    def _uindex(self) -> pd.Index:
        if getattr(self, "_user_index", None) is None:
            self._user_index = pd.Index(self.user_ids_)
        return self._user_index

    def _iindex(self) -> pd.Index:
        if getattr(self, "_item_index", None) is None:
            self._item_index = pd.Index(self.item_ids_)
        return self._item_index

    def user_codes(self, users, missing: str = "raise") -> np.ndarray:
        """Row indices (int64) of raw user ids; unknown ids raise ``KeyError`` or, with
        ``missing="ignore"``, give ``-1``."""
        self._check_fitted()
        return self._codes(self._uindex(), users, "user", missing)

    def item_codes(self, items, missing: str = "raise") -> np.ndarray:
        """Row indices (int64) of raw item ids; see :meth:`user_codes`."""
        self._check_fitted()
        return self._codes(self._iindex(), items, "item", missing)

    @staticmethod
    def _codes(index: pd.Index, raw, what: str, missing: str) -> np.ndarray:
        check_choice(missing, "missing", ("raise", "ignore"))
        scalar = np.ndim(raw) == 0
        codes = _index_codes(index, raw)
        if missing == "raise" and (codes < 0).any():
            arr = np.atleast_1d(np.asarray(raw))
            bad = np.flatnonzero(codes < 0)
            raise KeyError(f"unknown {what} id {_py(arr[bad[0]])!r} ({bad.size} unknown in all)")
        return codes[0] if scalar else codes

    # ------------------------------------------------------------------ prediction
    def _unknown_policy(self, unknown) -> str:
        return check_choice(self.unknown if unknown is None else unknown, "unknown", _UNKNOWN)

    def _clip_range(self, clip) -> tuple[float, float] | None:
        c = self.clip if clip is None else clip
        if not isinstance(c, (bool, np.bool_)):
            raise TypeError(f"clip must be a bool, got {c!r}")
        return self.rating_scale_ if c else None

    def _predict_from_codes(self, ucodes: np.ndarray, icodes: np.ndarray, policy: str, raw_u, raw_i) -> np.ndarray:
        known = (ucodes >= 0) & (icodes >= 0)
        n_unknown = int(known.size - np.count_nonzero(known))
        if n_unknown and policy == "raise":
            j = int(np.flatnonzero(~known)[0])
            what, val = ("user", raw_u[j]) if ucodes[j] < 0 else ("item", raw_i[j])
            raise KeyError(f"unknown {what} id {_py(val)!r} ({n_unknown} predictions with an unknown id)")
        out = np.empty(ucodes.shape[0], dtype=np.float64)
        P, Q, b, c = self.user_factors_, self.item_factors_, self.user_biases_, self.item_biases_
        mu = self.global_mean_
        if n_unknown == 0:
            with thread_limit(self.n_threads):
                out[:] = predict_codes(ucodes.astype(np.int32), icodes.astype(np.int32), P, Q, b, c, mu)
            return out
        sel = np.flatnonzero(known)
        if sel.size:
            with thread_limit(self.n_threads):
                out[sel] = predict_codes(
                    ucodes[sel].astype(np.int32), icodes[sel].astype(np.int32), P, Q, b, c, mu
                )
        rest = np.flatnonzero(~known)
        if policy == "nan":
            out[rest] = np.nan
        else:  # "mean": mu plus whatever bias is known
            fb = np.full(rest.size, mu, dtype=np.float64)
            if b is not None:
                uk = ucodes[rest] >= 0
                fb[uk] += b[ucodes[rest][uk]]
                ik = icodes[rest] >= 0
                fb[ik] += c[icodes[rest][ik]]
            out[rest] = fb
        warnings.warn(
            f"{n_unknown} of {ucodes.shape[0]} predictions involve an unknown user or item id "
            f"(unknown={policy!r}: {'global mean plus known biases' if policy == 'mean' else 'NaN'})",
            UnknownIdWarning,
            stacklevel=3,
        )
        return out

    def predict(self, users, items, *, unknown: str | None = None, clip: bool | None = None):
        r"""Predicted ratings :math:`\hat r = \mu + b_u + c_i + p_u \cdot q_i` for raw ids.

        Parameters
        ----------
        users, items : raw id or 1-D array-like of raw ids
            Pairs to predict (same length; a scalar is broadcast against an array).
        unknown : {"mean", "nan", "raise"}, optional
            Overrides the estimator's ``unknown`` policy for this call.
        clip : bool, optional
            Overrides the estimator's ``clip`` for this call.

        Returns
        -------
        float or ndarray of float64
            A float when both arguments are scalars.
        """
        self._check_fitted()
        policy = self._unknown_policy(unknown)
        rng_ = self._clip_range(clip)
        scalar = np.ndim(users) == 0 and np.ndim(items) == 0
        u = np.atleast_1d(np.asarray(users))
        i = np.atleast_1d(np.asarray(items))
        if u.ndim != 1 or i.ndim != 1:
            raise ValueError(f"users and items must be scalars or 1-D, got shapes {u.shape} and {i.shape}")
        if u.shape[0] != i.shape[0]:
            if u.shape[0] == 1:
                u = np.repeat(u, i.shape[0])
            elif i.shape[0] == 1:
                i = np.repeat(i, u.shape[0])
            else:
                raise ValueError(f"users and items have different lengths: {u.shape[0]} and {i.shape[0]}")
        out = self._predict_from_codes(_index_codes(self._uindex(), u), _index_codes(self._iindex(), i), policy, u, i)
        if rng_ is not None:
            np.clip(out, rng_[0], rng_[1], out=out)
        return float(out[0]) if scalar else out

    def evaluate(self, X, *, unknown: str | None = None, clip: bool | None = None) -> dict[str, Any]:
        """RMSE and MAE of the predictions on ratings ``X`` (any accepted form).

        Pairs whose prediction is NaN (``unknown="nan"``) are excluded and counted.

        Returns
        -------
        dict
            ``rmse``, ``mae``, ``n`` (pairs scored), ``n_unknown`` (pairs with an
            unknown user or item, scored by the policy unless it is ``"nan"``).
        """
        from .metrics import mae, rmse

        self._check_fitted()
        u, i, r = _raw_triplets(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownIdWarning)
            pred = self.predict(u, i, unknown=unknown, clip=clip)
        n_unknown = int(np.count_nonzero((_index_codes(self._uindex(), u) < 0) | (_index_codes(self._iindex(), i) < 0)))
        ok = ~np.isnan(pred)
        if not ok.any():
            raise ValueError("no rating of X can be scored: every user or item is unknown and unknown='nan'")
        return {
            "rmse": rmse(np.asarray(r, dtype=np.float64)[ok], pred[ok]),
            "mae": mae(np.asarray(r, dtype=np.float64)[ok], pred[ok]),
            "n": int(ok.sum()),
            "n_unknown": n_unknown,
        }

    def score(self, X, *, unknown: str | None = None, clip: bool | None = None) -> float:
        """RMSE on ratings ``X`` (lower is better; see :meth:`evaluate` for MAE and counts)."""
        return self.evaluate(X, unknown=unknown, clip=clip)["rmse"]

    # ------------------------------------------------------------------ top-n
    def _block_rows(self, block_size, n_cols: int) -> int:
        budget = DEFAULT_BLOCK_SIZE if block_size is None else check_positive_int(block_size, "block_size")
        return max(1, budget // max(n_cols, 1))

    @staticmethod
    def _top_n(S: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` columns of each row of ``S``, best first; among equal scores the lower
        column comes first (also at the selection boundary, e.g. for ``-inf`` padding).

        O(rows * cols) time and a few block-sized temporaries: a partition finds each
        row's n-th largest value ``v``; everything above ``v`` is taken, then the first
        (lowest-column) entries equal to ``v`` fill the row.
        """
        rows, n_cols = S.shape
        if n < n_cols:
            v = np.partition(S, n_cols - n, axis=1)[:, n_cols - n][:, None]
            gt = S > v
            eq = S == v
            need = n - gt.sum(axis=1, keepdims=True)
            sel = gt | (eq & (np.cumsum(eq, axis=1) <= need))
            idx = np.nonzero(sel)[1].reshape(rows, n)
        else:
            idx = np.broadcast_to(np.arange(n_cols), S.shape).copy()
        vals = np.take_along_axis(S, idx, axis=1)
        order = np.lexsort((idx, -vals), axis=-1)
        return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)

    def _seen_mask_indices(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, item code) of every training rating of the users ``codes`` (>= 0)."""
        starts = self.seen_indptr_[codes]
        lens = self.seen_indptr_[codes + 1] - starts
        total = int(lens.sum())
        rows = np.repeat(np.arange(codes.shape[0]), lens)
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
        pos = offsets + np.arange(total)
        return rows, self.seen_items_[pos]

    def _rare_items(self, min_ratings) -> np.ndarray | None:
        """Codes of items with fewer than ``min_ratings`` training ratings (None: no filter)."""
        if min_ratings is None:
            return None
        k = check_positive_int(min_ratings, "min_ratings", minimum=0)
        counts = np.bincount(self.seen_items_, minlength=self.n_items_)
        rare = np.flatnonzero(counts < k)
        return rare if rare.size else None

    def recommend(self, users, n: int = 10, exclude_seen: bool = True, *, min_ratings: int | None = None,
                  block_size: int | None = None):
        r"""Top-``n`` items for each user, by predicted score :math:`\mu + b_u + c_i + p_u\cdot q_i`.

        Users are scored in blocks of ``block_size // n_items`` users (at least
        one), so memory stays at ``O(block_size + n_users_requested * n)``
        whatever the number of users and items.

        Parameters
        ----------
        users : raw id or 1-D array-like of raw ids
        n : int >= 1
            Number of items per user; at most the number of items.
        exclude_seen : bool
            Leave out the items each user rated in training.  When a user has
            fewer than ``n`` unseen items, the list is padded with seen items
            whose score is ``-inf``.
        min_ratings : int, optional
            Only recommend items with at least this many training ratings.  Items
            rated once or twice get large, barely regularised biases (with
            ``reg_weighting="count"`` their penalty weight is their count), so
            they tend to top every list; ``min_ratings=20`` keeps the lists to
            items the model knows.  Excluded items only appear as ``-inf`` padding.
        block_size : int, optional
            Floats per block of scores (default 4,194,304).

        Returns
        -------
        items : ndarray, shape (n_users, n) or (n,) for a single user
            Raw item ids, best first (ties: the lower item code first).
        scores : ndarray of float64, same shape
            Unclipped predicted ratings (``-inf`` for padding).

        Unknown users follow ``unknown``: ``"mean"`` ranks them by
        :math:`\mu + c_i` (the non-personalised ranking, with an
        :class:`UnknownIdWarning`); ``"nan"`` and ``"raise"`` raise ``KeyError``.
        """
        self._check_fitted()
        n = check_positive_int(n, "n")
        if n > self.n_items_:
            raise ValueError(f"n={n} exceeds the number of items ({self.n_items_})")
        if not isinstance(exclude_seen, (bool, np.bool_)):
            raise TypeError(f"exclude_seen must be a bool, got {exclude_seen!r}")
        scalar = np.ndim(users) == 0
        raw = np.atleast_1d(np.asarray(users))
        codes = _index_codes(self._uindex(), raw)
        unknown = codes < 0
        if unknown.any():
            if self.unknown != "mean":
                raise KeyError(
                    f"unknown user id {_py(raw[np.flatnonzero(unknown)[0]])!r} "
                    f"({int(unknown.sum())} unknown in all; unknown={self.unknown!r})"
                )
            warnings.warn(
                f"{int(unknown.sum())} unknown user(s): recommended by mu + item bias (non-personalised)",
                UnknownIdWarning, stacklevel=2,
            )
        P, Q, b, c = self.user_factors_, self.item_factors_, self.user_biases_, self.item_biases_
        n_items = Q.shape[0]
        base = np.full(n_items, self.global_mean_, dtype=P.dtype)
        if c is not None:
            base += c
        rare = self._rare_items(min_ratings)
        if rare is not None:
            base[rare] = -np.inf
        rows_per_block = self._block_rows(block_size, n_items)
        out_idx = np.empty((raw.shape[0], n), dtype=np.int64)
        out_val = np.empty((raw.shape[0], n), dtype=np.float64)
        with thread_limit(self.n_threads):
            for start in range(0, raw.shape[0], rows_per_block):
                cb = codes[start:start + rows_per_block]
                kn = cb >= 0
                if kn.all():  # the usual case: one block-sized array, updated in place
                    S = P[cb] @ Q.T
                    S += base
                    if b is not None:
                        S += b[cb][:, None]
                else:
                    S = np.empty((cb.shape[0], n_items), dtype=P.dtype)
                    S[:] = base
                    if kn.any():
                        S[kn] += P[cb[kn]] @ Q.T
                        if b is not None:
                            S[kn] += b[cb[kn]][:, None]
                if exclude_seen and kn.any():
                    r, it = self._seen_mask_indices(cb[kn])
                    S[np.flatnonzero(kn)[r], it] = -np.inf
                idx, val = self._top_n(S, n)
                out_idx[start:start + cb.shape[0]] = idx
                out_val[start:start + cb.shape[0]] = val
        items = self.item_ids_[out_idx]
        if scalar:
            return items[0], out_val[0]
        return items, out_val

    def similar_items(self, items, n: int = 10, *, min_ratings: int | None = None,
                      block_size: int | None = None):
        r"""The ``n`` items most similar to each item, by cosine similarity of the item factors.

        :math:`s(i, j) = q_i \cdot q_j / (\|q_i\| \|q_j\|)` (0 when a factor is
        zero); the item itself is excluded, and so are items with fewer than
        ``min_ratings`` training ratings (they then only appear as ``-inf``
        padding).  Blocked like :meth:`recommend`.

        Returns
        -------
        items : ndarray, shape (n_queries, n) or (n,) for a single item
            Raw item ids, most similar first.
        similarities : ndarray of float64, same shape

        Raises
        ------
        KeyError
            An unknown item id (there is no factor to compare).
        """
        self._check_fitted()
        n = check_positive_int(n, "n")
        if n > self.n_items_ - 1:
            raise ValueError(f"n={n} exceeds the number of other items ({self.n_items_ - 1})")
        scalar = np.ndim(items) == 0
        codes = np.atleast_1d(self.item_codes(items))
        Q = self.item_factors_
        norms = np.linalg.norm(Q.astype(np.float64), axis=1)
        Qn = (Q / np.where(norms > 0, norms, 1.0)[:, None]).astype(Q.dtype)
        rare = self._rare_items(min_ratings)
        rows_per_block = self._block_rows(block_size, Q.shape[0])
        out_idx = np.empty((codes.shape[0], n), dtype=np.int64)
        out_val = np.empty((codes.shape[0], n), dtype=np.float64)
        with thread_limit(self.n_threads):
            for start in range(0, codes.shape[0], rows_per_block):
                cb = codes[start:start + rows_per_block]
                S = Qn[cb] @ Qn.T
                S[np.arange(cb.shape[0]), cb] = -np.inf
                if rare is not None:
                    S[:, rare] = -np.inf
                idx, val = self._top_n(S, n)
                out_idx[start:start + cb.shape[0]] = idx
                out_val[start:start + cb.shape[0]] = val
        ids = self.item_ids_[out_idx]
        if scalar:
            return ids[0], out_val[0]
        return ids, out_val

    # ------------------------------------------------------------------ fold-in
    def fold_in(self, items, ratings) -> tuple[np.ndarray, float]:
        r"""Factors of a new user from that user's ratings alone, with Q, c and :math:`\mu` fixed.

        Solves the user's row of the training objective exactly:

        .. math::

            \min_{p, b}\ \tfrac12 \sum_{i} (r_i - \mu - c_i - b - p\cdot q_i)^2
                + \tfrac12 \lambda_f w \|p\|^2 + \tfrac12 \lambda_b w b^2

        (:math:`w` = the number of ratings with ``reg_weighting="count"``, else 1;
        no :math:`b` and no :math:`c_i` without biases), i.e. the
        :math:`(k+1)\times(k+1)` normal equations
        :math:`(\tilde Q^\top \tilde Q + \mathrm{diag}(\lambda_f w I, \lambda_b w))\,[p; b]
        = \tilde Q^\top (r - \mu - c)` with :math:`\tilde Q = [Q_I, 1]`, in float64.
        This is the step ALS takes for a user; no retraining happens.

        Parameters
        ----------
        items : 1-D array-like of raw item ids
            Items the new user rated (no duplicates).  Items unknown to the model
            are ignored (with an :class:`UnknownIdWarning`).
        ratings : 1-D array-like of float
            The ratings, same length.

        Returns
        -------
        p : ndarray of float64, shape (rank,)
        b : float
            The user bias (0.0 without biases).

        Raises
        ------
        ValueError
            Length mismatch, duplicate items, non-finite ratings, no known item,
            or a singular system (``reg = 0`` with too few ratings).
        """
        self._check_fitted()
        if self.solver == "gibbs":
            raise ValueError("fold-in solves the MAP row problem, which a solver='gibbs' model (stacked posterior "
                             "draws, no penalty) does not have: refit with the new user's ratings")
        codes, r = self._fold_in_input(items, ratings)
        Q = self.item_factors_[codes].astype(np.float64)
        k = Q.shape[1]
        y = r - self.global_mean_
        w = float(row_weights([codes.shape[0]], self.reg_weighting)[0])
        lam = float(self.reg)
        lam_b = lam if self.reg_bias is None else float(self.reg_bias)
        if self.user_biases_ is not None:
            y = y - self.item_biases_[codes].astype(np.float64)
            A = np.hstack([Q, np.ones((Q.shape[0], 1))])
            reg = np.concatenate([np.full(k, lam * w), [lam_b * w]])
        else:
            A = Q
            reg = np.full(k, lam * w)
        M = A.T @ A + np.diag(reg)
        rhs = A.T @ y
        try:
            z = np.linalg.solve(M, rhs)
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                f"fold-in system is singular ({codes.shape[0]} known ratings, rank {k}, reg={lam}); "
                "use reg > 0 or give more ratings"
            ) from exc
        if not np.all(np.isfinite(z)):
            raise ValueError("fold-in produced non-finite factors (singular system); use reg > 0")
        if self.user_biases_ is not None:
            return z[:k].copy(), float(z[k])
        return z, 0.0

    def _fold_in_input(self, items, ratings) -> tuple[np.ndarray, np.ndarray]:
        it = np.atleast_1d(np.asarray(items))
        r = np.atleast_1d(np.asarray(ratings))
        if it.ndim != 1 or r.ndim != 1:
            raise ValueError("items and ratings must be 1-D")
        if it.shape[0] != r.shape[0]:
            raise ValueError(f"items and ratings have different lengths: {it.shape[0]} and {r.shape[0]}")
        if it.shape[0] == 0:
            raise ValueError("fold-in needs at least one rating")
        if r.dtype.kind not in "iuf":
            raise TypeError(f"ratings must be numeric, got dtype {r.dtype}")
        r = r.astype(np.float64)
        if not np.all(np.isfinite(r)):
            raise ValueError("ratings contain NaN or inf")
        codes = _index_codes(self._iindex(), it)
        known = codes >= 0
        if not known.all():
            if not known.any():
                raise ValueError("none of the rated items is known to the model")
            warnings.warn(
                f"fold-in ignores {int((~known).sum())} rating(s) of item(s) unknown to the model",
                UnknownIdWarning, stacklevel=3,
            )
            codes, r = codes[known], r[known]
        if np.unique(codes).shape[0] != codes.shape[0]:
            raise ValueError("items contain duplicates: give each rated item once")
        return codes, r

    def predict_new_user(self, items, ratings, target_items, *, unknown: str | None = None,
                         clip: bool | None = None) -> np.ndarray:
        """Predictions for a new user (folded in from ``items``/``ratings``) on ``target_items``.

        Unknown target items follow ``unknown`` (``"mean"``: :math:`\\mu + b`).
        """
        p, bu = self.fold_in(items, ratings)
        policy = self._unknown_policy(unknown)
        rng_ = self._clip_range(clip)
        scalar = np.ndim(target_items) == 0
        t = np.atleast_1d(np.asarray(target_items))
        codes = _index_codes(self._iindex(), t)
        known = codes >= 0
        if not known.all():
            if policy == "raise":
                raise KeyError(f"unknown item id {_py(t[np.flatnonzero(~known)[0]])!r}")
            warnings.warn(f"{int((~known).sum())} unknown target item(s) (unknown={policy!r})",
                          UnknownIdWarning, stacklevel=2)
        out = np.full(t.shape[0], np.nan if policy == "nan" else self.global_mean_ + bu)
        kc = codes[known]
        val = self.global_mean_ + bu + self.item_factors_[kc].astype(np.float64) @ p
        if self.item_biases_ is not None:
            val += self.item_biases_[kc]
        out[known] = val
        if rng_ is not None:
            np.clip(out, rng_[0], rng_[1], out=out)
        return float(out[0]) if scalar else out

    def recommend_new_user(self, items, ratings, n: int = 10, exclude_seen: bool = True, *,
                           min_ratings: int | None = None):
        """Top-``n`` items (raw ids, unclipped scores) for a new user folded in from its ratings.

        ``exclude_seen`` leaves out the items the user rated; ``min_ratings`` as in
        :meth:`recommend`.
        """
        self._check_fitted()
        n = check_positive_int(n, "n")
        if n > self.n_items_:
            raise ValueError(f"n={n} exceeds the number of items ({self.n_items_})")
        p, bu = self.fold_in(items, ratings)
        Q = self.item_factors_
        S = (Q.astype(np.float64) @ p + self.global_mean_ + bu)[None, :]
        if self.item_biases_ is not None:
            S += self.item_biases_
        if exclude_seen:
            codes = _index_codes(self._iindex(), np.atleast_1d(np.asarray(items)))
            S[0, codes[codes >= 0]] = -np.inf
        rare = self._rare_items(min_ratings)
        if rare is not None:
            S[0, rare] = -np.inf
        idx, val = self._top_n(S, n)
        return self.item_ids_[idx[0]], val[0]

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_user_index"] = None
        state["_item_index"] = None
        return state

    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted model to a versioned ``.npz`` file, atomically.

        The file holds the factors, biases, global mean, id maps, the training
        items of each user (for ``exclude_seen``), item titles, the parameters
        (JSON; ``callbacks`` are not saved), the history and a summary of the
        solver result.  No pickle: ``np.load(..., allow_pickle=False)`` reads it.
        It is written to a temporary file in the same folder and renamed over
        ``path`` only when complete, so a crash never leaves a half-written model.
        ``path`` is used as given (``.npz`` is recommended).

        Raises
        ------
        NotFittedError
        TypeError
            Ids that are neither integers nor strings, or ``solver_options`` that
            are not JSON-serialisable.
        """
        self._check_fitted()
        arrays = self._to_arrays()
        path = Path(path)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    def _to_arrays(self) -> dict[str, np.ndarray]:
        params = self.get_params()
        params["callbacks"] = None
        params["dtype"] = np.dtype(params["dtype"]).name if _is_dtype(params["dtype"]) else params["dtype"]
        rs = params["random_state"]
        if isinstance(rs, np.random.Generator):
            params["random_state"] = None
        elif isinstance(rs, numbers.Integral):
            params["random_state"] = int(rs)
        try:
            params_json = json.dumps(params)
        except TypeError as exc:
            raise TypeError(f"cannot save parameters as JSON ({exc}); keep solver_options to plain values") from exc
        res = self.result_
        summary = {}
        for key in ("status", "success", "message", "nit", "n_cg", "nfev", "njev", "nhessp", "fun",
                    "grad_norm", "best_iteration", "elapsed"):
            if key in res:
                summary[key] = _jsonable(res[key])
        arrays: dict[str, np.ndarray] = {
            "fastmf_format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "fastmf_version": np.array(_fastmf_version()),
            "params_json": np.array(params_json),
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "global_mean": np.array(self.global_mean_, dtype=np.float64),
            "user_ids": _ids_for_saving(self.user_ids_, "user"),
            "item_ids": _ids_for_saving(self.item_ids_, "item"),
            "rating_scale": np.array(self.rating_scale_, dtype=np.float64),
            "seen_indptr": np.asarray(self.seen_indptr_, dtype=np.int64),
            "seen_items": np.asarray(self.seen_items_, dtype=np.int32),
            "history_json": np.array(json.dumps([{k: _jsonable(v) for k, v in rec.items()} for rec in self.history_])),
            "result_json": np.array(json.dumps(summary)),
            "fit_info_json": np.array(json.dumps({
                "n_iter": int(self.n_iter_), "fit_time": float(self.fit_time_),
                "n_eval_dropped": int(self.n_eval_dropped_), "dataset_name": self.dataset_name_,
            })),
        }
        if self.user_biases_ is not None:
            arrays["user_biases"] = self.user_biases_
            arrays["item_biases"] = self.item_biases_
        if self.item_titles_:
            titles = [self.item_titles_.get(k) for k in self.item_ids_.tolist()]
            arrays["item_titles"] = np.array(["" if t is None else str(t) for t in titles])
            arrays["item_title_known"] = np.array([t is not None for t in titles], dtype=bool)
        return arrays

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MatrixFactorization":
        """Load a model written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
        ValueError
            Not a fastmf model file, a newer format version, or missing entries.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        try:
            data = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{path} is not a fastmf model file (.npz): {exc}") from exc
        with data:
            keys = set(data.files)
            if "fastmf_format_version" not in keys:
                raise ValueError(f"{path} is not a fastmf model file (no fastmf_format_version entry)")
            version = int(data["fastmf_format_version"])
            if version > FORMAT_VERSION or version < 1:
                raise ValueError(
                    f"{path} has model format version {version}; this fastmf reads versions 1..{FORMAT_VERSION} "
                    "(upgrade fastmf)"
                )
            required = {"params_json", "user_factors", "item_factors", "global_mean", "user_ids", "item_ids",
                        "rating_scale", "seen_indptr", "seen_items", "history_json", "result_json", "fit_info_json"}
            missing = sorted(required - keys)
            if missing:
                raise ValueError(f"{path} is an incomplete fastmf model file: missing {missing}")
            params = json.loads(str(data["params_json"]))
            valid = set(cls._get_param_names())
            model = cls(**{k: v for k, v in params.items() if k in valid})
            if "dtype" in params:
                model.dtype = np.dtype(params["dtype"]).type
            model.user_factors_ = data["user_factors"]
            model.item_factors_ = data["item_factors"]
            has_b = "user_biases" in keys
            model.user_biases_ = data["user_biases"] if has_b else None
            model.item_biases_ = data["item_biases"] if has_b else None
            model.global_mean_ = float(data["global_mean"])
            model.user_ids_ = data["user_ids"]
            model.item_ids_ = data["item_ids"]
            model.rating_scale_ = tuple(float(v) for v in data["rating_scale"])
            model.seen_indptr_ = data["seen_indptr"]
            model.seen_items_ = data["seen_items"]
            model.history_ = json.loads(str(data["history_json"]))
            summary = json.loads(str(data["result_json"]))
            info = json.loads(str(data["fit_info_json"]))
            if "item_titles" in keys:
                known = data["item_title_known"]
                ids = model.item_ids_.tolist()
                titles = data["item_titles"].tolist()
                model.item_titles_ = {i: t for i, t, k in zip(ids, titles, known) if k}
            else:
                model.item_titles_ = None
        m, n = model.user_factors_.shape[0], model.item_factors_.shape[0]
        if model.item_factors_.shape[1] != model.user_factors_.shape[1] or len(model.user_ids_) != m or len(
                model.item_ids_) != n or model.seen_indptr_.shape[0] != m + 1:
            raise ValueError(f"{path}: inconsistent array shapes in the model file")
        from .solvers._base import SolverResult, Status

        if "status" in summary:
            try:
                summary["status"] = Status(summary["status"])
            except ValueError:
                pass
        summary["history"] = model.history_
        model.result_ = SolverResult(**summary)
        model.n_iter_ = info["n_iter"]
        model.fit_time_ = info["fit_time"]
        model.n_eval_dropped_ = info["n_eval_dropped"]
        model.dataset_name_ = info.get("dataset_name")
        model._user_index = None
        model._item_index = None
        return model

    # ------------------------------------------------------------------ convenience
    def item_title(self, item) -> str | None:
        """Title of a raw item id, when the training data had titles (else None)."""
        self._check_fitted()
        if not self.item_titles_:
            return None
        return self.item_titles_.get(_py(item))


# ---------------------------------------------------------------------------- helpers
def _rating_scale(train: Ratings) -> tuple[float, float]:
    """The declared rating scale of the training data, else its observed [min, max]."""
    if train.rating_scale is not None:
        return (float(train.rating_scale[0]), float(train.rating_scale[1]))
    return (float(train.values.min()), float(train.values.max()))


def _is_dtype(x) -> bool:
    try:
        np.dtype(x)
        return True
    except TypeError:
        return False


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, float) and not np.isfinite(v):
        return None if np.isnan(v) else v
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def _ids_for_saving(ids: np.ndarray, what: str) -> np.ndarray:
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind == "U":
        return ids
    if ids.dtype.kind == "O" and all(isinstance(x, str) for x in ids):
        return np.array(ids.tolist(), dtype=str) if len(ids) else np.array([], dtype="<U1")
    raise TypeError(f"cannot save {what} ids of dtype {ids.dtype}: only integer or string ids can be saved")


def _fastmf_version() -> str:
    try:
        from . import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"
