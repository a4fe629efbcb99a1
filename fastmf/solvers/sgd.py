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
FMA an update instead of a second random-access pass over the ratings (which costs
about as much as the updates themselves); it lags the model by part of an epoch, so it
is a little above :math:`L(\theta_t)` while the loss is falling and approaches it at
convergence.  ``train_loss="exact"``: the loss recorded is :math:`L(\theta_t)`
exactly (a separate float64 pass each epoch, plus one before the first epoch).
In both modes the result's ``fun`` is the exact :math:`L` at the returned parameters
(one final pass in running mode).

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
import numbers
from types import SimpleNamespace
from typing import Callable, Iterable

import numpy as np

from .._packing import n_params, pack, unpack
from .._threading import thread_limit
from .._weights import reg_exponent, row_weights
from .._validation import (
    check_choice,
    check_dtype,
    check_nonnegative_float,
    check_positive_int,
    check_random_state,
)
from .._alloc import aligned_empty
from ..data.ratings import Ratings
from ..kernels import sgd as _k
from ._base import (
    CallbackList,
    IterationRecord,
    SolverResult,
    Status,
    Stopwatch,
    ValidationMonitor,
    finish_result,
    make_progress,
)

__all__ = ["sgd", "DivergenceError", "SGDLayout", "build_layout", "stratum_schedule", "default_n_blocks"]

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


