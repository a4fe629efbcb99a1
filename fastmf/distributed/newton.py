r"""Newton-CG on sharded ratings: a distributed objective for the unchanged driver.

:class:`DistributedObjective` exposes what :func:`fastmf.solvers.newton.newton_cg`
reads from an objective (``fun``, ``jac``, ``fun_and_jac``, ``hessp``, ``x0``,
``n_params``, ``dtype``, ``mu``, ``rank``, ``biases``, ``loss``, ``hessian``) plus
``diag_gauss_newton``; each is one round (one call per block, in parallel) over the
user blocks:

* **loss + gradient** at ``x``: block ``b`` receives its users' rows
  :math:`(P_b, b_b)` and the item rows it touches :math:`(Q_{I_b}, c_{I_b})`, returns its
  data loss plus its users' penalty, its users' gradient (complete) and the data part of
  the item gradient on :math:`I_b` (partial).  The client adds the item partials into
  a zero vector *in block order* and then the item penalty, so the result is
  deterministic and depends on ``B``, never on the number of workers;
* **Hessian product** at the ``x`` the blocks keep (``x`` is re-sent only when it
  changed, e.g. after a rejected trial point): block ``b`` receives the direction's rows
  :math:`(dP_b, db_b, dQ_{I_b}, dc_{I_b})`, returns the same layout;
* **Gauss-Newton diagonal**: as the gradient.

Parameter and CG vectors stay on the client (first version): per call the client
sends :math:`\sum_b (m_b + n_b)(k+1)` floats and receives as many, where
:math:`n_b = |I_b|`.  See ``docs/distributed.md`` for where that stops scaling.

Preconditioning: the driver builds its Jacobi / block-Jacobi preconditioners from an
in-process ``ratings`` object, which a distributed objective does not have, so
:func:`fit_newton` runs ``preconditioner="none"``; the distributed diagonal
(:meth:`DistributedObjective.diag_gauss_newton`) is ready for the backend seam (issue
#12), where the driver asks the backend for the diagonal.
"""

from __future__ import annotations

import numpy as np

from .._packing import n_params as _n_params
from .._packing import pack, unpack
from .._validation import check_choice, check_dtype, check_nonnegative_float, check_random_state
from .._weights import reg_exponent, row_weights
from .shards import ShardSpec

__all__ = ["DistributedObjective", "fit_newton", "initial_point"]


def initial_point(n_users: int, n_items: int, rank: int, biases: bool, random_state=None,
                  scale: float = 0.1) -> np.ndarray:
    """The in-process random start, ``MFObjective.x0(random_state)``, from the shape alone.

    Same draws as :func:`fastmf.initialization.initial_factors` (``init="random"``):
    ``(m + n) k`` standard normals scaled by ``scale / sqrt(k)``, zero biases (float64).
    """
    rng = check_random_state(random_state)
    m, n, k = n_users, n_items, rank
    Z = rng.standard_normal((m + n) * k) * (scale / np.sqrt(k))
    x = np.zeros(_n_params(m, n, k, biases))
    x[: m * k] = Z[: m * k]
    x[m * k:(m + n) * k] = Z[m * k:]
    return x


