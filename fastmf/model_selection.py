r"""Cross-validation and parameter search for :class:`~fastmf.model.MatrixFactorization`.

Splitters
---------
Every splitter has ``split(ratings)``, yielding one
:class:`~fastmf.data.splits.Split` per fold (a ``(train, test)`` pair of
:class:`~fastmf.data.ratings.Ratings` in the input's code space, with
``n_dropped``), ``get_n_splits()`` and ``random_state``:

* :class:`KFold`: the ratings shuffled and dealt into ``n_splits`` folds;
* :class:`UserKFold`: each user's ratings dealt across the folds, so every user
  with at least 2 ratings keeps ratings in every train part;
* :class:`TemporalKFold`: time-ordered blocks, each fold trained on all the
  blocks before its test block (an expanding window, never on the future);
* :class:`ML100KFolds`: the official ml-100k folds ``u1..u5`` from the files.

Unknown users and items
    As in :mod:`fastmf.data.splits`, a factor model cannot predict a test
    rating whose user or item has no rating in train.  With
    ``drop_unknown=True`` (the default) such ratings are dropped from the test
    part; their number is ``split.n_dropped`` (and ``n_dropped`` in the
    results of :func:`cross_validate`).  With ``drop_unknown=False`` they stay
    and are scored with the estimator's ``unknown`` policy (default: global
    mean plus the known bias).

Metrics
-------
Names accepted by ``metrics=`` / ``measures=`` (case-insensitive):

* ``"rmse"``: root mean squared error of the predicted ratings,
  :math:`\sqrt{\frac1N\sum (r - \hat r)^2}` (lower is better);
* ``"mae"``: mean absolute error :math:`\frac1N\sum |r - \hat r|` (lower is better);
* ``"precision@k"``, ``"recall@k"``, ``"ndcg@k"`` (``k`` an integer >= 1; a bare
  ``"ndcg"`` means ``"ndcg@10"``): top-``k`` ranking metrics of
  :func:`fastmf.metrics.ranking_metrics` -- the share of the ``k`` recommended
  items that are relevant, the share of a user's relevant items found in the
  top ``k``, and the discounted cumulative gain of the hits over its best
  possible value -- averaged over the test users with at least one relevant
  item.  An item is relevant to a user when its held-out rating is
  ``>= relevance_threshold`` (default 4.0); recommendations exclude the
  user's train items.  Higher is better.

:func:`cross_validate` returns a :class:`CVResults` (a dict of per-fold
arrays with ``mean()``, ``std()``, ``summary()`` and ``to_frame()``);
:class:`GridSearch` and :class:`RandomizedSearch` evaluate every candidate on
the same folds and pick, for each measure, the lowest RMSE/MAE or the highest
ranking metric.
"""

from __future__ import annotations

import os
import itertools
import numbers
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_positive_int, check_random_state
from .data.movielens import ML100K_FOLDS, load_ml100k_fold
from .data.ratings import Ratings
from .data.splits import (
    Split,
    _check_bool,
    _check_ratings,
    random_user_ranks,
    split_from_mask,
    temporal_order,
)
from .metrics import ranking_metrics
from .data.convert import as_ratings

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CVResults",
    "GridSearch",
    "KFold",
    "ML100KFolds",
    "ParameterGrid",
    "RandomizedSearch",
    "TemporalKFold",
    "UserKFold",
    "check_cv",
    "cross_validate",
    "greater_is_better",
]

#: Default ``k`` of a ranking metric named without one (``"ndcg"`` = ``"ndcg@10"``).
DEFAULT_K = 10
_LOWER_IS_BETTER = ("rmse", "mae")
_RANKING = ("precision", "recall", "ndcg")
_RANKING_RE = re.compile(r"(precision|recall|ndcg)(?:@(\d+))?")


def _as_input(ratings, what: str = "ratings") -> Ratings:
    """``ratings`` itself if a Ratings, else converted by :func:`fastmf.as_ratings` (float64, lossless)."""
    if isinstance(ratings, Ratings):
        return ratings
    if ratings is None:
        raise TypeError(f"{what} is None: only ML100KFolds splits without data")
    return as_ratings(ratings, np.float64, name=what)


def _check_n_splits(n_splits, minimum: int = 2) -> int:
    if isinstance(n_splits, (bool, np.bool_)) or not isinstance(n_splits, numbers.Integral):
        raise ValueError(f"n_splits must be an integer >= {minimum}, got {n_splits!r}")
    if n_splits < minimum:
        raise ValueError(f"n_splits must be >= {minimum}, got {n_splits}")
    return int(n_splits)


