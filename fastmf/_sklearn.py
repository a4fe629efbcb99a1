r"""scikit-learn's estimator protocol for :class:`~fastmf.model.MatrixFactorization`, without scikit-learn.

scikit-learn is optional at run time, so the estimator does not inherit
``sklearn.base.BaseEstimator`` (and ``RegressorMixin``): a base class that exists
only when scikit-learn is importable would make the class depend on the
environment (its MRO; its ``repr``; its pickles, which ``BaseEstimator`` stamps
with the scikit-learn version and checks on loading, next to the estimator's own
``__setstate__`` for old pickles), and ``RegressorMixin``'s R\ :sup:`2` score and
"y required" tags are not this estimator's anyway.  The protocol is small, so it is
implemented completely instead: ``clone``, the searches, cross-validation and
``Pipeline`` need nothing more.  This module holds the pieces (none imports
scikit-learn except :func:`sklearn_tags`, which only scikit-learn calls):

* :func:`get_params` / :func:`set_params`: constructor parameters, with the nested
  ``<param>__<sub>`` names of parameters that are estimators themselves, as
  ``BaseEstimator`` does;
* :func:`estimator_repr`: ``MatrixFactorization(<non-default parameters>)``;
* :func:`sklearn_tags`: the ``sklearn.utils.Tags`` of a rating regressor;
* :func:`fit_input`, :func:`pairs`, :func:`scoring_input`: the rows-are-samples
  input forms that scikit-learn's cross-validation splitters produce (they index
  ``X`` and ``y`` by rows), next to fastmf's own forms.

Input forms
-----------
``fit(X, y)``, ``score(X, y)`` and ``evaluate(X, y)`` take either

* ``y=None`` and ``X`` carrying the ratings: a ``Ratings``, a DataFrame with
  user/item/rating columns, a scipy sparse users x items matrix or a
  ``(users, items, ratings)`` tuple (:func:`fastmf.as_ratings`); or
* ``y`` (the ratings, 1-D) and ``X`` the ``(user, item)`` pairs: an array-like of
  shape ``(n, 2)`` or a DataFrame with user/item columns (found by the names of
  :meth:`Ratings.from_dataframe`, e.g. ``user``/``item`` or ``userId``/``movieId``)
  or with exactly two columns (user first).

``predict(X)`` takes the pairs forms (a DataFrame may also hold a rating column,
which is not read).  Of the ratings forms only the DataFrame is a table of samples
for scikit-learn: a ``Ratings`` or a sparse matrix is not indexable by rows.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lazy import is_dataframe, is_pandas_1d, is_sparse
from .data.ratings import _DATAFRAME_COLUMN_GUESSES, Ratings

if TYPE_CHECKING:  # pandas and scipy are not imported by a fit on other inputs
    import pandas as pd

__all__ = ["estimator_repr", "fit_input", "get_params", "pairs", "scoring_input", "set_params", "sklearn_tags"]

#: (user, item) column names looked for in a DataFrame of pairs, in order
_PAIR_COLUMNS = tuple(dict.fromkeys(g[:2] for g in _DATAFRAME_COLUMN_GUESSES))
_RATING_COLUMNS = tuple(dict.fromkeys(g[2] for g in _DATAFRAME_COLUMN_GUESSES))


# ---------------------------------------------------------------------------- parameters
def param_names(cls) -> list[str]:
    """Names of the constructor parameters of ``cls`` (no ``*args``/``**kwargs`` allowed)."""
    names = []
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{cls.__name__}.__init__ must not take *args or **kwargs")
        names.append(name)
    return names


def _is_estimator(value) -> bool:
    return hasattr(value, "get_params") and not isinstance(value, type)


def get_params(est, deep: bool = True) -> dict[str, Any]:
    """Constructor parameters as stored; with ``deep``, also ``<name>__<sub>`` for estimator parameters."""
    out: dict[str, Any] = {}
    for name in param_names(type(est)):
        value = getattr(est, name)
        if deep and _is_estimator(value):
            out.update((f"{name}__{k}", v) for k, v in value.get_params(deep=True).items())
        out[name] = value
    return out


def set_params(est, params: dict[str, Any]):
    """Set parameters (``<name>__<sub>`` sets ``sub`` on the estimator held by ``name``); returns ``est``.

    Values are stored unchecked (``fit`` validates them).  Unknown names raise
    ``ValueError`` before anything is set.
    """
    if not params:
        return est
    valid = param_names(type(est))
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        name, delim, sub = key.partition("__")
        if name not in valid:
            raise ValueError(f"invalid parameter {name!r} for {type(est).__name__}; valid parameters: {valid}")
        if delim:
            nested.setdefault(name, {})[sub] = value
        else:
            direct[name] = value
    for name, sub_params in nested.items():
        target = direct.get(name, getattr(est, name))
        if not hasattr(target, "set_params"):
            raise ValueError(f"invalid parameter {next(iter(sub_params))!r} for {name}={target!r}: "
                             f"{name} has no parameters to set")
    for name, value in direct.items():
        setattr(est, name, value)
    for name, sub_params in nested.items():
        getattr(est, name).set_params(**sub_params)
    return est


def estimator_repr(est) -> str:
    """``ClassName(<parameters that differ from the defaults>)``."""
    sig = inspect.signature(type(est).__init__)
    parts = []
    for name, p in sig.parameters.items():
        if name == "self":
            continue
        value = getattr(est, name)
        default = p.default
        try:
            same = value is default or (type(value) is type(default) and bool(value == default))
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
    return f"{type(est).__name__}({', '.join(parts)})"


# ---------------------------------------------------------------------------- tags
def sklearn_tags(est):
    """The ``sklearn.utils.Tags`` of the estimator (scikit-learn >= 1.6; imports it).

    * a regressor (``is_regressor`` is true: integer ``cv`` means ``KFold``, and
      scikit-learn's regression scorers apply when ``y`` is given);
    * ``y`` not required (``fit(X)`` with the ratings inside ``X``), 1-D, one output;
    * ``X`` is 2-D but its columns are ids, i.e. categorical, possibly strings; no
      NaN; no sparse *samples x features* input (a sparse matrix is read as the
      users x items ratings matrix, not as rows of samples);
    * ``poor_score``: on generic regression data (numeric features) a factor
      model of ids is no regressor;
    * deterministic for a given ``random_state`` (and thread count), needs a fit.
    """
    from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

    return Tags(
        estimator_type="regressor",
        target_tags=TargetTags(required=False, one_d_labels=True, two_d_labels=False, positive_only=False,
                               multi_output=False, single_output=True),
        transformer_tags=None,
        classifier_tags=None,
        regressor_tags=RegressorTags(poor_score=True),
        array_api_support=False,
        no_validation=False,
        non_deterministic=False,
        requires_fit=True,
        input_tags=InputTags(one_d_array=False, two_d_array=True, three_d_array=False, sparse=False,
                             categorical=True, string=True, dict=False, allow_nan=False, pairwise=False),
    )


# ---------------------------------------------------------------------------- inputs
def _is_column_tuple(X) -> bool:
    """A tuple of 1-D id/rating arrays: fastmf's ``(users, items[, ratings])`` column form."""
    return isinstance(X, (tuple, list)) and len(X) in (2, 3, 4) and all(
        (isinstance(a, np.ndarray) or is_pandas_1d(a)) and a.ndim == 1 for a in X)


def _rating_column(df: pd.DataFrame) -> str | None:
    for guess in _DATAFRAME_COLUMN_GUESSES:
        if all(c in df.columns for c in guess):
            return guess[2]
    return None


def pairs(X, name: str = "X") -> tuple[np.ndarray, np.ndarray]:
    """Raw user and item ids of ``(user, item)`` pairs: a DataFrame or an array-like of shape ``(n, 2)``.

    A DataFrame's user and item columns are found by name (``user``/``item``,
    ``userId``/``movieId``, ``user_id``/``item_id``, ``user_id``/``movie_id``,
    other columns not read); failing that it must have exactly two columns (user
    first).  Nothing is copied that need not be; ``X`` is not modified.

    Raises
    ------
    TypeError
        A tuple of id arrays (the ``(users, items, ratings)`` form) or a sparse matrix.
    ValueError
        Another shape than ``(n, 2)``, or a DataFrame whose user/item columns cannot be found.
    """
    if is_dataframe(X):
        for u, i in _PAIR_COLUMNS:
            if u in X.columns and i in X.columns:
                return X[u].to_numpy(), X[i].to_numpy()
        if X.shape[1] == 2:
            return X.iloc[:, 0].to_numpy(), X.iloc[:, 1].to_numpy()
        raise ValueError(f"cannot find the user and item columns of {name} in {list(X.columns)}: name them "
                         f"{' or '.join('/'.join(c) for c in _PAIR_COLUMNS)}, or pass exactly two columns")
    if is_sparse(X) or isinstance(X, Ratings) or _is_column_tuple(X):
        raise TypeError(f"{name} must be (user, item) pairs here: an array-like of shape (n, 2) or a DataFrame "
                        f"with user/item columns, got {type(X).__name__} (for a tuple of id arrays use "
                        "np.column_stack((users, items)))")
    a = np.asarray(X)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must hold (user, item) pairs, shape (n, 2); got shape {a.shape}")
    return a[:, 0], a[:, 1]


def _ratings_y(y, n: int) -> np.ndarray:
    r = np.asarray(y)
    if r.ndim != 1:
        raise ValueError(f"y must be 1-D (one rating per (user, item) pair of X), got shape {r.shape}")
    if r.shape[0] != n:
        raise ValueError(f"X has {n} (user, item) pairs but y has {r.shape[0]} ratings")
    if r.dtype.kind not in "iuf":
        raise TypeError(f"y must be numeric ratings, got dtype {r.dtype}")
    return r


def _triplets(X, y, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if is_dataframe(X) and (col := _rating_column(X)) is not None:
        raise ValueError(f"{name} has a rating column {col!r} and y is given too: pass the ratings once "
                         f"(y=None with the rating column, or {name} without it)")
    u, i = pairs(X, name)
    return u, i, _ratings_y(y, u.shape[0])


def fit_input(X, y, name: str = "X"):
    """What :func:`fastmf.as_ratings` takes, from ``fit``'s ``(X, y)`` (see the module docstring).

    With ``y=None``, ``X`` itself (it carries the ratings); otherwise the tuple
    ``(users, items, y)`` of ``X``'s pairs.

    Raises
    ------
    TypeError
        ``y`` given with an ``X`` that carries ratings (``Ratings``, sparse matrix,
        tuple), or ``y=None`` with a 2-D array of pairs.
    ValueError
        A bad shape, or ratings given twice (a DataFrame with a rating column and ``y``).
    """
    if y is None:
        if isinstance(X, np.ndarray):
            raise TypeError(f"{name} looks like (user, item) pairs: pass the ratings as y "
                            f"(fit(X, y)); got y=None")
        return X
    if _is_column_tuple(X) and len(X) == 2:
        pairs(X, name)  # raises, pointing to np.column_stack
    if isinstance(X, Ratings) or is_sparse(X) or _is_column_tuple(X):
        raise TypeError(f"y must be None when {name} carries the ratings ({type(X).__name__}); with y, {name} "
                        "holds (user, item) pairs, shape (n, 2).  (eval_set is keyword-only: fit(X, eval_set=...))")
    if isinstance(y, Ratings) or is_dataframe(y) or is_sparse(y):
        raise TypeError(f"y must be a 1-D array of ratings, got {type(y).__name__}: eval_set is keyword-only, "
                        "fit(X, eval_set=...)")
    return _triplets(X, y, name)


def scoring_input(X, y, name: str = "X"):
    """What :func:`fastmf.serving.evaluate` takes, from ``(X, y)``: ``X`` when ``y`` is None,
    else the ``(users, items, y)`` tuple of ``X``'s pairs (duplicate pairs allowed)."""
    if y is None:
        return X
    if isinstance(X, Ratings) or is_sparse(X) or _is_column_tuple(X):
        raise TypeError(f"y must be None when {name} carries the ratings ({type(X).__name__})")
    return _triplets(X, y, name)
