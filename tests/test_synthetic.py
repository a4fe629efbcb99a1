"""Synthetic MovieLens-shaped data: exact counts, determinism, planted model, sampling law, presets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastmf._threading import thread_limit
from fastmf.data import synthetic as syn
from fastmf.data.synthetic import PRESETS, synthetic, synthetic_preset


def _assert_canonical(r):
    key = r.users.astype(np.int64) * r.n_items + r.items
    assert np.all(np.diff(key) > 0)  # sorted and distinct pairs


@pytest.mark.parametrize("m, n, nr", [(100, 50, 2000), (943, 1682, 100_000), (30, 1000, 1500), (7, 5, 35)])
def test_exact_counts_and_coverage(m, n, nr):
    r = synthetic(m, n, nr, random_state=1)
    assert (r.n_users, r.n_items, r.nnz) == (m, n, nr)
    _assert_canonical(r)
    assert (r.user_counts >= 1).all() and (r.item_counts >= 1).all()
    assert r.users.dtype == np.int32 and r.items.dtype == np.int32 and r.dtype == np.float32


def test_too_few_ratings_to_cover():
    r = synthetic(500, 400, 300, random_state=0)
    assert r.nnz == 300 and r.shape == (500, 400)
    _assert_canonical(r)


def test_item_cover_fix_runs():
    # steep popularity leaves many items unrated before the fix
    r = synthetic(50, 400, 500, popularity_exponent=3.0, random_state=2)
    assert r.nnz == 500 and (r.item_counts >= 1).all() and (r.user_counts >= 1).all()
    _assert_canonical(r)


def test_determinism_and_threads():
    a = synthetic(300, 200, 9000, random_state=5)
    b = synthetic(300, 200, 9000, random_state=5)
    c = synthetic(300, 200, 9000, random_state=6)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.items, c.items) or not np.array_equal(a.values, c.values)
    with thread_limit(1):
        one = synthetic(300, 200, 9000, random_state=5)
    with thread_limit(2):
        two = synthetic(300, 200, 9000, random_state=5)
    np.testing.assert_array_equal(one.users, two.users)
    np.testing.assert_array_equal(one.items, two.items)
    np.testing.assert_array_equal(one.values, two.values)
    np.testing.assert_array_equal(one.values, a.values)


def test_range_and_rounding():
    r = synthetic(200, 100, 5000, noise=2.0, random_state=0)
    assert r.values.min() >= 0.5 and r.values.max() <= 5.0
    assert np.all(r.values * 2 == np.round(r.values * 2))
    assert r.values.min() == 0.5 and r.values.max() == 5.0  # big noise reaches both ends
    w = synthetic(200, 100, 5000, rating_scale=(1, 5), round_to=1.0, random_state=0, dtype=np.float64)
    assert w.dtype == np.float64 and set(np.unique(w.values).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert w.rating_scale == (1.0, 5.0)
    cont = synthetic(200, 100, 5000, round_to=None, random_state=0)
    inside = cont.values[(cont.values > 0.5) & (cont.values < 5.0)]  # the rest is clipped to the bounds
    assert inside.size > 4000 and np.all(inside * 2 != np.round(inside * 2))


def test_planted_model_exact_without_noise():
    r, truth = synthetic(150, 80, 3000, rank=4, noise=0.0, round_to=None, rating_scale=(-100, 100),
                         dtype=np.float64, random_state=3, return_truth=True)
    P, Q, b, c = truth["P"], truth["Q"], truth["user_bias"], truth["item_bias"]
    assert P.shape == (150, 4) and Q.shape == (80, 4) and b.shape == (150,) and c.shape == (80,)
    assert truth["mean"] == 3.5
    pred = truth["mean"] + b[r.users] + c[r.items] + np.einsum("jk,jk->j", P[r.users], Q[r.items])
    np.testing.assert_allclose(r.values, pred, rtol=0, atol=1e-12)
    # default factor_std: the interaction has std about 0.6
    assert np.std(np.einsum("jk,jk->j", P[r.users], Q[r.items])) == pytest.approx(0.6, rel=0.2)


def test_noise_is_standard_normal():
    r, truth = synthetic(400, 300, 60_000, rank=0, noise=1.0, user_bias_std=0.0, item_bias_std=0.0,
                         mean=0.0, round_to=None, rating_scale=(-50, 50), dtype=np.float64,
                         random_state=4, return_truth=True)
    assert truth["P"].shape == (400, 0)
    z = r.values
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, abs=0.02)
    assert np.mean(np.abs(z) < 1.96) == pytest.approx(0.95, abs=0.01)


def test_power_law_shape():
    r = synthetic(2000, 1000, 100_000, random_state=0)
    uc, ic = r.user_counts, r.item_counts
    assert uc.max() > 8 * np.median(uc) and ic.max() > 8 * np.median(ic)
    flat = synthetic(2000, 1000, 100_000, activity_exponent=0.0, popularity_exponent=0.0, random_state=0)
    assert flat.user_counts.max() < 2 * np.median(flat.user_counts)
    assert flat.item_counts.max() < 2 * np.median(flat.item_counts)


def _exact_inclusion(w, k):
    """P(item in sample) for sequential weighted sampling of k items without replacement."""
    n = len(w)
    p = np.zeros(n)
    for seq in itertools.permutations(range(n), k):
        prob, rest = 1.0, 1.0
        for i in seq:
            prob *= w[i] / rest
            rest -= w[i]
        for i in seq:
            p[i] += prob
    return p


@pytest.mark.parametrize("n, k, exponent", [
    (20, 1, 1.0),  # rejection of repeats (k * 16 <= n)
    (48, 3, 1.0),  # rejection of repeats
    (17, 2, 1.0),  # Efraimidis-Spirakis keys (k * 16 > n)
    (12, 2, 1.5),  # keys
    (32, 2, 6.0),  # rejection starts, the first item holds 98% of the mass: bail-out to keys
])
def test_item_sampling_law(n, k, exponent):
    """All paths draw from the law of sequential weighted sampling without replacement."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    w /= w.sum()
    users = 20_000
    indptr = np.arange(users + 1, dtype=np.int64) * k
    bounds = np.array([0, users // 2, users], dtype=np.int64)
    items = np.empty(users * k, dtype=np.int32)
    stamp = np.zeros((2, n), dtype=np.int32)
    keys = np.empty((2, n))
    scratch = np.empty((2, n))
    syn._sample_items(indptr, bounds, w, np.cumsum(w), np.uint64(12345), items, stamp, keys, scratch)
    rows = items.reshape(users, k)
    assert np.all(np.diff(rows, axis=1) > 0)  # distinct and sorted within a user
    freq = np.bincount(items, minlength=n) / users
    p = _exact_inclusion(w, k)
    se = np.sqrt(np.maximum(p * (1 - p), 1e-12) / users)
    assert np.max(np.abs(freq - p) / se) < 5


def test_kth_largest():
    rng = np.random.default_rng(0)
    for size in (1, 2, 5, 100, 1001):
        x = rng.random(size)
        for k in {1, size, max(1, size // 2)}:
            assert syn._kth_largest(x.copy(), k) == np.sort(x)[::-1][k - 1]
    x = np.array([3.0, 3.0, 1.0, 3.0, 2.0])
    assert syn._kth_largest(x.copy(), 3) == 3.0 and syn._kth_largest(x.copy(), 4) == 2.0


def test_full_matrix():
    r = synthetic(6, 4, 24, random_state=0)
    assert r.nnz == 24 and (r.user_counts == 4).all()


@pytest.mark.parametrize("kw, exc, match", [
    (dict(n_ratings=5001), ValueError, "exceeds n_users \\* n_items"),
    (dict(n_users=0), ValueError, "n_users must be >= 1"),
    (dict(n_items=2.5), TypeError, "n_items must be an integer"),
    (dict(rank=-1), ValueError, "rank must be >= 0"),
    (dict(noise=-0.1), ValueError, "noise must be >= 0"),
    (dict(mean=np.nan), ValueError, "mean must be a finite"),
    (dict(rating_scale=(5, 1)), ValueError, "low < high"),
    (dict(rating_scale=5), TypeError, "rating_scale must be a pair"),
    (dict(round_to=0.0), ValueError, "round_to must be > 0"),
    (dict(dtype=np.int32), TypeError, "dtype must be"),
    (dict(activity_exponent=-1), ValueError, "activity_exponent must be >= 0"),
    (dict(random_state="seed"), TypeError, "random_state"),
    (dict(return_truth=1), TypeError, "return_truth must be a bool"),
])
def test_bad_arguments(kw, exc, match):
    args = dict(n_users=100, n_items=50, n_ratings=1000)
    args.update(kw)
    with pytest.raises(exc, match=match):
        synthetic(**args)


def test_presets_table():
    assert PRESETS["ml-100k"][:3] == (943, 1_682, 100_000)
    assert PRESETS["ml-1m"][:3] == (6_040, 3_706, 1_000_209)
    assert PRESETS["ml-10m"][:3] == (69_878, 10_677, 10_000_054)
    assert PRESETS["ml-20m"][:3] == (138_493, 26_744, 20_000_263)
    assert PRESETS["ml-25m"][:3] == (162_541, 59_047, 25_000_095)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_small_scale(name):
    m, n, nr, scale = PRESETS[name]
    s = 0.01
    r = synthetic_preset(name, scale=s, random_state=0)
    assert r.shape == (round(m * s), round(n * np.sqrt(s))) and r.nnz == round(nr * s)
    assert r.rating_scale == scale
    assert r.values.min() >= scale[0] and r.values.max() <= scale[1]
    assert r.name == f"synthetic-{name}@0.01"
    # mean ratings per user kept
    assert r.nnz / r.n_users == pytest.approx(nr / m, rel=0.05)


def test_preset_full_size_ml1m():
    r = synthetic_preset("ml-1m", random_state=0)
    assert (r.n_users, r.n_items, r.nnz) == (6_040, 3_706, 1_000_209)
    assert (r.user_counts >= 1).all() and (r.item_counts >= 1).all()
    assert set(np.unique(r.values).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.0 < r.global_mean < 4.0


def test_preset_errors():
    with pytest.raises(ValueError, match="unknown preset"):
        synthetic_preset("ml-2m")
    with pytest.raises(ValueError, match=r"scale must be in \(0, 1\]"):
        synthetic_preset("ml-1m", scale=2.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        synthetic_preset("ml-1m", scale=0.0)
    with pytest.raises(ValueError, match="too small"):
        synthetic_preset("ml-1m", scale=1e-4)