class DistributedObjective:
    """MF loss, gradient, Hessian products and Gauss-Newton diagonal over sharded ratings.

    Parameters
    ----------
    ratings : DistributedRatings
        From :func:`fastmf.distributed.distribute`.
    rank, reg, reg_bias, biases, dtype, hessian, reg_weighting, mu
        As :class:`fastmf.objective.MFObjective` (squared loss only).

    Notes
    -----
    Counters ``nfev, njev, nhessp`` as in process; results of the last ``x`` are
    cached (compared by content).
    """

    loss = "squared"

    def __init__(self, ratings, rank: int, reg: float = 0.1, reg_bias: float | None = None, biases: bool = True,
                 dtype=np.float32, hessian: str = "gauss-newton", reg_weighting="uniform", mu: float | None = None):
        from .._validation import check_positive_int

        self.data = ratings
        self.rank = check_positive_int(rank, "rank")
        self.reg = check_nonnegative_float(reg, "reg")
        self.reg_bias = self.reg if reg_bias is None else check_nonnegative_float(reg_bias, "reg_bias")
        if not isinstance(biases, (bool, np.bool_)):
            raise TypeError(f"biases must be a bool, got {biases!r}")
        self.biases = bool(biases)
        self.dtype = check_dtype(dtype)
        self.hessian = check_choice(hessian, "hessian", {"gauss-newton", "exact"})
        reg_exponent(reg_weighting)
        self.reg_weighting = reg_weighting
        self.mu = float(ratings.global_mean if (mu is None and self.biases) else (mu or 0.0))
        self.n_users, self.n_items = ratings.n_users, ratings.n_items
        self.n_params = _n_params(self.n_users, self.n_items, self.rank, self.biases)
        wi = row_weights(ratings.item_counts, reg_weighting)
        self._regw_i = (self.reg * wi).astype(self.dtype)
        self._regbw_i = (self.reg_bias * wi).astype(self.dtype)
        self.spec = ShardSpec(self.rank, self.biases, self.dtype, self.mu, self.reg, self.reg_bias, reg_weighting,
                              self.hessian)
        ratings.configure(self.spec)
        ratings.round("warm")
        self._held = None  # the x the blocks keep (client copy)
        self._fg_x = None
        self._fg = None
        self._diag = None
        self.reset_counters()

    def reset_counters(self) -> None:
        self.nfev = self.njev = self.nhessp = 0
        self.n_evaluations = 0

    # ------------------------------------------------------------------ helpers
    def x0(self, random_state=None, scale: float = 0.1) -> np.ndarray:
        """:func:`initial_point` for this problem (float64)."""
        return initial_point(self.n_users, self.n_items, self.rank, self.biases, random_state, scale)

    def unpack(self, x):
        return unpack(np.asarray(x), self.n_users, self.n_items, self.rank, self.biases)

    def _cast(self, v) -> np.ndarray:
        v = np.asarray(v)
        if v.ndim != 1 or v.shape[0] != self.n_params:
            raise ValueError(f"vector must have shape ({self.n_params},), got {v.shape}")
        return np.ascontiguousarray(v, dtype=self.dtype)

    def _slices(self, v):
        """Per block: (P_b, b_b, Q[I_b], c[I_b]) of a packed vector."""
        P, Q, b, c = self.unpack(v)
        ub = self.data.layout.user_bounds
        out = []
        for blk, need in enumerate(self.data.items_needed):
            lo, hi = int(ub[blk]), int(ub[blk + 1])
            out.append((P[lo:hi], None if b is None else b[lo:hi], Q[need], None if c is None else c[need]))
        return out

    def _reduce(self, parts, out_dtype) -> np.ndarray:
        """Assemble per-block (user rows, user bias, item partial, item bias partial) into a
        packed vector; item partials added in block order."""
        out = np.zeros(self.n_params, dtype=self.dtype)
        P, Q, b, c = self.unpack(out)
        ub = self.data.layout.user_bounds
        for blk, (gP, gb, gQ, gc) in enumerate(parts):
            lo, hi = int(ub[blk]), int(ub[blk + 1])
            need = self.data.items_needed[blk]
            P[lo:hi] = gP
            Q[need] += gQ
            if self.biases:
                b[lo:hi] = gb
                c[need] += gc
        return out

    def _ensure_point(self, x: np.ndarray) -> None:
        if self._held is None or not np.array_equal(self._held, x):
            self.data.round("set_point", self._slices(x))
            self._held = x.copy()

    # ------------------------------------------------------------------ objective interface
    def _fun_and_jac(self, x: np.ndarray):
        if self._fg_x is not None and np.array_equal(self._fg_x, x):
            return self._fg
        parts = self.data.round("fun_and_jac", self._slices(x))
        self._held = x.copy()
        loss = 0.0
        for p in parts:  # block order
            loss += p[0]
        g = self._reduce([p[1:] for p in parts], self.dtype)
        _, Q, _, c = self.unpack(x)
        _, gQ, _, gc = self.unpack(g)
        gQ += self._regw_i[:, None] * Q
        loss += 0.5 * float(np.dot(self._regw_i.astype(np.float64), np.einsum("ij,ij->i", Q, Q, dtype=np.float64)))
        if self.biases:
            gc += self._regbw_i * c
            loss += 0.5 * float(np.dot(self._regbw_i.astype(np.float64), c.astype(np.float64) ** 2))
        self._fg_x = x.copy()
        self._fg = (float(loss), g)
        self.n_evaluations += 1
        return self._fg

    def fun(self, x) -> float:
        """The loss at ``x`` (one round, shared with :meth:`jac`)."""
        self.nfev += 1
        return self._fun_and_jac(self._cast(x))[0]

    def jac(self, x) -> np.ndarray:
        """The gradient at ``x`` (a new array)."""
        self.njev += 1
        return self._fun_and_jac(self._cast(x))[1].copy()

    def fun_and_jac(self, x):
        """``(fun(x), jac(x))`` from one round."""
        self.nfev += 1
        self.njev += 1
        f, g = self._fun_and_jac(self._cast(x))
        return f, g.copy()

    def hessp(self, x, p) -> np.ndarray:
        """Hessian (``hessian``) product at ``x`` with ``p`` (one round; two if ``x`` changed)."""
        self.nhessp += 1
        x = self._cast(x)
        self._ensure_point(x)
        p = self._cast(p)
        parts = self.data.round("hessp", self._slices(p))
        h = self._reduce(parts, self.dtype)
        _, dQ, _, dc = self.unpack(p)
        _, hQ, _, hc = self.unpack(h)
        hQ += self._regw_i[:, None] * dQ
        if self.biases:
            hc += self._regbw_i * dc
        return h

    def diag_gauss_newton(self, x) -> np.ndarray:
        """Diagonal of the Gauss-Newton matrix at ``x`` (one round)."""
        x = self._cast(x)
        parts = self.data.round("diag_gauss_newton", self._slices(x))
        self._held = x.copy()
        d = self._reduce(parts, self.dtype)
        _, dQ, _, dc = self.unpack(d)
        dQ += self._regw_i[:, None]
        if self.biases:
            dc += self._regbw_i
        return d


