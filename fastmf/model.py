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

import importlib
import logging
import numbers
import os

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from . import _sklearn as _sk
from . import foldin, persistence, serving
from ._packing import pack, unpack
from ._threading import resolve_n_threads, thread_limit
from ._weights import reg_exponent
from ._validation import (
    check_choice,
    check_dtype,
    check_nonnegative_float,
    check_positive_int,
    check_random_state,
)
from .data import convert as _convert
from .data.ratings import Ratings
from .exceptions import FastMFDeprecationWarning, NotFittedError, UnknownIdWarning
from .fitted import FactorModel
from .initialization import INITS, random_factors
from .persistence import FORMAT_VERSION
from .solvers._base import CallbackList
from .solvers.registry import check_fit_request, run_solver

__all__ = [
    "MatrixFactorization",
    "NotFittedError",
    "UnknownIdWarning",
    "FORMAT_VERSION",
]

logger = logging.getLogger("fastmf")

_SOLVERS = ("newton", "als", "sgd", "gibbs")
_UNKNOWN = serving.UNKNOWN_POLICIES

#: Names that left this module: name -> (module, attribute, what to use instead).
_MOVED = {
    "as_ratings": ("fastmf.data.convert", "as_ratings", "fastmf.as_ratings"),
    "DEFAULT_BLOCK_SIZE": ("fastmf.serving", "DEFAULT_BLOCK_SIZE", "fastmf.serving.DEFAULT_BLOCK_SIZE"),
}


