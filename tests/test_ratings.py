"""Tests of the Ratings container: bad input, round trips, layouts, limits."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fastmf.data.ratings import Ratings


def small():
    users = np.array([10, 3, 3, 7, 10, 7])
    items = np.array([5, 2, 9, 5, 2, 1])
    vals = np.array([4.0, 3.5, 1.0, 5.0, 2.0, 3.0])
    ts = np.array([6, 5, 4, 3, 2, 1])
    return users, items, vals, ts


# ------------------------------------------------------------------ construction and layout
def test_from_arrays_canonical_order_and_codes():
    u, i, v, ts = small()
    r = Ratings.from_arrays(u, i, v, ts)
    assert r.n_users == 3 and r.n_items == 4 and r.nnz == 6 and r.shape == (3, 4)
    np.testing.assert_array_equal(r.user_ids, [3, 7, 10])
    np.testing.assert_array_equal(r.item_ids, [1, 2, 5, 9])
    assert r.users.dtype == np.int32 and r.items.dtype == np.int32
    assert r.values.dtype == np.float32 and r.timestamps.dtype == np.int64
    assert r.user_indptr.dtype == np.int64
    # sorted by (user, item)
    key = r.users.astype(np.int64) * r.n_items + r.items
    assert np.all(np.diff(key) > 0)
    np.testing.assert_array_equal(r.user_indptr, [0, 2, 4, 6])
    # every triplet survives with its rating and timestamp
    got = {(r.user_ids[a], r.item_ids[b]): (c, t) for a, b, c, t in zip(r.users, r.items, r.values, r.timestamps)}
    want = {(a, b): (c, t) for a, b, c, t in zip(u, i, v, ts)}
    assert got == want
    np.testing.assert_array_equal(r.user_counts, [2, 2, 2])
    np.testing.assert_array_equal(r.item_counts, [1, 2, 2, 1])
    assert r.density == pytest.approx(6 / 12)
    assert r.global_mean == pytest.approx(v.mean())


def test_float64_dtype_and_astype_shares_indices():
    u, i, v, _ = small()
    r = Ratings.from_arrays(u, i, v, dtype=np.float64)
    assert r.dtype == np.float64
    r32 = r.astype(np.float32)
    assert r32.dtype == np.float32 and r32.users is r.users and r32.items is r.items
    assert r.astype(np.float32) is r32  # cached
    assert r.astype(np.float64) is r


def test_string_ids_round_trip():
    users = np.array(["bob", "alice", "carol", "alice"])
    items = np.array(["x", "y", "x", "z"])
    r = Ratings.from_arrays(users, items, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(r.user_ids, ["alice", "bob", "carol"])
    codes = r.user_codes(users)
    np.testing.assert_array_equal(r.user_ids[codes], users)
    np.testing.assert_array_equal(r.item_ids[r.item_codes(items)], items)
    assert r.user_codes("bob") == 1
    with pytest.raises(KeyError, match="unknown user id 'dave'"):
        r.user_codes(["alice", "dave"])
    np.testing.assert_array_equal(r.user_codes(["alice", "dave"], missing="ignore"), [0, -1])
    with pytest.raises(KeyError, match="unknown item id"):
        r.item_codes("w")


def test_int_ids_round_trip(rng):
    users = rng.integers(0, 1000, 500) * 7
    items = rng.integers(0, 300, 500) * 3 + 1
    r = Ratings.from_arrays(users, items, rng.random(500), duplicates="last")
    df = r.to_dataframe()
    np.testing.assert_array_equal(r.user_codes(df["user"].to_numpy()), r.users)
    np.testing.assert_array_equal(r.item_codes(df["item"].to_numpy()), r.items)
    np.testing.assert_array_equal(r.to_dataframe(raw_ids=False)["user"], r.users)


def test_item_major_layout_consistent(rng):
    users = rng.integers(0, 50, 2000)
    items = rng.integers(0, 80, 2000)
    r = Ratings.from_arrays(users, items, rng.random(2000), duplicates="mean")
    ip, iu, iv, perm = r.item_indptr, r.item_users, r.item_values, r.item_perm
    assert ip.dtype == np.int64 and iu.dtype == np.int32 and perm.dtype == np.int64
    assert ip.shape == (r.n_items + 1,) and ip[-1] == r.nnz
    np.testing.assert_array_equal(np.sort(perm), np.arange(r.nnz))  # a permutation
    # item_perm maps item-major entries back to the canonical ones
    np.testing.assert_array_equal(iu, r.users[perm])
    np.testing.assert_array_equal(iv, r.values[perm])
    item_of_entry = np.repeat(np.arange(r.n_items), np.diff(ip))
    np.testing.assert_array_equal(item_of_entry, r.items[perm])
    # within an item, users ascending
    for i in range(r.n_items):
        assert np.all(np.diff(iu[ip[i]:ip[i + 1]]) > 0)
    np.testing.assert_array_equal(r.item_counts, np.bincount(r.items, minlength=r.n_items))
    assert r.item_indptr is ip  # built once


def test_from_codes_keeps_empty_rows_and_skips_sort():
    r = Ratings.from_codes([0, 0, 3], [1, 4, 0], [1.0, 2.0, 3.0], n_users=5, n_items=6)
    assert r.shape == (5, 6)
    np.testing.assert_array_equal(r.user_counts, [2, 0, 0, 1, 0])
    np.testing.assert_array_equal(r.item_counts, [1, 1, 0, 0, 1, 0])
    d = r.describe()
    assert d["users_without_ratings"] == 3 and d["items_without_ratings"] == 3
    with pytest.raises(ValueError, match=r"user codes must lie in \[0, 5\): first out of range at row 1"):
        Ratings.from_codes([0, 5], [0, 0], [1.0, 1.0], n_users=5, n_items=1)
    with pytest.raises(ValueError, match="item codes must lie"):
        Ratings.from_codes([0, 1], [0, -1], [1.0, 1.0])
    with pytest.raises(TypeError, match="user codes must be integers"):
        Ratings.from_codes([0.0, 1.0], [0, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="user_ids has 2 entries, n_users is 3"):
        Ratings.from_codes([0, 1], [0, 1], [1.0, 1.0], n_users=3, user_ids=["a", "b"])


def test_subset_shares_code_space():
    u, i, v, ts = small()
    r = Ratings.from_arrays(u, i, v, ts)
    s = r.subset(r.users == 1)
    assert s.shape == r.shape and s.nnz == 2
    assert s.user_ids is r.user_ids
    np.testing.assert_array_equal(s.user_counts, [0, 2, 0])
    s2 = r.subset(np.array([0, 3]))
    assert s2.nnz == 2 and s2.timestamps.shape == (2,)
    with pytest.raises(ValueError, match="strictly increasing"):
        r.subset(np.array([3, 0]))
    with pytest.raises(ValueError, match="selects no ratings"):
        r.subset(np.zeros(r.nnz, dtype=bool))
    with pytest.raises(ValueError, match="boolean mask must have shape"):
        r.subset(np.ones(3, dtype=bool))


def test_pickle_round_trip():
    u, i, v, ts = small()
    r = Ratings.from_arrays(u, i, v, ts, name="tiny", rating_scale=(0.5, 5))
    r.item_indptr  # build the item-major copy
    r2 = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(r2.values, r.values)
    np.testing.assert_array_equal(r2.item_perm, r.item_perm)
    assert r2.name == "tiny" and r2.rating_scale == (0.5, 5.0)
    assert r2.user_codes(10) == 2


# ------------------------------------------------------------------ scipy / pandas round trips
@pytest.mark.parametrize("kind", ["csr_matrix", "coo_matrix", "csr_array", "coo_array"])
def test_scipy_round_trip(kind, rng):
    dense = np.where(rng.random((7, 9)) < 0.4, rng.integers(1, 6, (7, 9)).astype(float), 0.0)
    dense[2, :] = 0.0  # an empty user
    mat = getattr(sp, kind)(dense)
    r = Ratings.from_scipy(mat)
    assert r.shape == (7, 9) and r.nnz == np.count_nonzero(dense)
    assert r.user_counts[2] == 0
    back = r.to_scipy()
    assert back.shape == (7, 9)
    np.testing.assert_array_equal(back.toarray(), dense)
    np.testing.assert_array_equal(r.to_dense(fill_value=0.0), dense)


def test_scipy_explicit_zero_and_duplicates():
    coo = sp.coo_array((np.array([0.0, 2.0, 4.0]), (np.array([0, 1, 1]), np.array([0, 2, 2]))), shape=(2, 3))
    with pytest.raises(ValueError, match="duplicate"):
        Ratings.from_scipy(coo)
    r = Ratings.from_scipy(coo, duplicates="mean")
    assert r.nnz == 2  # explicit zero kept, the duplicate averaged (not summed)
    np.testing.assert_allclose(r.values, [0.0, 3.0])
    with pytest.raises(TypeError, match="scipy.sparse"):
        Ratings.from_scipy(np.eye(3))
    with pytest.raises(ValueError, match="empty matrix"):
        Ratings.from_scipy(sp.csr_array((0, 3)))


def test_from_dataframe_columns():
    u, i, v, ts = small()
    df = pd.DataFrame({"who": u, "what": i, "score": v, "when": ts, "other": 1})
    r = Ratings.from_dataframe(df, user_col="who", item_col="what", rating_col="score", timestamp_col="when")
    r0 = Ratings.from_arrays(u, i, v, ts)
    np.testing.assert_array_equal(r.values, r0.values)
    np.testing.assert_array_equal(r.timestamps, r0.timestamps)
    df2 = pd.DataFrame({"userId": u, "movieId": i, "rating": v, "timestamp": ts})
    r2 = Ratings.from_dataframe(df2)
    np.testing.assert_array_equal(r2.timestamps, r0.timestamps)
    back = r0.to_dataframe()
    assert list(back.columns) == ["user", "item", "rating", "timestamp"]
    r3 = Ratings.from_dataframe(back)
    np.testing.assert_array_equal(r3.users, r0.users)
    with pytest.raises(ValueError, match="cannot find user/item/rating columns"):
        Ratings.from_dataframe(df)
    with pytest.raises(ValueError, match="user_col='nope' is not a column"):
        Ratings.from_dataframe(df, user_col="nope", item_col="what", rating_col="score")
    with pytest.raises(ValueError, match="rating_col must be given"):
        Ratings.from_dataframe(df, user_col="who", item_col="what")
    with pytest.raises(TypeError, match="DataFrame"):
        Ratings.from_dataframe({"user": u})


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad, row", [(np.nan, 2), (np.inf, 2), (-np.inf, 2)])
def test_nonfinite_ratings(bad, row):
    v = np.array([1.0, 2.0, bad, 4.0])
    with pytest.raises(ValueError, match=f"NaN or inf: first at row {row}"):
        Ratings.from_arrays([1, 2, 3, 4], [1, 1, 1, 1], v)


def test_negative_ids():
    with pytest.raises(ValueError, match="user ids must be non-negative: first negative id at row 1"):
        Ratings.from_arrays([1, -2, 3], [1, 1, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="item ids must be non-negative: first negative id at row 2"):
        Ratings.from_arrays([1, 2, 3], [1, 1, -1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-negative"):
        Ratings.from_arrays([1.0, -2.0], [1, 1], [1.0, 2.0])


def test_non_integer_float_ids():
    with pytest.raises(ValueError, match=r"user ids must be whole numbers: first non-integer id at row 1 \(value 2.5\)"):
        Ratings.from_arrays([1.0, 2.5, 3.0], [1, 1, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="item ids contain NaN or inf: first at row 0"):
        Ratings.from_arrays([1, 2], [np.nan, 1.0], [1.0, 2.0])
    # whole floats are fine and become integer ids
    r = Ratings.from_arrays([1.0, 2.0], [3.0, 4.0], [1.0, 2.0])
    assert r.user_ids.dtype.kind == "i"


def test_bool_ids_and_missing_object_ids():
    with pytest.raises(TypeError, match="booleans"):
        Ratings.from_arrays([True, False], [1, 2], [1.0, 2.0])
    with pytest.raises(TypeError, match="booleans"):
        Ratings.from_arrays([1, 2], np.array([True, False]), [1.0, 2.0])
    with pytest.raises(ValueError, match="missing value.*row 1"):
        Ratings.from_arrays(np.array(["a", None], dtype=object), [1, 2], [1.0, 2.0])


def test_length_mismatch_and_empty():
    with pytest.raises(ValueError, match="mismatched lengths"):
        Ratings.from_arrays([1, 2, 3], [1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="mismatched lengths"):
        Ratings.from_arrays([1, 2], [1, 2], [1.0, 2.0], timestamps=[1])
    with pytest.raises(ValueError, match="mismatched lengths"):
        Ratings.from_codes([1, 2], [1, 2], [1.0])
    with pytest.raises(ValueError, match="empty"):
        Ratings.from_arrays([], [], [])
    with pytest.raises(ValueError, match="empty"):
        Ratings.from_codes(np.array([], dtype=int), np.array([], dtype=int), [])
    with pytest.raises(ValueError, match="one-dimensional"):
        Ratings.from_arrays([[1, 2]], [[1, 2]], [[1.0, 2.0]])


def test_ratings_outside_scale():
    with pytest.raises(ValueError, match=r"outside the declared rating_scale \(1, 5\): first at row 2 \(value 6.0\)"):
        Ratings.from_arrays([1, 2, 3], [1, 1, 1], [1.0, 5.0, 6.0, ][:3], rating_scale=(1, 5))
    with pytest.raises(ValueError, match="row 0"):
        Ratings.from_arrays([1, 2], [1, 1], [0.0, 3.0], rating_scale=(0.5, 5))
    with pytest.raises(ValueError, match="low < high"):
        Ratings.from_arrays([1, 2], [1, 1], [1.0, 3.0], rating_scale=(5, 1))
    r = Ratings.from_arrays([1, 2], [1, 1], [0.5, 5.0], rating_scale=(0.5, 5))  # bounds inclusive
    assert r.rating_scale == (0.5, 5.0)


def test_non_numeric_ratings_and_timestamps():
    with pytest.raises(TypeError, match="ratings must be numeric"):
        Ratings.from_arrays([1, 2], [1, 1], ["a", "b"])
    with pytest.raises(TypeError, match="ratings must be numeric"):
        Ratings.from_arrays([1, 2], [1, 1], np.array([1, 2], dtype=object))
    with pytest.raises(TypeError, match="timestamps must be integers"):
        Ratings.from_arrays([1, 2], [1, 1], [1.0, 2.0], timestamps=[1.5, 2.5])


@pytest.mark.parametrize("dtype", [np.int32, np.float16, "int64", np.complex64, "float128-not"])
def test_wrong_dtype_argument(dtype):
    with pytest.raises(TypeError, match="dtype must be np.float32 or np.float64"):
        Ratings.from_arrays([1, 2], [1, 1], [1.0, 2.0], dtype=dtype)


def test_duplicates_policies():
    users = [1, 2, 1, 1, 3]
    items = [5, 5, 5, 6, 5]
    vals = [1.0, 2.0, 3.0, 4.0, 5.0]
    ts = [10, 20, 30, 5, 40]
    with pytest.raises(ValueError, match=r"duplicate \(user, item\) pair \(1, 5\) at rows 0 and 2"):
        Ratings.from_arrays(users, items, vals, ts)
    last = Ratings.from_arrays(users, items, vals, ts, duplicates="last")
    assert last.nnz == 4
    j = int(np.flatnonzero((last.user_ids[last.users] == 1) & (last.item_ids[last.items] == 5))[0])
    assert last.values[j] == 3.0 and last.timestamps[j] == 30
    mean = Ratings.from_arrays(users, items, vals, ts, duplicates="mean")
    assert mean.nnz == 4
    assert mean.values[j] == pytest.approx(2.0) and mean.timestamps[j] == 30
    with pytest.raises(ValueError, match="duplicates must be one of"):
        Ratings.from_arrays(users, items, vals, duplicates="sum")


def test_duplicates_error_names_first_row_in_input_order():
    # (2, 2) repeats at rows 1 and 4; (1, 1) repeats at rows 3 and 5 -> first completed pair is rows 1, 4
    with pytest.raises(ValueError, match="rows 1 and 4"):
        Ratings.from_arrays([9, 2, 7, 1, 2, 1], [9, 2, 7, 1, 2, 1], np.ones(6))


def test_caller_arrays_unchanged(rng):
    users = rng.integers(0, 30, 300)
    items = rng.integers(0, 40, 300)
    vals = rng.random(300) * 4 + 1
    ts = rng.integers(0, 10**9, 300)
    copies = [a.copy() for a in (users, items, vals, ts)]
    r = Ratings.from_arrays(users, items, vals, ts, duplicates="mean", dtype=np.float64)
    r.item_indptr
    r.values[:] = 0.0  # mutating the container must not reach the caller
    r.users[:] = 0
    for a, c in zip((users, items, vals, ts), copies):
        np.testing.assert_array_equal(a, c)
    # already canonical input: still no aliasing
    r2 = Ratings.from_codes(np.array([0, 1], dtype=np.int32), np.array([0, 0], dtype=np.int32),
                            vals[:2].copy(), dtype=np.float64)
    assert not np.shares_memory(r2.values, vals)
    df = pd.DataFrame({"user": users, "item": items, "rating": vals})
    df_copy = df.copy()
    Ratings.from_dataframe(df, duplicates="last").values[:] = -1
    pd.testing.assert_frame_equal(df, df_copy)
    m = sp.csr_array((vals[:3].copy(), np.array([0, 1, 2]), np.array([0, 1, 3])), shape=(2, 3))
    m_data = m.data.copy()
    Ratings.from_scipy(m).values[:] = -1
    np.testing.assert_array_equal(m.data, m_data)


def test_to_dense_limit():
    r = Ratings.from_codes([0, 999], [0, 999], [1.0, 2.0], n_users=1000, n_items=1000)
    with pytest.raises(ValueError, match=r"1000 x 1000 = 1,000,000 cells, above max_elements=999,999"):
        r.to_dense(max_elements=999_999)
    with pytest.raises(ValueError, match="max_elements"):
        r.mask(max_elements=10)
    d = r.to_dense(max_elements=1_000_000)
    assert d.shape == (1000, 1000) and np.isnan(d[0, 1]) and d[999, 999] == 2.0
    assert r.mask().sum() == 2


def test_repr_len_describe():
    u, i, v, ts = small()
    r = Ratings.from_arrays(u, i, v, ts, name="tiny")
    assert len(r) == 6
    assert "tiny" in repr(r) and "nnz=6" in repr(r)
    d = r.describe()
    assert d["n_ratings"] == 6 and d["has_timestamps"] and d["rating_max"] == 5.0


def test_missing_ids_of_every_kind():
    # pd.NA (nullable dtypes) used to slip through and be coded -1 by pandas' factorize.
    for users in (np.array(["a", pd.NA, "b"], dtype=object),
                  pd.Series(["a", None, "b"], dtype="string"),
                  np.array(["a", None, "b"], dtype=object),
                  np.array(["a", float("nan"), "b"], dtype=object)):
        with pytest.raises(ValueError, match="user ids contain a missing value.*row 1"):
            Ratings.from_arrays(users, [1, 2, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="item ids contain NaN or inf: first at row 1"):
        Ratings.from_arrays([1, 2, 3], pd.array([1, None, 3], dtype="Int64"), [1.0, 2.0, 3.0])


def test_from_codes_float_timestamps_refused():
    # used to be truncated silently to integers
    with pytest.raises(TypeError, match="timestamps must be integers"):
        Ratings.from_codes([0, 1], [0, 1], [1.0, 2.0], timestamps=[1.5, 2.5])
    r = Ratings.from_codes([1, 0], [0, 1], [1.0, 2.0], timestamps=np.array([7, 9], dtype=np.int32))
    np.testing.assert_array_equal(r.timestamps, [9, 7])
    assert r.timestamps.dtype == np.int64
