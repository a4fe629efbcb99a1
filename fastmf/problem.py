r"""The matrix-factorization problem specification shared by every solver and backend.

:class:`MFProblem` says *which* objective is minimised (or sampled), independently of the
data and of the algorithm:

.. math::

    L = \tfrac12 \sum_\Omega \ell(r_{ui}, \mu + b_u + c_i + p_u^\top q_i)
        + \tfrac12 \lambda \Big(\sum_u w_u \|p_u\|^2 + \sum_i w_i \|q_i\|^2\Big)
        + \tfrac12 \lambda_b \Big(\sum_u w_u b_u^2 + \sum_i w_i c_i^2\Big)

with the row weights :math:`w = n^{\alpha}` of :mod:`fastmf._weights`.  It replaces the
attribute probing of an objective (``getattr(objective, "reg_weighting", "uniform")``...)
and ``preconditioners.ProblemStructure``: a solver receives a validated ``MFProblem``.

Defaults
--------
Every default is declared here, once.  :data:`DEFAULTS` holds the objective's own
(those of :class:`fastmf.objective.MFObjective`); :data:`SOLVER_DEFAULTS` the solvers that
differ from it, visibly:

=========== ======= ================= ==================================================
solver      reg     reg_weighting     why
=========== ======= ================= ==================================================
newton, als 0.1     ``"uniform"``     :class:`~fastmf.objective.MFObjective`'s defaults
sgd         0.05    ``"count"``       the per-update SGD regulariser (Funk, LIBMF)
gibbs       --      ``"uniform"``     the prior precisions are sampled: no penalty
estimator   0.1     ``"count"``       ALS-WR weighting, best of the ml-100k folds
=========== ======= ================= ==================================================
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np

from ._packing import n_params as _n_params
from ._packing import unpack as _unpack
from ._validation import check_choice, check_dtype, check_nonnegative_float, check_positive_int
from ._weights import reg_exponent, row_weights

__all__ = ["MFProblem", "DEFAULTS", "SOLVER_DEFAULTS", "solver_default", "LOSSES"]

LOSSES = ("squared", "sign")

#: The objective's defaults (MFObjective's, and the solver functions' unless overridden below).
DEFAULTS = {"rank": 32, "biases": True, "reg": 0.1, "reg_bias": None, "reg_weighting": "uniform",
            "loss": "squared", "mu": None, "dtype": np.float32}

#: Per-solver overrides of :data:`DEFAULTS` (the solver functions' defaults).  ``"estimator"``
#: holds :class:`fastmf.model.MatrixFactorization`'s, which differ from every solver function's.
SOLVER_DEFAULTS: dict[str, dict] = {
    "newton": {},
    "als": {},
    "sgd": {"reg": 0.05, "reg_weighting": "count"},
    "gibbs": {},
    "estimator": {"reg_weighting": "count"},
}


def solver_default(solver: str, name: str):
    """The default of problem parameter ``name`` for ``solver`` (a key of :data:`SOLVER_DEFAULTS`)."""
    return SOLVER_DEFAULTS.get(solver, {}).get(name, DEFAULTS[name])


@dataclass(frozen=True)
class MFProblem:
    """A validated MF objective: what is minimised, not how.

    Parameters
    ----------
    rank : int >= 1
    biases : bool
    reg, reg_bias : float >= 0
        Penalty on factors and biases (``reg_bias=None`` means ``reg``; resolved on creation).
    reg_weighting : {"uniform", "sqrt-count", "count"} or float >= 0
        Row weights (:mod:`fastmf._weights`).
    loss : {"squared", "sign"}
    mu : float or None
        Global offset; ``None`` until bound to training ratings (:meth:`bind`).
    dtype : numpy dtype (float32 or float64)
        Storage and arithmetic dtype of the parameters.
    n_users, n_items : int or None
        Set by :meth:`bind`.
    """

    rank: int = DEFAULTS["rank"]
    biases: bool = DEFAULTS["biases"]
    reg: float = DEFAULTS["reg"]
    reg_bias: float | None = DEFAULTS["reg_bias"]
    reg_weighting: str | float = DEFAULTS["reg_weighting"]
    loss: str = DEFAULTS["loss"]
    mu: float | None = DEFAULTS["mu"]
    dtype: np.dtype = np.dtype(DEFAULTS["dtype"])
    n_users: int | None = None
    n_items: int | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "rank", check_positive_int(self.rank, "rank"))
        if not isinstance(self.biases, (bool, np.bool_)):
            raise TypeError(f"biases must be a bool, got {self.biases!r}")
        set_(self, "biases", bool(self.biases))
        set_(self, "reg", check_nonnegative_float(self.reg, "reg"))
        set_(self, "reg_bias", self.reg if self.reg_bias is None else check_nonnegative_float(self.reg_bias, "reg_bias"))
        reg_exponent(self.reg_weighting)
        check_choice(self.loss, "loss", set(LOSSES))
        set_(self, "dtype", np.dtype(check_dtype(self.dtype)))
        if self.mu is not None:
            mu = self.mu
            if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not math.isfinite(float(mu)):
                raise ValueError(f"mu must be None or a finite real number, got {mu!r}")
            set_(self, "mu", float(mu))

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_solver(cls, solver: str, **params) -> "MFProblem":
        """An ``MFProblem`` with ``solver``'s defaults (:data:`SOLVER_DEFAULTS`) for missing parameters."""
        merged = {**DEFAULTS, **SOLVER_DEFAULTS.get(solver, {}), **params}
        return cls(**merged)

    @classmethod
    def from_objective(cls, objective) -> "MFProblem":
        """The problem an :class:`fastmf.objective.MFObjective` minimises, bound to its ratings."""
        return cls(rank=objective.rank, biases=objective.biases, reg=objective.reg, reg_bias=objective.reg_bias,
                   reg_weighting=objective.reg_weighting, loss=objective.loss, mu=objective.mu,
                   dtype=objective.dtype, n_users=objective.n_users, n_items=objective.n_items)

    def bind(self, ratings) -> "MFProblem":
        """This problem on ``ratings``: shape set, ``mu`` resolved (the training mean with biases and
        the squared loss, else 0, unless given)."""
        mu = self.mu
        if mu is None:
            mu = float(ratings.global_mean) if (self.biases and self.loss == "squared") else 0.0
        return dataclasses.replace(self, mu=float(mu), n_users=int(ratings.n_users), n_items=int(ratings.n_items))

    # ------------------------------------------------------------------ derived
    @property
    def n_params(self) -> int:
        return _n_params(self.n_users, self.n_items, self.rank, self.biases)

    @property
    def block_size(self) -> int:
        """``K``: unknowns per row (``rank`` plus one with biases)."""
        return self.rank + (1 if self.biases else 0)

    def unpack(self, x):
        """Views ``(P, Q, b, c)`` of a packed parameter vector (needs a bound problem)."""
        return _unpack(x, self.n_users, self.n_items, self.rank, self.biases)

    def row_weights(self, user_counts, item_counts, dtype=None) -> tuple[np.ndarray, np.ndarray]:
        """Penalty weights ``(w_u, w_i)`` for rating counts (float64, or ``dtype``)."""
        wu = row_weights(user_counts, self.reg_weighting)
        wi = row_weights(item_counts, self.reg_weighting)
        if dtype is not None:
            wu, wi = wu.astype(dtype), wi.astype(dtype)
        return wu, wi
