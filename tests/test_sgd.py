"""Tests of the blocked stratified SGD solver (fastmf.solvers.sgd, fastmf.kernels.sgd)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastmf._packing import n_params, unpack
from fastmf.data.ratings import Ratings
from fastmf.kernels.predict import rmse_codes
from fastmf.reference import DenseMF
from fastmf.solvers._base import Status
from fastmf.solvers.sgd import DivergenceError, build_layout, sgd, stratum_schedule


def planted(m=120, n=80, k=3, density=0.35, noise=0.1, seed=0, dtype=np.float32):
    """Biased rank-k model plus Gaussian noise on a random mask; returns (train, test)."""
    rng = np.random.default_rng(seed)
    P = rng.normal(0, 0.7, (m, k))
    Q = rng.normal(0, 0.7, (n, k))
    b = rng.normal(0, 0.3, m)
    c = rng.normal(0, 0.3, n)
    mask = rng.random((m, n)) < density
    u, i = np.nonzero(mask)
    r = 3.0 + b[u] + c[i] + np.sum(P[u] * Q[i], axis=1) + noise * rng.normal(size=u.size)
    test = rng.random(u.size) < 0.15
    full = Ratings.from_codes(u, i, r, m, n, dtype=dtype)
    order = np.lexsort((i, u))  # from_codes keeps (user, item) order: u, i already sorted
    assert np.array_equal(order, np.arange(u.size))
    return full.subset(~test), full.subset(test)


@pytest.fixture(scope="module")
def small():
    return planted()


def val_rmse_of(result, train, test):
    P, Q, b, c = unpack(result.x, train.n_users, train.n_items, result.rank, result.biases)
    return rmse_codes(test.users, test.items, test.values.astype(np.float64), P, Q, b, c, result.mu)


# ------------------------------------------------------------------ schedule and layout
@pytest.mark.parametrize("B", [1, 2, 5, 8, 16])
def test_stratum_schedule_is_a_latin_square(B):
    rng = np.random.default_rng(B)
    for _ in range(3):
        S = stratum_schedule(B, rng)
        assert S.shape == (B, B) and S.dtype == np.int64
        ubins, ibins = S // B, S % B
        for t in range(B):  # a stratum's blocks share no user bin and no item bin
            assert len(set(ubins[t])) == B
            assert len(set(ibins[t])) == B
        assert sorted(S.ravel()) == list(range(B * B))  # every block once an epoch


def test_block_layout_holds_every_rating_in_its_block(small):
    train, _ = small
    B = 4
    L = build_layout(train, B, np.random.default_rng(3), np.float64)
    assert L.block_ptr[0] == 0 and L.block_ptr[-1] == train.nnz
    # working codes map back to the same (user, item, value) multiset
    u = L.user_order[L.users]
    i = L.item_order[L.items]
    got = sorted(zip(u.tolist(), i.tolist(), L.values.tolist()))
    want = sorted(zip(train.users.tolist(), train.items.tolist(), train.values.astype(np.float64).tolist()))
    assert got == want
    ubin = np.searchsorted(L.user_bounds, L.users, side="right") - 1
    ibin = np.searchsorted(L.item_bounds, L.items, side="right") - 1
    blk = np.repeat(np.arange(B * B), np.diff(L.block_ptr))
    assert np.array_equal(ubin * B + ibin, blk)
    # bins of about equal rating counts
    sizes = L.block_sizes
    assert sizes.sum(axis=1).max() < 1.5 * train.nnz / B
    assert sizes.sum(axis=0).max() < 1.5 * train.nnz / B
    # the in-block shuffle is not the sorted order
    first = slice(L.block_ptr[0], L.block_ptr[1])
    assert not np.all(np.diff(L.users[first].astype(np.int64) * train.n_items + L.items[first]) > 0)


@pytest.mark.parametrize("n_chunks", [2, 3, 7])
def test_parallel_block_layout_is_the_serial_counting_sort(small, n_chunks):
    # every block holds its ratings in input order whatever the number of chunks (so
    # whatever the thread count): the chunked layout is the serial one, bit for bit
    from fastmf.kernels import sgd as K

    train, _ = small
    B = 3
    rng = np.random.default_rng(0)
    uw = rng.permutation(train.n_users).astype(np.int32)
    iw = rng.permutation(train.n_items).astype(np.int32)
    ubin = (np.arange(train.n_users) * B // train.n_users).astype(np.int32)
    ibin = (np.arange(train.n_items) * B // train.n_items).astype(np.int32)

    def layout(chunks):
        out = (np.empty(train.nnz, np.int32), np.empty(train.nnz, np.int32), np.empty(train.nnz, np.float64),
               np.empty(B * B + 1, np.int64))
        K.block_layout(train.users, train.items, train.values, uw, iw, ubin, ibin, B, chunks, *out)
        return out

    one, many = layout(1), layout(n_chunks)
    for a, b in zip(one, many):
        assert a.tobytes() == b.tobytes()
    bu, bi, bv, ptr = one
    blk = ubin[uw[train.users]] * B + ibin[iw[train.items]]
    order = np.argsort(blk, kind="stable")  # input order within each block
    assert np.array_equal(bu, uw[train.users][order]) and np.array_equal(bi, iw[train.items][order])
    assert np.array_equal(bv, train.values[order].astype(np.float64))
    assert np.array_equal(ptr, np.concatenate(([0], np.cumsum(np.bincount(blk, minlength=B * B)))))


@pytest.mark.parametrize("n_chunks", [1, 2, 5])
def test_code_counts_is_a_histogram(n_chunks):
    from fastmf.kernels import sgd as K

    codes = np.random.default_rng(0).integers(0, 40, 1000).astype(np.int32)
    got = K.code_counts(codes, 45, n_chunks)  # codes 40..44 never occur
    assert got.dtype == np.int64 and np.array_equal(got, np.bincount(codes, minlength=45))


def test_shuffle_is_a_seeded_permutation_of_each_block():
    from fastmf.kernels import sgd as K

    ptr = np.array([0, 0, 1, 50, 2000], dtype=np.int64)
    base = np.arange(2000, dtype=np.int32)
    runs = []
    for seed in (1, 1, 2):
        bu, bi, bv = base.copy(), base.copy(), base.astype(np.float32)
        K.shuffle_blocks(bu, bi, bv, ptr, np.uint64(seed), 0)
        for b in range(4):
            s = slice(ptr[b], ptr[b + 1])
            assert sorted(bu[s].tolist()) == base[s].tolist()  # stays inside its block
        assert np.array_equal(bu, bi) and np.array_equal(bu, bv)  # the three arrays move together
        runs.append(bu)
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
    # roughly uniform: each position of the big block takes values from all over the block
    assert abs(np.corrcoef(np.arange(1950), runs[0][50:])[0, 1]) < 0.1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("biases", [True, False])
def test_squared_error_blocks_matches_the_reference(dtype, biases):
    # the exact-loss / validation kernel against the dense reference's residuals, with
    # an empty segment, rows without ratings, and clipping
    from fastmf.kernels import sgd as K
    from fastmf.kernels.predict import predict_codes

    train, _ = planted(m=30, n=20, density=0.3, seed=4, dtype=dtype)
    train = train.subset(train.users != 0)  # user 0 keeps its row but has no rating
    ref = DenseMF.from_ratings(train.astype(np.float64), 3, reg=0.0, biases=biases)
    x = np.random.default_rng(0).standard_normal(ref.n_params).astype(dtype).astype(np.float64)
    E = ref.residuals(x)[train.users, train.items]
    P, Q, b, c = (None if a is None else a.astype(dtype) for a in ref.unpack(x))
    pred = predict_codes(train.users, train.items, P, Q, b, c, ref.mu)
    P[0] = np.nan  # a row without ratings is never read
    bb, cc = (b, c) if biases else (np.zeros(1, dtype), np.zeros(1, dtype))
    seg = np.array([0, 5, 5, train.nnz // 2, train.nnz], dtype=np.int64)
    v = train.values.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    for low, high in ((-np.inf, np.inf), (2.5, 3.5)):
        out = np.empty(len(seg) - 1)
        K.squared_error_blocks(train.users, train.items, train.values, seg, P, Q, bb, cc, float(ref.mu), biases,
                               low, high, out)
        d = v - np.clip(pred, low, high)
        np.testing.assert_allclose(out, [np.sum(d[seg[s]:seg[s + 1]] ** 2) for s in range(len(seg) - 1)], rtol=tol)
        assert out[1] == 0.0
        if low == -np.inf:
            assert abs(out.sum() - float(E @ E)) <= (1e-12 if dtype == np.float64 else 1e-5) * float(E @ E)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_validation_rmse_is_the_rmse_of_the_result(small, dtype):
    # the history's val_rmse (block-laid-out validation set, vectorised scorer) is the
    # clipped RMSE of the returned parameters, as rmse_codes computes it
    train, test = small
    res = sgd(train, 4, dtype=dtype, max_iter=3, validation=test, early_stopping=None, clip=(2.5, 4.0),
              progress=False)
    P, Q, b, c = unpack(res.x, train.n_users, train.n_items, res.rank, res.biases)
    want = rmse_codes(test.users, test.items, test.values.astype(np.float64), P, Q, b, c, res.mu, (2.5, 4.0))
    assert res.history[-1]["val_rmse"] == pytest.approx(want, rel=1e-12 if dtype == np.float64 else 1e-6)


def test_setup_does_not_build_the_item_major_copy(small):
    # SGD needs item counts only: a histogram, not the item-major sort of the ratings
    train, _ = small
    fresh = Ratings.from_codes(train.users, train.items, train.values, train.n_users, train.n_items)
    sgd(fresh, 4, max_iter=1, progress=False)
    assert fresh._item_major is None


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(dtype=np.float64, biases=False, schedule="constant", reshuffle=True),
        dict(schedule="decay", reg_weighting="uniform", reg=1.0, n_blocks=3),
    ],
)
def test_same_seed_bit_identical_whatever_the_thread_count(small, kw):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    train, _ = small
    r1 = sgd(train, 8, max_iter=5, n_threads=1, random_state=7, progress=False, **kw)
    r2 = sgd(train, 8, max_iter=5, n_threads=2, random_state=7, progress=False, **kw)
    assert r1.x.tobytes() == r2.x.tobytes()
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]
    r3 = sgd(train, 8, max_iter=5, n_threads=2, random_state=8, progress=False, **kw)
    assert not np.array_equal(r1.x, r3.x)


# ------------------------------------------------------------------ correctness
@pytest.mark.parametrize("weighting", ["count", "uniform", "sqrt-count"])
@pytest.mark.parametrize("biases", [True, False])
def test_reported_loss_is_the_objective_and_decreases(small, weighting, biases):
    train, _ = small
    reg = {"count": 0.05, "sqrt-count": 0.2, "uniform": 1.0}[weighting]
    res = sgd(train, 4, reg=reg, reg_bias=0.5 * reg, reg_weighting=weighting, biases=biases, dtype=np.float64,
              schedule="constant", learning_rate=0.03, max_iter=30, progress=False, train_loss="exact")
    assert res.train_loss == "exact" and res.nfev == 31  # initial + one pass an epoch
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < 0.7 * losses[0]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(losses, losses[1:]))
    ref = DenseMF(train.to_dense(), train.mask(), 4, reg=reg, reg_bias=0.5 * reg, biases=biases, mu=res.mu,
                  reg_weighting=weighting)
    assert res.fun == pytest.approx(ref.fun(res.x.astype(np.float64)), rel=1e-10)
    assert res.fun == losses[-1]


# ------------------------------------------------------------------ running loss
def test_loss_mode_does_not_change_the_fit(small):
    train, _ = small
    run = sgd(train, 6, max_iter=8, progress=False, random_state=3)
    ex = sgd(train, 6, max_iter=8, progress=False, random_state=3, train_loss="exact")
    assert run.train_loss == "running" and ex.train_loss == "exact"
    assert run.x.tobytes() == ex.x.tobytes()
    assert run.fun == ex.fun  # both exact L at x
    assert run.nfev == 1 and ex.nfev == 9  # running: one exact pass at the end only


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("mode", ["blocked", "hogwild"])
def test_running_loss_is_the_objective_when_parameters_do_not_move(small, biases, mode):
    # with a negligible step every pre-update residual is the residual at x0, so the
    # running loss of epoch 1 must equal L(x0): each rating counted once, factor 1/2, penalty
    train, _ = small
    x0 = sgd(train, 4, biases=biases, dtype=np.float64, max_iter=5, progress=False).x
    res = sgd(train, 4, biases=biases, dtype=np.float64, x0=x0, schedule="constant", learning_rate=1e-12,
              max_iter=1, mode=mode, n_threads=1, progress=False, reg=0.07, reg_bias=0.02)
    ref = DenseMF(train.to_dense(), train.mask(), 4, reg=0.07, reg_bias=0.02, biases=biases, mu=res.mu,
                  reg_weighting="count")
    want = ref.fun(x0)
    assert res.history[0]["loss"] == pytest.approx(want, rel=1e-9)
    assert res.fun == pytest.approx(ref.fun(res.x), rel=1e-12)


def test_running_loss_tracks_the_exact_loss_at_convergence(small):
    train, _ = small
    res = sgd(train, 4, max_iter=150, progress=False, dtype=np.float64, random_state=1)
    ex = sgd(train, 4, max_iter=150, progress=False, dtype=np.float64, random_state=1, train_loss="exact")
    run_l = np.array([h["loss"] for h in res.history])
    ex_l = np.array([h["loss"] for h in ex.history])
    assert res.x.tobytes() == ex.x.tobytes() and res.fun == ex_l[-1]
    # the running loss lags the model (pre-update residuals, SGD noise): above the
    # end-of-epoch loss, by ~10% at epoch 1 and < 1% once converged, shrinking
    rel = (run_l - ex_l) / ex_l
    assert rel[0] > 0.03
    assert np.all((rel[50:] > 0) & (rel[50:] < 0.01))
    assert rel[-1] < 0.004 and rel[-1] < rel[50]


def test_running_loss_is_deterministic(small):
    train, _ = small
    a = sgd(train, 8, max_iter=4, n_threads=1, random_state=5, progress=False, n_blocks=4)
    b = sgd(train, 8, max_iter=4, n_threads=1, random_state=5, progress=False, n_blocks=4)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    if numba.config.NUMBA_NUM_THREADS >= 2:
        c = sgd(train, 8, max_iter=4, n_threads=2, random_state=5, progress=False, n_blocks=4)
        assert [h["loss"] for h in a.history] == [h["loss"] for h in c.history]
        assert a.x.tobytes() == c.x.tobytes()


def test_divergence_guard_running_and_exact_agree(small):
    train, _ = small
    epochs = []
    for tl in ("running", "exact"):
        with pytest.raises(DivergenceError) as info:
            sgd(train, 8, schedule="constant", learning_rate=2.0, max_iter=50, progress=False, train_loss=tl)
        epochs.append(info.value.epoch)
    assert epochs[0] == epochs[1]


def test_recovers_a_planted_low_rank_model():
    train, test = planted(m=200, n=150, k=3, density=0.4, noise=0.1, seed=1)
    res = sgd(train, 3, reg=0.005, max_iter=40, learning_rate=0.1, random_state=0, progress=False)
    assert val_rmse_of(res, train, test) < 0.15  # noise level 0.1
    assert np.std(test.values) > 0.9  # so the bound is far below predicting the mean


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("biases", [True, False])
def test_dtypes_and_packing(small, dtype, biases):
    train, _ = small
    res = sgd(train, 5, dtype=dtype, biases=biases, max_iter=3, progress=False)
    assert res.x.dtype == dtype
    assert res.x.shape == (n_params(train.n_users, train.n_items, 5, biases),)
    assert res.rank == 5 and res.biases is biases
    assert res.mu == (pytest.approx(train.global_mean) if biases else 0.0)
    assert res.nit == 3 and res.status == Status.MAX_ITER and res.success
    assert len(res.history) == 3 and {"loss", "val_rmse", "elapsed", "learning_rate"} <= set(res.history[0])
    assert np.isnan(res.grad_norm)


def test_empty_rows_stay_zero():
    u = np.array([0, 0, 2, 2, 3])
    i = np.array([0, 1, 1, 3, 0])
    r = Ratings.from_codes(u, i, np.array([4.0, 3, 5, 2, 1]), n_users=5, n_items=5)
    res = sgd(r, 2, max_iter=3, n_blocks=2, progress=False)
    P, Q, b, c = unpack(res.x, 5, 5, 2, True)
    assert np.all(P[[1, 4]] == 0) and np.all(Q[[2, 4]] == 0)
    assert np.all(b[[1, 4]] == 0) and np.all(c[[2, 4]] == 0)


def test_schedules_decay_rates(small):
    train, _ = small
    res = sgd(train, 4, schedule="decay", learning_rate=0.02, decay=0.5, max_iter=3, progress=False)
    assert [h["learning_rate"] for h in res.history] == pytest.approx([0.02, 0.02 / 1.5, 0.02 / 2.0])


def test_hogwild_runs_and_learns(small):
    train, test = small
    res = sgd(train, 4, mode="hogwild", max_iter=30, progress=False)
    assert res.mode == "hogwild" and res.n_blocks == 1
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert val_rmse_of(res, train, test) < np.std(test.values)


def test_warm_start_and_inputs_not_modified(small):
    train, _ = small
    before = (train.users.copy(), train.items.copy(), train.values.copy())
    first = sgd(train, 4, max_iter=20, progress=False)
    x0 = first.x.copy()
    warm = sgd(train, 4, max_iter=1, x0=first.x, progress=False)
    cold = sgd(train, 4, max_iter=1, progress=False)
    assert np.array_equal(first.x, x0)
    for a, b in zip(before, (train.users, train.items, train.values)):
        assert np.array_equal(a, b)
    assert warm.fun < cold.fun


# ------------------------------------------------------------------ run interface
def test_divergence_raises_with_advice(small):
    train, _ = small
    with pytest.raises(DivergenceError) as info:
        sgd(train, 8, schedule="constant", learning_rate=50.0, max_iter=10, progress=False)
    msg = str(info.value)
    assert "epoch 1" in msg and "learning_rate=50" in msg and "lower learning_rate" in msg
    assert "schedule='adaptive'" in msg
    assert isinstance(info.value, FloatingPointError) and info.value.epoch == 1


def test_early_stopping_returns_best_parameters():
    train, val = planted(m=80, n=60, k=2, density=0.5, noise=0.5, seed=2)
    res = sgd(train, 20, reg=0.0, learning_rate=0.2, validation=val, early_stopping=3, max_iter=300,
              progress=False, random_state=0)
    assert res.status == Status.EARLY_STOPPING and res.success
    assert res.nit < 300 and res.nit == res.best_iteration + 3
    scores = [h["val_rmse"] for h in res.history]
    assert val_rmse_of(res, train, val) == pytest.approx(min(scores), rel=1e-6)
    # running loss (default): fun is the exact objective at the returned (best) parameters
    ref = DenseMF(train.to_dense(), train.mask(), 20, reg=0.0, mu=res.mu)
    assert res.fun == pytest.approx(ref.fun(res.x.astype(np.float64)), rel=1e-9)
    # exact loss: fun is the best epoch's recorded loss
    ex = sgd(train, 20, reg=0.0, learning_rate=0.2, validation=val, early_stopping=3, max_iter=300,
             progress=False, random_state=0, train_loss="exact")
    assert ex.x.tobytes() == res.x.tobytes()
    assert ex.fun == ex.history[ex.best_iteration - 1]["loss"] == pytest.approx(res.fun, rel=1e-12)


def test_callback_stops_and_sees_records(small):
    train, val = small
    seen = []

    def cb(rec):
        seen.append(rec)
        return rec.iteration == 3

    res = sgd(train, 4, max_iter=10, validation=val, callbacks=[cb], progress=False, train_loss="exact")
    assert res.status == Status.CALLBACK and res.nit == 3 and len(seen) == 3
    assert seen[0]["val_rmse"] is not None and seen[-1].loss == res.fun


def test_tol_stops(small):
    train, _ = small
    res = sgd(train, 4, max_iter=500, tol=1e-3, progress=False)
    assert res.status == Status.FTOL and res.nit < 500


def test_progress_false_prints_nothing(small, capsys):
    train, val = small
    sgd(train, 4, max_iter=3, validation=val, progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


@pytest.mark.parametrize(
    "kw, exc, word",
    [
        (dict(rank=0), ValueError, "rank"),
        (dict(rank=2.5), TypeError, "rank"),
        (dict(reg=-1.0), ValueError, "reg"),
        (dict(reg_bias=float("nan")), ValueError, "reg_bias"),
        (dict(reg_weighting="rows"), ValueError, "reg_weighting"),
        (dict(dtype=np.int32), TypeError, "dtype"),
        (dict(learning_rate=0.0), ValueError, "learning_rate"),
        (dict(schedule="cosine"), ValueError, "schedule"),
        (dict(decay=-0.1), ValueError, "decay"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(n_blocks=0), ValueError, "n_blocks"),
        (dict(mode="async"), ValueError, "mode"),
        (dict(n_threads=0), ValueError, "n_threads"),
        (dict(random_state="a"), TypeError, "random_state"),
        (dict(init_scale=-1.0), ValueError, "init_scale"),
        (dict(x0=np.zeros(3)), ValueError, "x0"),
        (dict(early_stopping=3), ValueError, "validation"),
        (dict(callbacks=[1]), TypeError, "callback"),
        (dict(progress="yes"), TypeError, "progress"),
        (dict(biases=1), TypeError, "biases"),
        (dict(mu=float("inf")), ValueError, "mu"),
        (dict(clip=(5, 1)), ValueError, "clip"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(train_loss="approx"), ValueError, "train_loss"),
        (dict(validation=np.zeros(3)), TypeError, "validation"),
    ],
)
def test_bad_parameters_raise(small, kw, exc, word):
    train, _ = small
    with pytest.raises(exc, match=word):
        sgd(train, **{"progress": False, **kw})


def test_bad_inputs_raise(small):
    train, _ = small
    with pytest.raises(TypeError, match="Ratings"):
        sgd(train.to_scipy())
    other = Ratings.from_codes([0, 1], [0, 1], [1.0, 2.0], n_users=3, n_items=3)
    with pytest.raises(ValueError, match="code space"):
        sgd(train, validation=other, progress=False)


# ------------------------------------------------------------------ real data
def test_ml100k_u1_test_rmse(ml100k_zip):
    from fastmf.data.movielens import load_ml100k_fold
    from fastmf.data.splits import train_test_split

    base, test = load_ml100k_fold("u1", ml100k_zip.parent, download=False)
    inner, val = train_test_split(base, 0.1, random_state=0)
    res = sgd(inner, validation=val, early_stopping=5, max_iter=100, progress=False, clip=True)
    assert res.status == Status.EARLY_STOPPING
    P, Q, b, c = unpack(res.x, base.n_users, base.n_items, res.rank, True)
    rmse = rmse_codes(test.users, test.items, test.values.astype(np.float64), P, Q, b, c, res.mu, (1, 5))
    assert rmse < 0.94
