"""Rating data: the ``Ratings`` container, MovieLens readers, splits and synthetic data.

The synthetic generator is public as :func:`fastmf.datasets.synthetic`; it is not
re-exported here because the function would shadow the submodule
``fastmf.data.synthetic``.
"""

from .ratings import Ratings
from .movielens import load_ml100k_fold, load_movielens, load_ratings_file
from .splits import Split, per_user_split, temporal_split, train_test_split

__all__ = [
    "Ratings",
    "load_movielens",
    "load_ml100k_fold",
    "load_ratings_file",
    "Split",
    "train_test_split",
    "per_user_split",
    "temporal_split",
]
