"""Splits: sizes, determinism, disjointness, drop counts, temporal order, bad parameters."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from fastmf.data.ratings import Ratings
from fastmf.data.splits import Split, per_user_split, temporal_split, train_test_split


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 5000
    users = rng.zipf(1.6, n) % 300
    items = rng.zipf(1.4, n) % 500
    ts = rng.integers(0, 1000, n)  # many ties in time
    return Ratings.from_arrays(users, items, rng.integers(1, 6, n).astype(float), ts, duplicates="last")


def _keys(r):
    return set((r.users.astype(np.int64) * r.n_items + r.items).tolist())


def _check_parts(r, split):
    train, test = split
    assert isinstance(split, Split) and split.train is train and split.test is test
    assert train.user_ids is r.user_ids and test.item_ids is r.item_ids  # one code space
    kt, ks = _keys(train), _keys(test)
    assert not (kt & ks)  # disjoint
    assert kt | ks <= _keys(r)
    assert train.nnz + test.nnz + split.n_dropped == r.nnz
    return train, test


def _unknown(train, test):
    has_u = np.bincount(train.users, minlength=train.n_users) > 0
    has_i = np.bincount(train.items, minlength=train.n_items) > 0
    return ~(has_u[test.users] & has_i[test.items])


def test_train_test_split_sizes_and_drops(data):
    split = train_test_split(data, 0.2, random_state=0, drop_unknown=False)
    train, test = _check_parts(data, split)
    assert test.nnz == round(0.2 * data.nnz) and split.n_dropped == 0
    n_unknown = int(_unknown(train, test).sum())
    assert n_unknown > 0  # power-law data: some test items are only in test
    dropped = train_test_split(data, 0.2, random_state=0)
    assert dropped.n_dropped == n_unknown
    assert dropped.test.nnz == test.nnz - n_unknown
    assert not _unknown(dropped.train, dropped.test).any()
    np.testing.assert_array_equal(dropped.train.values, train.values)
    assert train_test_split(data, 100, random_state=1, drop_unknown=False).test.nnz == 100


def test_train_test_split_determinism(data):
    a = train_test_split(data, 0.3, random_state=42)
    b = train_test_split(data, 0.3, random_state=42)
    c = train_test_split(data, 0.3, random_state=43)
    np.testing.assert_array_equal(a.test.users, b.test.users)
    np.testing.assert_array_equal(a.test.items, b.test.items)
    assert _keys(a.test) != _keys(c.test)
    g = train_test_split(data, 0.3, random_state=np.random.default_rng(42))
    assert _keys(g.test) == _keys(a.test)


def test_drop_is_logged(data, caplog):
    with caplog.at_level(logging.INFO, logger="fastmf.data"):
        split = train_test_split(data, 0.2, random_state=0)
    assert f"dropped {split.n_dropped} test ratings" in caplog.text


def test_split_unpacks_and_pickles(data):
    split = train_test_split(data, 0.2, random_state=0)
    train, test = split
    assert len(split) == 2
    again = pickle.loads(pickle.dumps(split))
    assert again.n_dropped == split.n_dropped and again.test.nnz == test.nnz
    assert "n_dropped=" in repr(split)


def test_per_user_fraction(data):
    split = per_user_split(data, 0.25, random_state=3, drop_unknown=False)
    train, test = _check_parts(data, split)
    n_u = data.user_counts
    want = np.minimum(np.floor(0.25 * n_u + 0.5), np.maximum(n_u - 1, 0))
    np.testing.assert_array_equal(test.user_counts, want)
    np.testing.assert_array_equal(train.user_counts, n_u - want)
    assert (train.user_counts[n_u > 0] >= 1).all()


def test_per_user_count_and_min_train(data):
    split = per_user_split(data, 2, random_state=3, min_train=3, drop_unknown=False)
    n_u = data.user_counts
    np.testing.assert_array_equal(split.test.user_counts, np.clip(n_u - 3, 0, 2))
    dropped = per_user_split(data, 2, random_state=3, min_train=3)
    assert dropped.n_dropped == int(_unknown(split.train, split.test).sum())
    a = per_user_split(data, 0.5, random_state=9)
    b = per_user_split(data, 0.5, random_state=9)
    np.testing.assert_array_equal(a.test.items, b.test.items)
    c = per_user_split(data, 0.5, random_state=10)
    assert _keys(a.test) != _keys(c.test)


def test_per_user_min_train_zero_can_drop_users(data):
    split = per_user_split(data, 1, random_state=0, min_train=0, drop_unknown=False)
    n_u = data.user_counts
    single = np.flatnonzero(n_u == 1)
    assert single.size and (split.test.user_counts[single] == 1).all()


def test_temporal_split_order(data):
    split = temporal_split(data, 0.2, drop_unknown=False)
    train, test = _check_parts(data, split)
    assert test.nnz == round(0.2 * data.nnz)
    assert train.timestamps.max() <= test.timestamps.min()
    # deterministic (no randomness): ties broken by canonical order
    again = temporal_split(data, 0.2, drop_unknown=False)
    np.testing.assert_array_equal(again.test.users, test.users)
    d = temporal_split(data, 0.2)
    assert d.n_dropped == int(_unknown(train, test).sum())


def test_temporal_cutoff(data):
    split = temporal_split(data, None, cutoff=800, drop_unknown=False)
    assert (split.train.timestamps < 800).all() and (split.test.timestamps >= 800).all()
    assert split.test.nnz == int((data.timestamps >= 800).sum())
    with pytest.raises(ValueError, match="either test_size or cutoff"):
        temporal_split(data, 0.2, cutoff=800)
    with pytest.raises(ValueError, match="puts no rating in test"):
        temporal_split(data, None, cutoff=10**9)
    with pytest.raises(ValueError, match="puts every rating in test"):
        temporal_split(data, None, cutoff=-1)
    with pytest.raises(TypeError, match="cutoff must be an integer"):
        temporal_split(data, None, cutoff=800.5)
    with pytest.raises(ValueError, match="give test_size or cutoff"):
        temporal_split(data, None)


def test_temporal_needs_timestamps():
    r = Ratings.from_arrays([1, 2, 3], [1, 1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="needs timestamps"):
        temporal_split(r)


@pytest.mark.parametrize("bad, exc", [(0.0, ValueError), (1.0, ValueError), (-0.1, ValueError), (1.5, ValueError),
                                      (0, ValueError), (10**9, ValueError), (True, TypeError), ("0.2", TypeError),
                                      (np.nan, ValueError)])
def test_bad_test_size(data, bad, exc):
    with pytest.raises(exc, match="test_size"):
        train_test_split(data, bad, random_state=0)
    if not (isinstance(bad, int) and not isinstance(bad, bool) and bad > 1):  # large counts are fine per user
        with pytest.raises(exc, match="test_size"):
            per_user_split(data, bad, random_state=0)
    with pytest.raises(exc, match="test_size"):
        temporal_split(data, bad)


def test_bad_other_arguments(data):
    with pytest.raises(TypeError, match="fastmf Ratings"):
        train_test_split(data.to_scipy())
    with pytest.raises(TypeError, match="drop_unknown must be a bool"):
        train_test_split(data, drop_unknown=1)
    with pytest.raises(TypeError, match="random_state"):
        train_test_split(data, random_state="x")
    with pytest.raises(ValueError, match="min_train must be >= 0"):
        per_user_split(data, min_train=-1)
    with pytest.raises(TypeError, match="min_train must be an integer"):
        per_user_split(data, min_train=1.0)
    tiny = Ratings.from_arrays([1], [1], [3.0])
    with pytest.raises(ValueError, match="need at least 2"):
        train_test_split(tiny)


def test_empty_parts_are_errors():
    r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [1.0, 2.0, 3.0], [1, 2, 3])
    with pytest.raises(ValueError, match="the test part is empty"):
        per_user_split(r, 0.1)  # round(0.1 * 2) = 0 for every user
    # every test rating unknown -> explicit error, not an empty Ratings
    r2 = Ratings.from_arrays([1, 2], [1, 2], [1.0, 2.0], [1, 2])
    with pytest.raises(ValueError, match="all 1 test ratings have a user or item absent from train"):
        temporal_split(r2, 1)
    assert temporal_split(r2, 1, drop_unknown=False).test.nnz == 1


def test_shared_helpers(data):
    from fastmf.data.splits import random_user_ranks, split_from_mask, temporal_order

    rank = random_user_ranks(data, np.random.default_rng(0))
    # inside each user the ranks are a permutation of 0..n_u - 1
    for u in (0, 1, int(np.argmax(data.user_counts))):
        lo, hi = data.user_indptr[u], data.user_indptr[u + 1]
        np.testing.assert_array_equal(np.sort(rank[lo:hi]), np.arange(hi - lo))
    order = temporal_order(data)
    assert np.all(np.diff(data.timestamps[order]) >= 0)
    test = np.zeros(data.nnz, dtype=bool)
    test[order[-100:]] = True
    train = np.zeros(data.nnz, dtype=bool)
    train[order[:1000]] = True
    s = split_from_mask(data, test, False, "t", train_mask=train)
    assert s.train.nnz == 1000 and s.test.nnz == 100
    with pytest.raises(ValueError, match="overlap"):
        split_from_mask(data, test, False, "t", train_mask=train | test)
