"""fastmf: Numba-accelerated sparse solvers for matrix factorization of explicit ratings.

Main entry points::

    fastmf.Ratings                  the rating container (COO sorted by user = CSR, item-major copy)
    fastmf.load_movielens(name)     MovieLens readers (ml-100k ... ml-32m, ml-latest-small bundled)
    fastmf.MatrixFactorization      the estimator: fit / predict / recommend / save / load
    fastmf.MFObjective              loss / gradient / Hessian-vector products for scipy.optimize
    fastmf.reference                the dense numpy oracle
    fastmf.datasets                 synthetic MovieLens-shaped data, readers, splits
"""

from . import _threading  # noqa: F401  (first: pins numba's threading layer before any kernel compiles)
from . import datasets, metrics, model_selection, reference
from .data.movielens import load_ml100k_fold, load_movielens, load_ratings_file
from .data.ratings import Ratings
from .data.splits import per_user_split, temporal_split, train_test_split
from .data.convert import as_ratings
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
from .model import MatrixFactorization
from .objective import MFObjective
from .problem import MFProblem
from ._warmup import warmup

__version__ = "0.1.0"

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
