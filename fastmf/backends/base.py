r"""The interface between fastmf's solvers and the data: what a solver may ask of the ratings.

A solver never touches the rating arrays.  It holds the parameters ``x`` (packed
``[P, Q, b, c]``, :mod:`fastmf._packing`) and an :class:`~fastmf.problem.MFProblem`, and
asks a backend for the data passes below.  Each method is one *coarse* call: it takes the
parameters it needs explicitly and returns plain arrays or scalars, with no shared state
between calls other than the backend's immutable copy of the ratings (and caches keyed by
``x``, which never change a result).

Designed for a Dask backend next, where the ratings live in worker processes as stateful
shards (user blocks and item blocks, DESIGN §7): there one call is one network round trip
(submit to every shard, reduce in block order on the client), so

* a call ships only what the shards need: the parameter vector (or one side of it) and a few
  scalars or vectors, and returns a reduction (a float, a packed vector, a side's rows);
* reductions are summed in a fixed block order, so results depend on the number of blocks,
  never on the number of workers or threads;
* nothing is mutated on the client except the output named by the method (``solve_rows``
  writes the solved side's rows into the ``x`` it was given);
* random draws are made on the client and shipped (``solve_rows(noise=...)``), which keeps
  the chain independent of the partitioning (a distributed backend may instead seed by
  (seed, row code), DESIGN §7).

Costs per call of a distributed backend, with :math:`K = k + 1` (biases): ``loss`` /
``gradient`` / ``hessp`` :math:`\approx 2 n_b K` floats per block; ``solve_rows`` one side's
:math:`n_b K` floats out and back; ``preconditioner.update`` one round trip, ``apply`` local
(Jacobi) or one round trip (block-Jacobi); ``predict`` / ``rmse`` the validation pairs'
rows.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["NewtonBackend", "RowSolveBackend", "PredictBackend", "Preconditioner"]


class Preconditioner(Protocol):
    """:math:`M^{-1}` for Steihaug-CG: ``update(x)`` at each accepted iterate, ``apply(r)`` per CG step."""

    name: str
    n_fixed: int

    def update(self, x: np.ndarray) -> None: ...

    def apply(self, r: np.ndarray) -> np.ndarray: ...

    @property
    def is_identity(self) -> bool: ...


@runtime_checkable
class PredictBackend(Protocol):
    """Predictions on codes (the validation monitor)."""

    def rmse(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, P, Q, b=None, c=None,
             mu: float = 0.0, clip=None) -> float:
        """RMSE (float) of ``mu + b[u] + c[i] + P[u]·Q[i]`` against float64 ``ratings``; ``clip=(lo, hi)``
        clips the predictions first.  Inputs: int code arrays and the factor arrays (or None)."""
        ...


@runtime_checkable
class NewtonBackend(Protocol):
    """What trust-region Newton-CG (and ALS's loss report) needs.

    ``problem`` is the bound :class:`~fastmf.problem.MFProblem`, or None for a generic
    scipy-style objective (then only ``loss``, ``gradient`` and ``hessp`` work).
    """

    problem: object

    def loss(self, x: np.ndarray) -> float:
        """:math:`L(x)` (float)."""
        ...

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """:math:`\\nabla L(x)`, a packed vector of ``x``'s length (float dtype of ``x``)."""
        ...

    def hessp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """:math:`B(x) v` (Gauss-Newton or exact Hessian, as the backend was built), packed."""
        ...

    def preconditioner(self, name: str, max_memory: int) -> Preconditioner:
        """A preconditioner (``"none"``, ``"jacobi"``: the Gauss-Newton diagonal, ``"block-jacobi"``:
        the per-row :math:`K\\times K` blocks, factored where the data lives)."""
        ...

    def sign_loss_bound(self) -> float:
        """Smallest ``reg`` bounding the sign loss below (:func:`fastmf.solvers.newton.sign_loss_bound`)."""
        ...


@runtime_checkable
class RowSolveBackend(Protocol):
    """What ALS and the Gibbs sampler need: exact (or sampled) per-row solves, and the SSE."""

    problem: object

    def solve_rows(self, side: str, x: np.ndarray, prior_diag: np.ndarray, prior_shift: np.ndarray,
                   weights: bool = True, noise: np.ndarray | None = None, noise_sd: float = 0.0) -> int:
        r"""Replace side ``side`` (``"users"`` or ``"items"``) of the packed ``x`` by the solution of
        each row's normal equations given the other side of ``x``:

        :math:`(\sum_j \tilde f_j \tilde f_j^\top + \mathrm{diag}(w_r\,d)) z_r = \sum_j (r_{rj} - \mu - c_j)
        \tilde f_j + w_r\,s`, with ``d = prior_diag`` and ``s = prior_shift`` (float64, length ``K``),
        :math:`w_r` the problem's row weights (``weights=False``: 1), plus
        ``noise_sd * L^{-T} noise[r]`` when ``noise`` (float64, rows x ``K``) is given (a Gibbs draw).
        Writes only that side's rows of ``x``; returns the number of singular pivots replaced.
        """
        ...

    def sse(self, x: np.ndarray) -> float:
        """Sum of squared residuals :math:`\\sum_\\Omega (r - \\hat r)^2` at ``x`` (float64, fixed order)."""
        ...
