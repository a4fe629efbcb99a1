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


def _py(x):
    """A numpy scalar as a plain Python value, for readable messages."""
    return x.item() if isinstance(x, np.generic) else x


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

    def validate(self) -> "FactorModel":
        """Check the *content* of the model, so that no kernel ever reads out of bounds.

        Construction only checks shapes (cheap, and a diverged fit may hold NaNs);
        this checks everything a model read from an untrusted source must satisfy.
        Messages name the model-file field (``user_factors``...).

        Returns
        -------
        FactorModel
            ``self``.

        Raises
        ------
        ValueError
            Factors not float32/float64 (or of two dtypes), biases of another dtype,
            non-finite factors, biases or mean; ids not integers/strings, not unique
            or not representable (:func:`fastmf.data.ids.raw_ids`); ``seen_indptr``
            not starting at 0, decreasing, or not ending at ``len(seen_items)``;
            ``seen_items`` not integers in ``[0, n_items)``; a rating scale that is
            not two finite numbers with ``low < high``; a ``rank`` that does not
            divide the number of factor columns; values so large that a score
            ``mu + b + c + p.q`` could overflow the factors' dtype.
        """
        from ._validation import check_rating_scale
        from .data.ids import raw_ids

        P, Q = self.P, self.Q
        for name, a in (("user_factors", P), ("item_factors", Q)):
            if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
                raise ValueError(f"{name} must be a float32 or float64 array, got {getattr(a, 'dtype', type(a))}")
        if P.dtype != Q.dtype:
            raise ValueError(f"user_factors ({P.dtype}) and item_factors ({Q.dtype}) differ in dtype")
        k = P.shape[1]
        if isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer)) or self.rank < 1 or k < 1 or (
                k % self.rank) or (self.solver != "gibbs" and k != self.rank):
            raise ValueError(f"rank {self.rank!r} does not match factors of {k} columns (solver {self.solver!r})")
        named: list[tuple[str, Any]] = [("user_factors", P), ("item_factors", Q)]
        if self.b is not None:
            for name, bias in (("user_biases", self.b), ("item_biases", self.c)):
                if not isinstance(bias, np.ndarray) or bias.dtype != P.dtype:
                    raise ValueError(f"{name} must be a {P.dtype} array like the factors, got "
                                     f"{getattr(bias, 'dtype', type(bias))}")
            named += [("user_biases", self.b), ("item_biases", self.c)]
        for name, a in named:
            if not np.isfinite(a).all():
                raise ValueError(f"{name} hold a NaN or inf value (first at flat position "
                                 f"{int(np.flatnonzero(~np.isfinite(a))[0])})")
        if not np.isfinite(self.mu):
            raise ValueError(f"global_mean must be finite, got {self.mu!r}")
        big = [float(np.abs(a).max()) if a.size else 0.0 for _, a in named] + [0.0, 0.0]
        bound = k * big[0] * big[1] + big[2] + big[3] + abs(self.mu)
        if not bound <= float(np.finfo(P.dtype).max):
            raise ValueError(f"user_factors/item_factors/biases are so large that predictions overflow {P.dtype} "
                             f"(max |P| = {big[0]:.3g}, max |Q| = {big[1]:.3g})")
        for name, idx in (("user_ids", self.users), ("item_ids", self.items)):
            raw_ids(idx.ids, name)
            if not idx.index.is_unique:
                dup = idx.index[idx.index.duplicated()][0]
                raise ValueError(f"{name} must be unique, {_py(dup)!r} appears more than once")
        self._check_seen()
        check_rating_scale(self.rating_scale)
        return self

    def _check_seen(self) -> None:
        """``seen_indptr``/``seen_items`` form a CSR of valid item codes (see :meth:`validate`)."""
        ip, si = self.seen_indptr, self.seen_items
        for name, a in (("seen_indptr", ip), ("seen_items", si)):
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in "iu":
                raise ValueError(f"{name} must be a 1-D integer array, got {getattr(a, 'dtype', type(a))}")
        if ip[0] != 0 or ip[-1] != si.shape[0] or (ip.shape[0] > 1 and (np.diff(ip.astype(np.int64)) < 0).any()):
            raise ValueError(f"seen_indptr must rise from 0 to len(seen_items) = {si.shape[0]} "
                             f"(got {_py(ip[0])} .. {_py(ip[-1])}, non-decreasing: "
                             f"{bool((np.diff(ip.astype(np.int64)) >= 0).all())})")
        if si.size and (si.min() < 0 or si.max() >= self.n_items):
            row = int(np.flatnonzero((si < 0) | (si >= self.n_items))[0])
            raise ValueError(f"seen_items must be item codes in [0, {self.n_items}): position {row} holds "
                             f"{_py(si[row])}")

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
