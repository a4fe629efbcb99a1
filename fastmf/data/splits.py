"""Train/test splits of a :class:`~fastmf.data.ratings.Ratings`.

Three schemes:

* :func:`train_test_split`: a seeded random holdout of entries;
* :func:`per_user_split`: a holdout inside each user's ratings (a count or a fraction);
* :func:`temporal_split`: the latest ratings (by timestamp) against the earlier ones.

Both parts share the input's code space (they are built with
:meth:`Ratings.subset`), so a model fitted on ``train`` predicts ``test`` by code.
A test rating whose user or item has no rating in ``train`` cannot be predicted
by a factor model; by default (``drop_unknown=True``) such ratings are dropped,
their number is logged on the ``fastmf.data`` logger and returned as
``Split.n_dropped``.

Every function returns a :class:`Split`, a pair ``(train, test)`` that unpacks
like a tuple and also carries ``train``, ``test`` and ``n_dropped`` attributes::

    train, test = train_test_split(r, 0.2, random_state=0)
    split = train_test_split(r, 0.2, random_state=0); split.n_dropped
"""

from __future__ import annotations

import logging
import numbers

import numpy as np

from .._validation import check_random_state
from .ratings import Ratings

__all__ = ["Split", "train_test_split", "per_user_split", "temporal_split"]

logger = logging.getLogger("fastmf.data")


class Split(tuple):
    """``(train, test)`` plus ``n_dropped``, the number of test ratings dropped as unknown."""

    n_dropped: int

    def __new__(cls, train: Ratings, test: Ratings, n_dropped: int = 0):
        self = super().__new__(cls, (train, test))
        self.n_dropped = int(n_dropped)
        return self

    def __getnewargs__(self):
        return (self[0], self[1], self.n_dropped)

    @property
    def train(self) -> Ratings:
        return self[0]

    @property
    def test(self) -> Ratings:
        return self[1]

    def __repr__(self) -> str:
        return f"Split(train={self[0]!r}, test={self[1]!r}, n_dropped={self.n_dropped})"


def _check_ratings(ratings) -> None:
    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    if ratings.nnz < 2:
        raise ValueError(f"cannot split {ratings.nnz} rating(s): need at least 2")


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _n_test(test_size, nnz: int) -> int:
    """Number of test entries from a fraction in (0, 1) or a count in [1, nnz - 1]."""
    if isinstance(test_size, (bool, np.bool_)) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction in (0, 1) or a positive integer, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n = int(test_size)
        if not 1 <= n <= nnz - 1:
            raise ValueError(f"test_size={n} must lie in [1, {nnz - 1}] (the data hold {nnz} ratings)")
        return n
    frac = float(test_size)
    if not 0.0 < frac < 1.0:
        raise ValueError(f"test_size must be a fraction in (0, 1) or a positive integer, got {test_size!r}")
    n = int(round(frac * nnz))
    if not 1 <= n <= nnz - 1:
        raise ValueError(f"test_size={frac} of {nnz} ratings gives {n} test ratings; need 1..{nnz - 1}")
    return n


def _drop_unknown(train: Ratings, test: Ratings) -> tuple[Ratings, int]:
    """Remove test ratings whose user or item has no rating in ``train`` (same code space)."""
    has_user = np.bincount(train.users, minlength=train.n_users) > 0
    has_item = np.bincount(train.items, minlength=train.n_items) > 0
    keep = has_user[test.users] & has_item[test.items]
    n_dropped = int(test.nnz - np.count_nonzero(keep))
    if n_dropped == test.nnz:
        raise ValueError(
            f"all {test.nnz} test ratings have a user or item absent from train; "
            "pass drop_unknown=False to keep them"
        )
    if n_dropped:
        test = test.subset(keep)
    return test, n_dropped