# ---------------------------------------------------------------------------- splitters
class _Splitter:
    """Common API: ``split``, ``get_n_splits``, ``random_state``, ``drop_unknown``."""

    n_splits: int
    random_state: Any = None
    drop_unknown: bool = True

    def get_n_splits(self, ratings=None) -> int:
        """Number of folds (``ratings`` is accepted for scikit-learn habits and ignored)."""
        return self.n_splits

    def split(self, ratings) -> Iterator[Split]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self) -> dict:
        return {"n_splits": self.n_splits, "random_state": self.random_state, "drop_unknown": self.drop_unknown}

    def _prepare(self, ratings) -> Ratings:
        r = _as_input(ratings)
        _check_ratings(r)
        if self.n_splits > r.nnz:
            raise ValueError(f"n_splits={self.n_splits} exceeds the {r.nnz} ratings to split")
        return r

    def _splits_from_folds(self, r: Ratings, fold: np.ndarray, what: str) -> Iterator[Split]:
        for k in range(self.n_splits):
            yield split_from_mask(r, fold == k, self.drop_unknown, f"{what} fold {k}")


class KFold(_Splitter):
    """K-fold cross-validation over ratings, at random.

    The ratings are shuffled and dealt round-robin into ``n_splits`` folds (fold
    sizes differ by at most one); fold ``k`` is the test part of split ``k`` and
    the other folds its train part.  Every rating is in exactly one test fold
    (before unknown users/items are dropped).

    Parameters
    ----------
    n_splits : int >= 2
    random_state : None, int or numpy Generator
        Seed of the shuffle.  An int gives the same folds at every
        :meth:`split` call; a Generator advances at each call.
    drop_unknown : bool
        Drop test ratings whose user or item has no train rating (counted in
        ``split.n_dropped``; see the module docstring).

    Examples
    --------
    >>> from fastmf.data.synthetic import synthetic
    >>> r = synthetic(50, 40, 600, random_state=0)
    >>> [test.nnz + s.n_dropped for s in KFold(3, random_state=0).split(r) for test in [s.test]]
    [200, 200, 200]
    """

    def __init__(self, n_splits: int = 5, *, random_state=None, drop_unknown: bool = True):
        self.n_splits = _check_n_splits(n_splits)
        check_random_state(random_state)  # type check now; the generator is made at split time
        self.random_state = random_state
        self.drop_unknown = _check_bool(drop_unknown, "drop_unknown")

    def split(self, ratings) -> Iterator[Split]:
        """Yield ``n_splits`` :class:`~fastmf.data.splits.Split` of ``ratings`` (any form :func:`fastmf.as_ratings` takes)."""
        r = self._prepare(ratings)
        rng = check_random_state(self.random_state)
        fold = np.empty(r.nnz, dtype=np.int64)
        fold[rng.permutation(r.nnz)] = np.arange(r.nnz, dtype=np.int64) % self.n_splits
        return self._splits_from_folds(r, fold, "KFold")


class UserKFold(_Splitter):
    """Per-user K-fold: each user's ratings are dealt across the folds.

    Inside each user the ratings are put in random order (as in
    :func:`~fastmf.data.splits.per_user_split`) and dealt round-robin into the
    folds, starting at a random fold per user.  So a user with ``n_u`` ratings
    has ``floor(n_u / K)`` or ``ceil(n_u / K)`` of them in each test fold, every
    rating is in exactly one test fold, and every user with ``n_u >= 2``
    ratings keeps at least one rating in every train part (users with
    ``n_u >= K`` keep at least ``K - 1``).  A user's single rating is unknown in
    its test fold (dropped with ``drop_unknown``).

    Parameters
    ----------
    n_splits : int >= 2
    random_state : None, int or numpy Generator
    drop_unknown : bool
        Drop test ratings whose user or item has no train rating.
    """

    def __init__(self, n_splits: int = 5, *, random_state=None, drop_unknown: bool = True):
        self.n_splits = _check_n_splits(n_splits)
        check_random_state(random_state)
        self.random_state = random_state
        self.drop_unknown = _check_bool(drop_unknown, "drop_unknown")

    def split(self, ratings) -> Iterator[Split]:
        """Yield ``n_splits`` :class:`~fastmf.data.splits.Split` of ``ratings``."""
        r = self._prepare(ratings)
        rng = check_random_state(self.random_state)
        rank = random_user_ranks(r, rng)
        offset = rng.integers(0, self.n_splits, size=r.n_users)
        fold = (rank + offset[r.users]) % self.n_splits
        return self._splits_from_folds(r, fold, "UserKFold")


