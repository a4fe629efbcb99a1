r"""Parallel blocked stratified SGD (as LIBMF's FPSGD and DSGD), deterministic by seed.

Objective
---------
With ``mu`` fixed, :math:`\hat r_{ui} = \mu + b_u + c_i + p_u^\top q_i` and
:math:`e_{ui} = r_{ui} - \hat r_{ui}`, the solver minimises the fastmf objective
(:mod:`fastmf.reference`, ``fastmf.objective``)

.. math::

    L = \tfrac12 \sum_\Omega e_{ui}^2
        + \tfrac12 \lambda \Big(\sum_u w_u \|p_u\|^2 + \sum_i w_i \|q_i\|^2\Big)
        + \tfrac12 \lambda_b \Big(\sum_u w_u b_u^2 + \sum_i w_i c_i^2\Big)

with :math:`w_u = n_u` (``reg_weighting="count"``, the default) or :math:`w_u = 1`
(``"uniform"``); :math:`n_u, n_i` are the numbers of training ratings of the row.
SGD writes :math:`L = \sum_\Omega \ell_{ui}` with

.. math::

    \ell_{ui} = \tfrac12 e_{ui}^2
        + \tfrac12 \lambda \big(s_u \|p_u\|^2 + s_i \|q_i\|^2\big)
        + \tfrac12 \lambda_b \big(s_u b_u^2 + s_i c_i^2\big),
    \qquad s_u = w_u / n_u,\; s_i = w_i / n_i,

so that one epoch's stochastic gradients sum exactly to :math:`\nabla L`.  With
``"count"`` weighting :math:`s = 1`: this is the textbook SGD update (Funk, Koren,
LIBMF, Surprise) with a constant per-update regulariser, and ``reg`` has the usual
SGD scale (0.02-0.1).  With ``"uniform"`` weighting the per-update regulariser of a
row is :math:`\lambda / n_u`, and ``reg`` has the scale of the Newton/ALS solvers'
uniform objective (several units on MovieLens).

Training loss of the history
----------------------------
``train_loss="running"`` (default): the loss recorded for epoch :math:`t` is

.. math::

    \tilde L_t = \tfrac12 \sum_\Omega \big(e^{(t)}_{ui}\big)^2 + \text{penalty}(\theta_t),

where :math:`e^{(t)}_{ui}` is the residual of rating :math:`(u, i)` *at the moment of
its update in epoch t, before the update* (LIBMF's "tr-loss"), accumulated in float64
per block and summed in block order (so it does not depend on the thread count), and
the penalty (the two :math:`\lambda` terms of :math:`L`) is computed exactly on the
parameters :math:`\theta_t` at the end of the epoch.  The squared-error part costs one
FMA an update instead of a second pass over the ratings (about half an epoch's
update pass); it lags the model by part of an epoch, so it
is a little above :math:`L(\theta_t)` while the loss is falling and approaches it at
convergence.  ``train_loss="exact"``: the loss recorded is :math:`L(\theta_t)`
exactly (a separate float64 pass each epoch, plus one before the first epoch).
In both modes the result's ``fun`` is the exact :math:`L` at the returned parameters
(one final pass in running mode).  "Exact" up to the order of the float64 sums: the
pass (:func:`fastmf.kernels.sgd.squared_error_blocks`) reassociates them so that it
vectorises; the validation RMSE is scored by the same kernel (clipped predictions).

Rows with no training rating are never visited; their factors are initialised to
zero (the minimiser of :math:`L` for such a row) unless ``x0`` is given, and their
biases to zero.

Learning rates
--------------
``schedule="adaptive"`` (default): row-wise AdaGrad as LIBMF: each user row, item row,
user bias and item bias keeps an accumulator :math:`G` (starting at 1); a row's step
is :math:`\eta / \sqrt{G}`, then :math:`G \mathrel{+}= \|g\|^2 / k` (factor rows) or
:math:`g^2` (biases).  Accumulators are reset at every call (also with ``x0``).
``"constant"``: :math:`\eta_t = \eta`.  ``"decay"``: :math:`\eta_t = \eta / (1 +
\text{decay}\cdot t)` for epoch :math:`t = 0, 1, \dots` (inverse-time decay).
Defaults: :math:`\eta = 0.05` adaptive, :math:`0.01` constant / decay; ``reg=0.05``
(count weighting), ``init_scale=0.01``, chosen on 90/10 splits of the ml-100k base sets
u1..u5 only (validation RMSE 0.904 at rank 32; the test sets were never used).

Memory: the block-major copy costs ``8 + itemsize`` bytes a rating (12 in float32),
plus working copies of ``P``, ``Q`` and a 4-value state record per row.

Parallelism and determinism
---------------------------
See :mod:`fastmf.kernels.sgd`: users and items are permuted (seeded) and cut into
``B`` bins of about equal rating counts; an epoch runs ``B`` strata of ``B`` blocks
that share no bin (a seeded random Latin square per epoch), each stratum's blocks in
parallel.  ``B`` (``n_blocks``) never depends on the thread count, so a given seed
gives bit-identical factors with 1 or N threads.  ``mode="hogwild"`` instead runs
lock-free over a globally shuffled copy: faster to set up, **not deterministic**
with more than one thread, kept for comparison.
"""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace
from typing import Callable, Iterable

