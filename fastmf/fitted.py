r"""``FactorModel``: a fitted biased matrix factorization, and nothing else.

A ``FactorModel`` holds what a fit produces and what serving, fold-in and
persistence need, and no estimator parameters that can change afterwards:

.. math::

    \hat r_{ui} = \mu + b_u + c_i + p_u \cdot q_i

with ``P`` (rows :math:`p_u`), ``Q`` (rows :math:`q_i`), the biases ``b``, ``c``
(``None`` for a model fitted without biases) and :math:`\mu`; the raw-id indexes of
the rows; the CSR of the items each user rated in training; the rating scale; and
the hyperparameters of the objective it minimises (``solver``, ``rank``, ``reg``,
``reg_bias``, ``reg_weighting``), which fold-in (:mod:`fastmf.foldin`) must reuse to
solve the same row problem as the fit.

The functions that use it live in :mod:`fastmf.serving` (predict, recommend,
similar items), :mod:`fastmf.foldin` and :mod:`fastmf.persistence`;
:class:`fastmf.MatrixFactorization` keeps one as ``model_`` and delegates to them.

It is a frozen dataclass: fields are not reassigned (:meth:`FactorModel.replace`
returns a new model), and construction checks that the shapes agree.  The arrays
themselves are shared, not copied, and should be treated as read-only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data.ids import IdIndex
from .exceptions import NotFittedError, UnknownIdWarning  # noqa: F401  (re-exported: the old path)

__all__ = ["FactorModel", "NotFittedError", "UnknownIdWarning"]


# Defined here, the leaf of the model modules (serving, fold-in and the estimator all
# raise or warn with them); ``fastmf.model`` re-exports both.  Meant to move to a
# common exceptions module.
@dataclass(frozen=True, eq=False)
class FactorModel:
    """A fitted biased matrix factorization (see the module docstring).

    Parameters
    ----------
    P : ndarray, shape (n_users, k)
        User factors (``k`` = ``rank`` times the number of kept draws for gibbs).
    Q : ndarray, shape (n_items, k)
        Item factors.
    b, c : ndarray of shape (n_users,) and (n_items,), or None
        User and item biases; both ``None`` for a model without biases.
    mu : float
        :math:`\\mu`, the global offset (the training mean; 0 without biases).
    users, items : IdIndex or array-like
        Raw id of each row of ``P`` and ``Q`` (arrays are wrapped in an :class:`IdIndex`).
    seen_indptr : ndarray of int64, shape (n_users + 1,)
    seen_items : ndarray of int32
        CSR by user code of the items each user rated in training (``exclude_seen``,
        ``min_ratings``).
    rating_scale : (float, float)
        Clipping range of predictions.
    item_titles : dict or None
        Raw item id -> title.
    dataset_name : str or None
    solver : str
        The solver that fitted the model (``"gibbs"`` models have no fold-in).
    rank : int
        The ``rank`` parameter of the fit (per draw for gibbs).
    reg, reg_bias, reg_weighting
        The penalty of the fitted objective (``reg_bias=None`` means ``reg``).

    Raises
    ------
    ValueError
        Shapes that do not agree (factor ranks, id counts, biases, ``seen_indptr``).
    """

    P: np.ndarray
    Q: np.ndarray
    b: np.ndarray | None
    c: np.ndarray | None
    mu: float
    users: IdIndex
    items: IdIndex
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    rating_scale: tuple[float, float]
    item_titles: dict | None = None
    dataset_name: str | None = None
    solver: str = "newton"
    rank: int | None = None
    reg: float = 0.1
    reg_bias: float | None = None
    reg_weighting: Any = "count"

    def __post_init__(self):
        # normalise (frozen: through object.__setattr__), then check the shapes agree
        set_ = object.__setattr__
        if not isinstance(self.users, IdIndex):
            set_(self, "users", IdIndex(self.users))
        if not isinstance(self.items, IdIndex):
            set_(self, "items", IdIndex(self.items))
        set_(self, "mu", float(self.mu))
        set_(self, "rating_scale", tuple(float(v) for v in self.rating_scale))
        if self.rank is None:
            set_(self, "rank", int(np.shape(self.P)[1]) if np.ndim(self.P) == 2 else 0)
        self._check_shapes()

    def _check_shapes(self) -> None:
        P, Q = self.P, self.Q
        if np.ndim(P) != 2 or np.ndim(Q) != 2 or P.shape[1] != Q.shape[1]:
            raise ValueError(f"P and Q must be 2-D with the same number of columns, got {np.shape(P)} and {np.shape(Q)}")
        m, n = P.shape[0], Q.shape[0]
        if len(self.users) != m or len(self.items) != n:
            raise ValueError(f"{len(self.users)} user ids and {len(self.items)} item ids for factors of {m} users "
                             f"and {n} items")
        if (self.b is None) != (self.c is None):
            raise ValueError("b and c must both be arrays or both be None")
        if self.b is not None and (np.shape(self.b) != (m,) or np.shape(self.c) != (n,)):
            raise ValueError(f"biases of shapes {np.shape(self.b)} and {np.shape(self.c)} for {m} users and {n} items")
        if np.shape(self.seen_indptr) != (m + 1,):
            raise ValueError(f"seen_indptr has shape {np.shape(self.seen_indptr)}, expected ({m + 1},)")
        if len(self.rating_scale) != 2:
            raise ValueError(f"rating_scale must be (low, high), got {self.rating_scale!r}")

    # ------------------------------------------------------------------ derived
    @property
    def n_users(self) -> int:
        return self.P.shape[0]

    @property
    def n_items(self) -> int:
        return self.Q.shape[0]

    @property
    def user_ids(self) -> np.ndarray:
        """Raw id of each user row."""
        return self.users.ids

    @property
    def item_ids(self) -> np.ndarray:
        """Raw id of each item row."""
        return self.items.ids

    @property
    def biases(self) -> bool:
        """Whether the model has user and item biases."""
        return self.b is not None

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype of the factors."""
        return self.P.dtype

    @property
    def reg_bias_value(self) -> float:
        r""":math:`\lambda_b` (``reg`` when ``reg_bias`` is None)."""
        return float(self.reg) if self.reg_bias is None else float(self.reg_bias)

    def fitted_params(self) -> dict[str, Any]:
        """The estimator parameters that describe this model's objective.

        ``solver, rank, reg, reg_bias, biases, reg_weighting, dtype`` as
        :meth:`MatrixFactorization.get_params` would give them for the fit.
        """
        return {"solver": self.solver, "rank": self.rank, "reg": self.reg, "reg_bias": self.reg_bias,
                "biases": self.biases, "reg_weighting": self.reg_weighting, "dtype": self.dtype.type}

    def replace(self, **changes) -> "FactorModel":
        """A new ``FactorModel`` with some fields replaced (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    def item_counts(self) -> np.ndarray:
        """Training ratings of each item (int64, length ``n_items``)."""
        return np.bincount(self.seen_items, minlength=self.n_items)

    def __repr__(self) -> str:
        return (f"FactorModel(n_users={self.n_users}, n_items={self.n_items}, k={self.P.shape[1]}, "
                f"biases={self.biases}, solver={self.solver!r}, dtype={self.dtype})")