class DivergenceError(FloatingPointError):
    """SGD produced a non-finite loss or parameter.

    Attributes
    ----------
    epoch : int
        The (1-based) epoch at whose end the problem was found.
    learning_rate : float
        The learning rate used in that epoch.
    history : list of dict
        Records of the epochs before it.
    """

    def __init__(self, message: str, epoch: int, learning_rate: float, history: list):
        super().__init__(message)
        self.epoch = epoch
        self.learning_rate = learning_rate
        self.history = history


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
    (uint64 of the in-block shuffles).
    """

    @property
    def block_sizes(self) -> np.ndarray:
        """Ratings per block, shape ``(B, B)`` (rows: user bins)."""
        return np.diff(self.block_ptr).reshape(self.n_blocks, self.n_blocks)

    @property
    def nbytes(self) -> int:
        return int(self.users.nbytes + self.items.nbytes + self.values.nbytes + self.block_ptr.nbytes)


def build_layout(ratings: Ratings, n_blocks: int, rng: np.random.Generator, dtype=np.float32) -> SGDLayout:
    """Permute, bin and copy ``ratings`` block by block (then shuffle each block).

    Draws from ``rng`` in a fixed order: user permutation, item permutation, the
    64-bit shuffle seed.
    """
    m, n, nnz = ratings.n_users, ratings.n_items, ratings.nnz
    B = int(n_blocks)
    user_order = rng.permutation(m)
    item_order = rng.permutation(n)
    seed = np.uint64(rng.integers(0, 2**63))
    user_work = np.empty(m, dtype=np.int32)
    user_work[user_order] = np.arange(m, dtype=np.int32)
    item_work = np.empty(n, dtype=np.int32)
    item_work[item_order] = np.arange(n, dtype=np.int32)
    user_bin, user_bounds = _bins(ratings.user_counts[user_order], B, nnz)
    item_bin, item_bounds = _bins(ratings.item_counts[item_order], B, nnz)
    bu = np.empty(nnz, dtype=np.int32)
    bi = np.empty(nnz, dtype=np.int32)
    bv = np.empty(nnz, dtype=dtype)
    block_ptr = np.empty(B * B + 1, dtype=np.int64)
    _k.block_layout(ratings.users, ratings.items, ratings.values, user_work, item_work,
                    user_bin, item_bin, B, bu, bi, bv, block_ptr)
    _k.shuffle_blocks(bu, bi, bv, block_ptr, seed, 0)
    return SGDLayout(n_blocks=B, users=bu, items=bi, values=bv, block_ptr=block_ptr,
                     user_order=user_order, item_order=item_order, user_work=user_work,
                     item_work=item_work, user_bounds=user_bounds, item_bounds=item_bounds, seed=seed)


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
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"clip must be (low, high) with finite low < high, got {clip!r}")
    return (low, high)


def sgd(
    ratings: Ratings,
    rank: int = 32,
    *,
    reg: float = 0.05,
    reg_bias: float | None = None,
    reg_weighting: str = "count",
    biases: bool = True,
    mu: float | None = None,
    dtype=np.float32,
    learning_rate: float | None = None,
    schedule: str = "adaptive",
    decay: float = 0.1,
    n_epochs: int = 30,
    n_blocks: int | None = None,
    mode: str = "blocked",
    reshuffle: bool = False,
    n_threads: int | None = None,
    random_state=0,
    init_scale: float = 0.01,
    x0: np.ndarray | None = None,
    validation: Ratings | None = None,
    early_stopping: int | None = None,
    min_delta: float = 1e-4,
    callbacks: Callable | Iterable[Callable] | None = None,
    progress: bool = True,
    tol: float | None = None,
    clip=None,
    train_loss: str = "running",
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
    n_epochs : int >= 1
        Maximum number of epochs (passes over the ratings).
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
    validation : Ratings, optional
        Held-out ratings in the training code space; its RMSE is recorded each epoch.
    early_stopping : int >= 1, optional
        Patience: stop after this many epochs without a validation improvement of
        ``min_delta`` and return the best epoch's parameters (needs ``validation``).
    min_delta : float >= 0
    callbacks : callable or list of callables, optional
        Called with each epoch's record; returning True stops the run.
    progress : bool
        Show a tqdm progress bar (stderr).
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
    # ------------------------------------------------------------------ validation
    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    k = check_positive_int(rank, "rank")
    lam = check_nonnegative_float(reg, "reg")
    lam_b = lam if reg_bias is None else check_nonnegative_float(reg_bias, "reg_bias")
    reg_exponent(reg_weighting)
    use_biases = _check_bool(biases, "biases")
    dt = check_dtype(dtype)
    check_choice(schedule, "schedule", _SCHEDULES)
    check_choice(mode, "mode", _MODES)
    check_choice(train_loss, "train_loss", _TRAIN_LOSSES)
    if learning_rate is None:
        eta = DEFAULT_LEARNING_RATE[schedule]
    else:
        eta = check_nonnegative_float(learning_rate, "learning_rate", strictly_positive=True)
    decay = check_nonnegative_float(decay, "decay")
    n_epochs = check_positive_int(n_epochs, "n_epochs")
    B = default_n_blocks(ratings.nnz) if n_blocks is None else check_positive_int(n_blocks, "n_blocks")
    reshuffle = _check_bool(reshuffle, "reshuffle")
    init_scale = check_nonnegative_float(init_scale, "init_scale")
    progress = _check_bool(progress, "progress")
    min_delta = check_nonnegative_float(min_delta, "min_delta")
    if early_stopping is not None:
        early_stopping = check_positive_int(early_stopping, "early_stopping")
        if validation is None:
            raise ValueError("early_stopping needs a validation set (validation=...)")
    if tol is not None:
        tol = check_nonnegative_float(tol, "tol")
    if mu is None:
        mu_val = ratings.global_mean if use_biases else 0.0
    else:
        if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not math.isfinite(mu):
            raise ValueError(f"mu must be a finite real number or None, got {mu!r}")
        mu_val = float(mu)
    if validation is not None:
        if not isinstance(validation, Ratings):
            raise TypeError(f"validation must be a fastmf Ratings, got {type(validation).__name__}")
        if validation.shape != ratings.shape:
            raise ValueError(
                f"validation has shape {validation.shape}, training has {ratings.shape}: both must share "
                "one code space (build them with Ratings.subset or a fastmf split)"
            )
    clip_range = _check_clip(clip, ratings)
    cbs = CallbackList(callbacks)
    m, n = ratings.n_users, ratings.n_items
    if x0 is not None:
        x0 = np.asarray(x0)
        if x0.dtype.kind not in "fiu":
            raise TypeError(f"x0 must be a numeric array, got dtype {x0.dtype}")
        if x0.ndim != 1 or x0.shape[0] != n_params(m, n, k, use_biases):
            raise ValueError(
                f"x0 must be 1-D of length {n_params(m, n, k, use_biases)} "
                f"(n_users={m}, n_items={n}, rank={k}, biases={use_biases}), got shape {x0.shape}"
            )
        if not np.isfinite(x0).all():
            raise ValueError("x0 contains NaN or inf")
    rng = check_random_state(random_state)

    with thread_limit(n_threads) as n_thr:
        return _run(ratings, k, lam, lam_b, reg_weighting, use_biases, mu_val, dt, eta, schedule, decay,
                    n_epochs, B, mode, reshuffle, n_thr, rng, init_scale, x0, validation, early_stopping,
                    min_delta, cbs, progress, tol, clip_range, train_loss == "exact")


def _run(ratings, k, lam, lam_b, reg_weighting, use_biases, mu_val, dt, eta, schedule, decay, n_epochs, B,
         mode, reshuffle, n_thr, rng, init_scale, x0, validation, early_stopping, min_delta, cbs, progress,
         tol, clip_range, exact_loss):
    clock = Stopwatch()
    m, n, nnz = ratings.n_users, ratings.n_items, ratings.nnz
    ftype = dt.type
    blocked = mode == "blocked"

    # ------------------------------------------------------------------ setup
    layout = build_layout(ratings, B if blocked else 1, rng, dt)
    uo, io = layout.user_order, layout.item_order  # original code of each working code
    if x0 is None:
        P = rng.normal(0.0, init_scale, size=(m, k)).astype(dt)
        Q = rng.normal(0.0, init_scale, size=(n, k)).astype(dt)
        P[ratings.user_counts == 0] = 0
        Q[ratings.item_counts == 0] = 0
        P, Q = P[uo], Q[io]
        b = np.zeros(m, dtype=dt)
        c = np.zeros(n, dtype=dt)
    else:
        P0, Q0, b0, c0 = unpack(x0, m, n, k, use_biases)
        P = P0[uo].astype(dt)  # fancy indexing copies: x0 is never modified
        Q = Q0[io].astype(dt)
        b = b0[uo].astype(dt) if use_biases else np.zeros(m, dtype=dt)
        c = c0[io].astype(dt) if use_biases else np.zeros(n, dtype=dt)
    # 64-byte aligned working copies (rows of 64-byte multiples then never straddle an
    # extra cache line; see the kernel's performance notes)
    P, Q = _aligned_copy(P), _aligned_copy(Q)
    ucount = ratings.user_counts[uo].astype(np.float64)
    icount = ratings.item_counts[io].astype(np.float64)
    wu, wi = row_weights(ucount, reg_weighting), row_weights(icount, reg_weighting)
    adaptive = schedule == "adaptive"
    # per-row state records (bias, AdaGrad accumulators starting at 1, s = w / n with 0
    # for empty rows, which are never visited)
    AU = _aligned_copy(np.ones((m, 4), dtype=dt))
    AI = _aligned_copy(np.ones((n, 4), dtype=dt))
    AU[:, _k.BIAS] = b
    AI[:, _k.BIAS] = c
    AU[:, _k.REG_SCALE] = np.divide(wu, ucount, out=np.zeros(m), where=ucount > 0)
    AI[:, _k.REG_SCALE] = np.divide(wi, icount, out=np.zeros(n), where=icount > 0)

    def biases_now():
        return np.ascontiguousarray(AU[:, _k.BIAS]), np.ascontiguousarray(AI[:, _k.BIAS])

    seg_ptr = _equal_segments(nnz, _N_LOSS_SEGMENTS)
    uchunks = _equal_segments(m, _N_LOSS_SEGMENTS)
    ichunks = _equal_segments(n, _N_LOSS_SEGMENTS)
    seg_out = np.empty(seg_ptr.shape[0] - 1)
    pu_f, pu_b = np.empty(uchunks.shape[0] - 1), np.empty(uchunks.shape[0] - 1)
    pi_f, pi_b = np.empty(ichunks.shape[0] - 1), np.empty(ichunks.shape[0] - 1)
    hog_ptr = _equal_segments(nnz, _HOGWILD_CHUNKS)
    # running loss: one float64 slot per block (blocked) or chunk (hogwild), summed in order
    run_out = np.zeros(B * B if blocked else hog_ptr.shape[0] - 1)

    def penalty(P, Q, b, c) -> float:
        """Exact penalty (non-finite if any parameter is: the divergence check)."""
        _k.penalty_chunks(P, b, wu, use_biases, uchunks, pu_f, pu_b)
        _k.penalty_chunks(Q, c, wi, use_biases, ichunks, pi_f, pi_b)
        # fixed-order float64 sums: the same value whatever the thread count
        total = 0.5 * lam * (math.fsum(pu_f) + math.fsum(pi_f))
        if use_biases:
            total += 0.5 * lam_b * (math.fsum(pu_b) + math.fsum(pi_b))
        return total

    def exact(P, Q, b, c) -> float:
        _k.squared_error_segments(layout.users, layout.items, layout.values, seg_ptr, P, Q, b, c,
                                  mu_val, use_biases, seg_out)
        return 0.5 * math.fsum(seg_out) + penalty(P, Q, b, c)

    def loss() -> float:
        """The history's loss of the epoch just run (see ``train_loss``)."""
        b, c = biases_now()
        if exact_loss:
            return exact(P, Q, b, c)
        return 0.5 * math.fsum(run_out) + penalty(P, Q, b, c)

    monitor = None
    if validation is not None:
        # score in working codes, against the working-order parameters
        vview = SimpleNamespace(users=layout.user_work[validation.users], items=layout.item_work[validation.items],
                                values=validation.values)
        monitor = ValidationMonitor(vview, mu_val, early_stopping, min_delta, clip_range)

    setup_time = clock()
    history: list[IterationRecord] = []
    status, message = Status.MAX_ITER, f"reached n_epochs={n_epochs}"
    nfev = 0
    if exact_loss:
        current_loss = exact(P, Q, *biases_now())
        nfev += 1
    else:  # no running loss before the first epoch (tol never stops at epoch 1)
        current_loss = math.inf
    logger.debug("sgd: setup %.3fs, %d blocks, initial loss %.6g", setup_time, B, current_loss)
    mu_t = ftype(mu_val)
    lam_t, lamb_t, inv_k = ftype(lam), ftype(lam_b), ftype(1.0 / k)
    bar = make_progress(n_epochs, progress, f"sgd ({mode})")
    epoch = 0
    try:
        for epoch in range(1, n_epochs + 1):
            lr = eta / (1.0 + decay * (epoch - 1)) if schedule == "decay" else eta
            lr_t = ftype(lr)
            t0 = clock()
            if blocked:
                if reshuffle and epoch > 1:
                    _k.shuffle_blocks(layout.users, layout.items, layout.values, layout.block_ptr, layout.seed, epoch)
                sched = stratum_schedule(B, rng)
                _k.sgd_epoch_blocked(layout.users, layout.items, layout.values, layout.block_ptr, sched,
                                     P, Q, AU, AI, mu_t, lr_t, lam_t, lamb_t, inv_k,
                                     use_biases, adaptive, run_out)
            else:
                if reshuffle and epoch > 1:
                    _k.shuffle_blocks(layout.users, layout.items, layout.values, layout.block_ptr, layout.seed, epoch)
                _k.sgd_epoch_hogwild(layout.users, layout.items, layout.values, hog_ptr,
                                     P, Q, AU, AI, mu_t, lr_t, lam_t, lamb_t, inv_k,
                                     use_biases, adaptive, run_out)
            epoch_time = clock() - t0
            previous_loss, current_loss = current_loss, loss()
            nfev += int(exact_loss)
            if not math.isfinite(current_loss):
                raise DivergenceError(_divergence_message(epoch, lr, schedule, current_loss), epoch, lr, history)
            val_rmse, stop_es = (None, False)
            if monitor is not None:
                b, c = biases_now() if use_biases else (None, None)
                val_rmse, stop_es = monitor.update(epoch, P, Q, b, c)
            rec = IterationRecord(iteration=epoch, loss=current_loss, val_rmse=val_rmse, elapsed=clock(),
                                  learning_rate=lr, epoch_time=epoch_time,
                                  updates_per_sec=nnz / epoch_time if epoch_time > 0 else math.inf)
            history.append(rec)
            logger.debug("sgd epoch %d: loss %.6g val_rmse %s lr %.4g (%.3fs)", epoch, current_loss, val_rmse,
                         lr, epoch_time)
            bar.update(1)
            bar.set_postfix(loss=f"{current_loss:.5g}", **({} if val_rmse is None else {"val": f"{val_rmse:.4f}"}))
            if cbs(rec):
                status, message = Status.CALLBACK, f"a callback asked to stop after epoch {epoch}"
                break
            if stop_es:
                status = Status.EARLY_STOPPING
                message = monitor.stop_message("epochs")
                break
            if tol is not None and previous_loss - current_loss < tol * max(abs(previous_loss), 1.0):
                status, message = Status.FTOL, f"relative loss decrease below tol={tol:g} at epoch {epoch}"
                break
    finally:
        bar.close()

    b, c = biases_now()
    best = status == Status.EARLY_STOPPING and monitor.best_params is not None
    if best:
        P, Q, bb, cc = monitor.best_params
        if use_biases:
            b, c = bb, cc
    if exact_loss and not best:
        fun = current_loss  # already L at these parameters
    elif exact_loss:
        fun = next(r["loss"] for r in history if r["iteration"] == monitor.best_iteration)
    else:  # the running loss is not L at x: one exact pass
        fun = exact(P, Q, b, c)
        nfev += 1
    # back to original code order
    uw, iw = layout.user_work, layout.item_work
    x = pack(P[uw], Q[iw], b[uw] if use_biases else None, c[iw] if use_biases else None, dtype=dt)
    result = finish_result(
        x=x, fun=fun, grad_norm=float("nan"), nit=epoch, n_cg=0, nfev=nfev, njev=0, nhessp=0,
        status=status, message=message, history=history,
        best_iteration=None if monitor is None else monitor.best_iteration, elapsed=clock(),
    )
    result.update(mu=mu_val, rank=k, biases=use_biases, reg=lam, reg_bias=lam_b, reg_weighting=reg_weighting,
                  schedule=schedule, learning_rate=eta, n_blocks=layout.n_blocks, mode=mode, n_threads=n_thr,
                  setup_time=setup_time, train_loss="exact" if exact_loss else "running")
    return result


def _divergence_message(epoch: int, lr: float, schedule: str, loss: float) -> str:
    advice = f"lower learning_rate (e.g. to {lr / 10:.3g}), raise reg"
    if schedule != "adaptive":
        advice += ", or use schedule='adaptive'"
    return (f"SGD diverged at epoch {epoch}: the training loss or a parameter became non-finite "
            f"(loss={loss}) with learning_rate={lr:.4g} (schedule={schedule!r}); {advice}.")
