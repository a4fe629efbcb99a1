"""Fast conversion (issue #14 item 3) gives exactly the results of the former path.

``fastmf.data._conversion_reference`` is the former ``from_arrays`` (generic
``pd.factorize(sort=True)`` + stable ``np.argsort`` of a combined key); the new path
codes integer ids by a presence table and sorts by a packed-key radix sort
(:mod:`fastmf.data._sort`).  Codes, order, dtypes, duplicate handling and the
duplicate error message must not change.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastmf.data import _sort
from fastmf.data._conversion_reference import reference_from_arrays
from fastmf.data.ratings import Ratings

FIELDS = ("users", "items", "values", "user_ids", "item_ids", "user_indptr")


def assert_same(a: Ratings, b: Ratings) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype, (f, x.dtype, y.dtype)
        np.testing.assert_array_equal(x, y, err_msg=f)
    assert (a.timestamps is None) == (b.timestamps is None)
    if a.timestamps is not None:
        assert a.timestamps.dtype == b.timestamps.dtype
        np.testing.assert_array_equal(a.timestamps, b.timestamps)


def both(*args, **kw):
    """(new, old) results, or the two error messages."""
    out = []
    for fn in (Ratings.from_arrays, reference_from_arrays):
        try:
            out.append(fn(*args, **kw))
        except ValueError as exc:
            out.append(str(exc))
    return out


def check(*args, **kw):
    new, old = both(*args, **kw)
    if isinstance(old, str):
        assert new == old
    else:
        assert not isinstance(new, str), new
        assert_same(new, old)
    return new


def _case(rng, n, kind):
    if kind == "dense":
        u = rng.integers(0, max(1, n // 5), n)
        i = rng.integers(0, 40, n)
    elif kind == "sparse":  # range far wider than n: the generic coding
        u = rng.integers(0, 2**40, n) // 7 * 7
        i = rng.integers(0, 50, n) * 10**12
    elif kind == "offset":  # large ids in a narrow range: presence table with an offset
        u = rng.integers(2**50, 2**50 + 3 * n + 5, n)
        i = rng.integers(10**9, 10**9 + 30, n)
    elif kind == "int32":
        u = rng.integers(0, 100, n).astype(np.int32)
        i = rng.integers(5, 60, n).astype(np.int16)
    elif kind == "uint":
        u = rng.integers(0, 100, n).astype(np.uint64)
        i = rng.integers(0, 60, n).astype(np.uint32)
    elif kind == "float":
        u = rng.integers(0, 100, n).astype(np.float64)
        i = rng.integers(0, 60, n).astype(np.float32)
    else:  # strings: the generic path
        u = np.array([f"u{x}" for x in rng.integers(0, 50, n)])
        i = np.array([f"i{x}" for x in rng.integers(0, 30, n)], dtype=object)
    return u, i


KINDS = ["dense", "sparse", "offset", "int32", "uint", "float", "str"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(4))
def test_random_inputs_match_the_former_path(kind, seed):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 17, 500, 3000):
        _check_every_policy(rng, n, kind)


def _check_every_policy(rng, n, kind):
    """A random case of ``n`` ratings through :func:`check`, both dtypes and every duplicate
    policy, with and without timestamps; returns the case's (users, items, ratings, timestamps)."""
    u, i = _case(rng, n, kind)
    r = rng.integers(1, 11, n) / 2
    ts = rng.integers(0, 10**9, n)
    for dtype in (np.float32, np.float64):
        for policy in ("error", "last", "mean"):
            check(u, i, r, ts, dtype=dtype, duplicates=policy)
            check(u, i, r, dtype=dtype, duplicates=policy)
    return u, i, r, ts


