r"""Dense numpy reference: the textbook masked formulation of matrix factorization.

This module is the oracle for every fastmf kernel and the baseline of every
benchmark.  It is the only place in fastmf where an ``m x n`` array may exist, so it
is for small problems only (ml-100k, ml-latest-small, synthetic ML-1M shapes).

Model
-----
With observed cells :math:`\Omega` given by the boolean mask ``M``:

.. math::

    \hat r_{ui} = \mu + b_u + c_i + p_u^\top q_i \qquad
    E = M \odot (R - \hat R)

Squared loss, with weights :math:`w_u = 1` (``reg_weighting="uniform"``) or
:math:`w_u = n_u` (``"count"``, the row's number of ratings; likewise :math:`w_i`):

.. math::

    L = \tfrac12 \|E\|_F^2
        + \tfrac12 \lambda_f \Big(\sum_u w_u \|p_u\|^2 + \sum_i w_i \|q_i\|^2\Big)
        + \tfrac12 \lambda_b \Big(\sum_u w_u b_u^2 + \sum_i w_i c_i^2\Big)

    \nabla_P L = -E Q + \lambda_f W_u P \qquad \nabla_Q L = -E^\top P + \lambda_f W_i Q \qquad
    \nabla_b L = -E\,\mathbf 1 + \lambda_b W_u b \qquad \nabla_c L = -E^\top \mathbf 1 + \lambda_b W_i c

Hessian-vector products for a direction :math:`v = (dP, dQ, db, dc)`, with
:math:`\Delta = M \odot (dP\,Q^\top + P\,dQ^\top + db\,\mathbf 1^\top + \mathbf 1\,dc^\top)`:

.. math::

    G v = (\Delta Q + \lambda_f W_u dP,\; \Delta^\top P + \lambda_f W_i dQ,\;
           \Delta \mathbf 1 + \lambda_b W_u db,\; \Delta^\top \mathbf 1 + \lambda_b W_i dc)

    H v = G v - (E\, dQ,\; E^\top dP,\; 0,\; 0)

Sign loss (``loss="sign"``, no biases): with :math:`S = M \odot \mathrm{sign}(R - \bar r_u)`,
:math:`\bar r_u` the user's mean observed rating,

.. math::

    L = -\sum_{ui} S_{ui}\, p_u^\top q_i + \tfrac12\lambda_f\Big(\sum_u w_u\|p_u\|^2 + \sum_i w_i\|q_i\|^2\Big)

    \nabla_P L = -S Q + \lambda_f W_u P \qquad \nabla_Q L = -S^\top P + \lambda_f W_i Q \qquad
    H v = (-S\, dQ + \lambda_f W_u dP,\; -S^\top dP + \lambda_f W_i dQ)

It is unbounded below (with uniform weights) as soon as :math:`\lambda_f < \sigma_{\max}(S)`:
with :math:`(\sigma_{\max}, a, z)` the top singular triplet (unit vectors) and :math:`e_1` the first
unit vector of :math:`\mathbb R^k`, along :math:`P = t\,a e_1^\top`, :math:`Q = t\,z e_1^\top` the
loss is exactly :math:`t^2(\lambda_f - \sigma_{\max})`.  For :math:`\lambda_f \ge \sigma_{\max}` it is
bounded below by 0, since :math:`|a^\top S z| \le \sigma_{\max}\|a\|\|z\| \le
\tfrac12\sigma_{\max}(\|a\|^2 + \|z\|^2)` column by column.

Packing of the flat parameter vector: see :mod:`fastmf._packing`.
"""

from __future__ import annotations

import numpy as np

from ._packing import n_params as _n_params
from ._packing import unpack as _unpack
from ._weights import reg_exponent, row_weights
from ._validation import check_choice, check_nonnegative_float, check_positive_int

__all__ = ["DenseMF", "gradient_descent", "sign_matrix"]

MAX_DENSE_HESSIAN = 6000