def fit_newton(data, rank: int = 32, *, client=None, n_blocks: int | None = None, reg: float = 0.1,
               reg_bias: float | None = None, biases: bool = True, reg_weighting="uniform", dtype=np.float32,
               hessian: str = "gauss-newton", mu: float | None = None, random_state=0, x0=None,
               preconditioner: str = "none", timeout: float | None = None, columns=None, **kwargs):
    """Fit by trust-region Newton-CG on a cluster (the in-process driver on a :class:`DistributedObjective`).

    Parameters
    ----------
    data : dask DataFrame, Parquet path, fastmf.Ratings or DistributedRatings
        A ``DistributedRatings`` is used as is (and not closed); anything else is
        distributed with :func:`fastmf.distributed.distribute` and released at the end.
    rank, reg, reg_bias, biases, reg_weighting, dtype, hessian, mu, random_state, x0
        As :func:`fastmf.solvers.newton.fit_newton_cg`.
    client, n_blocks, columns, timeout
        As :func:`fastmf.distributed.distribute`.
    preconditioner : {"none"}
        Only ``"none"`` for now (module docstring).
    **kwargs
        To :func:`fastmf.solvers.newton.newton_cg` (``gtol``, ``ftol``, ``max_iter``,
        ``max_cg``, ``callbacks``, ``progress``, ``max_time``, ...).

    Returns
    -------
    SolverResult
        As in process, plus ``user_ids, item_ids, rating_scale, seen_indptr,
        seen_items, n_blocks, comm`` (see :func:`fastmf.distributed.als.fit_als`).
    """
    from ..solvers.newton import newton_cg
    from .als import _finish, _open

    if preconditioner != "none":
        raise ValueError(
            f"preconditioner={preconditioner!r} is not available on a cluster yet: the Newton-CG driver builds "
            "its preconditioners from in-process ratings; use preconditioner='none' (the distributed Gauss-Newton "
            "diagonal, DistributedObjective.diag_gauss_newton, plugs in with the compute-backend seam)"
        )
    if kwargs.get("validation") is not None:
        raise ValueError("validation with distributed Newton-CG is not supported yet: use fit_als, or score "
                         "the fitted model with fastmf.distributed.scoring")
    ds, owned = _open(data, client, n_blocks, dtype, columns, timeout)
    try:
        obj = DistributedObjective(ds, rank, reg=reg, reg_bias=reg_bias, biases=biases, dtype=dtype,
                                   hessian=hessian, reg_weighting=reg_weighting, mu=mu)
        ds.reset_stats()
        res = newton_cg(obj, x0, random_state=random_state, preconditioner="none", **kwargs)
        return _finish(res, ds)
    finally:
        if owned:
            ds.close()
