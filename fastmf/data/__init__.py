"""Rating data: the ``Ratings`` container, MovieLens readers, splits and synthetic data."""

from .ratings import Ratings

__all__ = ["Ratings"]