def sign_matrix(R: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Masked sign of the user-centred ratings, ``M * sign(R - mean_u)`` (dense)."""
    counts = M.sum(axis=1)
    sums = np.where(M, R, 0.0).sum(axis=1)
    means = np.divide(sums, counts, out=np.zeros_like(sums, dtype=np.float64), where=counts > 0)
    return np.where(M, np.sign(R - means[:, None]), 0.0)


class DenseMF:
    """Masked dense matrix-factorization objective (numpy only, float64).

    Parameters
    ----------
    R : ndarray, shape (m, n)
        Ratings; values off the mask are ignored (NaN allowed there).
    M : ndarray of bool, shape (m, n)
        Observed cells.
    rank : int
        Number of latent factors ``k``.
    reg : float
        :math:`\\lambda_f`, the L2 weight on the factors.
    reg_bias : float, optional
        :math:`\\lambda_b`; defaults to ``reg``.
    biases : bool
        Include user and item biases (squared loss only).
    mu : float, optional
        Global offset; defaults to the mean observed rating with biases and 0 without.
    loss : {"squared", "sign"}
    reg_weighting : {"uniform", "sqrt-count", "count"} or float >= 0
        Multiplies each row's penalty by :math:`n_r^{\alpha}`, its number of ratings to
        the power α = 0, 0.5, 1 or the float given (:mod:`fastmf._weights`).
    """

    def __init__(
        self,
        R: np.ndarray,
        M: np.ndarray,
        rank: int,
        reg: float = 0.1,
        reg_bias: float | None = None,
        biases: bool = True,
        mu: float | None = None,
        loss: str = "squared",
        reg_weighting: str = "uniform",
    ):
        R = np.asarray(R, dtype=np.float64)
        M = np.asarray(M)
        if M.dtype != bool:
            raise TypeError(f"mask must be boolean, got {M.dtype}")
        if R.ndim != 2 or R.shape != M.shape:
            raise ValueError(f"R and M must be 2-D of the same shape, got {R.shape} and {M.shape}")
        if not M.any():
            raise ValueError("the mask selects no ratings")
        if not np.isfinite(R[M]).all():
            raise ValueError("observed ratings contain NaN or inf")
        self.rank = check_positive_int(rank, "rank")
        self.reg = check_nonnegative_float(reg, "reg")
        self.reg_bias = self.reg if reg_bias is None else check_nonnegative_float(reg_bias, "reg_bias")
        self.loss = check_choice(loss, "loss", {"squared", "sign"})
        reg_exponent(reg_weighting)
        self.reg_weighting = reg_weighting
        if loss == "sign" and biases:
            raise ValueError("the sign loss has no biases: pass biases=False")
        self.biases = bool(biases)
        self.M = M
        self.R = np.where(M, R, 0.0)
        self.m, self.n = R.shape
        if mu is None:
            mu = float(self.R[M].mean()) if (biases and loss == "squared") else 0.0
        self.mu = float(mu)
        self.wu = row_weights(M.sum(axis=1), self.reg_weighting)
        self.wi = row_weights(M.sum(axis=0), self.reg_weighting)
        self.S = sign_matrix(self.R, M) if loss == "sign" else None

    @classmethod
    def from_ratings(cls, ratings, rank: int, **kwargs) -> "DenseMF":
        """Build from a :class:`fastmf.Ratings` (densified; small data only)."""
        R = ratings.to_dense(fill_value=0.0).astype(np.float64)
        return cls(R, ratings.mask(), rank, **kwargs)

    @property
    def n_params(self) -> int:
        return _n_params(self.m, self.n, self.rank, self.biases)

    def unpack(self, x):
        return _unpack(np.asarray(x, dtype=np.float64), self.m, self.n, self.rank, self.biases)

    def predict(self, x) -> np.ndarray:
        """Dense prediction matrix :math:`\\hat R` (every cell)."""
        P, Q, b, c = self.unpack(x)
        out = P @ Q.T
        if self.biases:
            out = out + self.mu + b[:, None] + c[None, :]
        else:
            out = out + self.mu
        return out

    def residuals(self, x) -> np.ndarray:
        """Masked residuals :math:`E = M \\odot (R - \\hat R)` (dense, zero off the mask)."""
        return np.where(self.M, self.R - self.predict(x), 0.0)

    def _penalty(self, P, Q, b, c) -> float:
        pen = 0.5 * self.reg * (self.wu @ (P * P).sum(axis=1) + self.wi @ (Q * Q).sum(axis=1))
        if self.biases:
            pen += 0.5 * self.reg_bias * (self.wu @ (b * b) + self.wi @ (c * c))
        return float(pen)

    def fun(self, x) -> float:
        """The loss :math:`L(\\theta)`."""
        P, Q, b, c = self.unpack(x)
        if self.loss == "sign":
            data = -float(np.sum(self.S * (P @ Q.T)))
        else:
            E = self.residuals(x)
            data = 0.5 * float(np.sum(E * E))
        return data + self._penalty(P, Q, b, c)

    def jac(self, x) -> np.ndarray:
        """The gradient :math:`\\nabla L(\\theta)`, packed."""
        P, Q, b, c = self.unpack(x)
        E = self.S if self.loss == "sign" else self.residuals(x)
        gP = -E @ Q + self.reg * self.wu[:, None] * P
        gQ = -E.T @ P + self.reg * self.wi[:, None] * Q
        parts = [gP.ravel(), gQ.ravel()]
        if self.biases:
            parts += [-E.sum(axis=1) + self.reg_bias * self.wu * b, -E.sum(axis=0) + self.reg_bias * self.wi * c]
        return np.concatenate(parts)

    def _check_hessian(self, hessian: str) -> str:
        check_choice(hessian, "hessian", {"gauss-newton", "exact"})
        if self.loss == "sign" and hessian == "gauss-newton":
            raise ValueError(
                "the sign loss is bilinear: its Gauss-Newton matrix is only the regulariser; use hessian='exact'"
            )
        return hessian

    def hessp(self, x, p, hessian: str = "gauss-newton") -> np.ndarray:
        """Hessian-vector product :math:`G p` (Gauss-Newton) or :math:`H p` (exact)."""
        self._check_hessian(hessian)
        P, Q, b, c = self.unpack(x)
        dP, dQ, db, dc = self.unpack(p)
        if self.loss == "sign":
            hP = -self.S @ dQ + self.reg * self.wu[:, None] * dP
            hQ = -self.S.T @ dP + self.reg * self.wi[:, None] * dQ
            return np.concatenate([hP.ravel(), hQ.ravel()])
        D = dP @ Q.T + P @ dQ.T
        if self.biases:
            D = D + db[:, None] + dc[None, :]
        D = np.where(self.M, D, 0.0)
        hP = D @ Q + self.reg * self.wu[:, None] * dP
        hQ = D.T @ P + self.reg * self.wi[:, None] * dQ
        if hessian == "exact":
            E = self.residuals(x)
            hP -= E @ dQ
            hQ -= E.T @ dP
        parts = [hP.ravel(), hQ.ravel()]
        if self.biases:
            parts += [D.sum(axis=1) + self.reg_bias * self.wu * db, D.sum(axis=0) + self.reg_bias * self.wi * dc]
        return np.concatenate(parts)

    def hessian(self, x, hessian: str = "gauss-newton") -> np.ndarray:
        """The full ``(n_params, n_params)`` Hessian, column by column from :meth:`hessp`.

        Tiny problems only (at most ``MAX_DENSE_HESSIAN`` parameters).
        """
        self._check_hessian(hessian)
        N = self.n_params
        if N > MAX_DENSE_HESSIAN:
            raise ValueError(f"full Hessian of {N} parameters refused (limit {MAX_DENSE_HESSIAN})")
        H = np.empty((N, N))
        e = np.zeros(N)
        for j in range(N):
            e[j] = 1.0
            H[:, j] = self.hessp(x, e, hessian)
            e[j] = 0.0
        return H

    def rmse(self, x) -> float:
        """Root mean squared error on the observed cells."""
        E = self.residuals(x)
        return float(np.sqrt(np.sum(E * E) / self.M.sum()))


def gradient_descent(
    problem: DenseMF,
    x0: np.ndarray,
    learning_rate: float = 1e-3,
    n_iter: int = 100,
    callback=None,
) -> tuple[np.ndarray, list[float]]:
    """Plain masked gradient descent :math:`\\theta \\leftarrow \\theta - \\eta \\nabla L(\\theta)`.

    The loop of the notebooks this project grew from, kept as a baseline.

    Returns
    -------
    x : ndarray
        The final parameters (a new array; ``x0`` is not modified).
    losses : list of float
        The loss before each step and after the last (length ``n_iter + 1``).

    Raises
    ------
    FloatingPointError
        If the loss becomes non-finite (the step is too large: lower ``learning_rate``).
    """
    eta = check_nonnegative_float(learning_rate, "learning_rate", strictly_positive=True)
    n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
    x = np.array(x0, dtype=np.float64, copy=True)
    losses = [problem.fun(x)]
    for it in range(n_iter):
        x -= eta * problem.jac(x)
        losses.append(problem.fun(x))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(
                f"gradient descent diverged at iteration {it + 1} with learning_rate={eta:g}: lower the learning rate"
            )
        if callback is not None and callback(it, x, losses[-1]):
            break
    return x, losses