def random_user_ranks(ratings: Ratings, rng: np.random.Generator) -> np.ndarray:
    """Random rank (int64, ``0..n_u - 1``) of each rating inside its user's ratings.

    Each user's ratings get a uniformly random order (one ``rng.random(nnz)``
    draw, ties impossible in practice); ``rank[j]`` is the position of rating
    ``j`` in its user's order.  Shared by :func:`per_user_split` and
    :class:`fastmf.model_selection.UserKFold`.
    """
    key = rng.random(ratings.nnz)
    order = np.lexsort((key, ratings.users))
    rank = np.empty(ratings.nnz, dtype=np.int64)
    rank[order] = np.arange(ratings.nnz, dtype=np.int64) - ratings.user_indptr[ratings.users[order]]
    return rank


def temporal_order(ratings: Ratings) -> np.ndarray:
    """Positions (int64) of the ratings from oldest to newest.

    Ties in time keep the canonical (user, item) order (stable sort), so the
    order is deterministic.  Shared by :func:`temporal_split` and
    :class:`fastmf.model_selection.TemporalKFold`.
    """
    if ratings.timestamps is None:
        raise ValueError("a temporal split needs timestamps, and these ratings have none")
    return np.argsort(ratings.timestamps, kind="stable")


def split_from_mask(ratings: Ratings, test_mask: np.ndarray, drop_unknown: bool, what: str,
                    train_mask: np.ndarray | None = None) -> Split:
    """Build the :class:`Split` of ``ratings`` whose test part is ``test_mask``.

    Both parts are :meth:`Ratings.subset` of ``ratings`` (one code space).  The
    train part is ``~test_mask``, or ``train_mask`` when given (it must not
    overlap ``test_mask``; ratings in neither are left out, as in a temporal
    fold).  With ``drop_unknown`` test ratings whose user or item has no train
    rating are dropped, counted in ``n_dropped`` and logged.  ``what`` names the
    caller in messages.

    Raises
    ------
    ValueError
        An empty train or test part, or every test rating dropped.
    """
    return _finish(ratings, test_mask, drop_unknown, what, train_mask)


def _finish(ratings: Ratings, test_mask: np.ndarray, drop_unknown: bool, what: str,
            train_mask: np.ndarray | None = None) -> Split:
    if not test_mask.any():
        raise ValueError(f"{what}: the test part is empty")
    if train_mask is None:
        train_mask = ~test_mask
    elif (train_mask & test_mask).any():
        raise ValueError(f"{what}: train and test overlap")
    if not train_mask.any():
        raise ValueError(f"{what}: the train part is empty")
    train = ratings.subset(train_mask)
    test = ratings.subset(test_mask)
    n_dropped = 0
    if drop_unknown:
        test, n_dropped = _drop_unknown(train, test)
        if n_dropped:
            logger.info("%s: dropped %d test ratings whose user or item has no train rating", what, n_dropped)
    return Split(train, test, n_dropped)


def train_test_split(ratings: Ratings, test_size: float | int = 0.2, random_state=None,
                     drop_unknown: bool = True) -> Split:
    """Random holdout of entries.

    Exactly ``n_test = round(test_size * nnz)`` (or ``test_size`` if an integer)
    entries, drawn uniformly without replacement, go to test (before dropping
    unknowns).

    Parameters
    ----------
    ratings : Ratings
    test_size : float in (0, 1) or int >= 1
    random_state : None, int or numpy Generator
        Seed; the same seed gives the same split.
    drop_unknown : bool
        Drop test ratings whose user or item is absent from train (counted in
        ``n_dropped``).

    Returns
    -------
    Split
        ``(train, test)`` in the input's code space, with ``n_dropped``.
    """
    _check_ratings(ratings)
    n_test = _n_test(test_size, ratings.nnz)
    drop_unknown = _check_bool(drop_unknown, "drop_unknown")
    rng = check_random_state(random_state)
    mask = np.zeros(ratings.nnz, dtype=bool)
    mask[rng.choice(ratings.nnz, size=n_test, replace=False)] = True
    return _finish(ratings, mask, drop_unknown, "train_test_split")