@pytest.mark.parametrize("seed", range(3))
def test_without_duplicates_sorted_unsorted_and_gaps(seed):
    rng = np.random.default_rng(100 + seed)
    nu, ni = 300, 200
    cells = rng.choice(nu * ni, 5000, replace=False)
    u, i = (cells // ni) * 3 + 1, (cells % ni) * 2  # gaps in the ids: absent codes never appear
    r = rng.random(5000).astype(np.float32)
    ts = rng.integers(0, 10**9, 5000)
    shuffled = check(u, i, r, ts)
    order = np.lexsort((i, u))
    already = check(u[order], i[order], r[order], ts[order])  # no sort needed
    assert_same(shuffled, already)
    rev = order[::-1]
    check(u[rev], i[rev], r[rev])


def test_duplicate_error_names_the_first_repeated_pair():
    u = np.array([5, 3, 5, 3, 5, 3])
    i = np.array([1, 2, 1, 2, 1, 9])
    new, old = both(u, i, np.ones(6))
    assert new == old
    assert "duplicate (user, item) pair (5, 1) at rows 0 and 2" in new


def test_duplicate_policies_keep_the_last_and_average():
    u = np.array([2, 1, 2, 2])
    i = np.array([0, 0, 0, 1])
    r = np.array([1.0, 2.0, 3.0, 4.0])
    ts = np.array([10, 20, 5, 7])
    last = check(u, i, r, ts, duplicates="last")
    np.testing.assert_array_equal(last.values, [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(last.timestamps, [20, 5, 7])
    mean = check(u, i, r, ts, duplicates="mean")
    np.testing.assert_array_equal(mean.values, [2.0, 2.0, 4.0])
    np.testing.assert_array_equal(mean.timestamps, [20, 10, 7])


def test_validation_errors_unchanged():
    for bad in ([-1, 2], np.array([1.5, 2.0]), np.array([2.0**60, 1.0])):
        new, old = both(bad, [1, 2], [1.0, 2.0])
        assert isinstance(new, str) and new == old


def test_factorize_int_matches_pandas():
    import pandas as pd

    rng = np.random.default_rng(7)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        raw = rng.integers(0, 100, 1000).astype(dt)
        codes, uniques = _sort.factorize_int(raw)
        ref_codes, ref_uniques = pd.factorize(raw, sort=True)
        assert codes.dtype == np.int32 and uniques.dtype == ref_uniques.dtype
        np.testing.assert_array_equal(codes, ref_codes)
        np.testing.assert_array_equal(uniques, ref_uniques)
    assert _sort.factorize_int(np.array([0, 2**40])) is None  # too wide: generic path
    assert _sort.factorize_int(np.array(["a"])) is None


def test_sort_paths_agree_with_stable_argsort():
    rng = np.random.default_rng(3)
    n = 200_000  # several parallel chunks
    u = rng.integers(0, 5000, n).astype(np.int32)
    i = rng.integers(0, 300, n).astype(np.int32)
    r = rng.random(n).astype(np.float32)
    order = np.argsort(u.astype(np.int64) * 300 + i, kind="stable")
    users, items, src, n_dup, vals = _sort.sort_by_user_item(u, i, 5000, 300, r)
    np.testing.assert_array_equal(src, order)
    assert vals.dtype == r.dtype
    np.testing.assert_array_equal(vals, r[order])
    np.testing.assert_array_equal(users, u[order])
    np.testing.assert_array_equal(items, i[order])
    key = u[order].astype(np.int64) * 300 + i[order]
    assert n_dup == int(np.count_nonzero(key[1:] == key[:-1]))
    # the two-pass counting sort (used when the packed key would exceed 63 bits)
    by_item = _sort._sort_by_item(i, 300, 3, np.empty(n, dtype=np.int32))
    src2, items2 = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int32)
    indptr = _sort._sort_by_user(u, i, by_item, 5000, 3, src2, items2)
    np.testing.assert_array_equal(src2, order)
    np.testing.assert_array_equal(items2, i[order])
    np.testing.assert_array_equal(indptr, np.concatenate([[0], np.cumsum(np.bincount(u, minlength=5000))]))


def test_result_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(11)
    n = 300_000
    u, i = rng.integers(0, 20_000, n), rng.integers(0, 3000, n)
    r = rng.random(n)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = Ratings.from_arrays(u, i, r, duplicates="last")
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = Ratings.from_arrays(u, i, r, duplicates="last")
    finally:
        numba.set_num_threads(saved)
    assert_same(one, many)
    assert_same(many, reference_from_arrays(u, i, r, duplicates="last"))


@pytest.mark.parametrize("threads", [1, 2])
def test_radix_sort_duplicates_across_chunk_starts(threads):
    """The duplicate count and the gathered values, fused into the unpacking pass, with
    duplicates straddling every chunk start (a few keys, many rows)."""
    rng = np.random.default_rng(5)
    n = 300_000
    u = rng.integers(0, 3, n).astype(np.int32)
    i = rng.integers(0, 2, n).astype(np.int32)
    r = rng.random(n)
    order = np.argsort(u.astype(np.int64) * 2 + i, kind="stable")
    key = u[order].astype(np.int64) * 2 + i[order]
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        users, items, src, n_dup, vals = _sort.sort_by_user_item(u, i, 3, 2, r)
    finally:
        numba.set_num_threads(saved)
    assert n_dup == int(np.count_nonzero(key[1:] == key[:-1])) == n - 6
    np.testing.assert_array_equal(src, order)
    np.testing.assert_array_equal(vals, r[order])
    np.testing.assert_array_equal(users, u[order])


def test_indptr_from_sorted_equals_bincount():
    """Empty rows at the start, in the middle and at the end, one row, no codes."""
    from fastmf.data import _layout

    rng = np.random.default_rng(9)
    cases = [np.sort(rng.integers(3, 900, 200_000)).astype(np.int32),
             np.repeat(np.array([0, 5, 6, 999], dtype=np.int32), [70_000, 1, 60_000, 70_000]),
             np.zeros(10, dtype=np.int32), np.array([7], dtype=np.int32), np.empty(0, dtype=np.int32)]
    for codes in cases:
        ref = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=1000))]).astype(np.int64)
        out = _layout.indptr_from_sorted(codes, 1000)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, ref)