class TemporalKFold(_Splitter):
    """Expanding-window temporal folds: train on the past, test on the next block.

    The ratings are ordered by timestamp (ties in canonical (user, item) order,
    as in :func:`~fastmf.data.splits.temporal_split`) and cut into
    ``n_splits + 1`` consecutive blocks of equal size (within one).  Split ``k``
    tests on block ``k + 1`` and trains on blocks ``0..k`` (all of them, or the
    latest ``max_train_size`` ratings of them), so every train timestamp is
    ``<=`` every test timestamp of the split.  The first block is never tested;
    each other rating is in exactly one test fold.  New users and items
    (typical in time) are dropped from the test part with ``drop_unknown``.

    Parameters
    ----------
    n_splits : int >= 1
    max_train_size : int >= 1, optional
        Train on at most this many of the latest past ratings (a sliding window).
    drop_unknown : bool

    Attributes
    ----------
    random_state : None
        Always None: the folds are deterministic.
    """

    def __init__(self, n_splits: int = 5, *, max_train_size: int | None = None, drop_unknown: bool = True):
        self.n_splits = _check_n_splits(n_splits, minimum=1)
        self.max_train_size = None if max_train_size is None else check_positive_int(max_train_size, "max_train_size")
        self.random_state = None
        self.drop_unknown = _check_bool(drop_unknown, "drop_unknown")

    def _repr_args(self) -> dict:
        return {"n_splits": self.n_splits, "max_train_size": self.max_train_size, "drop_unknown": self.drop_unknown}

    def split(self, ratings) -> Iterator[Split]:
        """Yield ``n_splits`` :class:`~fastmf.data.splits.Split` of ``ratings`` (which must carry timestamps)."""
        r = _as_input(ratings)
        _check_ratings(r)
        if r.timestamps is None:
            raise ValueError("TemporalKFold needs timestamps, and these ratings have none")
        if self.n_splits + 1 > r.nnz:
            raise ValueError(f"n_splits={self.n_splits} needs at least {self.n_splits + 1} ratings, got {r.nnz}")
        order = temporal_order(r)
        bounds = np.linspace(0, r.nnz, self.n_splits + 2).astype(np.int64)  # array_split-like block ends
        return self._gen(r, order, bounds)

    def _gen(self, r: Ratings, order: np.ndarray, bounds: np.ndarray) -> Iterator[Split]:
        for k in range(self.n_splits):
            start, stop = bounds[k + 1], bounds[k + 2]
            lo = 0 if self.max_train_size is None else max(0, start - self.max_train_size)
            test = np.zeros(r.nnz, dtype=bool)
            test[order[start:stop]] = True
            train = np.zeros(r.nnz, dtype=bool)
            train[order[lo:start]] = True
            yield split_from_mask(r, test, self.drop_unknown, f"TemporalKFold fold {k}", train_mask=train)


class ML100KFolds(_Splitter):
    """The official ml-100k cross-validation folds (``u1.base``/``u1.test`` ... ``u5``) as a splitter.

    Each split is :func:`fastmf.load_ml100k_fold` of one fold: the five test
    files partition the 100,000 ratings.  Codes are those of the full
    ``u.data`` (``load_movielens("ml-100k")``).

    Parameters
    ----------
    folds : sequence of {"u1", ..., "u5", "ua", "ub"}
        The folds to yield, in order.
    data_home, dtype, download
        As in :func:`fastmf.load_movielens`.
    drop_unknown : bool
        Drop test ratings whose user or item is not in the fold's train file.

    Notes
    -----
    ``split(ratings)`` reads the files; ``ratings`` may be ``None``.  If given
    it must be ml-100k (same user and item ids), else ``ValueError``: the folds
    come from the files, not from ``ratings``.
    """

    def __init__(self, folds: Sequence[str] = ("u1", "u2", "u3", "u4", "u5"), data_home=None, *,
                 dtype=np.float32, drop_unknown: bool = True, download: bool | None = None):
        if isinstance(folds, str):
            folds = (folds,)
        folds = tuple(folds)
        if not folds:
            raise ValueError("folds is empty")
        bad = [f for f in folds if f not in ML100K_FOLDS]
        if bad:
            raise ValueError(f"unknown ml-100k fold(s) {bad}; choose from {ML100K_FOLDS}")
        self.folds = folds
        self.n_splits = len(folds)
        self.data_home = data_home
        self.dtype = dtype
        self.download = download
        self.random_state = None
        self.drop_unknown = _check_bool(drop_unknown, "drop_unknown")

    def _repr_args(self) -> dict:
        return {"folds": self.folds, "data_home": self.data_home, "drop_unknown": self.drop_unknown}

    def split(self, ratings=None) -> Iterator[Split]:
        """Yield :func:`fastmf.load_ml100k_fold` of each fold (``ratings``: None or ml-100k itself)."""
        if ratings is not None:
            ratings = _as_input(ratings)
        return self._gen(ratings)

    def _gen(self, ratings) -> Iterator[Split]:
        for i, fold in enumerate(self.folds):
            s = load_ml100k_fold(fold, self.data_home, dtype=self.dtype, drop_unknown=self.drop_unknown,
                                 download=self.download)
            if i == 0 and ratings is not None and not (
                    ratings.user_ids.shape == s.train.user_ids.shape and ratings.item_ids.shape == s.train.item_ids.shape
                    and np.array_equal(ratings.user_ids, s.train.user_ids)
                    and np.array_equal(ratings.item_ids, s.train.item_ids)):
                raise ValueError(
                    "ML100KFolds reads the official ml-100k folds, but the ratings passed are not ml-100k "
                    f"({ratings.n_users} users x {ratings.n_items} items); pass data=None or ml-100k"
                )
            yield s


