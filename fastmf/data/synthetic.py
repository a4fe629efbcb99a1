"""MovieLens-shaped synthetic ratings with a planted low-rank model.

Model
-----
For ``m`` users, ``n`` items, rank ``k`` and a set Ω of exactly ``n_ratings``
distinct (user, item) pairs::

    r_ui = clip(round(μ + b_u + c_i + p_u · q_i + σ ε_ui), low, high),   (u, i) ∈ Ω

with ``b_u ~ N(0, user_bias_std²)``, ``c_i ~ N(0, item_bias_std²)``, ``p_u, q_i ~
N(0, s² I_k)`` and ``ε_ui ~ N(0, 1)``.  By default ``s = (0.6² / k)^{1/4}`` so that
the interaction ``p_u · q_i`` has standard deviation 0.6 whatever the rank.
``round`` rounds to a multiple of ``round_to`` (half-stars by default); ``clip``
clamps to ``rating_scale``.

Pattern of Ω (power laws, as in MovieLens)
-----------------------------------------
User activity and item popularity follow Zipf-like weights
``w_r ∝ (r + 1)^{-a}`` over ranks ``r = 0, 1, ...`` assigned to users (items) in a
random order.  Each user gets ``n_u = 1 + Multinomial(n_ratings - m, w)`` ratings
(capped at ``n``, the excess redrawn among the other users), so every user has at
least one rating when ``n_ratings >= m``.  A user's ``n_u`` items are drawn by
popularity *without replacement* (sequential weighted sampling: rejection of
repeats for light users, the Efraimidis-Spirakis keys ``log(U)/w_i`` with a
selection of the ``n_u`` largest for heavy ones; both give the same
distribution).  When ``n_ratings >= n`` every item with no rating then takes the
place of one rating of an item that has more than one, so every item is rated.

Cost: O(n_ratings + heavy users x n) time, a few arrays of ``n_ratings`` entries of
memory; never an ``m x n`` array.  The user loops run in parallel (numba
``prange`` over chunks of users of about equal rating count); every user draws
from its own counter-based generator (splitmix64 seeded by the seed and the user
code), so the result is the same for a given seed whatever the thread count.
"""

from __future__ import annotations

import numbers

import numba
import numpy as np

from numba import prange

from ..kernels._rng import GOLDEN as _GOLDEN
from ..kernels._rng import mix64 as _mix
from ..kernels._rng import next_state as _next
from .._validation import check_dtype, check_nonnegative_float, check_positive_int, check_random_state
from .ratings import Ratings

__all__ = ["synthetic", "synthetic_preset", "PRESETS"]

#: Shapes of the MovieLens sets: (users, items, ratings, rating_scale).
PRESETS: dict[str, tuple[int, int, int, tuple[float, float]]] = {
    "ml-100k": (943, 1_682, 100_000, (1.0, 5.0)),
    "ml-1m": (6_040, 3_706, 1_000_209, (1.0, 5.0)),
    "ml-10m": (69_878, 10_677, 10_000_054, (0.5, 5.0)),
    "ml-20m": (138_493, 26_744, 20_000_263, (0.5, 5.0)),
    "ml-25m": (162_541, 59_047, 25_000_095, (0.5, 5.0)),
}

_N_CHUNKS = 64
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


# ---------------------------------------------------------------------------- RNG (splitmix64)
@numba.njit(inline="always")
def _uniform_open0(bits):
    """Uniform double in (0, 1] from 64 random bits."""
    return ((bits >> _S11) + np.uint64(1)) * _INV53


@numba.njit(inline="always")
def _user_state(seed, u):
    return _mix(seed ^ (np.uint64(u) * _GOLDEN + np.uint64(1)))


# ---------------------------------------------------------------------------- kernels
@numba.njit(inline="always")
def _search_cum(cum, t):
    """First index with ``cum[index] > t`` (cum ascending), clamped to the last index."""
    lo = 0
    hi = cum.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[mid] > t:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True)
def _kth_largest(buf, k):
    """Value of the k-th largest element (1-based) of ``buf``; reorders ``buf`` in place."""
    target = buf.shape[0] - k  # index of the answer in ascending order
    lo = 0
    hi = buf.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        # median of three as pivot
        a, b, c = buf[lo], buf[mid], buf[hi]
        if a > b:
            a, b = b, a
        if b > c:
            b = c
            if a > b:
                b = a
        pivot = b
        i = lo
        j = hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                tmp = buf[i]
                buf[i] = buf[j]
                buf[j] = tmp
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            return buf[target]
    return buf[target]


