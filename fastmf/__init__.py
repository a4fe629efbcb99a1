"""fastmf: Numba-accelerated sparse solvers for matrix factorization of explicit ratings."""

from .data.ratings import Ratings

__version__ = "0.1.0"

__all__ = ["Ratings", "__version__"]
