"""The paired SGD update (``fastmf.kernels.sgd._sgd_range``) against a sequential reference.

The update loop processes ratings ``j`` and ``j + 1`` together when they share neither user nor
item, and ``j`` alone otherwise.  These tests run the kernel on small hand-made blocks holding
both kinds of adjacent pairs and compare it, in float64, with a pure-numpy sequential update
(one rating after the other, the formulas of the module docstring).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastmf.kernels import sgd as K


def reference(bu, bi, bv, P, Q, AU, AI, mu, lr, reg, reg_b, inv_k, use_biases, adaptive):
    """Sequential SGD over the ratings in order (float64 numpy); returns the running loss."""
    acc = 0.0
    for u, i, r in zip(bu, bi, bv):
        p, q = P[u].copy(), Q[i].copy()
        pred = mu + p @ q + ((AU[u, 0] + AI[i, 0]) if use_biases else 0.0)
        e = r - pred
        acc += e * e
        su, si = AU[u, 3], AI[i, 3]
        gp = reg * su * p - e * q
        gq = reg * si * q - e * p
        gb = reg_b * su * AU[u, 0] - e
        gc = reg_b * si * AI[i, 0] - e
        if adaptive:
            P[u] = p - lr / np.sqrt(AU[u, 1]) * gp
            Q[i] = q - lr / np.sqrt(AI[i, 1]) * gq
            AU[u, 1] += (gp @ gp) * inv_k
            AI[i, 1] += (gq @ gq) * inv_k
            if use_biases:
                AU[u, 0] -= lr / np.sqrt(AU[u, 2]) * gb
                AI[i, 0] -= lr / np.sqrt(AI[i, 2]) * gc
                AU[u, 2] += gb * gb
                AI[i, 2] += gc * gc
        else:
            P[u] = p - lr * gp
            Q[i] = q - lr * gq
            if use_biases:
                AU[u, 0] -= lr * gb
                AI[i, 0] -= lr * gc
    return acc


def pairing(bu, bi):
    """``(paired, single)``: how many ratings the pairing rule updates two at a time / alone."""
    paired = single = 0
    j = 0
    while j < len(bu):
        if j + 1 < len(bu) and bu[j + 1] != bu[j] and bi[j + 1] != bi[j]:
            paired += 2
            j += 2
        else:
            single += 1
            j += 1
    return paired, single


def block(k=5, m=6, n=5, seed=0):
    """A 23-rating block whose adjacent pairs are disjoint, share the user, share the item, or
    repeat the same (user, item), and whose last rating is left alone."""
    bu = np.array([0, 1, 2, 2, 3, 4, 4, 4, 5, 0, 1, 3, 3, 2, 5, 1, 0, 0, 4, 2, 3, 5, 1, 1], dtype=np.int32)
    bi = np.array([0, 1, 2, 3, 3, 3, 0, 0, 1, 4, 2, 2, 1, 0, 4, 3, 1, 1, 2, 4, 0, 0, 3, 2], dtype=np.int32)
    bu, bi = bu[:23], bi[:23]  # odd length
    rng = np.random.default_rng(seed)
    bv = rng.uniform(1, 5, bu.size)
    P = rng.normal(0, 0.5, (m, k))
    Q = rng.normal(0, 0.5, (n, k))
    AU = np.ones((m, 4))
    AI = np.ones((n, 4))
    AU[:, 0] = rng.normal(0, 0.3, m)
    AI[:, 0] = rng.normal(0, 0.3, n)
    AU[:, 3] = rng.uniform(0.2, 1.0, m)
    AI[:, 3] = rng.uniform(0.2, 1.0, n)
    return bu, bi, bv, P, Q, AU, AI


ARGS = dict(mu=3.5, lr=0.05, reg=0.3, reg_b=0.2, inv_k=1 / 5)


def test_the_block_exercises_both_paths():
    bu, bi = block()[:2]
    paired, single = pairing(bu, bi)
    assert paired >= 8 and single >= 4, (paired, single)
    # a pair whose second rating shares the user, one that shares the item, one that repeats both
    shares_user = [(bu[j] == bu[j + 1]) and (bi[j] != bi[j + 1]) for j in range(bu.size - 1)]
    shares_item = [(bu[j] != bu[j + 1]) and (bi[j] == bi[j + 1]) for j in range(bu.size - 1)]
    same = [(bu[j] == bu[j + 1]) and (bi[j] == bi[j + 1]) for j in range(bu.size - 1)]
    assert any(shares_user) and any(shares_item) and any(same)


@pytest.mark.parametrize("adaptive", [True, False])
@pytest.mark.parametrize("use_biases", [True, False])
def test_paired_updates_equal_the_sequential_reference(adaptive, use_biases):
    bu, bi, bv, P, Q, AU, AI = block()
    ref = [a.copy() for a in (P, Q, AU, AI)]
    ref_loss = reference(bu, bi, bv, *ref, use_biases=use_biases, adaptive=adaptive, **ARGS)
    a = ARGS
    loss = K._sgd_range(bu, bi, bv, 0, bu.size, P, Q, AU, AI, a["mu"], a["lr"], a["reg"], a["reg_b"], a["inv_k"],
                        use_biases, adaptive)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, atol=0)
    for name, got, want in zip("P Q AU AI".split(), (P, Q, AU, AI), ref):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("adaptive", [True, False])
def test_the_comparison_detects_pairing_a_shared_row(adaptive):
    # the reference must be able to tell: updating two ratings that share a row from the same
    # old rows (what a wrong pairing rule would do) gives a different result than in sequence
    bu = np.array([0, 0], dtype=np.int32)
    bi = np.array([0, 1], dtype=np.int32)
    _, _, bv, P, Q, AU, AI = block()
    bv = bv[:2]
    seq = [a.copy() for a in (P, Q, AU, AI)]
    reference(bu, bi, bv, *seq, use_biases=True, adaptive=adaptive, **ARGS)
    together = [a.copy() for a in (P, Q, AU, AI)]
    stale = [a.copy() for a in (P, Q, AU, AI)]  # both ratings see the rows before either update
    for j in range(2):
        work = [a.copy() for a in stale]
        reference(bu[j:j + 1], bi[j:j + 1], bv[j:j + 1], *work, use_biases=True, adaptive=adaptive, **ARGS)
        together[1][bi[j]] = work[1][bi[j]]
        together[3][bi[j]] = work[3][bi[j]]
    assert np.abs(together[1] - seq[1]).max() > 1e-6 or np.abs(together[3] - seq[3]).max() > 1e-6
    a = ARGS
    got = [x.copy() for x in (P, Q, AU, AI)]
    K._sgd_range(bu, bi, bv, 0, 2, *got, a["mu"], a["lr"], a["reg"], a["reg_b"], a["inv_k"], True, adaptive)
    for g, w in zip(got, seq):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("adaptive", [True, False])
def test_epoch_kernels_run_the_paired_update_on_every_block(adaptive):
    # the blocked and the Hogwild epoch kernels (which link their own copy of _sgd_range,
    # see bind_update) on two blocks / chunks that each hold both kinds of pairs
    bu, bi, bv, P, Q, AU, AI = block()
    bu2, bi2 = bu + 6, bi + 5  # a second block on other rows (a stratum of two blocks)
    BU = np.concatenate([bu, bu2])
    BI = np.concatenate([bi, bi2])
    BV = np.concatenate([bv, bv[::-1]])
    P2 = np.concatenate([P, P[::-1] * 0.5])
    Q2 = np.concatenate([Q, -Q])
    AU2 = np.concatenate([AU, AU])
    AI2 = np.concatenate([AI, AI])
    ptr = np.array([0, bu.size, 2 * bu.size], dtype=np.int64)
    ref = [x.copy() for x in (P2, Q2, AU2, AI2)]
    ref_loss = reference(BU, BI, BV, *ref, use_biases=True, adaptive=adaptive, **ARGS)
    a = ARGS
    # two blocks of the 2x2 grid on the diagonal: stratum 0 = blocks 0 and 3
    bptr = np.array([0, bu.size, bu.size, bu.size, 2 * bu.size], dtype=np.int64)
    schedule = np.array([[0, 3], [1, 2]], dtype=np.int64)
    for kernel in ("blocked", "hogwild"):
        got = [x.copy() for x in (P2, Q2, AU2, AI2)]
        out = np.zeros(4 if kernel == "blocked" else 2)
        K.bind_update(BU, BI, BV, *got, a["mu"], a["lr"], a["reg"], a["reg_b"], a["inv_k"], True, adaptive)
        if kernel == "blocked":
            K.sgd_epoch_blocked(BU, BI, BV, bptr, schedule, *got, a["mu"], a["lr"], a["reg"], a["reg_b"],
                                a["inv_k"], True, adaptive, out)
        else:
            K.sgd_epoch_hogwild(BU, BI, BV, ptr, *got, a["mu"], a["lr"], a["reg"], a["reg_b"], a["inv_k"], True,
                                adaptive, out)
        np.testing.assert_allclose(out.sum(), ref_loss, rtol=1e-12)
        for g, w in zip(got, ref):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=kernel)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("adaptive, use_biases", [(True, True), (True, False), (False, True)])
def test_paired_range_is_bit_identical_to_one_rating_at_a_time(dtype, adaptive, use_biases):
    """The pair path's claim, bit for bit: ``_sgd_range`` over a whole range (mostly pairs, some
    adjacent ratings sharing a user or an item) leaves the same bits as calling it on each rating
    alone (the single path), at ranks that fill, and do not fill, a SIMD register."""
    rng = np.random.default_rng(1)
    m, n, nnz = 300, 200, 3000
    for k in (8, 13, 32):
        bu = rng.integers(0, m, nnz).astype(np.int32)
        bi = rng.integers(0, n, nnz).astype(np.int32)
        bu[5::7] = bu[4::7][: bu[5::7].size]  # shared users between neighbours
        bi[10::11] = bi[8::11][: bi[10::11].size]
        bi[9::11] = bi[8::11][: bi[9::11].size]  # shared items between neighbours
        bv = rng.uniform(1, 5, nnz).astype(dtype)
        P = rng.normal(0, 0.3, (m, k)).astype(dtype)
        Q = rng.normal(0, 0.3, (n, k)).astype(dtype)
        AU = np.ones((m, 4), dtype)
        AI = np.ones((n, 4), dtype)
        AU[:, 0] = rng.normal(0, 0.1, m)
        AI[:, 0] = rng.normal(0, 0.1, n)
        AU[:, 3] = rng.uniform(0.2, 1, m)
        AI[:, 3] = rng.uniform(0.2, 1, n)
        args = (dtype(3.5), dtype(0.05), dtype(0.3), dtype(0.2), dtype(1 / k), use_biases, adaptive)
        whole = [a.copy() for a in (P, Q, AU, AI)]
        loss_whole = K._sgd_range(bu, bi, bv, 0, nnz, *whole, *args)
        single = [a.copy() for a in (P, Q, AU, AI)]
        loss_single = 0.0
        for j in range(nnz):
            loss_single += K._sgd_range(bu, bi, bv, j, j + 1, *single, *args)
        for a, b in zip(whole, single):
            np.testing.assert_array_equal(a, b)
        assert abs(loss_whole - loss_single) <= 1e-9 * loss_single  # summed in another grouping
        assert not np.array_equal(whole[0], P)  # the updates ran
