r"""Steihaug-Toint truncated conjugate gradients for the trust-region subproblem.

Given the gradient :math:`g`, a symmetric operator :math:`B` (Gauss-Newton or exact
Hessian, through Hessian-vector products only) and a symmetric positive definite
preconditioner :math:`M` (through :math:`z = M^{-1} r`), approximately solve

.. math::

    \min_s\ m(s) = g^\top s + \tfrac12 s^\top B s
    \quad\text{subject to}\quad \|s\|_M = \sqrt{s^\top M s} \le \Delta .

This is Nocedal & Wright's algorithm 7.2 with preconditioning in the form of
Steihaug (1983) and Conn, Gould & Toint, *Trust-Region Methods* (2000), §7.5.1: the
trust region is measured in the :math:`M`-norm, which is the norm in which
preconditioned CG iterates grow monotonically, so the first boundary crossing is the
right place to stop.  :math:`M` is never applied forwards; the norms come from the
recurrences (Gould, Lucidi, Roma & Toint 1999), with :math:`r_j = g + B s_j`,
:math:`z_j = M^{-1} r_j` and :math:`d_{j+1} = -z_{j+1} + \beta_j d_j`:

.. math::

    s_{j+1}^\top M s_{j+1} = s_j^\top M s_j + 2\alpha_j s_j^\top M d_j + \alpha_j^2 d_j^\top M d_j

    s_{j+1}^\top M d_{j+1} = \beta_j (s_j^\top M d_j + \alpha_j d_j^\top M d_j)

    d_{j+1}^\top M d_{j+1} = r_{j+1}^\top z_{j+1} + \beta_j^2 d_j^\top M d_j

starting from :math:`s_0 = 0`, :math:`d_0^\top M d_0 = r_0^\top z_0`.

Exits
-----
* ``CONVERGED``: :math:`\|r_j\|_2 \le` ``tol`` (interior, inexact Newton step);
* ``BOUNDARY``: the next iterate would leave the region: step to
  :math:`s_j + \tau d_j` with :math:`\|s_j + \tau d_j\|_M = \Delta`, :math:`\tau > 0`;
* ``NEGATIVE_CURVATURE``: :math:`d_j^\top B d_j \le 0`: step to the boundary along
  :math:`d_j` (the model decreases without bound along it, since :math:`d_j` is a
  descent direction of the model at :math:`s_j`);
* ``MAX_ITER``: ``max_iter`` CG steps.

The model residual :math:`r = g + Bs` is kept consistent with the returned step (the
last :math:`Bd` is reused on boundary exits), so the predicted model change is exact
and free: :math:`m(s) = \tfrac12 (g + r)^\top s`.

Dot products accumulate in float64 whatever the vectors' dtype.
"""

from __future__ import annotations

import enum
import math
from typing import Callable, NamedTuple

import numpy as np

from ..kernels.reductions import dot64

__all__ = ["CGStatus", "SteihaugResult", "steihaug_cg", "dot64"]


class CGStatus(enum.IntEnum):
    """Why the CG subproblem solver stopped."""

    CONVERGED = 0  #: residual below tolerance, strictly inside the region
    BOUNDARY = 1  #: step truncated at the trust-region boundary
    NEGATIVE_CURVATURE = 2  #: a direction of non-positive curvature was met
    MAX_ITER = 3  #: CG iteration limit


class SteihaugResult(NamedTuple):
    """Result of :func:`steihaug_cg`."""

    step: np.ndarray  #: the step s
    status: CGStatus
    n_iter: int  #: CG iterations (= Hessian-vector products)
    model_change: float  #: m(s) - m(0) = g·s + ½ sᵀBs (<= 0)
    step_norm_m: float  #: ‖s‖_M
    residual_norm: float  #: ‖g + Bs‖₂

    @property
    def hits_boundary(self) -> bool:
        return self.status in (CGStatus.BOUNDARY, CGStatus.NEGATIVE_CURVATURE)