import numba
import numpy as np

from .._alloc import aligned_empty
from ..initialization import random_factors
from .._packing import n_params, pack
from .._validation import check_choice, check_nonnegative_float, check_positive_int, check_random_state
from ..data.ratings import Ratings
from ..exceptions import DivergenceError
from ..kernels import sgd as _k
from ..problem import MFProblem, solver_default
from ._base import (
    UNSET,
    IterativeSolver,
    RunOptions,
    SolverResult,
    Status,
    ValidationMonitor,
    check_validation,
    renamed,
    run_iterations,
)

__all__ = ["sgd", "SGD", "DivergenceError", "SGDLayout", "build_layout", "stratum_schedule", "default_n_blocks"]

logger = logging.getLogger("fastmf")

_SCHEDULES = ("adaptive", "constant", "decay")
_MODES = ("blocked", "hogwild")
_TRAIN_LOSSES = ("running", "exact")
DEFAULT_LEARNING_RATE = {"adaptive": 0.05, "constant": 0.01, "decay": 0.01}
#: Byte alignment of the working factor matrices and row records (one cache line: a
#: rank-32 float32 row then spans exactly two lines, which the kernel prefetches).
_ALIGN = 64
#: Number of fixed segments/chunks of the loss passes (a constant, so the float64
#: reduction order - hence the loss - does not depend on the thread count).
_N_LOSS_SEGMENTS = 256
_HOGWILD_CHUNKS = 256
#: Fewest ratings a chunk of the parallel block layout (smaller inputs use fewer chunks).
_MIN_LAYOUT_CHUNK = 1 << 16


def default_n_blocks(nnz: int) -> int:
    """Default grid size ``B``: a function of the data size only, never of the thread count.

    ``B = 16`` from 1M ratings on (small blocks stay cache-resident and two to eight
    threads balance well), ``B = 8`` below.  Bigger machines (more than 8 threads) should
    pass ``n_blocks >= 2 * threads``.
    """
    return 16 if nnz >= 1_000_000 else 8


