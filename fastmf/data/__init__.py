"""Rating data: the ``Ratings`` container, MovieLens readers, splits and synthetic data."""

from .ratings import Ratings
from .movielens import load_ml100k_fold, load_movielens, load_ratings_file
from .splits import Split, per_user_split, temporal_split, train_test_split
from .synthetic import PRESETS, synthetic, synthetic_preset

__all__ = [
    "Ratings",
    "load_movielens",
    "load_ml100k_fold",
    "load_ratings_file",
    "Split",
    "train_test_split",
    "per_user_split",
    "temporal_split",
    "synthetic",
    "synthetic_preset",
    "PRESETS",
]