@pytest.fixture
def rank_table_path(monkeypatch):
    """Small inputs through the large-input path: rank tables and the sort reading codes from
    them (``from_arrays`` takes it from ``PARALLEL_MIN_IDS`` ids), parallel chunks of 1Ki."""
    from fastmf.data import ratings

    calls = []
    real = _sort.sort_by_rank_tables

    def spy(*args):
        calls.append(len(args[0]))
        return real(*args)

    monkeypatch.setattr(ratings, "PARALLEL_MIN_IDS", 1)
    monkeypatch.setattr(ratings, "sort_by_rank_tables", spy)
    monkeypatch.setattr(_sort, "PARALLEL_MIN_IDS", 1)
    monkeypatch.setattr(_sort, "_MIN_CHUNK", 1 << 10)
    return calls


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(2))
def test_rank_table_path_matches_the_former_path(kind, seed, rank_table_path):
    rng = np.random.default_rng(50 + seed)
    for n in (1, 2, 17, 500, 5000):
        u, i, r, ts = _check_every_policy(rng, n, kind)
        order = np.lexsort((i, u))
        check(u[order], i[order], r[order], ts[order], duplicates="last")  # sorted: codes, no sort
    if kind in ("dense", "offset", "int32"):  # integer ids in a narrow range: the tables were used
        assert rank_table_path and max(rank_table_path) == 5000


@pytest.mark.parametrize("threads", [1, 2])
def test_rank_table_path_thread_count_and_duplicate_error(threads, rank_table_path):
    rng = np.random.default_rng(77)
    n = 200_000
    u, i = rng.integers(0, 20_000, n), rng.integers(0, 3000, n)
    r = rng.random(n)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        assert_same(Ratings.from_arrays(u, i, r, duplicates="last"),
                    reference_from_arrays(u, i, r, duplicates="last"))
        new, old = both(u, i, r)
        assert isinstance(new, str) and new == old and "duplicate (user, item) pair" in new
    finally:
        numba.set_num_threads(saved)
    assert rank_table_path == [n, n]
