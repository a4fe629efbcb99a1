"""Input checks and conversions, in one place.

Every public entry point validates here, once, in Python; numba kernels assume
valid input.  Each check raises a ``ValueError`` or ``TypeError`` that names the
problem and, for arrays, the first offending position.  Nothing here modifies an
array it is given.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_dtype",
    "check_ratings_values",
    "check_raw_ids",
    "check_rating_scale",
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
    infinite values, values that overflow ``dtype`` (``1e39`` in float32), a
    malformed ``rating_scale`` or values outside ``rating_scale = (low, high)``.
    """
    scale = check_rating_scale(rating_scale)
    arr = as_1d(values, name)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":  # integers are always finite
        finite = np.isfinite(arr)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{name} contain NaN or inf: first at row {row} (value {_scalar(arr[row])!r})")
    with np.errstate(over="ignore"):
        out = np.array(arr, dtype=dtype, copy=True)
    # finite input overflows only a narrower float (float64 -> float32; any integer fits float32)
    may_overflow = arr.dtype.kind == "f" and arr.dtype.itemsize > np.dtype(dtype).itemsize
    overflow = ~np.isfinite(out) if may_overflow else None
    if overflow is not None and overflow.any():
        row = int(np.flatnonzero(overflow)[0])
        raise ValueError(f"{name} overflow {np.dtype(dtype).name}: first at row {row} (value {_scalar(arr[row])!r}); "
                         "use dtype=np.float64 or rescale the ratings")
    if scale is not None:
        low, high = scale
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

    Delegates to :func:`fastmf.data.ids.raw_ids`, the one rule for raw ids
    (non-negative int64-representable integers or strings, never mixed; see there).
    """
    from .data.ids import raw_ids  # ids imports this module

    return raw_ids(ids, name)


def check_rating_scale(rating_scale, name: str = "rating_scale") -> tuple[float, float] | None:
    """``None`` or ``(low, high)`` as two finite floats with ``low < high``; else ``ValueError``."""
    if rating_scale is None:
        return None
    if isinstance(rating_scale, (str, bytes)) or not hasattr(rating_scale, "__len__") or len(rating_scale) != 2:
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {rating_scale!r}")
    low, high = rating_scale
    for v in (low, high):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise ValueError(f"{name} must be a (low, high) pair of numbers, got {rating_scale!r}")
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} must be finite, got {rating_scale!r}")
    if not low < high:
        raise ValueError(f"{name} must be (low, high) with low < high, got {rating_scale!r}")
    return (low, high)


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