def _to_boundary(sMs: float, sMd: float, dMd: float, radius: float) -> float:
    """Positive root τ of ‖s + τd‖_M = Δ (0 if already outside by rounding)."""
    gap = radius * radius - sMs
    if gap <= 0.0:
        return 0.0
    disc = math.sqrt(sMd * sMd + dMd * gap)
    # gap / (sMd + disc) is the stable form of (-sMd + disc) / dMd
    if sMd >= 0.0:
        return gap / (sMd + disc)
    return (disc - sMd) / dMd


def steihaug_cg(
    g: np.ndarray,
    hessp: Callable[[np.ndarray], np.ndarray],
    radius: float,
    *,
    tol: float,
    max_iter: int,
    precondition: Callable[[np.ndarray], np.ndarray] | None = None,
) -> SteihaugResult:
    r"""Approximately minimise :math:`g^\top s + \frac12 s^\top B s` in :math:`\|s\|_M \le \Delta`.

    Parameters
    ----------
    g : ndarray, shape (N,)
        Gradient at the current point (not modified).
    hessp : callable
        ``hessp(v) -> B v`` (a new array of the same shape).
    radius : float
        Trust-region radius :math:`\Delta > 0` (in the :math:`M`-norm; may be ``inf``).
    tol : float
        Absolute tolerance on the Euclidean norm of the model gradient
        :math:`\|g + Bs\|_2`.
    max_iter : int
        Maximum CG iterations (>= 1).
    precondition : callable, optional
        ``precondition(r) -> M^{-1} r`` for a symmetric positive definite ``M``
        (a new array); ``None`` means ``M = I`` (plain Steihaug, N&W alg. 7.2).

    Returns
    -------
    SteihaugResult

    Notes
    -----
    With ``radius = inf`` and negative curvature the model is unbounded along
    ``d``; the returned step is then ``d`` itself scaled to unit ``M``-norm and the
    status is ``NEGATIVE_CURVATURE`` (the caller must handle it).
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    dtype = g.dtype
    s = np.zeros_like(g)
    r = np.array(g, copy=True)
    rnorm = math.sqrt(dot64(r, r))
    if rnorm <= tol:
        return SteihaugResult(s, CGStatus.CONVERGED, 0, 0.0, 0.0, rnorm)
    z = r if precondition is None else precondition(r)
    rz = dot64(r, z)
    d = -z
    sMs = 0.0
    sMd = 0.0
    dMd = rz
    status = CGStatus.MAX_ITER
    n_iter = 0
    for _ in range(max_iter):
        Bd = hessp(d)
        n_iter += 1
        dBd = dot64(d, Bd)
        if not dBd > 0.0:
            if math.isinf(radius):
                tau = 1.0 / math.sqrt(dMd)
            else:
                tau = _to_boundary(sMs, sMd, dMd, radius)
            s += dtype.type(tau) * d
            r += dtype.type(tau) * Bd
            sMs = sMs + 2.0 * tau * sMd + tau * tau * dMd
            status = CGStatus.NEGATIVE_CURVATURE
            break
        alpha = rz / dBd
        sMs_next = sMs + 2.0 * alpha * sMd + alpha * alpha * dMd
        if sMs_next >= radius * radius:
            tau = _to_boundary(sMs, sMd, dMd, radius)
            s += dtype.type(tau) * d
            r += dtype.type(tau) * Bd
            sMs = radius * radius
            status = CGStatus.BOUNDARY
            break
        s += dtype.type(alpha) * d
        r += dtype.type(alpha) * Bd
        sMs = sMs_next
        rnorm = math.sqrt(dot64(r, r))
        if rnorm <= tol:
            status = CGStatus.CONVERGED
            break
        z = r if precondition is None else precondition(r)
        rz_next = dot64(r, z)
        beta = rz_next / rz
        sMd = beta * (sMd + alpha * dMd)
        dMd = rz_next + beta * beta * dMd
        rz = rz_next
        d *= dtype.type(beta)
        d -= z
    if status is not CGStatus.CONVERGED:
        rnorm = math.sqrt(dot64(r, r))
    model_change = 0.5 * (dot64(g, s) + dot64(r, s))
    return SteihaugResult(s, status, n_iter, model_change, math.sqrt(max(sMs, 0.0)), rnorm)