def per_user_split(ratings: Ratings, test_size: float | int = 0.2, random_state=None, min_train: int = 1,
                   drop_unknown: bool = True) -> Split:
    """Holdout inside each user's ratings.

    A user with ``n_u`` ratings gives ``t_u`` random ratings to test, where
    ``t_u = round(test_size * n_u)`` for a fraction or ``t_u = test_size`` for an
    integer count, capped so that at least ``min_train`` ratings stay in train:
    ``t_u = min(t_u, max(n_u - min_train, 0))``.  Users too small to give any
    keep all their ratings in train.

    Parameters
    ----------
    ratings : Ratings
    test_size : float in (0, 1) or int >= 1
    random_state : None, int or numpy Generator
    min_train : int >= 0
        Ratings each user keeps in train at least.
    drop_unknown : bool
        Drop test ratings whose item (or, with ``min_train=0``, user) is absent
        from train.

    Returns
    -------
    Split
    """
    _check_ratings(ratings)
    if isinstance(test_size, (bool, np.bool_)) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction in (0, 1) or a positive integer, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        if test_size < 1:
            raise ValueError(f"test_size must be >= 1 as a per-user count, got {test_size}")
    elif not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must be a fraction in (0, 1) or a positive integer, got {test_size!r}")
    if isinstance(min_train, (bool, np.bool_)) or not isinstance(min_train, numbers.Integral):
        raise TypeError(f"min_train must be an integer, got {min_train!r}")
    if min_train < 0:
        raise ValueError(f"min_train must be >= 0, got {min_train}")
    drop_unknown = _check_bool(drop_unknown, "drop_unknown")
    rng = check_random_state(random_state)
    counts = ratings.user_counts
    if isinstance(test_size, numbers.Integral):
        t = np.full(ratings.n_users, int(test_size), dtype=np.int64)
    else:
        t = np.floor(float(test_size) * counts + 0.5).astype(np.int64)
    t = np.minimum(t, np.maximum(counts - int(min_train), 0))
    # The t_u ratings of lowest random rank inside each user's run go to test.
    mask = random_user_ranks(ratings, rng) < t[ratings.users]
    return _finish(ratings, mask, drop_unknown, "per_user_split")


def temporal_split(ratings: Ratings, test_size: float | int | None = 0.2, *, cutoff: int | None = None,
                   drop_unknown: bool = True) -> Split:
    """Global temporal split: the latest ratings are the test part.

    With ``test_size`` the ``n_test`` latest ratings go to test, ties in time
    broken by canonical (user, item) order, so every test timestamp is >= every
    train timestamp.  With ``cutoff`` (a timestamp in the data's unit, seconds for
    MovieLens) ratings with ``timestamp >= cutoff`` go to test; pass
    ``test_size=None`` then.

    Parameters
    ----------
    ratings : Ratings
        Must carry timestamps.
    test_size : float in (0, 1), int >= 1, or None
    cutoff : int, optional
    drop_unknown : bool
        Drop test ratings whose user or item is absent from train (typical for
        temporal splits: new users).

    Returns
    -------
    Split
    """
    _check_ratings(ratings)
    if ratings.timestamps is None:
        raise ValueError("temporal_split needs timestamps, and these ratings have none")
    drop_unknown = _check_bool(drop_unknown, "drop_unknown")
    ts = ratings.timestamps
    if cutoff is not None:
        if test_size is not None:
            raise ValueError("give either test_size or cutoff, not both (pass test_size=None with cutoff)")
        if isinstance(cutoff, (bool, np.bool_)) or not isinstance(cutoff, numbers.Integral):
            raise TypeError(f"cutoff must be an integer timestamp, got {cutoff!r}")
        mask = ts >= cutoff
        if not mask.any() or mask.all():
            raise ValueError(
                f"cutoff={cutoff} puts {'no' if not mask.any() else 'every'} rating in test "
                f"(timestamps run from {int(ts.min())} to {int(ts.max())})"
            )
    else:
        if test_size is None:
            raise ValueError("give test_size or cutoff")
        n_test = _n_test(test_size, ratings.nnz)
        order = temporal_order(ratings)
        mask = np.zeros(ratings.nnz, dtype=bool)
        mask[order[ratings.nnz - n_test:]] = True
    return _finish(ratings, mask, drop_unknown, "temporal_split")
