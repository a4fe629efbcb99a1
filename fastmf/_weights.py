r"""Per-row regularisation weights: :math:`w_r = n_r^{\alpha}`.

Every model in fastmf penalises row :math:`r` (a user or an item) with
:math:`\tfrac12 \lambda w_r \lVert p_r\rVert^2` (and :math:`\tfrac12 \lambda_b w_r b_r^2`),
where :math:`n_r` is the row's number of training ratings and

==================  =====================  ==========================================
``reg_weighting``   :math:`w_r`            note
==================  =====================  ==========================================
``"uniform"``       :math:`1`              the textbook penalty
``"sqrt-count"``    :math:`\sqrt{n_r}`     best on the ml-100k folds (see README)
``"count"``         :math:`n_r`            ALS-WR (Zhou et al. 2008); the SGD update
a float α >= 0      :math:`n_r^{\alpha}`   the general form (0 and 1 as above)
==================  =====================  ==========================================

A row without ratings gets :math:`w_r = 0` for α > 0 (its parameters then only enter
the penalty-free part of the loss, where their gradient is zero).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["REG_WEIGHTINGS", "reg_exponent", "row_weights", "describe_weighting"]

#: Named weightings and their exponents.
REG_WEIGHTINGS = {"uniform": 0.0, "sqrt-count": 0.5, "count": 1.0}


def reg_exponent(reg_weighting, name: str = "reg_weighting") -> float:
    """Validate ``reg_weighting`` and return its exponent α.

    Raises
    ------
    TypeError
        Neither a string nor a real number (booleans included).
    ValueError
        An unknown name, or a number that is negative or not finite.
    """
    if isinstance(reg_weighting, str):
        if reg_weighting not in REG_WEIGHTINGS:
            raise ValueError(
                f"{name} must be one of {sorted(REG_WEIGHTINGS)} or an exponent >= 0, got {reg_weighting!r}"
            )
        return REG_WEIGHTINGS[reg_weighting]
    if isinstance(reg_weighting, (bool, np.bool_)) or not isinstance(reg_weighting, numbers.Real):
        raise TypeError(f"{name} must be a name ({sorted(REG_WEIGHTINGS)}) or a real exponent, got {reg_weighting!r}")
    a = float(reg_weighting)
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"{name} exponent must be finite and >= 0, got {reg_weighting!r}")
    return a


def row_weights(counts, reg_weighting) -> np.ndarray:
    r"""Weights :math:`w_r = n_r^{\alpha}` (float64) for rating counts ``counts``."""
    a = reg_exponent(reg_weighting)
    c = np.asarray(counts, dtype=np.float64)
    if a == 0.0:
        return np.ones_like(c)
    if a == 1.0:
        return c.copy()
    return np.power(c, a)


def describe_weighting(reg_weighting) -> str:
    """Short text for messages: ``"uniform"``, ``"count"``, ``"count^0.3"``..."""
    if isinstance(reg_weighting, str):
        return reg_weighting
    return f"count^{reg_exponent(reg_weighting):g}"
