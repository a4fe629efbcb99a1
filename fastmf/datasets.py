"""Public data sets: MovieLens readers and MovieLens-shaped synthetic data.

A thin re-export of :mod:`fastmf.data.movielens`, :mod:`fastmf.data.synthetic`
and :mod:`fastmf.data.splits`::

    from fastmf.datasets import load_movielens, synthetic, synthetic_preset
    ratings = load_movielens("ml-latest-small")          # bundled, offline
    big = synthetic_preset("ml-25m", random_state=0)       # 25M ratings in seconds
"""

from __future__ import annotations

from .data.movielens import (
    ML100K_FOLDS,
    MOVIELENS_DATASETS,
    cache_dir,
    load_ml100k_fold,
    load_movielens,
    load_ratings_file,
)
from .data.splits import Split, per_user_split, temporal_split, train_test_split
from .data.synthetic import PRESETS, synthetic, synthetic_preset

__all__ = [
    "ML100K_FOLDS",
    "MOVIELENS_DATASETS",
    "PRESETS",
    "Split",
    "cache_dir",
    "load_ml100k_fold",
    "load_movielens",
    "load_ratings_file",
    "per_user_split",
    "synthetic",
    "synthetic_preset",
    "temporal_split",
    "train_test_split",
]