@numba.njit(cache=True, parallel=True)
def _sample_items(indptr, bounds, weights, cum, seed, items_out, stamp, keys, scratch):
    """Fill ``items_out[indptr[u]:indptr[u+1]]`` with distinct items drawn by weight, sorted.

    ``bounds`` delimits chunks of users; chunk ``c`` uses row ``c`` of ``stamp``,
    ``keys`` and ``scratch`` (no allocation in the parallel loop).
    """
    n = weights.shape[0]
    total = cum[n - 1]
    n_chunks = bounds.shape[0] - 1
    for c in prange(n_chunks):
        for u in range(bounds[c], bounds[c + 1]):
            lo = indptr[u]
            k = indptr[u + 1] - lo
            if k == 0:
                continue
            state = _user_state(seed, u)
            done = False
            if k * 16 <= n:
                # Sequential weighted sampling without replacement by rejecting repeats;
                # give up (to the keys method) once most of the mass is taken.
                taken = 0.0
                j = 0
                tag = np.int32(u + 1)
                while j < k:
                    state, bits = _next(state)
                    t = (bits >> _S11) * _INV53 * total
                    i = _search_cum(cum, t)
                    if stamp[c, i] != tag:
                        stamp[c, i] = tag
                        items_out[lo + j] = i
                        j += 1
                        taken += weights[i]
                        if taken > 0.75 * total:
                            break
                if j == k:
                    items_out[lo:lo + k].sort()
                    done = True
            if not done:
                # Efraimidis-Spirakis: the k largest keys log(U)/w_i form the sample.
                for i in range(n):
                    state, bits = _next(state)
                    key = np.log(_uniform_open0(bits)) / weights[i]
                    keys[c, i] = key
                    scratch[c, i] = key
                thr = _kth_largest(scratch[c], k)
                j = 0
                for i in range(n):
                    if keys[c, i] >= thr and j < k:
                        items_out[lo + j] = i
                        j += 1


@numba.njit(cache=True)
def _cover_items(users, items, item_count, seed, dirty):
    """Give every item with no rating the place of one rating of an item rated more than once.

    Positions are scanned from a random start; the user keeps its count and its
    items stay distinct (the new item was unrated).  Marks touched users in ``dirty``.
    """
    nnz = items.shape[0]
    state = _mix(seed)
    for i in range(item_count.shape[0]):
        if item_count[i] != 0:
            continue
        state, bits = _next(state)
        j = np.int64((bits >> _S11) * _INV53 * nnz)
        while item_count[items[j]] <= 1:
            j += 1
            if j == nnz:
                j = 0
        old = items[j]
        items[j] = i
        item_count[old] -= 1
        item_count[i] += 1
        dirty[users[j]] = True


@numba.njit(cache=True, parallel=True)
def _sort_rows(indptr, items, dirty):
    for u in prange(indptr.shape[0] - 1):
        if dirty[u]:
            items[indptr[u]:indptr[u + 1]].sort()


@numba.njit(cache=True, parallel=True)
def _rate(indptr, bounds, items, P, Q, b, c, mean, noise, round_to, low, high, seed, out):
    """out[j] = clip(round(mean + b_u + c_i + p_u.q_i + noise * N(0,1))) in float64, stored in out's dtype."""
    k = P.shape[1]
    two_pi = 2.0 * np.pi
    for ch in prange(bounds.shape[0] - 1):
        for u in range(bounds[ch], bounds[ch + 1]):
            state = _user_state(seed, u)
            for j in range(indptr[u], indptr[u + 1]):
                i = items[j]
                s = mean + b[u] + c[i]
                for f in range(k):
                    s += P[u, f] * Q[i, f]
                state, b1 = _next(state)
                state, b2 = _next(state)
                z = np.sqrt(-2.0 * np.log(_uniform_open0(b1))) * np.cos(two_pi * ((b2 >> _S11) * _INV53))
                r = s + noise * z
                if round_to > 0.0:
                    r = np.floor(r / round_to + 0.5) * round_to
                if r < low:
                    r = low
                elif r > high:
                    r = high
                out[j] = r


