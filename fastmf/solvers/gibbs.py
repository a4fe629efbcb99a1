r"""Bayesian biased MF by Gibbs sampling: the posterior-mean predictor.

The model is fastmf's biased MF, :math:`r_{ui} \sim \mathcal N(\mu + b_u + c_i +
p_u^\top q_i,\ \sigma^2)`, with the hierarchical Gaussian prior of Bayesian PMF
(Salakhutdinov & Mnih 2008) in the diagonal form of libFM's MCMC (Rendle 2012),
one prior per side and per coordinate :math:`a` (the factor coordinates and the
bias):

.. math::

    p_{ua} \sim \mathcal N(m^P_a,\ 1/\lambda^P_a), \qquad
    (m^P_a, \lambda^P_a) \sim \mathcal{NG}\big(0,\ \gamma_0,\ \alpha_0/2,\ \beta_0/2\big),
    \qquad \sigma^2 \sim \mathrm{Inv\text{-}Gamma}(\alpha_0/2,\ \beta_0/2)

(items alike with their own :math:`m^Q, \lambda^Q`).  Compared with the MAP fit of
:class:`fastmf.objective.MFObjective`, the penalty :math:`\lambda` is not chosen by
hand: each coordinate's prior precision is *inferred*, and the prediction is the
posterior mean :math:`E[\hat r_{ui}\mid R]`, averaged over the draws, instead of the
prediction of one point estimate.

One sweep
---------
1. :math:`\sigma^2 \mid \cdot \sim \mathrm{Inv\text{-}Gamma}\big((\alpha_0 + N)/2,\
   (\beta_0 + \mathrm{SSE})/2\big)` (skipped with a fixed ``noise_variance``);
2. user hyperparameters, an exact joint Normal-Gamma draw per coordinate: with the
   users' values :math:`x_1..x_m` of that coordinate, mean :math:`\bar x`,
   :math:`\lambda \sim \mathrm{Gamma}\big((\alpha_0 + m)/2,\ \text{rate}\
   (\beta_0 + \sum (x - \bar x)^2 + \gamma_0 m \bar x^2/(\gamma_0 + m))/2\big)`, then
   :math:`m \sim \mathcal N\big(m\bar x/(\gamma_0 + m),\ 1/((\gamma_0 + m)\lambda)\big)`;
3. every user's :math:`(p_u, b_u)` from its Gaussian conditional, precision
   :math:`\sigma^{-2} B_u` with
   :math:`B_u = \sum_{i\in\Omega_u} \tilde q_i \tilde q_i^\top + \sigma^2 \mathrm{diag}(\lambda^P)`
   and mean :math:`B_u^{-1}\big(\sum_i (r_{ui} - \mu - c_i)\tilde q_i + \sigma^2
   \lambda^P \odot m^P\big)`: the ALS block of :mod:`fastmf.kernels.blocks`, Cholesky
   factored, plus :math:`\sigma L^{-\top} z` (``als_solve_rows`` with noise);
4. items alike (steps 2-3 with the roles swapped).

After ``burn_in`` sweeps, every ``thin``-th draw is kept.  The average prediction of
``S`` kept draws, :math:`\mu + \bar b_u + \bar c_i + \frac1S\sum_s p_u^{(s)\top}
q_i^{(s)}`, is itself a biased MF of rank :math:`Sk`: the result's ``x`` packs
:math:`\tilde P = [P^{(1)} \dots P^{(S)}]/\sqrt S`, :math:`\tilde Q` likewise and the
mean biases, so every fastmf prediction path (``predict``, ``recommend``, saving)
serves the posterior mean unchanged.  Memory: ``S k (m + n)`` floats (checked
against ``max_memory`` before any work).

Determinism: the normal draws are made by one ``numpy.random.Generator`` in Python,
row by row, and each row's draw depends only on its own data, so a seed gives the
same chain whatever the thread count; the SSE is summed over a fixed chunking.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Iterable

import numpy as np

from .._memory import check_fit_memory, estimate_fit_memory, parse_memory
from .._packing import n_params, pack, unpack
from .._validation import check_nonnegative_float, check_positive_int, check_random_state
from ..backends.local import LocalBackend
from ..initialization import initial_factors
from ..kernels.predict import predict_codes
from ..problem import MFProblem
from ._base import UNSET, IterativeSolver, RunOptions, SolverResult, check_validation, renamed, run_iterations

__all__ = ["gibbs", "Gibbs"]

logger = logging.getLogger("fastmf")

#: Rows are processed in this many fixed chunks (the chain does not depend on the threads).
_N_CHUNKS = 64


def _normal_gamma_draw(X: np.ndarray, rng: np.random.Generator, a0: float, b0: float, g0: float):
    """Joint draw of each column's (mean, precision) given its values ``X`` (n, K)."""
    n = X.shape[0]
    xbar = X.mean(axis=0) if n else np.zeros(X.shape[1])
    ss = ((X - xbar) ** 2).sum(axis=0)
    kappa = g0 + n
    rate = 0.5 * (b0 + ss + g0 * n * xbar ** 2 / kappa)
    lam = rng.gamma(0.5 * (a0 + n), 1.0 / rate)
    mean = n * xbar / kappa + rng.standard_normal(X.shape[1]) / np.sqrt(kappa * lam)
    return lam, mean


