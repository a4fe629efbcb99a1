"""Deprecated solver-layer names, kept for one release (see the module ``__getattr__`` hooks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._packing import unpack
from .._weights import row_weights

@dataclass
class ProblemStructure:
    """What a preconditioner (or ALS) needs to know about the objective.

    Attributes
    ----------
    ratings : Ratings
        Training ratings, already in ``dtype``.
    rank, biases, reg, reg_bias, reg_weighting, loss, dtype, mu
        As in :class:`fastmf.objective.MFObjective` (``reg_bias`` resolved).
    """

    ratings: object
    rank: int
    biases: bool
    reg: float
    reg_bias: float
    reg_weighting: str
    loss: str
    dtype: np.dtype
    mu: float

    @classmethod
    def from_objective(cls, objective) -> "ProblemStructure":
        """Read the structure from an :class:`MFObjective` (or any object exposing
        ``ratings, rank, biases, reg, reg_bias, reg_weighting, loss, dtype, mu``)."""
        missing = [
            name
            for name in ("ratings", "rank", "biases", "reg", "dtype", "mu")
            if not hasattr(objective, name)
        ]
        if missing:
            raise TypeError(
                f"objective {type(objective).__name__} does not expose {missing}; "
                "a preconditioned Newton-CG needs an MFObjective-like object"
            )
        reg = float(objective.reg)
        reg_bias = getattr(objective, "reg_bias", None)
        ratings = objective.ratings
        dtype = np.dtype(objective.dtype)
        if ratings.dtype != dtype:
            ratings = ratings.astype(dtype)
        return cls(
            ratings=ratings,
            rank=int(objective.rank),
            biases=bool(objective.biases),
            reg=reg,
            reg_bias=reg if reg_bias is None else float(reg_bias),
            reg_weighting=getattr(objective, "reg_weighting", "uniform"),
            loss=getattr(objective, "loss", "squared"),
            dtype=dtype,
            mu=float(objective.mu),
        )

    @property
    def n_users(self) -> int:
        return self.ratings.n_users

    @property
    def n_items(self) -> int:
        return self.ratings.n_items

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Regularisation weights ``(w_u, w_i)`` in ``dtype`` (:func:`fastmf._weights.row_weights`)."""
        return (row_weights(self.ratings.user_counts, self.reg_weighting).astype(self.dtype),
                row_weights(self.ratings.item_counts, self.reg_weighting).astype(self.dtype))

    def unpack(self, x):
        return unpack(x, self.n_users, self.n_items, self.rank, self.biases)

    def to_problem(self):
        """The :class:`~fastmf.problem.MFProblem` of this structure (bound to its ratings)."""
        from ..problem import MFProblem

        return MFProblem(rank=self.rank, biases=self.biases, reg=self.reg, reg_bias=self.reg_bias,
                         reg_weighting=self.reg_weighting, loss=self.loss, mu=self.mu, dtype=self.dtype,
                         n_users=self.n_users, n_items=self.n_items)


def fit_newton_cg(ratings, rank: int = 32, *, reg: float = 0.1, reg_bias: float | None = None,
                  biases: bool = True, loss: str = "squared", reg_weighting: str = "uniform",
                  dtype=np.float32, hessian: str = "gauss-newton", mu: float | None = None,
                  n_threads: int | None = None, x0=None, random_state=None, **kwargs):
    """Deprecated: build an :class:`~fastmf.objective.MFObjective` on ``ratings`` and run
    :func:`~fastmf.solvers.newton.newton_cg` (``kwargs`` go to it)."""
    from ..objective import MFObjective
    from .newton import newton_cg

    objective = MFObjective(ratings, rank, reg=reg, reg_bias=reg_bias, biases=biases, loss=loss,
                            reg_weighting=reg_weighting, dtype=dtype, hessian=hessian, mu=mu,
                            n_threads=n_threads)
    return newton_cg(objective, x0, random_state=random_state, n_threads=n_threads, **kwargs)