def stratum_schedule(n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's strata: an int64 array ``S`` of shape ``(B, B)`` of block ids.

    Block id ``ub * B + ib`` is the block of user bin ``ub`` and item bin ``ib``.
    Stratum ``t`` is ``S[t]``: slot ``s`` holds user bin ``s`` and item bin
    ``pi[(rho[s] + sigma[t]) % B]`` with ``sigma, rho, pi`` seeded permutations - a
    random Latin square, so every stratum's blocks have distinct user bins and
    distinct item bins, and the ``B`` strata cover each of the ``B*B`` blocks once.
    """
    B = int(n_blocks)
    sigma = rng.permutation(B)
    rho = rng.permutation(B)
    pi = rng.permutation(B)
    slots = np.arange(B)
    item_bins = pi[(rho[None, :] + sigma[:, None]) % B]
    return (slots[None, :] * B + item_bins).astype(np.int64)


def _bins(counts_work: np.ndarray, n_bins: int, nnz: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut working codes (in order) into ``n_bins`` contiguous bins of about equal
    rating counts; returns ``(bin_of_code int32, bounds int64 (n_bins+1,))``."""
    cum = np.cumsum(counts_work)
    targets = nnz * np.arange(1, n_bins, dtype=np.float64) / n_bins
    inner = np.searchsorted(cum, targets, side="left") + 1
    bounds = np.concatenate(([0], np.minimum(inner, len(counts_work)), [len(counts_work)])).astype(np.int64)
    bounds = np.maximum.accumulate(bounds)
    bin_of = np.repeat(np.arange(n_bins, dtype=np.int32), np.diff(bounds))
    return bin_of, bounds


class SGDLayout(SimpleNamespace):
    """Block-major copy of the training ratings (see :mod:`fastmf.kernels.sgd`).

    Attributes: ``n_blocks``, ``users``/``items`` (int32 working codes), ``values``,
    ``block_ptr`` (int64, ``B*B+1``), ``user_order``/``item_order`` (original code of
    each working code), ``user_work``/``item_work`` (working code of each original
    code), ``user_bounds``/``item_bounds`` (bin boundaries in working codes), ``seed``
    (uint64 of the in-block shuffles), ``user_counts``/``item_counts`` (int64 ratings per
    row, in original codes), ``user_bin``/``item_bin`` (int32 bin of each working code).
    """

    @property
    def block_sizes(self) -> np.ndarray:
        """Ratings per block, shape ``(B, B)`` (rows: user bins)."""
        return np.diff(self.block_ptr).reshape(self.n_blocks, self.n_blocks)



def build_layout(ratings: Ratings, n_blocks: int, rng: np.random.Generator, dtype=np.float32) -> SGDLayout:
    """Permute, bin and copy ``ratings`` block by block (then shuffle each block).

    Draws from ``rng`` in a fixed order: user permutation, item permutation, the
    64-bit shuffle seed.  The layout does not depend on the thread count.
    """
    m, n, nnz = ratings.n_users, ratings.n_items, ratings.nnz
    user_counts = ratings.user_counts
    # a histogram of the item codes, not ``ratings.item_counts``: that builds the whole
    # item-major copy of the ratings (a sort), which SGD never uses
    item_counts = _k.code_counts(ratings.items, n, _layout_chunks(nnz))
    B = int(n_blocks)
    user_order = rng.permutation(m)
    item_order = rng.permutation(n)
    seed = np.uint64(rng.integers(0, 2**63))
    user_work = np.empty(m, dtype=np.int32)
    user_work[user_order] = np.arange(m, dtype=np.int32)
    item_work = np.empty(n, dtype=np.int32)
    item_work[item_order] = np.arange(n, dtype=np.int32)
    user_bin, user_bounds = _bins(user_counts[user_order], B, nnz)
    item_bin, item_bounds = _bins(item_counts[item_order], B, nnz)
    bu = np.empty(nnz, dtype=np.int32)
    bi = np.empty(nnz, dtype=np.int32)
    bv = np.empty(nnz, dtype=dtype)
    block_ptr = np.empty(B * B + 1, dtype=np.int64)
    _k.block_layout(ratings.users, ratings.items, ratings.values, user_work, item_work,
                    user_bin, item_bin, B, _layout_chunks(nnz), bu, bi, bv, block_ptr)
    _k.shuffle_blocks(bu, bi, bv, block_ptr, seed, 0)
    return SGDLayout(n_blocks=B, users=bu, items=bi, values=bv, block_ptr=block_ptr,
                     user_order=user_order, item_order=item_order, user_work=user_work,
                     item_work=item_work, user_bounds=user_bounds, item_bounds=item_bounds, seed=seed,
                     user_counts=user_counts, item_counts=item_counts, user_bin=user_bin, item_bin=item_bin)


def _layout_chunks(nnz: int) -> int:
    """Chunks of the parallel block layout: one a thread (the layout is the same for any number)."""
    return max(1, min(numba.get_num_threads(), nnz // _MIN_LAYOUT_CHUNK))


def _equal_segments(total: int, n_segments: int) -> np.ndarray:
    return np.linspace(0, total, min(n_segments, max(total, 1)) + 1).round().astype(np.int64)


def _aligned_copy(a: np.ndarray, align: int = _ALIGN) -> np.ndarray:
    """C-contiguous copy of ``a`` whose data starts on an ``align``-byte boundary."""
    out = aligned_empty(a.shape, a.dtype, align)
    out[...] = a
    return out


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _check_clip(clip, ratings: Ratings):
    if clip is None or clip is False:
        return None
    if clip is True:
        if ratings.rating_scale is None:
            raise ValueError("clip=True needs the training ratings to declare a rating_scale; pass clip=(low, high)")
        return tuple(ratings.rating_scale)
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"clip must be None, True or a pair (low, high), got {clip!r}") from exc
    # low == high is allowed: data whose ratings are all equal (or a single rating) has a
    # one-point observed scale, and predictions clipped to it are that value
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"clip must be (low, high) with finite low <= high, got {clip!r}")
    return (low, high)


def sgd(
    ratings: Ratings,
    rank: int = 32,
    *,
    reg: float = solver_default("sgd", "reg"),
    reg_bias: float | None = None,
    reg_weighting: str = solver_default("sgd", "reg_weighting"),
    biases: bool = True,
    mu: float | None = None,
    dtype=np.float32,
    learning_rate: float | None = None,
    schedule: str = "adaptive",
    decay: float = 0.1,
    max_iter: int = 30,
    n_blocks: int | None = None,
    mode: str = "blocked",
    reshuffle: bool = False,
    n_threads: int | None = None,
    random_state=0,
    init_scale: float = 0.01,
    x0: np.ndarray | None = None,
    validation: Ratings | None = None,
    early_stopping: int | str | None = "auto",
    min_delta: float = 1e-4,
    callbacks: Callable | Iterable[Callable] | None = None,
    progress: bool = True,
    tol: float | None = None,
    clip=None,
    train_loss: str = "running",
    max_time: float | None = None,
    n_epochs=UNSET,
) -> SolverResult:
    r"""Fit a (biased) matrix factorization by parallel blocked SGD.

    Minimises the objective of the module docstring: squared error plus L2 with
    ``reg`` (:math:`\lambda`) on the factors and ``reg_bias`` (:math:`\lambda_b`) on
    the biases, row weights by ``reg_weighting``.

    Parameters
    ----------
    ratings : Ratings
        Training ratings.
    rank : int >= 1
        Number of latent factors ``k``.
    reg : float >= 0
        :math:`\lambda` on the factors.  With the default ``reg_weighting="count"`` it
        is the usual per-update SGD regulariser.
    reg_bias : float >= 0, optional
        :math:`\lambda_b` on the biases; defaults to ``reg``.
    reg_weighting : {"uniform", "sqrt-count", "count"} or float >= 0
        Row weights :math:`w_u = n_u^{\alpha}` of the penalty (module docstring and
        :mod:`fastmf._weights`): α = 1 (``"count"``), 0.5 (``"sqrt-count"``), 0 (``"uniform"``).
    biases : bool
        Fit user and item biases.
    mu : float, optional
        Fixed global offset; defaults to the training mean with biases and 0 without
        (as :class:`fastmf.reference.DenseMF`).
    dtype : {np.float32, np.float64}
        Storage and arithmetic dtype of the parameters.
    learning_rate : float > 0, optional
        :math:`\eta`; default 0.05 (adaptive) or 0.01 (constant, decay).
    schedule : {"adaptive", "constant", "decay"}
        Row-wise AdaGrad (as LIBMF), constant, or :math:`\eta/(1 + \text{decay}\,t)`.
    decay : float >= 0
        Decay rate of ``schedule="decay"`` (per epoch).
    max_iter : int >= 1
        Maximum number of epochs (passes over the ratings); ``n_epochs`` is its deprecated name.
    n_blocks : int >= 1, optional
        Grid size ``B`` (``B x B`` blocks).  Default :func:`default_n_blocks` (from the
        data size only).  Results depend on ``B`` and the seed, never on ``n_threads``.
        Parallelism is at most ``B`` threads.
    mode : {"blocked", "hogwild"}
        Blocked stratified SGD (deterministic) or lock-free Hogwild (not deterministic
        with more than one thread; for comparison).
    reshuffle : bool
        Reshuffle each block at every epoch (seeded by ``(seed, epoch, block)``, so still
        deterministic); default False: one seeded shuffle at setup plus a new random
        order of blocks each epoch.
    n_threads : int, optional
        Numba threads for this call (None: all).
    random_state : int, None or numpy Generator
        Seeds the permutations, shuffles, schedules and the initial factors.
    init_scale : float >= 0
        Initial factors are :math:`\mathcal N(0, \text{init\_scale}^2)`; biases start at 0.
    x0 : ndarray, optional
        Initial packed parameters ``[P, Q, b, c]`` (warm start; not modified).
    validation, early_stopping, min_delta, callbacks, progress, max_time
        The shared run interface (:mod:`fastmf.solvers._base`); ``early_stopping="auto"``
        (default) is a patience of 5 epochs when ``validation`` is given (the best epoch's
        factors are returned; ``docs/stopping.md``), ``None`` only records; ``early_stopping`` counts
        epochs and returns the best epoch's parameters.
    tol : float >= 0, optional
        Stop (status FTOL) when an epoch lowers the training loss by less than
        ``tol * max(|loss|, 1)`` (an increase also stops).
    clip : None, True or (low, high)
        Clip predictions before scoring the validation set (True: the training
        ``rating_scale``).
    train_loss : {"running", "exact"}
        What the history's ``loss`` is (module docstring): ``"running"`` (default) the
        pre-update squared residuals accumulated during the epoch plus the exact
        penalty at its end (no extra pass over the ratings); ``"exact"`` the objective
        :math:`L` of the parameters at the end of the epoch (one more pass an epoch).

    Returns
    -------
    SolverResult
        ``x`` (packed parameters, ``dtype``), ``fun`` (exact training loss :math:`L`
        at ``x``, whatever ``train_loss``),
        ``grad_norm`` (NaN: not computed), ``nit`` (epochs run), ``nfev`` (loss
        evaluations), ``status``, ``message``, ``history`` (per epoch: ``iteration``,
        ``loss`` (as ``train_loss`` says), ``val_rmse``, ``elapsed``, ``learning_rate``,
        ``epoch_time`` (update pass only), ``updates_per_sec``), ``best_iteration``,
        ``elapsed``, and for prediction ``mu``, ``rank``, ``biases``; also ``reg``,
        ``reg_bias``, ``reg_weighting``, ``schedule``, ``learning_rate``, ``n_blocks``,
        ``mode``, ``n_threads``, ``setup_time``, ``train_loss``.

    Raises
    ------
    TypeError, ValueError
        Invalid parameter (named in the message), before any work.
    DivergenceError
        (a ``FloatingPointError``) at the end of the epoch where the loss or a
        parameter becomes non-finite (the penalty pass sums every factor and bias, so a
        single non-finite parameter makes it non-finite); the message names the epoch
        and learning rate and what to change.
    """
    max_iter, iter_name = renamed("sgd", "max_iter", max_iter, 30, "n_epochs", n_epochs)
    return run_iterations(*_make_solver(**locals()))


def _make_solver(*, ratings, rank, reg, reg_bias, reg_weighting, biases, mu, dtype, learning_rate, schedule,
                 decay, max_iter, iter_name, n_blocks, mode, reshuffle, n_threads, random_state, init_scale, x0,
                 validation, early_stopping, min_delta, callbacks, progress, tol, clip, train_loss, max_time,
                 n_epochs):
    """Validate :func:`sgd`'s arguments (before any work); return ``(SGD solver, RunOptions)``."""
    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    problem = MFProblem(rank=rank, biases=_check_bool(biases, "biases"), reg=reg, reg_bias=reg_bias,
                        reg_weighting=reg_weighting, mu=mu, dtype=dtype).bind(ratings)
    check_choice(schedule, "schedule", _SCHEDULES)
    check_choice(mode, "mode", _MODES)
    check_choice(train_loss, "train_loss", _TRAIN_LOSSES)
    if learning_rate is None:
        eta = DEFAULT_LEARNING_RATE[schedule]
    else:
        eta = check_nonnegative_float(learning_rate, "learning_rate", strictly_positive=True)
    decay = check_nonnegative_float(decay, "decay")
    check_positive_int(max_iter, iter_name)
    B = default_n_blocks(ratings.nnz) if n_blocks is None else check_positive_int(n_blocks, "n_blocks")
    reshuffle = _check_bool(reshuffle, "reshuffle")
    init_scale = check_nonnegative_float(init_scale, "init_scale")
    run = RunOptions(max_iter=max_iter, max_time=max_time, callbacks=callbacks, progress=_check_bool(progress, "progress"),
                     validation=validation, early_stopping=early_stopping, min_delta=min_delta,
                     clip=_check_clip(clip, ratings), n_threads=n_threads).check(min_iter=1)
    if tol is not None:
        tol = check_nonnegative_float(tol, "tol")
    check_validation(validation, ratings.n_users, ratings.n_items)
    if x0 is not None:
        x0 = _check_x0(x0, problem)
    solver = SGD(ratings, problem, x0, rng=check_random_state(random_state), eta=eta, schedule=schedule,
                 decay=decay, n_blocks=B, mode=mode, reshuffle=reshuffle, init_scale=init_scale, tol=tol,
                 exact_loss=train_loss == "exact")
    return solver, run


def _check_x0(x0, problem):
    x0 = np.asarray(x0)
    if x0.dtype.kind not in "fiu":
        raise TypeError(f"x0 must be a numeric array, got dtype {x0.dtype}")
    m, n, k, use_biases = problem.n_users, problem.n_items, problem.rank, problem.biases
    if x0.ndim != 1 or x0.shape[0] != n_params(m, n, k, use_biases):
        raise ValueError(
            f"x0 must be 1-D of length {n_params(m, n, k, use_biases)} "
            f"(n_users={m}, n_items={n}, rank={k}, biases={use_biases}), got shape {x0.shape}"
        )
    if not np.isfinite(x0).all():
        raise ValueError("x0 contains NaN or inf")
    return x0


class SGD(IterativeSolver):
    """Blocked (or Hogwild) SGD epochs as hooks of :func:`~fastmf.solvers._base.run_iterations`."""

    name = "sgd"
    unit = "epochs"

    def __init__(self, ratings, problem, x0, *, rng, eta, schedule, decay, n_blocks, mode, reshuffle, init_scale,
                 tol, exact_loss):
        self.ratings, self.problem, self.x0, self.rng = ratings, problem, x0, rng
        self.eta, self.schedule, self.decay, self.B, self.mode = eta, schedule, decay, n_blocks, mode
        self.reshuffle, self.init_scale, self.tol, self.exact_loss = reshuffle, init_scale, tol, exact_loss
        self.mu = problem.mu
        self.desc = f"sgd ({mode})"
        self.nfev = 0

    def max_iter_message(self):
        return f"reached max_iter={self.options.max_iter} epochs"

    def _start(self, layout):
        """64-byte aligned working copies (in working code order) of the starting factors,
        and the starting biases (in working code order)."""
        p, dt = self.problem, self.problem.dtype
        m, n, k = p.n_users, p.n_items, p.rank
        uo, io = layout.user_order, layout.item_order  # original code of each working code
        if self.x0 is None:
            P, Q = random_factors(m, n, k, self.init_scale, self.rng, dtype=dt)
            P[layout.user_counts == 0] = 0
            Q[layout.item_counts == 0] = 0
            b, c = np.zeros(m, dtype=dt), np.zeros(n, dtype=dt)
        else:
            P, Q, b0, c0 = p.unpack(self.x0)  # gathered below: x0 is never modified
            b = b0[uo].astype(dt) if p.biases else np.zeros(m, dtype=dt)
            c = c0[io].astype(dt) if p.biases else np.zeros(n, dtype=dt)
        # gathered straight into aligned rows (rows of 64-byte multiples then never straddle
        # an extra cache line; see the kernel's performance notes)
        Pw, Qw = aligned_empty((m, k), dt, _ALIGN), aligned_empty((n, k), dt, _ALIGN)
        np.take(P.astype(dt, copy=False), uo, axis=0, out=Pw)
        np.take(Q.astype(dt, copy=False), io, axis=0, out=Qw)
        return Pw, Qw, b, c

    def setup(self):
        p, r, dt = self.problem, self.ratings, self.problem.dtype
        m, n, nnz = p.n_users, p.n_items, r.nnz
        blocked = self.mode == "blocked"
        self.layout = layout = build_layout(r, self.B if blocked else 1, self.rng, dt)
        self.P, self.Q, b, c = self._start(layout)
        ucount = layout.user_counts[layout.user_order].astype(np.float64)
        icount = layout.item_counts[layout.item_order].astype(np.float64)
        self.wu, self.wi = p.row_weights(ucount, icount)
        # per-row state records (bias, AdaGrad accumulators starting at 1, s = w / n with 0
        # for empty rows, which are never visited)
        self.AU = AU = _aligned_copy(np.ones((m, 4), dtype=dt))
        self.AI = AI = _aligned_copy(np.ones((n, 4), dtype=dt))
        AU[:, _k.BIAS] = b
        AI[:, _k.BIAS] = c
        AU[:, _k.REG_SCALE] = np.divide(self.wu, ucount, out=np.zeros(m), where=ucount > 0)
        AI[:, _k.REG_SCALE] = np.divide(self.wi, icount, out=np.zeros(n), where=icount > 0)
        self.seg_ptr = _equal_segments(nnz, _N_LOSS_SEGMENTS)
        self.uchunks = _equal_segments(m, _N_LOSS_SEGMENTS)
        self.ichunks = _equal_segments(n, _N_LOSS_SEGMENTS)
        self.hog_ptr = _equal_segments(nnz, _HOGWILD_CHUNKS)
        # running loss: one float64 slot per block (blocked) or chunk (hogwild), summed in order
        self.run_out = np.zeros(self.B * self.B if blocked else self.hog_ptr.shape[0] - 1)
        if self.monitor is not None:
            # score in working codes, against the working-order parameters, with the
            # validation ratings laid out by block as the training ones: the factor rows a
            # block touches stay in cache (random order costs about 2x), and the scoring
            # kernel vectorises
            v = self.options.validation
            nv = v.values.shape[0]
            vu, vi = np.empty(nv, dtype=np.int32), np.empty(nv, dtype=np.int32)
            vv, vptr = np.empty(nv, dtype=np.float64), np.empty(layout.n_blocks ** 2 + 1, dtype=np.int64)
            _k.block_layout(v.users, v.items, v.values, layout.user_work, layout.item_work, layout.user_bin,
                            layout.item_bin, layout.n_blocks, _layout_chunks(nv), vu, vi, vv, vptr)
            self.val_seg = _equal_segments(nv, _N_LOSS_SEGMENTS)
            o = self.options
            self.monitor = ValidationMonitor(SimpleNamespace(users=vu, items=vi, values=vv), self.mu, o.early_stopping,
                                             o.min_delta, o.clip, rmse=self._val_rmse)
        self.setup_time = self.clock()
        if self.exact_loss:
            self.current_loss = self._exact(self.P, self.Q, *self._biases())
            self.nfev += 1
        else:  # no running loss before the first epoch (tol never stops at epoch 1)
            self.current_loss = math.inf
        logger.debug("sgd: setup %.3fs, %d blocks, initial loss %.6g", self.setup_time, self.B, self.current_loss)
        ftype = dt.type
        self._scalars = (ftype(self.mu), ftype(p.reg), ftype(p.reg_bias), ftype(1.0 / p.rank))
        # same compiled update whether the epoch kernels were compiled here or loaded from
        # numba's cache (see kernels.sgd.bind_update)
        _k.bind_update(layout.users, layout.items, layout.values, self.P, self.Q, AU, AI, self._scalars[0],
                       ftype(self.eta), *self._scalars[1:], p.biases, self.schedule == "adaptive")

    def _val_rmse(self, users, items, ratings, P, Q, b, c, mu, clip) -> float:
        """Validation RMSE (the monitor's scorer; see :func:`fastmf.kernels.sgd.squared_error_blocks`)."""
        out = np.empty(self.val_seg.shape[0] - 1)
        use_biases = b is not None
        if not use_biases:
            b = c = np.zeros(1, dtype=P.dtype)
        low, high = (-math.inf, math.inf) if clip is None else (float(clip[0]), float(clip[1]))
        _k.squared_error_blocks(users, items, ratings, self.val_seg, P, Q, b, c, float(mu), use_biases, low, high, out)
        return math.sqrt(math.fsum(out) / max(ratings.shape[0], 1))

    def _biases(self):
        return np.ascontiguousarray(self.AU[:, _k.BIAS]), np.ascontiguousarray(self.AI[:, _k.BIAS])

    def _penalty(self, P, Q, b, c) -> float:
        """Exact penalty (non-finite if any parameter is: the divergence check)."""
        p = self.problem
        pu_f, pu_b = np.empty(self.uchunks.shape[0] - 1), np.empty(self.uchunks.shape[0] - 1)
        pi_f, pi_b = np.empty(self.ichunks.shape[0] - 1), np.empty(self.ichunks.shape[0] - 1)
        _k.penalty_chunks(P, b, self.wu, p.biases, self.uchunks, pu_f, pu_b)
        _k.penalty_chunks(Q, c, self.wi, p.biases, self.ichunks, pi_f, pi_b)
        # fixed-order float64 sums: the same value whatever the thread count
        total = 0.5 * p.reg * (math.fsum(pu_f) + math.fsum(pi_f))
        if p.biases:
            total += 0.5 * p.reg_bias * (math.fsum(pu_b) + math.fsum(pi_b))
        return total

    def _exact(self, P, Q, b, c) -> float:
        lay = self.layout
        seg_out = np.empty(self.seg_ptr.shape[0] - 1)
        _k.squared_error_blocks(lay.users, lay.items, lay.values, self.seg_ptr, P, Q, b, c, float(self.mu),
                                self.problem.biases, -math.inf, math.inf, seg_out)
        return 0.5 * math.fsum(seg_out) + self._penalty(P, Q, b, c)

    def _loss(self) -> float:
        """The history's loss of the epoch just run (see ``train_loss``)."""
        b, c = self._biases()
        if self.exact_loss:
            return self._exact(self.P, self.Q, b, c)
        return 0.5 * math.fsum(self.run_out) + self._penalty(self.P, self.Q, b, c)

    def params(self):
        b, c = self._biases() if self.problem.biases else (None, None)
        return self.P, self.Q, b, c

    def step(self, epoch):
        lay, r = self.layout, self.ratings
        lr = self.eta / (1.0 + self.decay * (epoch - 1)) if self.schedule == "decay" else self.eta
        mu_t, lam_t, lamb_t, inv_k = self._scalars
        lr_t = self.problem.dtype.type(lr)
        t0 = self.clock()
        if self.reshuffle and epoch > 1:
            _k.shuffle_blocks(lay.users, lay.items, lay.values, lay.block_ptr, lay.seed, epoch)
        args = (self.P, self.Q, self.AU, self.AI, mu_t, lr_t, lam_t, lamb_t, inv_k, self.problem.biases,
                self.schedule == "adaptive", self.run_out)
        if self.mode == "blocked":
            sched = stratum_schedule(self.B, self.rng)
            _k.sgd_epoch_blocked(lay.users, lay.items, lay.values, lay.block_ptr, sched, *args)
        else:
            _k.sgd_epoch_hogwild(lay.users, lay.items, lay.values, self.hog_ptr, *args)
        epoch_time = self.clock() - t0
        self.previous_loss, self.current_loss = self.current_loss, self._loss()
        self.nfev += int(self.exact_loss)
        if not math.isfinite(self.current_loss):
            raise DivergenceError(_divergence_message(epoch, lr, self.schedule, self.current_loss), epoch, lr,
                                  self.history)
        logger.debug("sgd epoch %d: loss %.6g lr %.4g (%.3fs)", epoch, self.current_loss, lr, epoch_time)
        return dict(loss=self.current_loss, learning_rate=lr, epoch_time=epoch_time,
                    updates_per_sec=r.nnz / epoch_time if epoch_time > 0 else math.inf)

    def postfix(self, rec):
        val = rec["val_rmse"]
        return dict(loss=f"{rec['loss']:.5g}", **({} if val is None else {"val": f"{val:.4f}"}))

    def check_convergence(self, epoch, rec):
        prev, cur = self.previous_loss, self.current_loss
        if self.tol is not None and prev - cur < self.tol * max(abs(prev), 1.0):
            return Status.FTOL, f"relative loss decrease below tol={self.tol:g} at epoch {epoch}"
        return None

    def restore_best(self, params, iteration):
        self.best = params

    def finalize(self, status, message):
        p, lay = self.problem, self.layout
        P, Q = self.P, self.Q
        b, c = self._biases()
        best = getattr(self, "best", None)
        if best is not None:
            P, Q, bb, cc = best
            if p.biases:
                b, c = bb, cc
        if self.exact_loss and best is None:
            fun = self.current_loss  # already L at these parameters
        elif self.exact_loss:
            fun = next(r["loss"] for r in self.history if r["iteration"] == self.monitor.best_iteration)
        else:  # the running loss is not L at x: one exact pass
            fun = self._exact(P, Q, b, c)
            self.nfev += 1
        # back to original code order
        uw, iw = lay.user_work, lay.item_work
        x = pack(P[uw], Q[iw], b[uw] if p.biases else None, c[iw] if p.biases else None, dtype=p.dtype)
        return dict(x=x, fun=fun, grad_norm=float("nan"), n_cg=0, nfev=self.nfev, njev=0, nhessp=0, mu=p.mu,
                    rank=p.rank, biases=p.biases, reg=p.reg, reg_bias=p.reg_bias, reg_weighting=p.reg_weighting,
                    schedule=self.schedule, learning_rate=self.eta, n_blocks=lay.n_blocks, mode=self.mode,
                    n_threads=self.n_threads, setup_time=self.setup_time,
                    train_loss="exact" if self.exact_loss else "running")


def _divergence_message(epoch: int, lr: float, schedule: str, loss: float) -> str:
    advice = f"lower learning_rate (e.g. to {lr / 10:.3g}), raise reg"
    if schedule != "adaptive":
        advice += ", or use schedule='adaptive'"
    return (f"SGD diverged at epoch {epoch}: the training loss or a parameter became non-finite "
            f"(loss={loss}) with learning_rate={lr:.4g} (schedule={schedule!r}); {advice}.")