def gibbs(
    ratings,
    rank: int = 32,
    *,
    max_iter: int = 200,
    burn_in: int = 50,
    thin: int = 1,
    biases: bool = True,
    dtype=np.float32,
    n_threads: int | None = None,
    random_state=0,
    x0: np.ndarray | None = None,
    noise_variance: float | None = None,
    prior_shape: float = 1.0,
    prior_rate: float = 1.0,
    prior_mean_precision: float = 1.0,
    max_memory=None,
    validation=None,
    clip: tuple[float, float] | None = None,
    callbacks: Callable | Iterable[Callable] | None = None,
    progress: bool = True,
    mu: float | None = None,
    max_time: float | None = None,
    n_samples=UNSET,
) -> SolverResult:
    r"""Sample the posterior of Bayesian biased MF; return the posterior-mean model.

    See the module docstring for the model and the sweep.

    Parameters
    ----------
    ratings : Ratings
        Training ratings.
    rank : int
        Rank ``k`` of each draw (the returned model has rank ``S k``).
    max_iter : int >= 1
        Sweeps after the burn-in (``n_samples`` is its deprecated name); every ``thin``-th
        of them is kept, so ``S = ceil(max_iter / thin)`` draws are averaged.
    burn_in : int >= 0
        Sweeps discarded first.
    thin : int >= 1
        Keep every ``thin``-th draw (saves memory; the chain is unchanged).
    biases : bool
        Sample user and item biases (each with its own hierarchical prior).
    dtype : {np.float32, np.float64}
        Storage of the factors (row systems are solved in float64).
    n_threads : int, optional
        Numba threads for the call.  The chain does not depend on it.
    random_state : None, int or Generator
        Seed of the start and of every draw.
    x0 : ndarray, optional
        Packed rank-``k`` start (e.g. a MAP fit); default: random rows of norm
        0.1 and zero biases.  Not modified.
    noise_variance : float > 0, optional
        Fix :math:`\sigma^2` instead of sampling it.
    prior_shape, prior_rate, prior_mean_precision : float > 0
        :math:`\alpha_0, \beta_0, \gamma_0` of the hyperpriors (libFM's defaults, 1).
    max_memory : float or str, optional
        Bytes (or e.g. ``"8GiB"``) allowed for the whole fit, whose peak (mostly the
        kept draws, ``S k (m + n) * itemsize``, and their copy in the model) is estimated
        by :func:`fastmf._memory.estimate_fit_memory`; default ``$FASTMF_MAX_MEMORY``, else
        the available memory.  Above it a :class:`~fastmf.exceptions.FitMemoryError` (a
        ``MemoryError`` and a ``ValueError``) says what to change.
    validation : Ratings, optional
        Held-out ratings in the training code space: each record's ``val_rmse`` is
        the RMSE of the running posterior mean (during the burn-in: of the current
        draw).  There is no early stopping: averaging more draws does not overfit.
    clip : (low, high), optional
        Clip validation predictions to the rating scale.
    callbacks, progress, max_time
        The shared run interface (:mod:`fastmf.solvers._base`); a callback or the
        time limit ends the run with the draws kept so far (at least one sweep
        after the burn-in is needed for a model).
    mu : float, optional
        The global offset; default the training mean (0 without biases).

    Returns
    -------
    SolverResult
        ``x`` (packed, rank ``S k``: see the module docstring), ``rank = S k``,
        ``sample_rank = k``, ``n_kept = S``, ``mu``, ``biases``, ``fun`` (half
        the training SSE of the last draw), ``grad_norm = nan``, ``nit``
        (sweeps), ``noise_variance`` (mean of the kept draws' :math:`\sigma^2`),
        ``status``, ``message``, ``history`` (per sweep: ``iteration``, ``loss``
        (half the SSE of that draw), ``noise_variance``, ``kept``, ``val_rmse``,
        ``elapsed``), ``elapsed``.

    Raises
    ------
    ValueError, TypeError
        A bad parameter (named), before any work; ``max_memory`` too small for
        the kept draws; a run stopped before any draw was kept.
    """
    n_samples, iter_name = renamed("gibbs", "max_iter", max_iter, 200, "n_samples", n_samples)
    if not isinstance(biases, (bool, np.bool_)):
        raise TypeError(f"biases must be a bool, got {biases!r}")
    if mu is not None and not math.isfinite(float(mu)):
        raise ValueError(f"mu must be finite, got {mu!r}")
    # the prior precisions are sampled: no penalty, unit row weights
    problem = MFProblem(rank=rank, biases=biases, reg=0.0, reg_weighting="uniform", mu=mu, dtype=dtype)
    k, dtype = problem.rank, problem.dtype
    n_samples = check_positive_int(n_samples, iter_name)
    burn_in = check_positive_int(burn_in, "burn_in", minimum=0)
    thin = check_positive_int(thin, "thin")
    hyper = tuple(check_nonnegative_float(v, name, strictly_positive=True) for v, name in (
        (prior_shape, "prior_shape"), (prior_rate, "prior_rate"), (prior_mean_precision, "prior_mean_precision")))
    if noise_variance is not None:
        noise_variance = check_nonnegative_float(noise_variance, "noise_variance", strictly_positive=True)
    if max_memory is not None:
        parse_memory(max_memory)
    run = RunOptions(max_iter=burn_in + n_samples, max_time=max_time, callbacks=callbacks, progress=progress,
                     validation=validation, clip=clip, n_threads=n_threads).check(min_iter=1)
    for attr in ("user_indptr", "items", "values", "item_indptr", "item_users", "item_values"):
        if not hasattr(ratings, attr):
            raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    if ratings.nnz == 0:
        raise ValueError("ratings are empty: nothing to fit")
    check_validation(validation, ratings.n_users, ratings.n_items)
    problem = problem.bind(ratings)
    m, n = ratings.n_users, ratings.n_items
    n_kept = -(-n_samples // thin)
    check_fit_memory(estimate_fit_memory("gibbs", m, n, ratings.nnz, k, biases, dtype, n_threads,
                                         {"max_iter": n_samples, "thin": thin},
                                         0 if validation is None else validation.nnz), max_memory)
    rng = check_random_state(random_state)
    x = _start(ratings, problem, x0, rng)
    backend = LocalBackend(ratings, problem, n_chunks=_N_CHUNKS, cast_ratings=False)
    solver = Gibbs(backend, x, rng, n_samples=n_samples, burn_in=burn_in, thin=thin, n_kept=n_kept,
                   noise_variance=noise_variance, hyper=hyper)
    return run_iterations(solver, run)


def _start(ratings, problem, x0, rng):
    k, biases, dtype, m, n = problem.rank, problem.biases, problem.dtype, problem.n_users, problem.n_items
    if x0 is None:
        P0, Q0 = initial_factors(ratings, k, "random", 0.1, mu=problem.mu, random_state=rng)
        return pack(P0, Q0, np.zeros(m) if biases else None, np.zeros(n) if biases else None, dtype=dtype)
    x = np.array(x0, dtype=dtype, copy=True)
    if x.ndim != 1 or x.shape[0] != problem.n_params:
        raise ValueError(f"x0 must have shape ({problem.n_params},) (rank {k}, biases={biases}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x0 contains NaN or inf")
    return x


class Gibbs(IterativeSolver):
    """Gibbs sweeps (module docstring) as hooks of :func:`~fastmf.solvers._base.run_iterations`.

    Validation is scored here (the running posterior mean), not by the loop's monitor.
    """

    name = "gibbs"

    def __init__(self, backend, x, rng, *, n_samples, burn_in, thin, n_kept, noise_variance, hyper):
        self.backend, self.problem, self.x, self.rng = backend, backend.problem, x, rng
        self.n_samples, self.burn_in, self.thin, self.n_kept = n_samples, burn_in, thin, n_kept
        self.noise_variance, self.hyper = noise_variance, hyper
        self.mu = self.problem.mu
        self.sig2 = 1.0 if noise_variance is None else noise_variance
        self.kept = 0
        self.f = math.nan
        self.sig2_sum = 0.0

    def max_iter_message(self):
        return f"{self.n_samples} sweeps after a burn-in of {self.burn_in} done"

    def setup(self):
        p = self.problem
        m, n, k = p.n_users, p.n_items, p.rank
        # kept draws, stacked straight into the packed result: column block s of Pk holds draw s
        # (scaled at the end), so the only copy is the one of a run stopped before n_kept draws
        self.x_out = np.empty(n_params(m, n, self.n_kept * k, p.biases), dtype=self.x.dtype)
        self.Pk, self.Qk, _, _ = unpack(self.x_out, m, n, self.n_kept * k, p.biases)
        self.b_sum = np.zeros(m) if p.biases else None
        self.c_sum = np.zeros(n) if p.biases else None
        v = self.options.validation
        self.monitor = None
        if v is not None:
            self.v_users, self.v_items = np.ascontiguousarray(v.users), np.ascontiguousarray(v.items)
            self.v_ratings = v.values.astype(np.float64)
            self.v_acc = np.zeros(self.v_ratings.shape[0])

    def _val_rmse(self, pred) -> float:
        p = pred + self.mu
        clip = self.options.clip
        if clip is not None:
            np.clip(p, clip[0], clip[1], out=p)
        e = p - self.v_ratings
        return float(np.sqrt(np.dot(e, e) / max(e.shape[0], 1)))

    def _side(self, side, F, bias):
        a0, b0, g0 = self.hyper
        k, K, sig2 = self.problem.rank, self.problem.block_size, self.sig2
        X = np.empty((F.shape[0], K))
        X[:, :k] = F
        if self.problem.biases:
            X[:, k] = bias
        lam, mean = _normal_gamma_draw(X, self.rng, a0, b0, g0)
        z = self.rng.standard_normal((F.shape[0], K))
        self.backend.solve_rows(side, self.x, sig2 * lam, sig2 * lam * mean, weights=False, noise=z,
                                noise_sd=math.sqrt(sig2))

    def step(self, it):
        a0, b0, _ = self.hyper
        P, Q, b, c = self.problem.unpack(self.x)
        if self.noise_variance is None:
            s = self.backend.sse(self.x)
            self.sig2 = 0.5 * (b0 + s) / self.rng.gamma(0.5 * (a0 + self.backend.ratings.nnz))
        self._side("users", P, b)
        self._side("items", Q, c)
        f = self.f = 0.5 * self.backend.sse(self.x)
        if not (math.isfinite(f) and math.isfinite(self.sig2)):
            raise FloatingPointError(f"gibbs: non-finite draw at sweep {it}: the chain diverged; the data may hold "
                                     "extreme values: check the ratings, or fix noise_variance")
        keep = it > self.burn_in and (it - self.burn_in - 1) % self.thin == 0
        vr = self._keep(P, Q, b, c) if keep else None
        if not keep and self.options.validation is not None:
            vr = self._val_rmse(predict_codes(self.v_users, self.v_items, P, Q, b, c))
        logger.debug("gibbs sweep %d: sse/2=%.8g sigma2=%.5g kept=%d val_rmse=%s", it, f, self.sig2, self.kept, vr)
        return dict(loss=f, noise_variance=self.sig2, kept=self.kept, val_rmse=vr)

    def _keep(self, P, Q, b, c):
        """Store the current draw; the validation RMSE of the running mean (or None)."""
        k, kept = self.problem.rank, self.kept
        self.Pk[:, kept * k:(kept + 1) * k] = P
        self.Qk[:, kept * k:(kept + 1) * k] = Q
        if self.problem.biases:
            self.b_sum += b
            self.c_sum += c
        self.sig2_sum += self.sig2
        self.kept = kept = kept + 1
        if self.options.validation is None:
            return None
        self.v_acc += predict_codes(self.v_users, self.v_items, P, Q, b, c)
        return self._val_rmse(self.v_acc / kept)

    def postfix(self, rec):
        return dict(sigma2=f"{rec['noise_variance']:.4g}")

    def finalize(self, status, message):
        p, kept, x = self.problem, self.kept, self.x
        m, n, k = p.n_users, p.n_items, p.rank
        if kept == 0:
            raise ValueError(
                f"gibbs: {message} after {len(self.history)} sweeps, before any draw was kept "
                f"(burn_in={self.burn_in}): allow more time or lower burn_in"
            )
        x_out = self.x_out
        if kept < self.n_kept:  # stopped early: repack the kept columns
            x_out = pack(self.Pk[:, :kept * k], self.Qk[:, :kept * k], self.b_sum, self.c_sum, dtype=x.dtype)
        Pk, Qk, bk, ck = unpack(x_out, m, n, kept * k, p.biases)
        scale = x.dtype.type(1.0 / math.sqrt(kept))
        Pk *= scale
        Qk *= scale
        if p.biases:
            bk[:] = self.b_sum / kept
            ck[:] = self.c_sum / kept
        return dict(x=x_out, fun=self.f, grad_norm=math.nan, mu=p.mu, rank=kept * k, sample_rank=k, n_kept=kept,
                    biases=p.biases, noise_variance=self.sig2_sum / kept, nfev=0, njev=0, nhessp=0, n_cg=0)
