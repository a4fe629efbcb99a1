"""Input checks and conversions, in one place.

Every public entry point validates here, once, in Python; numba kernels assume
valid input.  Each check raises a ``ValueError`` or ``TypeError`` that names the
problem and, for arrays, the first offending position.  Nothing here modifies an
array it is given.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

__all__ = [
    "check_dtype",
    "check_ratings_values",
    "check_raw_ids",
    "check_positive_int",
    "check_nonnegative_float",
    "check_choice",
    "check_random_state",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _scalar(x):
    """A numpy scalar as a plain Python value, so messages read ``2.5``, not ``np.float64(2.5)``."""
    return x.item() if isinstance(x, np.generic) else x


def check_dtype(dtype, name: str = "dtype") -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise ``TypeError``."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be np.float32 or np.float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be np.float32 or np.float64, got {dt}")
    return dt


def as_1d(values, name: str) -> np.ndarray:
    """View ``values`` as a 1-D numpy array (no copy when possible)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def check_ratings_values(values, dtype, rating_scale=None, name: str = "ratings") -> np.ndarray:
    """Convert ratings to ``dtype`` (a new array) after checking them.

    Raises ``TypeError`` for non-numeric ratings and ``ValueError`` for NaN or
    infinite values or values outside ``rating_scale = (low, high)``.
    """
    arr = as_1d(values, name)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    finite = np.isfinite(arr)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} contain NaN or inf: first at row {row} (value {_scalar(arr[row])!r})")
    out = np.array(arr, dtype=dtype, copy=True)
    if rating_scale is not None:
        low, high = rating_scale
        if not low < high:
            raise ValueError(f"rating_scale must be (low, high) with low < high, got {rating_scale!r}")
        bad = (arr < low) | (arr > high)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} outside the declared rating_scale {tuple(rating_scale)}: "
                f"first at row {row} (value {_scalar(arr[row])!r})"
            )
    return out


def check_raw_ids(ids, name: str) -> np.ndarray:
    """Check raw user or item ids; return an array safe to factorize.

    Integer ids must be non-negative; float ids must be finite whole numbers
    (they are converted to int64); strings and other hashables are accepted.
    Booleans are refused.
    """
    arr = as_1d(ids, name)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} must be integers or strings, got booleans")
    if kind in "iu":
        if kind == "i" and arr.size and arr.min() < 0:
            row = int(np.flatnonzero(arr < 0)[0])
            raise ValueError(f"{name} must be non-negative: first negative id at row {row} (value {_scalar(arr[row])!r})")
        return arr
    if kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{name} contain NaN or inf: first at row {row}")
        frac = arr != np.floor(arr)
        if frac.any():
            row = int(np.flatnonzero(frac)[0])
            raise ValueError(f"{name} must be whole numbers: first non-integer id at row {row} (value {_scalar(arr[row])!r})")
        if arr.size and arr.min() < 0:
            row = int(np.flatnonzero(arr < 0)[0])
            raise ValueError(f"{name} must be non-negative: first negative id at row {row} (value {_scalar(arr[row])!r})")
        return arr.astype(np.int64)
    if kind in "OUS":
        if kind == "O":
            # None / NaN inside object arrays are missing ids, not ids.
            # pd.isna catches None, float NaN, pd.NA and NaT (a per-element Python loop missed pd.NA,
            # which pandas' factorize then coded as -1).
            missing = np.asarray(pd.isna(arr), dtype=bool)
            if missing.any():
                row = int(np.flatnonzero(missing)[0])
                raise ValueError(f"{name} contain a missing value (None/NaN): first at row {row}")
        return arr
    raise TypeError(f"{name} must be integers or strings, got dtype {arr.dtype}")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as ``int`` if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_nonnegative_float(value, name: str, strictly_positive: bool = False) -> float:
    """Return ``value`` as ``float`` if it is a finite real >= 0 (> 0 if ``strictly_positive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if strictly_positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def check_choice(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)!r}, got {value!r}")
    return value


def check_random_state(seed) -> np.random.Generator:
    """Turn ``None``, an int or a Generator into a ``np.random.Generator``."""
    if seed is None or isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(seed, bool):
            raise TypeError("random_state must be None, an int or a numpy Generator, got a bool")
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    raise TypeError(f"random_state must be None, an int or a numpy Generator, got {type(seed).__name__}")
