"""Input conversion: anything the estimator accepts -> :class:`Ratings`, and code spaces.

* :func:`as_ratings` turns each accepted input form into ``Ratings``;
* :func:`raw_triplets` gives the raw (user, item, rating) arrays of pairs to score;
* :func:`to_code_space` maps ratings into another ``Ratings``' code space
  (evaluation data into the training codes);
* :func:`to_union_code_space` re-codes training data into the union of its ids and
  a fitted model's ids (a warm start).

The caller's data is never modified: new ``Ratings`` are built from (views of)
its arrays.
"""

from __future__ import annotations

import numpy as np
from .._lazy import is_dataframe, is_sparse
from .._validation import check_dtype
from .ids import IdIndex
from .ratings import Ratings

__all__ = ["as_ratings", "raw_triplets", "to_code_space", "to_union_code_space"]


def _is_triplet_tuple(X) -> bool:
    return isinstance(X, (tuple, list)) and len(X) in (3, 4) and all(np.ndim(a) == 1 for a in X)


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
    if is_dataframe(X):  # pandas and scipy are not imported for other inputs
        return Ratings.from_dataframe(X, dtype=dt)
    if is_sparse(X):
        return Ratings.from_scipy(X, dtype=dt)
    if _is_triplet_tuple(X):
        return Ratings.from_arrays(*X, dtype=dt)
    raise TypeError(
        f"{name} must be a fastmf Ratings, a pandas DataFrame with user/item/rating columns, "
        f"a scipy sparse matrix, or a (users, items, ratings) tuple of 1-D arrays; got {type(X).__name__}"
    )


def raw_triplets(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw user ids, raw item ids and ratings of an input (no id coding, no sorting).

    A tuple of arrays is taken as it is (pairs to score need no coding, so
    duplicates are allowed); other forms go through :func:`as_ratings`.
    """
    if isinstance(X, Ratings):
        return X.user_ids[X.users], X.item_ids[X.items], X.values
    if _is_triplet_tuple(X):
        u, i, r = (np.asarray(a) for a in X[:3])
        if not len(u) == len(i) == len(r):
            raise ValueError(f"users, items and ratings have mismatched lengths: {len(u)}, {len(i)}, {len(r)}")
        if r.dtype.kind not in "iuf":
            raise TypeError(f"ratings must be numeric, got dtype {r.dtype}")
        return u, i, r
    r = as_ratings(X, np.float64)
    return r.user_ids[r.users], r.item_ids[r.items], r.values


def to_code_space(ratings: Ratings, train: Ratings, what: str) -> tuple[Ratings, int]:
    """Map ``ratings`` into ``train``'s code space; drop ratings of unknown users/items.

    Returns
    -------
    mapped : Ratings
        ``ratings`` itself when both already share the ids, else a new ``Ratings``
        with ``train``'s ids.
    n_dropped : int
        Ratings dropped because their user or item is not in ``train``.

    Raises
    ------
    ValueError
        No rating has both its user and its item in ``train`` (``what`` names the data).
    """
    if ratings.user_id_index.same_as(train.user_id_index) and ratings.item_id_index.same_as(train.item_id_index):
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


def to_union_code_space(
    train: Ratings, users: IdIndex, items: IdIndex, dtype
) -> tuple[Ratings, np.ndarray, np.ndarray]:
    """Re-code ``train`` into the union of its ids and a model's ``users``/``items`` (warm start).

    Parameters
    ----------
    train : Ratings
        The new training data.
    users, items : IdIndex
        The fitted model's ids.
    dtype : numpy dtype
        Storage dtype of the re-coded ratings.

    Returns
    -------
    train : Ratings
        ``train`` itself when its ids already are the union, else a new ``Ratings``
        (titles kept) whose codes follow the sorted union of the ids.
    user_rows, item_rows : ndarray of int64
        Code, in the union, of each of the model's users and items: where the
        model's factor rows go in the warm-start point.

    Raises
    ------
    ValueError
        Ids of another kind (int/str) than the model's, or that cannot be ordered
        together with them.
    """
    # checked first: numpy would silently turn ints into strings in a union with strings
    if users.is_integer != train.user_id_index.is_integer or items.is_integer != train.item_id_index.is_integer:
        raise ValueError("warm_start: X's ids are not of the same kind (int/str) as the model's ids")
    try:
        all_users = users.union(train.user_id_index)
        all_items = items.union(train.item_id_index)
    except TypeError as exc:
        raise ValueError(f"warm_start: the ids of X cannot be combined with the model's ids ({exc})") from exc
    if not (all_users.same_as(train.user_id_index) and all_items.same_as(train.item_id_index)):
        ucode = all_users.codes(train.user_ids, "ignore")[train.users]
        icode = all_items.codes(train.item_ids, "ignore")[train.items]
        titles = train.item_titles
        train = Ratings.from_codes(
            ucode, icode, train.values, len(all_users), len(all_items), train.timestamps,
            user_ids=all_users.ids, item_ids=all_items.ids, dtype=dtype, rating_scale=train.rating_scale,
            name=train.name,
        )
        train.item_titles = titles
    return train, all_users.codes(users.ids, "ignore"), all_items.codes(items.ids, "ignore")