def check_cv(cv=5, random_state=0) -> _Splitter:
    """A splitter from ``cv``: an int ``K`` gives ``KFold(K, random_state=random_state)``; a splitter is returned as is.

    Raises
    ------
    ValueError
        ``cv`` is an int < 2, or not an object with ``split`` and ``get_n_splits``.
    """
    if isinstance(cv, (bool, np.bool_)):
        raise ValueError(f"cv must be an int >= 2 or a splitter, got {cv!r}")
    if isinstance(cv, numbers.Integral):
        if cv < 2:
            raise ValueError(f"cv must be an int >= 2 or a splitter, got {cv}")
        return KFold(int(cv), random_state=random_state)
    if callable(getattr(cv, "split", None)) and callable(getattr(cv, "get_n_splits", None)):
        return cv
    raise ValueError(
        f"cv must be an int >= 2 or a splitter (KFold, UserKFold, TemporalKFold, ML100KFolds), got {type(cv).__name__}"
    )


# ---------------------------------------------------------------------------- metrics
def _parse_metrics(metrics, what: str = "metrics") -> tuple[str, ...]:
    """Canonical metric names (``"rmse"``, ``"mae"``, ``"ndcg@10"``...), in order, without repeats."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        metrics = list(metrics)
    except TypeError:
        raise ValueError(f"{what} must be a metric name or a sequence of names, got {metrics!r}") from None
    if not metrics:
        raise ValueError(f"{what} is empty")
    out: list[str] = []
    for m in metrics:
        if not isinstance(m, str):
            raise ValueError(f"{what}: metric names are strings, got {m!r}")
        name = m.strip().lower()
        match = _RANKING_RE.fullmatch(name)
        if name in _LOWER_IS_BETTER:
            canon = name
        elif match:
            k = DEFAULT_K if match.group(2) is None else int(match.group(2))
            if k < 1:
                raise ValueError(f"{what}: k must be >= 1 in {m!r}")
            canon = f"{match.group(1)}@{k}"
        else:
            raise ValueError(
                f"unknown metric {m!r} in {what}; known: 'rmse', 'mae', 'precision@k', 'recall@k', 'ndcg@k'"
            )
        if canon not in out:
            out.append(canon)
    return tuple(out)


def greater_is_better(metric: str) -> bool:
    """False for ``"rmse"`` and ``"mae"`` (errors), True for the ranking metrics."""
    return _parse_metrics(metric)[0] not in _LOWER_IS_BETTER


def _score(est, X: Ratings, metrics: tuple[str, ...], threshold, exclude_seen: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    if any(m in _LOWER_IS_BETTER for m in metrics):
        ev = est.evaluate(X)
        out["rmse"], out["mae"] = float(ev["rmse"]), float(ev["mae"])
    for k in sorted({int(m.split("@")[1]) for m in metrics if "@" in m}):
        rm = ranking_metrics(est, X, k=k, threshold=threshold, exclude_seen=exclude_seen)
        for base in _RANKING:
            out[f"{base}@{k}"] = float(rm[base])
    return {m: out[m] for m in metrics}


def _fit_and_score(cls, params: dict, train: Ratings, test: Ratings, metrics: tuple[str, ...], threshold,
                   return_train_score: bool, return_estimator: bool) -> dict[str, Any]:
    """Fit a fresh ``cls(**params)`` on ``train``; scores on ``test`` (and ``train``) and times."""
    est = cls(**params)
    t0 = time.perf_counter()
    est.fit(train)
    fit_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_scores = _score(est, test, metrics, threshold, exclude_seen=True)
    out = {"test": test_scores, "fit_time": fit_time, "test_time": time.perf_counter() - t0}
    if return_train_score:
        # exclude_seen=False: on train every relevant item is a seen item
        out["train"] = _score(est, train, metrics, threshold, exclude_seen=False)
    if return_estimator:
        out["estimator"] = est
    return out


def _check_n_jobs(n_jobs) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer or None, got {n_jobs!r}")
    n = int(n_jobs)
    if n < 0:
        n = max(1, (os.cpu_count() or 1) + 1 + n)
    return n


def _map(tasks: Iterable[tuple], n_jobs: int) -> Iterator[dict]:
    """``_fit_and_score(*task)`` for each task, in order; in ``n_jobs`` spawned processes when > 1."""
    if n_jobs == 1:
        for t in tasks:
            yield _fit_and_score(*t)
        return
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as ex:
        futures = [ex.submit(_fit_and_score, *t) for t in tasks]
        for f in futures:
            yield f.result()


def _base_params(estimator) -> dict:
    if not callable(getattr(estimator, "get_params", None)) or not callable(getattr(estimator, "fit", None)):
        raise TypeError(f"estimator must have get_params and fit (a MatrixFactorization), got {type(estimator).__name__}")
    return dict(estimator.get_params())


def _check_param_names(base: dict, names: Iterable[str], estimator) -> None:
    bad = [n for n in names if n not in base]
    if bad:
        raise ValueError(
            f"invalid parameter(s) {bad} for {type(estimator).__name__}; valid parameters: {sorted(base)}"
        )


# ---------------------------------------------------------------------------- results
class _Results(dict):
    """A dict of arrays (scikit-learn's ``cv_results_`` habits) with :meth:`to_frame`."""

    def to_frame(self) -> pd.DataFrame:
        """One row per fold (or per candidate); non-array entries (fitted estimators) left out."""
        cols = {k: v for k, v in self.items() if k != "estimator"}
        import pandas as pd

        return pd.DataFrame(cols)


class CVResults(_Results):
    """Per-fold results of :func:`cross_validate`: a dict name -> array of length ``n_splits``.

    Keys: ``test_<metric>`` for each metric (``test_rmse``, ``test_ndcg@10``...),
    ``train_<metric>`` with ``return_train_score``, ``fit_time`` and
    ``test_time`` (seconds: the fit, and the scoring of the test part),
    ``n_train``, ``n_test`` (ratings scored) and ``n_dropped`` (test ratings
    dropped as unknown), and ``estimator`` (a list) with ``return_estimator``.
    """

    def mean(self) -> dict[str, float]:
        """Mean over the folds of every numeric entry."""
        return {k: float(np.mean(v)) for k, v in self.items() if k != "estimator"}

    def std(self) -> dict[str, float]:
        """Standard deviation (``ddof=0``) over the folds of every numeric entry."""
        return {k: float(np.std(v)) for k, v in self.items() if k != "estimator"}

    def summary(self) -> pd.DataFrame:
        """DataFrame with rows ``mean`` and ``std`` and one column per entry."""
        import pandas as pd

        return pd.DataFrame([self.mean(), self.std()], index=["mean", "std"])


# ---------------------------------------------------------------------------- cross_validate
def cross_validate(estimator, data, cv=5, *, metrics: str | Sequence[str] = ("rmse", "mae"),
                   relevance_threshold: float | None = 4.0, return_train_score: bool = False,
                   return_estimator: bool = False, n_jobs: int | None = 1, random_state=0) -> CVResults:
    """Fit and score ``estimator`` on every fold of ``cv``.

    Each fold fits a fresh clone ``type(estimator)(**estimator.get_params())``
    on the train part and scores the test part; ``estimator`` itself is not
    fitted or changed.

    Parameters
    ----------
    estimator : MatrixFactorization
        Used only through ``get_params``, ``fit``, ``evaluate`` and ``recommend``.
    data : Ratings, DataFrame, scipy sparse or (users, items, ratings) tuple
        Anything :func:`fastmf.as_ratings` takes (non-``Ratings`` input is
        converted losslessly to float64 first; the estimator casts to its
        ``dtype``).  ``None`` with :class:`ML100KFolds`.
    cv : int >= 2 or splitter
        An int ``K`` means ``KFold(K, random_state=random_state)``.
    metrics : str or sequence of str
        ``"rmse"``, ``"mae"``, ``"precision@k"``, ``"recall@k"``, ``"ndcg@k"``
        (see the module docstring for their definitions).
    relevance_threshold : float or None
        A held-out rating ``>=`` this makes its item relevant for the ranking
        metrics; ``None``: every held-out item is relevant.
    return_train_score : bool
        Also score each train part (ranking metrics then include the seen items).
    return_estimator : bool
        Keep the fitted estimator of each fold (key ``estimator``).
    n_jobs : int or None
        Folds fitted at once.  ``1`` (default): in this process.  ``> 1`` (or
        ``-1`` for one per CPU): in spawned worker processes, so the estimator
        parameters must pickle (no lambda callbacks), every fold's data is sent
        to the workers up front, and each worker uses the estimator's
        ``n_threads`` numba threads (set ``n_threads=1`` to avoid
        oversubscription).
    random_state : None, int or numpy Generator
        Seed of the ``KFold`` built when ``cv`` is an int (0 by default, so the
        folds are reproducible); ignored for a splitter.

    Returns
    -------
    CVResults
        dict of per-fold arrays: ``test_rmse``, ``test_mae``..., ``fit_time``,
        ``test_time``, ``n_train``, ``n_test``, ``n_dropped``; ``.mean()``,
        ``.std()``, ``.summary()`` and ``.to_frame()`` summarise them.

    Raises
    ------
    ValueError
        A bad ``cv``, an unknown metric, more splits than the data allow.

    Examples
    --------
    >>> from fastmf import MatrixFactorization
    >>> from fastmf.data.synthetic import synthetic
    >>> r = synthetic(100, 80, 2000, random_state=0)
    >>> est = MatrixFactorization(rank=4, solver="als", max_iter=3, progress=False, random_state=0)
    >>> res = cross_validate(est, r, cv=3)  # doctest: +SKIP
    >>> res.mean()["test_rmse"]  # doctest: +SKIP
    """
    metrics = _parse_metrics(metrics)
    splitter = check_cv(cv, random_state)
    return_train_score = _check_bool(return_train_score, "return_train_score")
    return_estimator = _check_bool(return_estimator, "return_estimator")
    n_jobs = _check_n_jobs(n_jobs)
    params = _base_params(estimator)
    ratings = None if data is None else _as_input(data, "data")

    sizes: list[tuple[int, int, int]] = []

    def tasks():
        for s in splitter.split(ratings):
            sizes.append((s.train.nnz, s.test.nnz, s.n_dropped))  # sizes only, not the data
            yield (type(estimator), params, s.train, s.test, metrics, relevance_threshold,
                   return_train_score, return_estimator)

    outs = list(_map(tasks(), n_jobs))
    res = CVResults()
    for m in metrics:
        res[f"test_{m}"] = np.array([o["test"][m] for o in outs], dtype=np.float64)
    if return_train_score:
        for m in metrics:
            res[f"train_{m}"] = np.array([o["train"][m] for o in outs], dtype=np.float64)
    res["fit_time"] = np.array([o["fit_time"] for o in outs], dtype=np.float64)
    res["test_time"] = np.array([o["test_time"] for o in outs], dtype=np.float64)
    res["n_train"] = np.array([s[0] for s in sizes], dtype=np.int64)
    res["n_test"] = np.array([s[1] for s in sizes], dtype=np.int64)
    res["n_dropped"] = np.array([s[2] for s in sizes], dtype=np.int64)
    if return_estimator:
        res["estimator"] = [o["estimator"] for o in outs]
    return res


# ---------------------------------------------------------------------------- searches
class ParameterGrid:
    """The candidates of a grid: every combination of the listed values.

    Parameters
    ----------
    param_grid : dict of name -> non-empty sequence, or a list of such dicts
        A list of dicts is the union of their grids (in order).  Names are
        iterated in sorted order within a dict, the last name varying fastest.

    Raises
    ------
    ValueError
        An empty grid (no dict, an empty dict or an empty value list) or a
        value that is not a sequence (a string counts as one value only if
        wrapped in a list).
    """

    def __init__(self, param_grid: Mapping[str, Sequence] | Sequence[Mapping[str, Sequence]]):
        grids = [param_grid] if isinstance(param_grid, Mapping) else list(param_grid) if isinstance(
            param_grid, (list, tuple)) else None
        if grids is None:
            raise ValueError(f"param_grid must be a dict of name -> list of values (or a list of them), got "
                             f"{type(param_grid).__name__}")
        if not grids:
            raise ValueError("param_grid is empty")
        self._grids = []
        for g in grids:
            if not isinstance(g, Mapping) or not g:
                raise ValueError(f"param_grid holds an empty or non-dict grid: {g!r}")
            items = []
            for name in sorted(g):
                values = g[name]
                if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
                    raise ValueError(f"param_grid[{name!r}] must be a list of values, got {values!r}")
                if len(values) == 0:
                    raise ValueError(f"param_grid[{name!r}] is empty")
                items.append((name, list(values)))
            self._grids.append(items)

    @property
    def names(self) -> list[str]:
        """All parameter names of the grid (sorted)."""
        return sorted({n for g in self._grids for n, _ in g})

    def __len__(self) -> int:
        return sum(int(np.prod([len(v) for _, v in g])) for g in self._grids)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for g in self._grids:
            names = [n for n, _ in g]
            for combo in itertools.product(*(v for _, v in g)):
                yield dict(zip(names, combo))

    def __getitem__(self, i: int) -> dict[str, Any]:
        for j, p in enumerate(self):
            if j == i:
                return p
        raise IndexError(i)


class _BaseSearch:
    """Shared machinery: evaluate candidates on the same folds, rank, pick, refit."""

    def __init__(self, estimator, *, measures, cv, refit, relevance_threshold, return_train_score, n_jobs,
                 random_state):
        self.estimator = estimator
        self.measures = measures
        self.cv = cv
        self.refit = refit
        self.relevance_threshold = relevance_threshold
        self.return_train_score = return_train_score
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _candidates(self, rng: np.random.Generator) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check(self):
        measures = _parse_metrics(self.measures, "measures")
        splitter = check_cv(self.cv, self.random_state)
        refit = self.refit
        if isinstance(refit, (bool, np.bool_)):
            refit_measure = measures[0] if refit else None
        elif isinstance(refit, str):
            refit_measure = _parse_metrics(refit, "refit")[0]
            if refit_measure not in measures:
                raise ValueError(f"refit={refit!r} is not one of measures {measures}")
        else:
            raise ValueError(f"refit must be a bool or a measure name, got {refit!r}")
        return measures, splitter, refit_measure

    def fit(self, data) -> _BaseSearch:
        """Evaluate every candidate on every fold of ``cv`` over ``data``; pick the best; refit.

        ``data`` takes the forms :func:`cross_validate` takes (``None`` with
        :class:`ML100KFolds` and ``refit=False``).  Parameter names are checked
        against ``estimator.get_params()`` before any fit.

        Returns
        -------
        self
        """
        measures, splitter, refit_measure = self._check()
        return_train_score = _check_bool(self.return_train_score, "return_train_score")
        n_jobs = _check_n_jobs(self.n_jobs)
        base = _base_params(self.estimator)
        rng = check_random_state(self.random_state)
        candidates = self._candidates(rng)
        if not candidates:
            raise ValueError("no candidate to evaluate")
        _check_param_names(base, {n for c in candidates for n in c}, self.estimator)
        if refit_measure is not None and data is None:
            raise ValueError("refit needs the full data: pass data, or refit=False")
        ratings = None if data is None else _as_input(data, "data")
        cls = type(self.estimator)

        n_folds = 0

        def tasks():
            nonlocal n_folds
            for s in splitter.split(ratings):
                n_folds += 1
                for c in candidates:  # every candidate on the same fold
                    yield (cls, {**base, **c}, s.train, s.test, measures, self.relevance_threshold,
                           return_train_score, False)

        outs = list(_map(tasks(), n_jobs))
        n_cand = len(candidates)
        res = _Results()
        res["params"] = [dict(c) for c in candidates]
        for name in sorted({n for c in candidates for n in c}):
            res[f"param_{name}"] = np.array([c.get(name) for c in candidates], dtype=object)
        kinds = ("test", "train") if return_train_score else ("test",)
        for kind in kinds:
            for m in measures:
                table = np.array([[outs[f * n_cand + j][kind][m] for f in range(n_folds)] for j in range(n_cand)],
                                 dtype=np.float64).reshape(n_cand, n_folds)
                for f in range(n_folds):
                    res[f"split{f}_{kind}_{m}"] = table[:, f]
                res[f"mean_{kind}_{m}"] = table.mean(axis=1)
                res[f"std_{kind}_{m}"] = table.std(axis=1)
                if kind == "test":
                    res[f"rank_{kind}_{m}"] = _ranks(res[f"mean_{kind}_{m}"], greater_is_better(m))
        for t in ("fit_time", "test_time"):
            table = np.array([[outs[f * n_cand + j][t] for f in range(n_folds)] for j in range(n_cand)],
                             dtype=np.float64).reshape(n_cand, n_folds)
            res[f"mean_{t}"] = table.mean(axis=1)
            res[f"std_{t}"] = table.std(axis=1)
        self.cv_results = res
        self.n_splits = n_folds
        self.best_index = {m: int(np.flatnonzero(res[f"rank_test_{m}"] == 1)[0]) for m in measures}
        self.best_params = {m: dict(candidates[i]) for m, i in self.best_index.items()}
        self.best_score = {m: float(res[f"mean_test_{m}"][i]) for m, i in self.best_index.items()}
        self.best_estimator = {m: cls(**{**base, **self.best_params[m]}) for m in measures}
        self.refit_measure = refit_measure
        if refit_measure is not None:
            self.best_estimator[refit_measure].fit(ratings)
        return self


def _ranks(scores: np.ndarray, higher_better: bool) -> np.ndarray:
    """1 for the best score, ties by candidate order, NaN last."""
    key = np.where(np.isnan(scores), np.inf, -scores if higher_better else scores)
    order = np.argsort(key, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


_SEARCH_DOC = """
    measures : str or sequence of str
        Metrics computed on every fold (see the module docstring).  The best
        candidate of each measure has the lowest mean ``rmse``/``mae`` or the
        highest mean ranking metric over the folds (ties: the first candidate).
    cv : int >= 2 or splitter
        An int ``K`` means ``KFold(K, random_state=random_state)``.  The folds
        are made once and every candidate is evaluated on the same ones.
    refit : bool or str
        After the search, fit ``best_estimator[m]`` on all of ``data`` for the
        measure ``m`` (``True``: the first of ``measures``; a name: that
        measure; ``False``: no refit).
    relevance_threshold : float or None
        Relevance threshold of the ranking metrics.
    return_train_score : bool
        Also score the train parts (``mean_train_<m>``...).
    n_jobs : int or None
        Fits run at once (see :func:`cross_validate`).

    Attributes
    ----------
    cv_results : dict
        ``params`` (list of candidate dicts), ``param_<name>`` (object arrays,
        None where a candidate lacks the name), ``split<i>_test_<m>``,
        ``mean_test_<m>``, ``std_test_<m>``, ``rank_test_<m>`` (1 = best),
        ``mean_fit_time``, ``std_fit_time``, ``mean_test_time``,
        ``std_test_time``; ``.to_frame()`` gives a DataFrame.
    best_params, best_score, best_index : dict
        Keyed by measure (surprise's habit): the best candidate's parameters,
        its mean test score and its index in ``cv_results``.
    best_estimator : dict
        Keyed by measure: a new estimator with the best parameters of that
        measure; the one of ``refit_measure`` is fitted on all the data.
    refit_measure : str or None
    n_splits : int
        Number of folds evaluated.
"""


class GridSearch(_BaseSearch):
    __doc__ = """Exhaustive search over a grid of estimator parameters, by cross-validation.

    Parameters
    ----------
    estimator : MatrixFactorization
        Its parameters are the base of every candidate; it is not fitted.
    param_grid : dict of name -> list of values, or list of such dicts
        See :class:`ParameterGrid`; names must be parameters of ``estimator``.
    random_state : None, int or numpy Generator
        Seed of the ``KFold`` built when ``cv`` is an int (default 0).""" + _SEARCH_DOC + """
    Examples
    --------
    >>> from fastmf import MatrixFactorization
    >>> gs = GridSearch(MatrixFactorization(rank=8, solver="als", progress=False),
    ...                 {"reg": [0.05, 0.5]}, measures=("rmse", "mae"), cv=3)
    >>> gs.fit(ratings).best_params["rmse"]  # doctest: +SKIP
    """

    def __init__(self, estimator, param_grid, *, measures: str | Sequence[str] = ("rmse",), cv=5,
                 refit: bool | str = True, relevance_threshold: float | None = 4.0, return_train_score: bool = False,
                 n_jobs: int | None = 1, random_state=0):
        super().__init__(estimator, measures=measures, cv=cv, refit=refit, relevance_threshold=relevance_threshold,
                         return_train_score=return_train_score, n_jobs=n_jobs, random_state=random_state)
        self.param_grid = param_grid
        ParameterGrid(param_grid)  # an empty or malformed grid fails here, at construction

    def _candidates(self, rng) -> list[dict]:
        return list(ParameterGrid(self.param_grid))


class RandomizedSearch(_BaseSearch):
    __doc__ = """Search over ``n_iter`` random candidates, by cross-validation.

    Parameters
    ----------
    estimator : MatrixFactorization
    param_distributions : dict of name -> list of values or distribution
        A list is sampled uniformly; any object with ``rvs(random_state=...)``
        (a frozen ``scipy.stats`` distribution, e.g. ``loguniform(1e-3, 1)``)
        is sampled from.  When every entry is a list, ``n_iter`` distinct grid
        points are drawn without replacement (the whole grid if it has at most
        ``n_iter`` points).
    n_iter : int >= 1
        Number of candidates.
    random_state : None, int or numpy Generator
        Seed of the candidate sampling and of the ``KFold`` built when ``cv`` is
        an int (default 0): the same seed gives the same candidates and folds.""" + _SEARCH_DOC

    def __init__(self, estimator, param_distributions: Mapping[str, Any], n_iter: int = 10, *,
                 measures: str | Sequence[str] = ("rmse",), cv=5, refit: bool | str = True,
                 relevance_threshold: float | None = 4.0, return_train_score: bool = False,
                 n_jobs: int | None = 1, random_state=0):
        super().__init__(estimator, measures=measures, cv=cv, refit=refit, relevance_threshold=relevance_threshold,
                         return_train_score=return_train_score, n_jobs=n_jobs, random_state=random_state)
        if not isinstance(param_distributions, Mapping) or not param_distributions:
            raise ValueError(f"param_distributions must be a non-empty dict, got {param_distributions!r}")
        for name, d in param_distributions.items():
            if callable(getattr(d, "rvs", None)):
                continue
            if isinstance(d, (str, bytes)) or not isinstance(d, (Sequence, np.ndarray)) or len(d) == 0:
                raise ValueError(f"param_distributions[{name!r}] must be a non-empty list or have rvs(), got {d!r}")
        self.param_distributions = param_distributions
        self.n_iter = check_positive_int(n_iter, "n_iter")

    def _candidates(self, rng: np.random.Generator) -> list[dict]:
        dists = self.param_distributions
        names = sorted(dists)
        if all(not callable(getattr(dists[n], "rvs", None)) for n in names):
            grid = ParameterGrid({n: dists[n] for n in names})
            size = len(grid)
            if size <= self.n_iter:
                return list(grid)
            picks = set(rng.choice(size, size=self.n_iter, replace=False).tolist())
            chosen = {i: p for i, p in enumerate(grid) if i in picks}
            return [chosen[i] for i in sorted(picks)]
        out = []
        for _ in range(self.n_iter):
            c = {}
            for n in names:
                d = dists[n]
                if callable(getattr(d, "rvs", None)):
                    v = d.rvs(random_state=rng)
                    c[n] = v.item() if isinstance(v, np.generic) else v
                else:
                    v = d[int(rng.integers(len(d)))]
                    c[n] = v.item() if isinstance(v, np.generic) else v
            out.append(c)
        return out
