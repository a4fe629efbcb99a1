"""fastmf: Numba-accelerated sparse solvers for matrix factorization of explicit ratings.

Main entry points::

    fastmf.Ratings                  the rating container (COO sorted by user = CSR, item-major copy)
    fastmf.load_movielens(name)     MovieLens readers (ml-100k ... ml-32m, ml-latest-small bundled)
    fastmf.MatrixFactorization      the estimator: fit / predict / recommend / save / load
    fastmf.MFObjective              loss / gradient / Hessian-vector products for scipy.optimize
    fastmf.reference                the dense numpy oracle
    fastmf.datasets                 synthetic MovieLens-shaped data, readers, splits

Everything but the exceptions is imported on first access (PEP 562 ``__getattr__``), so
``import fastmf`` does not import pandas, pyarrow, scipy or the kernels: a command or a
script pays only for the modules it uses (``fastmf fit`` never imports pandas or scipy).
"""

from . import _threading  # noqa: F401  (first: pins numba's threading layer before any kernel compiles)
from .exceptions import (
    ConvergenceWarning,
    DivergenceError,
    FastMFDeprecationWarning,
    FitMemoryError,
    ForkedOpenMPError,
    NotFittedError,
    UnknownIdWarning,
    WorkerLostError,
)
from ._lazy import lazy_attributes

__version__ = "0.1.0"

#: public name -> (module, attribute or None for the module itself), imported on first access
_LAZY = {
    "datasets": (".datasets", None),
    "metrics": (".metrics", None),
    "model_selection": (".model_selection", None),
    "reference": (".reference", None),
    "load_ml100k_fold": (".data.movielens", "load_ml100k_fold"),
    "load_movielens": (".data.movielens", "load_movielens"),
    "load_ratings_file": (".data.movielens", "load_ratings_file"),
    "Ratings": (".data.ratings", "Ratings"),
    "per_user_split": (".data.splits", "per_user_split"),
    "temporal_split": (".data.splits", "temporal_split"),
    "train_test_split": (".data.splits", "train_test_split"),
    "as_ratings": (".data.convert", "as_ratings"),
    "MatrixFactorization": (".model", "MatrixFactorization"),
    "MFObjective": (".objective", "MFObjective"),
    "MFProblem": (".problem", "MFProblem"),
    "warmup": ("._warmup", "warmup"),
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "ConvergenceWarning",
    "DivergenceError",
    "FastMFDeprecationWarning",
    "FitMemoryError",
    "ForkedOpenMPError",
    "MFObjective",
    "MFProblem",
    "MatrixFactorization",
    "NotFittedError",
    "UnknownIdWarning",
    "WorkerLostError",
    "as_ratings",
    "metrics",
    "model_selection",
    "Ratings",
    "datasets",
    "load_ml100k_fold",
    "load_movielens",
    "load_ratings_file",
    "per_user_split",
    "reference",
    "temporal_split",
    "train_test_split",
    "warmup",
    "__version__",
]
