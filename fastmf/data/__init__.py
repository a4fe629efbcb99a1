"""Rating data: the ``Ratings`` container, MovieLens readers, splits and synthetic data.

The synthetic generator is public as :func:`fastmf.datasets.synthetic`; it is not
re-exported here because the function would shadow the submodule
``fastmf.data.synthetic``.  The names below are imported on first access, so that
importing one submodule (``fastmf.data.ratings``) does not import the readers (pyarrow).
"""

import importlib

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

#: public name -> submodule holding it
_LAZY = {
    "Ratings": ".ratings",
    "load_movielens": ".movielens",
    "load_ml100k_fold": ".movielens",
    "load_ratings_file": ".movielens",
    "Split": ".splits",
    "train_test_split": ".splits",
    "per_user_split": ".splits",
    "temporal_split": ".splits",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