# ---------------------------------------------------------------------------- helpers
def _zipf_weights(size: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights (r + 1)^-a over ranks, placed in a random order, normalised to sum 1."""
    w = np.arange(1, size + 1, dtype=np.float64) ** (-exponent)
    w = w[rng.permutation(size)]
    return w / w.sum()


def _user_counts(m: int, n: int, n_ratings: int, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = 1 if n_ratings >= m else 0
    counts = base + rng.multinomial(n_ratings - base * m, w).astype(np.int64)
    while True:
        excess = int(np.maximum(counts - n, 0).sum())
        if excess == 0:
            return counts
        np.minimum(counts, n, out=counts)
        room = counts < n
        p = np.where(room, w, 0.0)
        counts += rng.multinomial(excess, p / p.sum())


def _chunk_bounds(indptr: np.ndarray, n_chunks: int) -> np.ndarray:
    m = len(indptr) - 1
    targets = np.linspace(0, indptr[-1], n_chunks + 1)
    bounds = np.searchsorted(indptr, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, m
    return np.maximum.accumulate(np.minimum(bounds, m))


def _check_scale(rating_scale) -> tuple[float, float]:
    try:
        low, high = rating_scale
        low, high = float(low), float(high)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"rating_scale must be a pair (low, high) of numbers, got {rating_scale!r}") from exc
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"rating_scale must be finite with low < high, got {rating_scale!r}")
    return low, high


# ---------------------------------------------------------------------------- public API
def synthetic(
    n_users: int,
    n_items: int,
    n_ratings: int,
    rank: int = 10,
    noise: float = 0.5,
    mean: float = 3.5,
    user_bias_std: float = 0.4,
    item_bias_std: float = 0.5,
    factor_std: float | None = None,
    activity_exponent: float = 0.5,
    popularity_exponent: float = 1.0,
    rating_scale: tuple[float, float] = (0.5, 5.0),
    round_to: float | None = 0.5,
    dtype=np.float32,
    random_state=0,
    return_truth: bool = False,
    name: str | None = None,
):
    """MovieLens-shaped ratings from a planted biased low-rank model (see the module docstring).

    Parameters
    ----------
    n_users, n_items : int >= 1
    n_ratings : int, 1 <= n_ratings <= n_users * n_items
        Exact number of distinct (user, item) pairs.
    rank : int >= 0
        Rank ``k`` of the planted factors.
    noise : float >= 0
        Standard deviation σ of the Gaussian noise.
    mean : float
        Planted global mean μ (before rounding and clipping).
    user_bias_std, item_bias_std : float >= 0
    factor_std : float >= 0, optional
        Standard deviation ``s`` of the factor entries; default ``(0.36 / k)^{1/4}``.
    activity_exponent, popularity_exponent : float >= 0
        Zipf exponents of user activity and item popularity (0 = uniform).  The
        defaults give ML-25M a heaviest user of about 31,000 ratings (real: 32,202).
    rating_scale : (low, high)
    round_to : float > 0 or None
        Round to multiples of this (0.5 half-stars, 1 whole stars); None keeps
        continuous ratings.
    dtype : {np.float32, np.float64}
    random_state : int, None or numpy Generator
        The same integer seed gives the same data (whatever the thread count).
    return_truth : bool
        Also return a dict of the planted model: ``P`` (m, k), ``Q`` (n, k),
        ``user_bias`` (m,), ``item_bias`` (n,), all float64, and ``mean``.
    name : str, optional

    Returns
    -------
    Ratings, or (Ratings, dict) when ``return_truth``
        Raw ids are ``0..m-1`` and ``0..n-1``; every user has a rating when
        ``n_ratings >= n_users`` and every item when ``n_ratings >= n_items``.
    """
    m = check_positive_int(n_users, "n_users")
    n = check_positive_int(n_items, "n_items")
    nr = check_positive_int(n_ratings, "n_ratings")
    imax = int(np.iinfo(np.int32).max)
    if m > imax or n > imax:
        raise ValueError(f"n_users and n_items must be <= {imax}")
    if nr > m * n:
        raise ValueError(f"n_ratings={nr} exceeds n_users * n_items = {m * n} distinct pairs")
    k = check_positive_int(rank, "rank", minimum=0)
    noise = check_nonnegative_float(noise, "noise")
    if isinstance(mean, bool) or not isinstance(mean, numbers.Real) or not np.isfinite(mean):
        raise ValueError(f"mean must be a finite real number, got {mean!r}")
    ub = check_nonnegative_float(user_bias_std, "user_bias_std")
    ib = check_nonnegative_float(item_bias_std, "item_bias_std")
    if factor_std is None:
        fs = (0.36 / k) ** 0.25 if k > 0 else 0.0
    else:
        fs = check_nonnegative_float(factor_std, "factor_std")
    a_u = check_nonnegative_float(activity_exponent, "activity_exponent")
    a_i = check_nonnegative_float(popularity_exponent, "popularity_exponent")
    low, high = _check_scale(rating_scale)
    step = 0.0 if round_to is None else check_nonnegative_float(round_to, "round_to", strictly_positive=True)
    dt = check_dtype(dtype)
    if not isinstance(return_truth, (bool, np.bool_)):
        raise TypeError(f"return_truth must be a bool, got {return_truth!r}")
    rng = check_random_state(random_state)

    w_users = _zipf_weights(m, a_u, rng)
    w_items = _zipf_weights(n, a_i, rng)
    counts = _user_counts(m, n, nr, w_users, rng)
    seed_items, seed_cover, seed_noise = (np.uint64(s) for s in rng.integers(0, 2**63, size=3))
    P = rng.normal(0.0, fs, size=(m, k)) if k else np.zeros((m, 0))
    Q = rng.normal(0.0, fs, size=(n, k)) if k else np.zeros((n, 0))
    b = rng.normal(0.0, ub, size=m)
    c = rng.normal(0.0, ib, size=n)

    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    # Scratch rows per chunk (stamp int32 + two float64 key rows: 20 bytes an item), at most ~256 MB.
    n_chunks = max(1, min(_N_CHUNKS, m, (256 << 20) // (20 * n)))
    bounds = _chunk_bounds(indptr, n_chunks)
    items = np.empty(nr, dtype=np.int32)
    stamp = np.zeros((n_chunks, n), dtype=np.int32)
    keys = np.empty((n_chunks, n), dtype=np.float64)
    scratch = np.empty((n_chunks, n), dtype=np.float64)
    _sample_items(indptr, bounds, w_items, np.cumsum(w_items), seed_items, items, stamp, keys, scratch)
    del stamp, keys, scratch

    users = np.repeat(np.arange(m, dtype=np.int32), counts)
    if nr >= n:
        item_count = np.bincount(items, minlength=n).astype(np.int64)
        if (item_count == 0).any():
            dirty = np.zeros(m, dtype=np.bool_)
            _cover_items(users, items, item_count, seed_cover, dirty)
            _sort_rows(indptr, items, dirty)

    values = np.empty(nr, dtype=dt)
    _rate(indptr, bounds, items, P, Q, b, c, float(mean), noise, step, low, high, seed_noise, values)
    ratings = Ratings.from_codes(
        users, items, values, m, n, dtype=dt, rating_scale=(low, high),
        name=name if name is not None else f"synthetic({m}x{n}, {nr} ratings)",
    )
    if return_truth:
        return ratings, {"P": P, "Q": Q, "user_bias": b, "item_bias": c, "mean": float(mean)}
    return ratings


def synthetic_preset(name: str, scale: float = 1.0, **kwargs):
    """Synthetic data with the shape of a MovieLens set (see :data:`PRESETS`).

    Parameters
    ----------
    name : {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m"}
    scale : float in (0, 1]
        Shrinks the set for quick runs: users and ratings are multiplied by
        ``scale`` and items by ``sqrt(scale)`` (each rounded, at least 1), which
        keeps the mean ratings per user and raises the density by
        ``1/sqrt(scale)``.
    **kwargs
        Passed to :func:`synthetic` (``rating_scale`` defaults to the set's,
        ``round_to`` to 1 for whole-star sets and 0.5 otherwise).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    s = check_nonnegative_float(scale, "scale", strictly_positive=True)
    if s > 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    m, n, nr, rating_scale = PRESETS[name]
    if s != 1.0:
        m = max(1, int(round(m * s)))
        n = max(1, int(round(n * np.sqrt(s))))
        nr = max(1, int(round(nr * s)))
        if nr > m * n:
            raise ValueError(f"scale={scale} is too small for {name}: {nr} ratings do not fit {m} x {n}")
    kwargs.setdefault("rating_scale", rating_scale)
    kwargs.setdefault("round_to", 1.0 if rating_scale[0] == 1.0 else 0.5)
    kwargs.setdefault("name", f"synthetic-{name}" + ("" if s == 1.0 else f"@{s:g}"))
    return synthetic(m, n, nr, **kwargs)
