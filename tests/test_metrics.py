"""fastmf.metrics: accuracy and ranking metrics against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastmf.data.ratings import Ratings
from fastmf.metrics import (
    mae,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    relevant_items,
    rmse,
)


def test_rmse_mae_hand_values():
    t = [1.0, 2.0, 3.0, 4.0]
    p = [1.0, 3.0, 1.0, 4.0]
    assert rmse(t, p) == pytest.approx(math.sqrt((0 + 1 + 4 + 0) / 4))
    assert mae(t, p) == pytest.approx((0 + 1 + 2 + 0) / 4)
    assert rmse(t, t) == 0.0


@pytest.mark.parametrize("fn", [rmse, mae])
def test_accuracy_bad_input(fn):
    with pytest.raises(ValueError, match="different lengths"):
        fn([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="NaN"):
        fn([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        fn([[1.0]], [[1.0]])


def test_ranking_hand_values():
    rec = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    rel = [{2, 4, 99}, {5}, set()]  # third user has nothing relevant: skipped
    # user 0: hits at ranks 2 and 4 ; user 1: hit at rank 1
    assert precision_at_k(rec, rel, k=4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert recall_at_k(rec, rel, k=4) == pytest.approx((2 / 3 + 1 / 1) / 2)
    dcg0 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(rec, rel, k=4) == pytest.approx((dcg0 / idcg0 + 1.0) / 2)
    # k smaller than the list
    assert precision_at_k(rec, rel, k=1) == pytest.approx((0 + 1) / 2)
    assert ndcg_at_k(np.array(rec), rel, k=2) == pytest.approx(((1 / math.log2(3)) / (1 + 1 / math.log2(3)) + 1) / 2)


def test_ranking_perfect_and_empty():
    rec = [["a", "b", "c"]]
    assert ndcg_at_k(rec, [["a", "b"]], k=3) == pytest.approx(1.0)
    assert recall_at_k(rec, [["a", "b"]], k=3) == 1.0
    assert math.isnan(precision_at_k(rec, [[]], k=3))


def test_ranking_bad_input():
    with pytest.raises(ValueError, match="users"):
        precision_at_k([[1, 2]], [{1}, {2}], k=2)
    with pytest.raises(ValueError, match="2-D"):
        precision_at_k(np.array([1, 2, 3]), [{1}], k=2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        ndcg_at_k([[1]], [{1}], k=0)
    with pytest.raises(TypeError):
        recall_at_k([[1]], [{1}], k=1.5)


def test_relevant_items_threshold():
    r = Ratings.from_arrays(["u1", "u1", "u2", "u3"], [10, 11, 10, 12], [5.0, 3.0, 4.0, 1.0])
    rel = relevant_items(r, threshold=4.0)
    assert set(rel) == {"u1", "u2"}
    assert rel["u1"].tolist() == [10] and rel["u2"].tolist() == [10]
    allrel = relevant_items(r, threshold=None)
    assert sorted(allrel["u1"].tolist()) == [10, 11]
    with pytest.raises(TypeError):
        relevant_items([1, 2, 3])


def test_ranking_metrics_of_a_model():
    """A model whose recommendations are fixed by construction: precision is exact."""
    from fastmf.model import MatrixFactorization

    # 2 users, 5 items; items scored by item bias only (zero factors): order 4 > 3 > 2 > 1 > 0
    m = MatrixFactorization(rank=1)
    m.user_factors_ = np.zeros((2, 1))
    m.item_factors_ = np.zeros((5, 1))
    m.user_biases_ = np.zeros(2)
    m.item_biases_ = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    m.global_mean_ = 3.0
    m.user_ids_ = np.array([0, 1])
    m.item_ids_ = np.array([100, 101, 102, 103, 104])
    m.rating_scale_ = (1.0, 5.0)
    m.seen_indptr_ = np.array([0, 1, 1], dtype=np.int64)  # user 0 saw item 104
    m.seen_items_ = np.array([4], dtype=np.int32)
    test = Ratings.from_arrays([0, 0, 1, 7], [103, 100, 104, 104], [5.0, 5.0, 4.5, 5.0])
    out = ranking_metrics(m, test, k=2, threshold=4.0)
    # user 0 gets [103, 102] (104 seen): 1 hit of 2 relevant; user 1 gets [104, 103]: 1 hit of 1
    assert out["n_users"] == 2 and out["n_users_unknown"] == 1
    assert out["precision"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert out["recall"] == pytest.approx((1 / 2 + 1) / 2)
