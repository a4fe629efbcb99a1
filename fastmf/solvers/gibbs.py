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

import numba
import numpy as np

from .._packing import n_params, pack, unpack
from .._threading import thread_limit
from .._validation import (
    check_dtype,
    check_nonnegative_float,
    check_positive_int,
    check_random_state,
)
from ..initialization import initial_factors
from ..kernels.blocks import PIVOT_RTOL, als_solve_rows, row_chunks
from ..kernels.predict import predict_codes
from ._base import CallbackList, IterationRecord, SolverResult, Status, Stopwatch, finish_result, make_progress
from .newton import _check_validation

__all__ = ["gibbs"]

logger = logging.getLogger("fastmf")

#: Rows are processed in this many fixed chunks (the chain does not depend on the threads).
_N_CHUNKS = 64


@numba.njit(parallel=True, cache=True, nogil=True)
def _sse_chunks(indptr, cols, vals, P, Q, b, c, mu, biases, chunks, out):
    """``out[ch]`` = sum of squared residuals of the rows of chunk ``ch`` (float64)."""
    k = P.shape[1]
    for ch in numba.prange(chunks.shape[0] - 1):
        s = 0.0
        for row in range(chunks[ch], chunks[ch + 1]):
            for j in range(indptr[row], indptr[row + 1]):
                col = cols[j]
                e = np.float64(vals[j]) - mu
                if biases:
                    e -= np.float64(b[row]) + np.float64(c[col])
                for a in range(k):
                    e -= np.float64(P[row, a]) * np.float64(Q[col, a])
                s += e * e
        out[ch] = s


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
    n_samples: int = 200,
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
    max_memory: float = 4 * 2.0 ** 30,
    validation=None,
    clip: tuple[float, float] | None = None,
    callbacks: Callable | Iterable[Callable] | None = None,
    progress: bool = True,
    mu: float | None = None,
    max_time: float | None = None,
) -> SolverResult:
    r"""Sample the posterior of Bayesian biased MF; return the posterior-mean model.

    See the module docstring for the model and the sweep.

    Parameters
    ----------
    ratings : Ratings
        Training ratings.
    rank : int
        Rank ``k`` of each draw (the returned model has rank ``S k``).
    n_samples : int >= 1
        Sweeps after the burn-in; every ``thin``-th of them is kept, so
        ``S = ceil(n_samples / thin)`` draws are averaged.
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
    max_memory : float
        Bytes allowed for the kept draws, ``S k (m + n) * itemsize``; above it a
        ``ValueError`` says what to change.
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
    check_dtype(dtype)
    dtype = np.dtype(dtype)
    k = check_positive_int(rank, "rank")
    n_samples = check_positive_int(n_samples, "n_samples")
    burn_in = check_positive_int(burn_in, "burn_in", minimum=0)
    thin = check_positive_int(thin, "thin")
    if not isinstance(biases, (bool, np.bool_)):
        raise TypeError(f"biases must be a bool, got {biases!r}")
    biases = bool(biases)
    a0 = check_nonnegative_float(prior_shape, "prior_shape", strictly_positive=True)
    b0 = check_nonnegative_float(prior_rate, "prior_rate", strictly_positive=True)
    g0 = check_nonnegative_float(prior_mean_precision, "prior_mean_precision", strictly_positive=True)
    if noise_variance is not None:
        noise_variance = check_nonnegative_float(noise_variance, "noise_variance", strictly_positive=True)
    max_memory = check_nonnegative_float(max_memory, "max_memory", strictly_positive=True)
    if max_time is not None:
        max_time = check_nonnegative_float(max_time, "max_time", strictly_positive=True)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    callback_list = CallbackList(callbacks)
    for attr in ("user_indptr", "items", "values", "item_indptr", "item_users", "item_values"):
        if not hasattr(ratings, attr):
            raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    if ratings.nnz == 0:
        raise ValueError("ratings are empty: nothing to fit")
    _check_validation(validation, ratings)
    m, n = ratings.n_users, ratings.n_items
    if mu is None:
        mu = float(ratings.global_mean) if biases else 0.0
    elif not math.isfinite(float(mu)):
        raise ValueError(f"mu must be finite, got {mu!r}")
    mu = float(mu)
    n_kept = -(-n_samples // thin)
    need = float(n_kept) * k * (m + n) * dtype.itemsize
    if need > max_memory:
        raise ValueError(
            f"keeping {n_kept} draws of rank {k} for {m} users and {n} items needs {need / 2**30:.2f} GiB "
            f"> max_memory={max_memory / 2**30:.2f} GiB: raise thin, lower n_samples or rank, or raise max_memory"
        )
    size = n_params(m, n, k, biases)
    rng = check_random_state(random_state)
    if x0 is None:
        P0, Q0 = initial_factors(ratings, k, "random", 0.1, mu=mu, random_state=rng)
        x = pack(P0, Q0, np.zeros(m) if biases else None, np.zeros(n) if biases else None, dtype=dtype)
    else:
        x = np.array(x0, dtype=dtype, copy=True)
        if x.ndim != 1 or x.shape[0] != size:
            raise ValueError(f"x0 must have shape ({size},) (rank {k}, biases={biases}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x0 contains NaN or inf")
    with thread_limit(n_threads):
        return _run_gibbs(ratings, x, k, biases, mu, rng, n_samples, burn_in, thin, n_kept, noise_variance,
                          (a0, b0, g0), validation, clip, callback_list, bool(progress), max_time)


def _run_gibbs(r, x, k, biases, mu, rng, n_samples, burn_in, thin, n_kept, noise_variance, hyper, validation,
               clip, callback_list, progress, max_time) -> SolverResult:
    clock = Stopwatch()
    a0, b0, g0 = hyper
    m, n = r.n_users, r.n_items
    K = k + (1 if biases else 0)
    P, Q, b, c = unpack(x, m, n, k, biases)
    d = np.zeros(1, dtype=x.dtype)
    b_ = b if biases else d
    c_ = c if biases else d
    uch = row_chunks(r.user_indptr, _N_CHUNKS)
    ich = row_chunks(r.item_indptr, _N_CHUNKS)
    nc = max(len(uch), len(ich)) - 1
    A = np.empty((nc, K, K))
    y = np.empty((nc, K))
    fixed = np.zeros(nc, dtype=np.int64)
    sse_parts = np.empty(len(uch) - 1)
    ones_u = np.ones(m)
    ones_i = np.ones(n)
    N = r.nnz
    # kept draws, stacked straight into the packed result: column block s of Pk holds draw s
    # (scaled at the end), so the only copy is the one of a run stopped before n_kept draws
    x_out = np.empty(n_params(m, n, n_kept * k, biases), dtype=x.dtype)
    Pk, Qk, _, _ = unpack(x_out, m, n, n_kept * k, biases)
    b_sum = np.zeros(m) if biases else None
    c_sum = np.zeros(n) if biases else None
    sig2_sum = 0.0
    if validation is not None:
        v_users = np.ascontiguousarray(validation.users)
        v_items = np.ascontiguousarray(validation.items)
        v_ratings = validation.values.astype(np.float64)
        v_acc = np.zeros(v_ratings.shape[0])

    def sse() -> float:
        _sse_chunks(r.user_indptr, r.items, r.values, P, Q, b_, c_, mu, biases, uch, sse_parts)
        return float(sse_parts.sum())

    def val_rmse(pred) -> float:
        p = pred + mu
        if clip is not None:
            np.clip(p, clip[0], clip[1], out=p)
        e = p - v_ratings
        return float(np.sqrt(np.dot(e, e) / max(e.shape[0], 1)))

    def side(F, bias, indptr, cols, vals, other_F, other_b, chunks, ones, sig2):
        X = np.empty((F.shape[0], K))
        X[:, :k] = F
        if biases:
            X[:, k] = bias
        lam, mean = _normal_gamma_draw(X, rng, a0, b0, g0)
        z = rng.standard_normal((F.shape[0], K))
        ncs = len(chunks) - 1
        als_solve_rows(indptr, cols, vals, other_F, other_b, mu, ones, sig2 * lam, sig2 * lam * mean, biases,
                       chunks, PIVOT_RTOL, A[:ncs], y[:ncs], F, bias, fixed[:ncs], z, math.sqrt(sig2))

    sig2 = 1.0 if noise_variance is None else noise_variance
    history: list[IterationRecord] = []
    total = burn_in + n_samples
    bar = make_progress(total, progress, "gibbs")
    status, message = Status.MAX_ITER, f"{n_samples} sweeps after a burn-in of {burn_in} done"
    kept = 0
    it = 0
    f = math.nan
    try:
        for it in range(1, total + 1):
            if noise_variance is None:
                s = sse()
                sig2 = 0.5 * (b0 + s) / rng.gamma(0.5 * (a0 + N))
            side(P, b_, r.user_indptr, r.items, r.values, Q, c_, uch, ones_u, sig2)
            side(Q, c_, r.item_indptr, r.item_users, r.item_values, P, b_, ich, ones_i, sig2)
            f = 0.5 * sse()
            if not (math.isfinite(f) and math.isfinite(sig2)):
                status, message = Status.DIVERGED, f"non-finite draw at sweep {it}: the chain diverged"
                break
            keep = it > burn_in and (it - burn_in - 1) % thin == 0
            vr = None
            if keep:
                Pk[:, kept * k:(kept + 1) * k] = P
                Qk[:, kept * k:(kept + 1) * k] = Q
                if biases:
                    b_sum += b
                    c_sum += c
                sig2_sum += sig2
                kept += 1
                if validation is not None:
                    v_acc += predict_codes(v_users, v_items, P, Q, b, c)
                    vr = val_rmse(v_acc / kept)
            elif validation is not None:
                vr = val_rmse(predict_codes(v_users, v_items, P, Q, b, c))
            rec = IterationRecord(iteration=it, loss=f, noise_variance=sig2, kept=kept, val_rmse=vr,
                                  elapsed=clock())
            history.append(rec)
            logger.debug("gibbs sweep %d: sse/2=%.8g sigma2=%.5g kept=%d val_rmse=%s", it, f, sig2, kept, vr)
            bar.update(1)
            bar.set_postfix(sigma2=f"{sig2:.4g}", refresh=False)
            if callback_list(rec):
                status, message = Status.CALLBACK, "stopped by a callback"
                break
            if max_time is not None and clock() >= max_time:
                status, message = Status.MAX_TIME, f"time limit max_time={max_time:g}s reached"
                break
    finally:
        bar.close()
    if status is Status.DIVERGED:
        raise FloatingPointError(
            f"gibbs: {message}; the data may hold extreme values: check the ratings, or fix noise_variance"
        )
    if kept == 0:
        raise ValueError(
            f"gibbs: {message} after {it} sweeps, before any draw was kept (burn_in={burn_in}): "
            "allow more time or lower burn_in"
        )
    if kept < n_kept:  # stopped early: repack the kept columns
        x_out = pack(Pk[:, :kept * k], Qk[:, :kept * k], b_sum, c_sum, dtype=x.dtype)
    Pk, Qk, bk, ck = unpack(x_out, m, n, kept * k, biases)
    scale = x.dtype.type(1.0 / math.sqrt(kept))
    Pk *= scale
    Qk *= scale
    if biases:
        bk[:] = b_sum / kept
        ck[:] = c_sum / kept
    xs = x_out
    res = finish_result(
        x=xs, fun=f, grad_norm=math.nan, nit=it, status=status, message=message, history=history,
        best_iteration=None, elapsed=clock(), mu=mu, rank=kept * k, sample_rank=k, n_kept=kept,
        biases=biases, noise_variance=sig2_sum / kept, nfev=0, njev=0, nhessp=0, n_cg=0,
    )
    logger.info("gibbs: %s (%d sweeps, %d draws kept, sigma2=%.4g, %.2fs)", message, it, kept,
                res.noise_variance, res.elapsed)
    return res