def __getattr__(name: str):
    """Deprecated names of this module, still served for one release (PEP 562)."""
    if name in _MOVED:
        module, attr, instead = _MOVED[name]
        warnings.warn(f"fastmf.model.{name} is deprecated and will be removed in the next release; "
                      f"use {instead}", FastMFDeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _py(x):
    return x.item() if isinstance(x, np.generic) else x


# ---------------------------------------------------------------------------- fitted attributes
class _FittedField:
    """A fitted attribute of the estimator (``user_factors_``...) as a view of ``model_``.

    Reading gives the ``FactorModel`` field (or property ``get``); assigning replaces
    ``model_`` by a copy with the field changed (checked like a new model).  Before
    any fit, assignments are collected and become ``model_`` once enough is known
    (see :func:`_assemble`): a model can still be put together by hand.
    """

    def __init__(self, field: str, doc: str, get: str | None = None):
        self.field, self.get, self.__doc__ = field, get or field, doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        fm = obj.__dict__.get("model_")
        if fm is not None:
            return getattr(fm, self.get)
        parts = obj.__dict__.get("_parts", {})
        if self.field in parts:
            return parts[self.field]
        raise NotFittedError(f"this MatrixFactorization is not fitted yet (no {self.name}): "
                             "call fit() or MatrixFactorization.load()")

    def __set__(self, obj, value):
        fm = obj.__dict__.get("model_")
        if fm is not None:
            obj.__dict__["model_"] = fm.replace(**{self.field: value})
        else:
            obj.__dict__.setdefault("_parts", {})[self.field] = value


#: the fitted attributes that are views of ``model_`` (pickles of fastmf <= 0.1 hold them)
_LEGACY_FIELDS = ("user_factors_", "item_factors_", "user_biases_", "item_biases_", "global_mean_", "user_ids_",
                  "item_ids_", "rating_scale_", "item_titles_", "seen_indptr_", "seen_items_", "dataset_name_")
_REQUIRED_PARTS = ("P", "Q", "mu", "users", "items", "rating_scale")


def _assemble(est: "MatrixFactorization") -> FactorModel:
    """``model_`` from fitted attributes assigned one by one to an unfitted estimator.

    Needs the factors, the global mean, both id arrays and the rating scale;
    biases default to none, the training items of each user to none, and the
    hyperparameters to the estimator's current ones.
    """
    parts = est.__dict__.get("_parts", {})
    if not all(k in parts for k in _REQUIRED_PARTS):
        raise NotFittedError("this MatrixFactorization is not fitted yet: call fit() or MatrixFactorization.load()")
    m = np.shape(parts["P"])[0]
    defaults = {"b": None, "c": None, "seen_indptr": np.zeros(m + 1, dtype=np.int64),
                "seen_items": np.zeros(0, dtype=np.int32), "solver": est.solver, "reg": est.reg,
                "reg_bias": est.reg_bias, "reg_weighting": est.reg_weighting}
    fm = FactorModel(**{**defaults, **parts})
    del est.__dict__["_parts"]
    est.__dict__["model_"] = fm
    return fm


# ---------------------------------------------------------------------------- the estimator
class MatrixFactorization:
    r"""Biased matrix factorization of explicit ratings (see the module docstring for the model).

    ``__init__`` only stores the parameters (as scikit-learn estimators do);
    :meth:`fit` validates them before any work.

    A scikit-learn estimator (``clone``, searches, ``cross_val_score``, ``Pipeline``;
    scikit-learn >= 1.6) that does not need scikit-learn: it implements the protocol
    (``get_params``, ``set_params``, ``__sklearn_tags__``...) rather than inherit
    ``BaseEstimator`` when importable (see :mod:`fastmf._sklearn` for why).  The
    splitters index ``X`` and ``y`` by rows: give them a DataFrame of ratings
    (``search.fit(df)``) or ``(user, item)`` pairs and ratings (``.fit(pairs, y)``),
    shuffled (``KFold(shuffle=True)``) when sorted by user.  :meth:`score` is the
    *negative* RMSE (higher is better), as the default scoring needs.

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
    model_ : FactorModel
        The fitted model (:class:`fastmf.fitted.FactorModel`): factors, biases,
        :math:`\mu`, id indexes, training items of each user, rating scale, titles
        and the hyperparameters it was fitted with.  Serving (:mod:`fastmf.serving`),
        fold-in (:mod:`fastmf.foldin`) and persistence (:mod:`fastmf.persistence`)
        work on it; the methods below delegate to them.  Fold-in uses the fitted
        ``reg``, ``reg_bias``, ``reg_weighting`` and ``solver`` of ``model_``, not
        the estimator's current ones (``set_params`` after ``fit`` changes neither).
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
    seen_indptr_, seen_items_ : ndarray
        CSR (by user code) of the items each user rated in training, for
        ``recommend(exclude_seen=True)``.
    dataset_name_ : str or None
        These twelve are views of the fields of ``model_`` (no copies).  Assigning
        one replaces ``model_`` by a copy with that field changed; on an unfitted
        estimator the assignments are collected and become ``model_`` once the
        factors, mean, ids and rating scale are all set.
    result_ : SolverResult
        The solver's result (status, message, counts...).
    history_ : list of dict
        One record per iteration (loss, elapsed, val_rmse, solver-specific keys).
    n_iter_ : int
    fit_time_ : float
        Seconds spent in :meth:`fit`.
    n_eval_dropped_ : int
        ``eval_set`` ratings dropped because their user or item is not in training.
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

    # ------------------------------------------------------------------ parameters (scikit-learn protocol)
    # implemented, not inherited from BaseEstimator: see fastmf._sklearn for why
    @classmethod
    def _get_param_names(cls) -> list[str]:
        return _sk.param_names(cls)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as stored (scikit-learn's ``clone`` relies on this).

        With ``deep``, a parameter that is itself an estimator also contributes its
        parameters as ``<name>__<sub>``.
        """
        return _sk.get_params(self, deep)

    def set_params(self, **params) -> "MatrixFactorization":
        """Set constructor parameters (``<name>__<sub>`` for nested ones), unchecked until
        :meth:`fit`; unknown names raise ``ValueError``.  Returns ``self``."""
        return _sk.set_params(self, params)

    def __repr__(self) -> str:
        return _sk.estimator_repr(self)

    def __sklearn_tags__(self):
        """scikit-learn's tags (``sklearn.utils.Tags``, scikit-learn >= 1.6): see :func:`fastmf._sklearn.sklearn_tags`."""
        return _sk.sklearn_tags(self)

    def __sklearn_is_fitted__(self) -> bool:
        """Whether :meth:`fit` or :meth:`load` gave a model (``sklearn.utils.validation.check_is_fitted``)."""
        try:
            self._fitted()
        except NotFittedError:
            return False
        return True

    def _validated_params(self) -> dict[str, Any]:
        """Check every parameter; return the normalised values.  Raises before any work."""
        return _validated_params(self)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, *, eval_set=None, warm_start: bool = False) -> "MatrixFactorization":
        r"""Fit the factors to the ratings ``X`` (or to the pairs ``X`` rated ``y``).

        Parameters
        ----------
        X : Ratings, DataFrame, scipy sparse matrix, (users, items, ratings), pairs, or Dask input
            With ``y=None``: training ratings with raw ids (see
            :func:`fastmf.as_ratings`).  With ``y``: the ``(user, item)`` pairs, an
            array-like of shape ``(n, 2)`` or a DataFrame with user/item columns
            (see :mod:`fastmf._sklearn`), as scikit-learn's splitters produce them.
            Dask DataFrame or Parquet path/glob: fitted on the Dask client (:mod:`fastmf.distributed.estimator`).
        y : array-like of shape (n,), optional
            The ratings of the pairs ``X``; ``None`` when ``X`` carries them.
        eval_set : ratings (any ``y=None`` form of ``X``), optional, keyword-only
            Held-out ratings whose RMSE is recorded each iteration (``val_rmse``
            in ``history_``) and drives ``early_stopping``.  They are mapped into
            the training code space; ratings of users or items unknown to
            training are dropped (count in ``n_eval_dropped_``, logged).
        warm_start : bool
            Continue from the current factors instead of a random start.  The model must be
            fitted (or loaded) with the same ``rank`` and ``biases``.  Users and items of ``X``
            that the model does not know are added (small random factors, zero biases); known
            ones keep their rows, also when absent from ``X`` (then only regularised).
            :math:`\mu` is the mean of the new ``X`` (unchanged when refitting on the same data).

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            A bad parameter (named) or bad input, before any work; ``y`` with an
            ``X`` that carries ratings, or pairs without ``y``.
        """
        from .backends import is_dask_input  # Dask input: fitted on the cluster (Dask is imported only then)
        if is_dask_input(X):
            return importlib.import_module("fastmf.distributed.estimator").fit_on_cluster(self, X, y, eval_set, warm_start)
        t0 = time.perf_counter()
        p = self._validated_params()
        if not isinstance(warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool, got {warm_start!r}")
        if p["early_stopping"] is not None and eval_set is None:
            raise ValueError("early_stopping needs an eval_set to monitor")
        check_fit_request(p, warm_start)
        if warm_start:
            fitted = self._fitted()
            if fitted.P.shape[1] != p["rank"]:
                raise ValueError(
                    f"warm_start needs the same rank: the model has rank {fitted.P.shape[1]}, rank={p['rank']}"
                )
            if fitted.biases != p["biases"]:
                raise ValueError(f"warm_start needs the same biases setting as the fitted model (biases={p['biases']})")

        train = _convert.as_ratings(_sk.fit_input(X, y), p["dtype"], name="X")
        x0 = None
        if warm_start:
            train, x0 = _warm_start_point(fitted, train, p)
        val = None
        n_dropped = 0
        if eval_set is not None:
            val = _convert.as_ratings(eval_set, p["dtype"], name="eval_set")
            val, n_dropped = _convert.to_code_space(val, train, "eval_set")
            if n_dropped:
                logger.info("eval_set: dropped %d ratings whose user or item is not in the training data", n_dropped)

        with thread_limit(p["n_threads"]), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result, mu = run_solver(p, train, val, x0)

        self.__dict__.pop("_parts", None)
        self.__dict__["model_"] = _fitted_model(result, mu, train, p)
        self.result_ = result
        self.history_ = [dict(rec) for rec in (result.get("history") or [])]
        self.n_iter_ = int(result.get("nit", len(self.history_)))
        self.n_eval_dropped_ = n_dropped
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

    # ------------------------------------------------------------------ fitted state
    # The fitted model is ``model_`` (a FactorModel); the attributes below are views of
    # its fields (assigning one replaces ``model_`` by a copy with that field changed).
    user_factors_ = _FittedField("P", "User factors P, shape (n_users, k).")
    item_factors_ = _FittedField("Q", "Item factors Q, shape (n_items, k).")
    user_biases_ = _FittedField("b", "User biases b (None without biases).")
    item_biases_ = _FittedField("c", "Item biases c (None without biases).")
    global_mean_ = _FittedField("mu", "The global offset mu.")
    user_ids_ = _FittedField("users", "Raw id of each user row.", get="user_ids")
    item_ids_ = _FittedField("items", "Raw id of each item row.", get="item_ids")
    rating_scale_ = _FittedField("rating_scale", "(low, high) used for clipping.")
    item_titles_ = _FittedField("item_titles", "Raw item id -> title, or None.")
    seen_indptr_ = _FittedField("seen_indptr", "CSR row pointer of the items each user rated in training.")
    seen_items_ = _FittedField("seen_items", "CSR items each user rated in training.")
    dataset_name_ = _FittedField("dataset_name", "Name of the training data set.")

    def _fitted(self) -> FactorModel:
        """The fitted ``model_``; raises :class:`NotFittedError` before fit/load."""
        fm = self.__dict__.get("model_")
        if fm is None:
            fm = _assemble(self)
        return fm

    def _check_fitted(self) -> None:
        self._fitted()

    @property
    def n_users_(self) -> int:
        return self._fitted().n_users

    @property
    def n_items_(self) -> int:
        return self._fitted().n_items

    def user_codes(self, users, missing: str = "raise") -> np.ndarray:
        """Row indices (int64) of raw user ids; unknown ids raise ``KeyError`` or, with
        ``missing="ignore"``, give ``-1`` (:meth:`fastmf.data.ids.IdIndex.codes`)."""
        return self._fitted().users.codes(users, missing, "user")

    def item_codes(self, items, missing: str = "raise") -> np.ndarray:
        """Row indices (int64) of raw item ids; see :meth:`user_codes`."""
        return self._fitted().items.codes(items, missing, "item")

    def item_title(self, item) -> str | None:
        """Title of a raw item id, when the training data had titles (else None)."""
        titles = self._fitted().item_titles
        return titles.get(_py(item)) if titles else None

    # ------------------------------------------------------------------ serving (fastmf.serving)
    def _unknown_policy(self, unknown) -> str:
        return check_choice(self.unknown if unknown is None else unknown, "unknown", serving.UNKNOWN_POLICIES)

    def _clip_range(self, fm: FactorModel, clip) -> tuple[float, float] | None:
        c = self.clip if clip is None else clip
        if not isinstance(c, (bool, np.bool_)):
            raise TypeError(f"clip must be a bool, got {c!r}")
        return fm.rating_scale if c else None

    def predict(self, users, items=None, *, unknown: str | None = None, clip: bool | None = None):
        r"""Predicted ratings :math:`\hat r = \mu + b_u + c_i + p_u \cdot q_i` for raw ids.

        Two forms: ``predict(users, items)``, raw ids or 1-D arrays (a scalar is
        broadcast; a float when both are scalars), and scikit-learn's
        ``predict(X)``, ``X`` the ``(user, item)`` pairs: an array-like of shape
        ``(n, 2)`` or a DataFrame with user/item columns (a rating column is not
        read), giving an array.  ``unknown`` and ``clip`` override the estimator's
        for this call.  See :func:`fastmf.serving.predict`.
        """
        fm = self._fitted()
        policy, rng_ = self._unknown_policy(unknown), self._clip_range(fm, clip)
        if items is None:
            if np.ndim(users) < 2:
                raise TypeError("predict needs items: predict(users, items), or predict(X) with X the (user, item) "
                                "pairs, shape (n, 2), or a DataFrame with user/item columns")
            users, items = _sk.pairs(users, "X")
        return serving.predict(fm, users, items, unknown=policy, clip=rng_, n_threads=self.n_threads, stacklevel=3)

    def evaluate(self, X, y=None, *, unknown: str | None = None, clip: bool | None = None) -> dict[str, Any]:
        """RMSE and MAE on ratings ``X`` (any ``fit`` form, e.g. pairs ``X`` rated ``y``): dict with
        ``rmse``, ``mae``, ``n`` (pairs scored) and ``n_unknown``; see :func:`fastmf.serving.evaluate`."""
        fm = self._fitted()
        policy, rng_ = self._unknown_policy(unknown), self._clip_range(fm, clip)
        return serving.evaluate(fm, _sk.scoring_input(X, y), unknown=policy, clip=rng_, n_threads=self.n_threads)

    def score(self, X, y=None, *, unknown: str | None = None, clip: bool | None = None) -> float:
        """Negative RMSE on ratings ``X`` (pairs ``X`` rated ``y``, or ``y=None``): higher is better.

        scikit-learn's convention, so that ``GridSearchCV``, ``cross_val_score``...
        with the default ``scoring`` pick the lowest RMSE; ``-score`` is
        ``evaluate(X, y)["rmse"]`` exactly, and the same number as scikit-learn's
        ``"neg_root_mean_squared_error"`` scorer on pairs.  Not R² (``RegressorMixin``'s):
        RMSE is what rating prediction is judged by, and the mean of per-fold R²
        that a search ranks by weighs each fold's error by its rating variance.
        fastmf 0.1's ``score`` returned the RMSE itself.
        """
        return -self.evaluate(X, y, unknown=unknown, clip=clip)["rmse"]

    _top_n = staticmethod(serving.top_n)  # kept for callers of the old private helper

    def recommend(self, users, n: int = 10, exclude_seen: bool = True, *, min_ratings: int | None = None,
                  block_size: int | None = None):
        """Top-``n`` items ``(raw ids, unclipped scores)`` for each user, best first.

        ``exclude_seen`` leaves out training items (padding with ``-inf``);
        ``min_ratings`` keeps to items with that many training ratings (items rated
        once or twice get large, barely regularised biases and top every list);
        ``block_size`` bounds the floats of one block of scores.  Unknown users
        follow ``unknown`` (``"mean"``: ranked by :math:`\\mu + c_i`, with an
        :class:`UnknownIdWarning`; otherwise ``KeyError``).  See
        :func:`fastmf.serving.recommend` for the details.
        """
        return serving.recommend(self._fitted(), users, n, exclude_seen, unknown=self.unknown,
                                 min_ratings=min_ratings, block_size=block_size, n_threads=self.n_threads,
                                 stacklevel=3)

    def similar_items(self, items, n: int = 10, *, min_ratings: int | None = None,
                      block_size: int | None = None):
        """The ``n`` items most similar to each item (cosine of the item factors):
        ``(raw ids, similarities)``; see :func:`fastmf.serving.similar_items`."""
        return serving.similar_items(self._fitted(), items, n, min_ratings=min_ratings, block_size=block_size,
                                     n_threads=self.n_threads)

    # ------------------------------------------------------------------ fold-in (fastmf.foldin)
    def fold_in(self, items, ratings) -> tuple[np.ndarray, float]:
        """Factors ``(p, b)`` of a new user from its ratings, with Q, c and mu fixed.

        The exact solution of the user's row of the *fitted* objective (the
        ``reg``, ``reg_bias``, ``reg_weighting`` and ``solver`` stored in ``model_``
        at fit or load time, whatever ``set_params`` did since); see
        :func:`fastmf.foldin.fold_in` for the maths and the errors.
        """
        return foldin.fold_in(self._fitted(), items, ratings, stacklevel=3)

    def predict_new_user(self, items, ratings, target_items, *, unknown: str | None = None,
                         clip: bool | None = None) -> np.ndarray:
        """Predictions for a new user (folded in from ``items``/``ratings``) on ``target_items``.

        Unknown target items follow ``unknown`` (``"mean"``: :math:`\\mu + b`).
        """
        fm = self._fitted()
        policy, rng_ = self._unknown_policy(unknown), self._clip_range(fm, clip)
        return foldin.predict_new_user(fm, items, ratings, target_items, unknown=policy, clip=rng_, stacklevel=3)

    def recommend_new_user(self, items, ratings, n: int = 10, exclude_seen: bool = True, *,
                           min_ratings: int | None = None):
        """Top-``n`` items (raw ids, unclipped scores) for a new user folded in from its ratings."""
        return foldin.recommend_new_user(self._fitted(), items, ratings, n, exclude_seen, min_ratings=min_ratings,
                                         stacklevel=3)

    # ------------------------------------------------------------------ persistence (fastmf.persistence)
    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted model to a versioned ``.npz`` file (format 1), atomically.

        Factors, biases, mean, id maps, training items of each user, titles, the
        parameters as JSON (``callbacks`` not saved; the fitted ``solver``, ``rank``,
        ``reg``, ``reg_bias``, ``biases``, ``reg_weighting`` and ``dtype`` are those of
        ``model_``), history and a result summary; no pickle.  Written to a temporary
        file renamed over ``path`` when complete.  Raises :class:`NotFittedError`, or
        ``TypeError`` for ids that are neither ints nor strings or non-JSON
        ``solver_options``.
        """
        return persistence.save_model(path, self._to_arrays())

    def _to_arrays(self) -> dict[str, np.ndarray]:
        """The entries of the model file (:func:`fastmf.persistence.to_arrays`)."""
        return persistence.to_arrays(self._fitted(), self.get_params(), self.history_, self.result_,
                                     n_iter=self.n_iter_, fit_time=self.fit_time_, n_eval_dropped=self.n_eval_dropped_)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MatrixFactorization":
        """Load a model written by :meth:`save` (``FileNotFoundError``; ``ValueError``
        for a file that is not a fastmf model, of a newer format, or incomplete)."""
        from .solvers._base import SolverResult, Status

        f = persistence.load_model(path)
        valid = set(cls._get_param_names())
        model = cls(**{k: v for k, v in f.params.items() if k in valid})
        if "dtype" in f.params:
            model.dtype = np.dtype(f.params["dtype"]).type
        model.__dict__["model_"] = f.model
        model.history_ = f.history
        summary = dict(f.result)
        if "status" in summary:
            try:
                summary["status"] = Status(summary["status"])
            except ValueError:
                pass
        summary["history"] = model.history_
        model.result_ = SolverResult(**summary)
        model.n_iter_, model.fit_time_, model.n_eval_dropped_ = f.n_iter, f.fit_time, f.n_eval_dropped
        return model

    def __setstate__(self, state):
        # pickles of fastmf <= 0.1 hold the fitted arrays as plain attributes
        legacy = {k: state.pop(k) for k in list(state) if k in _LEGACY_FIELDS}
        state.pop("_user_index", None)
        state.pop("_item_index", None)
        self.__dict__.update(state)
        if legacy:
            for k, v in legacy.items():
                setattr(self, k, v)
            self._fitted()


# ---------------------------------------------------------------------------- fitting helpers
def _validated_params(est: "MatrixFactorization") -> dict[str, Any]:
    """The estimator's parameters checked (errors name the parameter) and normalised, before any work."""
    p: dict[str, Any] = {}
    p["rank"] = check_positive_int(est.rank, "rank")
    if not isinstance(est.solver, str):
        raise TypeError(f"solver must be a string, got {est.solver!r}")
    p["solver"] = check_choice(est.solver, "solver", _SOLVERS)
    p["reg"] = check_nonnegative_float(est.reg, "reg")
    p["reg_bias"] = None if est.reg_bias is None else check_nonnegative_float(est.reg_bias, "reg_bias")
    if not isinstance(est.biases, (bool, np.bool_)):
        raise TypeError(f"biases must be a bool, got {est.biases!r}")
    p["biases"] = bool(est.biases)
    reg_exponent(est.reg_weighting)
    p["reg_weighting"] = est.reg_weighting
    p["dtype"] = check_dtype(est.dtype)
    resolve_n_threads(est.n_threads)
    p["n_threads"] = est.n_threads
    p["max_iter"] = None if est.max_iter is None else check_positive_int(est.max_iter, "max_iter")
    p["tol"] = None if est.tol is None else check_nonnegative_float(est.tol, "tol")
    rs = est.random_state
    if isinstance(rs, bool) or not (
        rs is None or isinstance(rs, (numbers.Integral, np.random.Generator))
    ):
        raise TypeError(f"random_state must be None, an int or a numpy Generator, got {rs!r}")
    if isinstance(rs, numbers.Integral) and rs < 0:
        raise ValueError(f"random_state must be a non-negative int, got {rs}")
    p["random_state"] = rs
    if not isinstance(est.init, str):
        raise TypeError(f"init must be a string, got {est.init!r}")
    p["init"] = check_choice(est.init, "init", set(INITS))
    p["init_scale"] = None if est.init_scale is None else check_nonnegative_float(est.init_scale, "init_scale")
    if not isinstance(est.progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {est.progress!r}")
    p["progress"] = bool(est.progress)
    CallbackList(est.callbacks)  # raises TypeError for non-callables
    p["callbacks"] = est.callbacks
    p["early_stopping"] = (
        None if est.early_stopping is None else check_positive_int(est.early_stopping, "early_stopping")
    )
    p["unknown"] = check_choice(est.unknown, "unknown", _UNKNOWN)
    if not isinstance(est.clip, (bool, np.bool_)):
        raise TypeError(f"clip must be a bool, got {est.clip!r}")
    p["clip"] = bool(est.clip)
    opts = est.solver_options
    if opts is None:
        opts = {}
    elif not isinstance(opts, dict) or not all(isinstance(k, str) for k in opts):
        raise TypeError(f"solver_options must be a dict with string keys, got {opts!r}")
    p["solver_options"] = dict(opts)
    return p


def _rating_scale(train: Ratings) -> tuple[float, float]:
    """The declared rating scale of the training data, else its observed [min, max]."""
    if train.rating_scale is not None:
        return (float(train.rating_scale[0]), float(train.rating_scale[1]))
    return (float(train.values.min()), float(train.values.max()))


def _fitted_model(result, mu: float, train: Ratings, p: dict[str, Any]) -> FactorModel:
    """The ``FactorModel`` of a solver result on ``train`` fitted with the parameters ``p``."""
    m, n = train.n_users, train.n_items
    # gibbs returns its kept draws stacked: a model of rank (draws x rank)
    P, Q, b, c = unpack(np.asarray(result.x), m, n, int(result.get("rank", p["rank"])), p["biases"])
    dt = p["dtype"]
    titles = train.item_titles
    if titles:
        titles = {k: titles[k] for k in train.item_ids.tolist() if titles.get(k) is not None}
    else:
        titles = None
    return FactorModel(
        np.array(P, dtype=dt, copy=True), np.array(Q, dtype=dt, copy=True),
        None if b is None else np.array(b, dtype=dt, copy=True), None if c is None else np.array(c, dtype=dt, copy=True),
        float(mu), train.user_id_index, train.item_id_index, train.user_indptr, train.items, _rating_scale(train),
        item_titles=titles, dataset_name=train.name, solver=p["solver"], rank=p["rank"], reg=p["reg"],
        reg_bias=p["reg_bias"], reg_weighting=p["reg_weighting"],
    )


def _warm_start_point(fm: FactorModel, train: Ratings, p: dict) -> tuple[Ratings, np.ndarray]:
    """Training data in the union code space of ``fm`` and ``train``, and the packed start.

    Known users and items keep their rows (and biases); new ones start from
    :math:`N(0, 0.1^2/k)` factors and zero biases.
    """
    train, urows, irows = _convert.to_union_code_space(train, fm.users, fm.items, p["dtype"])
    m, n, k = train.n_users, train.n_items, p["rank"]
    rng = check_random_state(p["random_state"])
    P, Q = random_factors(m, n, k, 0.1 / np.sqrt(k), rng)
    P[urows] = fm.P
    Q[irows] = fm.Q
    b = c = None
    if p["biases"]:
        b = np.zeros(m)
        c = np.zeros(n)
        b[urows] = fm.b
        c[irows] = fm.c
    n_new = (m - fm.n_users, n - fm.n_items)
    if any(n_new):
        logger.info("warm_start: %d new users and %d new items start from random factors", *n_new)
    return train, pack(P, Q, b, c, dtype=p["dtype"])
