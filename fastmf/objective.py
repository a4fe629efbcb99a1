r"""The matrix-factorization objective: loss, gradient and Hessian-vector products.

:class:`MFObjective` wraps the Numba kernels of :mod:`fastmf.kernels` behind the
callables :mod:`scipy.optimize` expects (``fun``, ``jac``, ``hessp``), with the work of
the last ``x`` cached and the calls counted.

The model and its derivatives
-----------------------------
Model and loss (DESIGN §1).  Prediction :math:`\hat r_{ui} = \mu + b_u + c_i +
p_u^\top q_i` (biases optional), residual :math:`e_{ui} = r_{ui} - \hat r_{ui}`.

Squared loss (``loss="squared"``):

.. math::

    L = \tfrac12 \sum_{(u,i)\in\Omega} e_{ui}^2
      + \tfrac12\lambda_f\Big(\sum_u w_u\|p_u\|^2 + \sum_i w_i\|q_i\|^2\Big)
      + \tfrac12\lambda_b\Big(\sum_u w_u b_u^2 + \sum_i w_i c_i^2\Big)

with :math:`w = 1` (``reg_weighting="uniform"``) or :math:`w_u = n_u`,
:math:`w_i = n_i` (``"count"``, each row's number of ratings, ALS-WR style).

Gradient:
:math:`\partial L/\partial p_u = -\sum_i e_{ui} q_i + \lambda_f w_u p_u`,
:math:`\partial L/\partial q_i = -\sum_u e_{ui} p_u + \lambda_f w_i q_i`,
:math:`\partial L/\partial b_u = -\sum_i e_{ui} + \lambda_b w_u b_u`,
:math:`\partial L/\partial c_i = -\sum_u e_{ui} + \lambda_b w_i c_i`.

Hessian-vector product for :math:`v = (dP, dQ, db, dc)`, with
:math:`\delta_{ui} = dp_u^\top q_i + p_u^\top dq_i + db_u + dc_i`:
Gauss-Newton (``hessian="gauss-newton"``, positive semi-definite)
:math:`(Gv)_{p_u} = \sum_i \delta_{ui} q_i + \lambda_f w_u dp_u`,
:math:`(Gv)_{q_i} = \sum_u \delta_{ui} p_u + \lambda_f w_i dq_i`,
:math:`(Gv)_{b_u} = \sum_i \delta_{ui} + \lambda_b w_u db_u`,
:math:`(Gv)_{c_i} = \sum_u \delta_{ui} + \lambda_b w_i dc_i`;
exact (``hessian="exact"``, indefinite away from a minimum)
:math:`Hv = Gv - (\sum_i e_{ui} dq_i)_{p_u} - (\sum_u e_{ui} dp_u)_{q_i}`.

Sign loss (``loss="sign"``, the embedding notebook's loss; no biases): with
:math:`s_{ui} = \mathrm{sign}(r_{ui} - \bar r_u)`, :math:`\bar r_u` user ``u``'s mean
observed rating and :math:`\mathrm{sign}(0) = 0`,

.. math::

    L = -\sum_\Omega s_{ui}\, p_u^\top q_i
        + \tfrac12\lambda_f\Big(\sum_u w_u\|p_u\|^2 + \sum_i w_i\|q_i\|^2\Big),

:math:`\partial L/\partial p_u = -\sum_i s_{ui} q_i + \lambda_f w_u p_u` (likewise for
:math:`q_i`) and the exact Hessian-vector product
:math:`(Hv)_{p_u} = -\sum_i s_{ui}\, dq_i + \lambda_f w_u dp_u`,
:math:`(Hv)_{q_i} = -\sum_u s_{ui}\, dp_u + \lambda_f w_i dq_i`.
**It is unbounded below** (uniform weights) as soon as :math:`\lambda_f` is smaller
than the largest singular value :math:`\sigma_{\max}` of the sparse sign matrix
:math:`S`: along :math:`P = t\,a e_1^\top, Q = t\,z e_1^\top` (top singular vectors)
the loss is :math:`t^2(\lambda_f - \sigma_{\max}) \to -\infty`.  Minimizers then run
off to infinity; choose :math:`\lambda_f \ge \sigma_{\max}` (e.g. from
``scipy.sparse.linalg.svds``) or stop early.  Its Gauss-Newton matrix would be only
:math:`\lambda_f I`, so ``hessian="gauss-newton"`` with ``loss="sign"`` is refused.

Packing of the flat vector ``x`` (what :mod:`scipy.optimize` sees), C order:
``x = [P.ravel(), Q.ravel(), b, c]`` with ``P`` (n_users, rank), ``Q``
(n_items, rank); without biases ``x = [P.ravel(), Q.ravel()]``
(:mod:`fastmf._packing`).

Implementation notes
--------------------
*Caching*: :meth:`fun`, :meth:`jac` and :meth:`fun_and_jac` compute the loss and
the full gradient together (two fused passes) and keep them for the last ``x``
(compared by content with a private copy, so in-place mutation of ``x`` by a caller
is detected); :meth:`residuals` is cached the same way.  ``x`` is never modified;
it is cast once per new ``x`` to ``dtype``.  Returned arrays are new arrays of
``x``'s float dtype (float64 for integer input).

*Determinism*: every path below gives the same bits at any ``n_threads``.  With
``format="csr"`` the rows are cut into a fixed number of chunks
of equal rating count (``16 * NUMBA_NUM_THREADS``, at least 32) whatever
``n_threads`` is, and the chunk results are combined in chunk order, so 1-thread
and 2-thread runs are bit-identical (the serial kernels, ``parallel=False``, visit
the ratings in another order and agree to rounding).  With ``format="coo"`` the users
are cut into fixed blocks, each with its own item buffer added in block order, and the
threads of a call take the blocks: one block per thread of numba's pool
(``NUMBA_NUM_THREADS``, fixed for the process) by default, or ``coo_blocks=B`` (or
:data:`DEFAULT_COO_BLOCKS`).  Results are bit-identical whatever ``n_threads`` or
``numba.set_num_threads`` says (``tests/test_thread_determinism.py``); with the default,
a process started with another ``NUMBA_NUM_THREADS`` agrees to rounding (1e-12 relative
in float64), and ``coo_blocks=B`` makes even that bit-identical.  The serial COO kernels
(small problems, ``parallel=False``) cut the users the same way, into at most as many
blocks as hold :data:`SERIAL_BLOCK_MIN_RATINGS` ratings each: block 0 scatters its item
terms into the output, every other block into its own buffer, added in block order.

*Memory per rating* (float32; float64 adds 4 bytes per stored value): the
canonical triplets, 12 bytes (user and item codes, value), are shared with the
caller's Ratings when its dtype matches.  ``format="csr"`` adds the item-major copy
kept by Ratings, 16 bytes (user code, value, 8-byte ``item_perm``).  ``format="coo"``
with ``parallel=True`` keeps a cache-tiled copy (:mod:`fastmf.kernels.tiled`): 8
bytes per rating (item code, value) plus 12 bytes per (user, item tile) segment,
rebuilt when the block count changes; ``format="csr"`` with ``parallel=True`` keeps
tiled copies of both sides, 16 bytes per rating plus 12 per segment.  The sign loss
adds its signs, 4 bytes (8 with CSR: both orders).  :meth:`residuals` caches 4 bytes.
:meth:`diag_gauss_newton` reads the item-major copy, which ``format="coo"`` then
builds (once, kept by the Ratings: 16 bytes per rating).
The kernels themselves allocate nothing per rating; per row the objective keeps
about five ``(rows, k)`` buffers (parameters, gradient, direction, product,
diagonal) and, for COO, ``n_blocks * n_items * (k + 1)`` buffer floats
(``n_blocks``: numba's pool size, or ``coo_blocks``; serial: one block fewer).
"""

from __future__ import annotations

import numbers

import numba
import numpy as np

from ._alloc import aligned_empty, aligned_zeros
from ._packing import n_params as _n_params
from ._packing import pack as _pack
from ._packing import unpack as _unpack
from ._threading import resolve_n_threads, thread_limit
from ._validation import check_choice, check_dtype, check_nonnegative_float, check_positive_int
from .data.ratings import Ratings
from ._weights import reg_exponent, row_weights
from .initialization import initial_factors
from .kernels import tiled as _tiled
from .kernels import _vec
from .kernels import csr as _csr
from .kernels._chunks import PARALLEL_MIN_RATINGS, balanced_chunks
from .kernels.blocks import gn_diagonal_rows, gn_diagonal_side
from .kernels.predict import residuals_codes

__all__ = ["MFObjective", "PARALLEL_MIN_RATINGS", "SERIAL_BLOCK_MIN_RATINGS"]

_HESSP_MODE = {("squared", "gauss-newton"): 0, ("squared", "exact"): 1, ("sign", "exact"): 2}

#: Default of ``MFObjective(coo_blocks=...)``: ``None``, one user block per thread of numba's
#: pool (``NUMBA_NUM_THREADS``).  Set it to an int (e.g. :data:`COO_BLOCKS`) to make every
#: objective built afterwards, including the estimator's Newton-CG one, independent of the
#: pool size too.
DEFAULT_COO_BLOCKS: int | None = None
#: The suggested fixed block count (memory: that many ``n_items x (rank + 1)`` buffers).
COO_BLOCKS = 16
#: Fewest ratings per user block of the serial COO kernels (below :data:`PARALLEL_MIN_RATINGS`,
#: or ``parallel=False``): ``min(coo blocks, nnz // SERIAL_BLOCK_MIN_RATINGS)`` blocks, at least
#: one.  Each block beyond the first costs an item buffer zeroed and added per call, which a
#: block of fewer ratings does not pay back (ml-latest-small, 100K ratings: 2 blocks on 2 threads
#: take the Hessian product from 4.5 to 2.2 ms, ``docs/performance.md``).
SERIAL_BLOCK_MIN_RATINGS = 1 << 15


def _checked_options(ratings, rank, reg, reg_bias, biases, loss, dtype, format, n_threads, hessian, reg_weighting,
                     mu, parallel, coo_blocks) -> tuple:
    """:class:`MFObjective`'s arguments checked and normalised (errors name the argument)."""
    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    if ratings.nnz == 0:
        raise ValueError("ratings hold no rating")
    rank = check_positive_int(rank, "rank")
    reg = check_nonnegative_float(reg, "reg")
    reg_bias = reg if reg_bias is None else check_nonnegative_float(reg_bias, "reg_bias")
    if not isinstance(biases, (bool, np.bool_)):
        raise TypeError(f"biases must be a bool, got {biases!r}")
    biases = bool(biases)
    loss = check_choice(loss, "loss", {"squared", "sign"})
    dtype = check_dtype(dtype)
    format = check_choice(format, "format", {"csr", "coo"})
    resolve_n_threads(n_threads)  # raises on a bad value
    hessian = check_choice(hessian, "hessian", {"gauss-newton", "exact"})
    reg_exponent(reg_weighting)  # raises on a bad value
    if mu is not None:
        if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not np.isfinite(float(mu)):
            raise ValueError(f"mu must be None or a finite real number, got {mu!r}")
    if parallel is None:
        parallel = ratings.nnz >= PARALLEL_MIN_RATINGS
    elif not isinstance(parallel, (bool, np.bool_)):
        raise TypeError(f"parallel must be None or a bool, got {parallel!r}")
    parallel = bool(parallel)
    if coo_blocks is None:
        coo_blocks = DEFAULT_COO_BLOCKS
    if coo_blocks is not None:
        coo_blocks = check_positive_int(coo_blocks, "coo_blocks")
    if loss == "sign" and biases:
        raise ValueError("loss='sign' has no biases: pass biases=False")
    if loss == "sign" and hessian == "gauss-newton":
        raise ValueError(
            "loss='sign' is bilinear, its Gauss-Newton matrix is only the regulariser (reg * I): "
            "use hessian='exact'"
        )
    return (rank, reg, reg_bias, biases, loss, dtype, format, n_threads, hessian, reg_weighting, parallel,
            coo_blocks)


class MFObjective:
    r"""Loss, gradient and Hessian-vector products of matrix factorization on ratings.

    The model, the loss, its derivatives and the packing of ``x`` are in the module
    docstring (:mod:`fastmf.objective`); implementation notes there too.

    Parameters
    ----------
    ratings : Ratings
        The training ratings (stored as ``ratings.astype(dtype)``).
    rank : int
        Number of latent factors ``k`` (>= 1).
    reg : float, default 0.1
        :math:`\lambda_f` (>= 0).
    reg_bias : float or None
        :math:`\lambda_b` (>= 0); ``None`` means ``reg``.
    biases : bool, default True
        Learn user and item biases (squared loss only).
    loss : {"squared", "sign"}
    dtype : {np.float32, np.float64}
        Storage and arithmetic dtype of the kernels (losses accumulate in float64).
    format : {"coo", "csr"}, default "coo"
        ``"coo"``: one fused pass over the canonical triplets (sorted by user, so each
        user's run is contiguous): every rating's residual (or Hessian term) is computed
        once, the user's row is accumulated in registers/L1 and written once, the item
        side is scattered into one buffer per user block (one block per thread of numba's
        pool, or ``coo_blocks``), reduced in block order.
        ``"csr"``: a user-major pass over the canonical triplets and an item-major pass
        over the item-major copy (built once, lazily, in the Ratings object), each
        recomputing the residuals (DESIGN §3).  ``"coo"`` is the default because it is
        faster (about 2x at one thread on the ML-20M shape; figures in
        ``docs/performance.md``): it does each rating's dot products once instead of
        twice and never gathers rows of ``P`` in item order (17.7 MB of P at ML-20M
        scale does not stay in cache, while the ``n_items x k`` buffers do).
    n_threads : int or None
        Numba threads used by each call (``None``: all; negative: as scikit-learn's
        ``n_jobs``); applied per call with :func:`fastmf._threading.thread_limit`.
    hessian : {"gauss-newton", "exact"}
        Which matrix :meth:`hessp` multiplies by.
    reg_weighting : {"uniform", "sqrt-count", "count"} or float >= 0
        Row weights :math:`w_r = n_r^{\alpha}` of the penalties: α = 0 (``"uniform"``),
        0.5 (``"sqrt-count"``), 1 (``"count"``) or the float given (:mod:`fastmf._weights`).
    mu : float or None
        Global offset :math:`\mu`; ``None``: the ratings' global mean with biases
        (squared loss), 0.0 otherwise.
    parallel : bool or None, default None
        Use the ``prange`` kernels (``True``) or the serial ones (``False``: on the calling
        thread only).  ``None``: the ``prange`` kernels from :data:`PARALLEL_MIN_RATINGS`
        ratings (512Ki); below, the serial kernels, which compile in a fraction of the time,
        with ``format="coo"`` cut into user blocks of at least
        :data:`SERIAL_BLOCK_MIN_RATINGS` ratings that run on up to ``n_threads`` Python
        threads (the kernels release the GIL).  The serial results depend on the blocks
        only: the same bits at any ``n_threads`` and with ``parallel=False``.
    coo_blocks : int or None
        User blocks of the parallel COO kernels, balanced by rating count (at most
        ``n_users``), each with its own item buffer added in block order and taken by
        however many threads a call runs, so results are bit-identical at any ``n_threads``.
        ``None`` (default: :data:`DEFAULT_COO_BLOCKS`, itself ``None``): one block per
        thread of numba's pool (``numba.config.NUMBA_NUM_THREADS``, fixed for the
        process): at full threads the fastest cut, and with fewer threads no slower
        (1 thread on 2 blocks: 0.94-0.95 of 1 thread on 1 block, ``docs/performance.md``).
        An int ``B`` also fixes the cut across processes with different pool sizes.  Costs
        ``B * n_items * (rank + 1)`` buffer floats (``B = 16``: 56 MB at the ML-20M
        shape, rank 32, float32) and time when ``B`` exceeds the threads: at 2 threads,
        ``B = 4`` +0-8 %, ``B = 8`` +10-12 %, ``B = 16`` +16-34 % per loss+gradient and
        Hessian product (5M-rating ML-20M-shaped set, rank 32; ``python -m bench.coo_blocks``).

    Attributes
    ----------
    n_users, n_items, rank, n_params, dtype, mu, biases, loss, hessian, format,
    reg, reg_bias, reg_weighting, n_threads, parallel, coo_blocks : as given or derived.
    nfev, njev, nhessp : int
        Calls of :meth:`fun` (and :meth:`fun_and_jac`), :meth:`jac` (and
        :meth:`fun_and_jac`) and :meth:`hessp` since creation or :meth:`reset_counters`.
    n_evaluations : int
        Loss-and-gradient computations actually run (cache misses).
    """

    def __init__(
        self,
        ratings: Ratings,
        rank: int,
        reg: float = 0.1,
        reg_bias: float | None = None,
        biases: bool = True,
        loss: str = "squared",
        dtype=np.float32,
        format: str = "coo",
        n_threads: int | None = None,
        hessian: str = "gauss-newton",
        reg_weighting: str = "uniform",
        mu: float | None = None,
        parallel: bool | None = None,
        coo_blocks: int | None = None,
    ):
        # validation first (no work before it), in one place shared by nothing else
        threads_below_parallel = parallel is None
        (self.rank, self.reg, self.reg_bias, self.biases, self.loss, self.dtype, self.format, self.n_threads,
         self.hessian, self.reg_weighting, self.parallel, coo_blocks) = _checked_options(
            ratings, rank, reg, reg_bias, biases, loss, dtype, format, n_threads, hessian, reg_weighting, mu,
            parallel, coo_blocks)
        self.coo_blocks = coo_blocks

        # ---------------------------------------------------------------- data and constants
        dt = self.dtype
        self.ratings = ratings.astype(dt)
        R = self.ratings
        self.n_users, self.n_items = R.n_users, R.n_items
        m, n, k = self.n_users, self.n_items, self.rank
        self.n_params = _n_params(m, n, k, self.biases)
        if mu is None:
            mu = ratings.global_mean if (self.biases and self.loss == "squared") else 0.0
        self.mu = float(mu)
        self._mu = dt.type(self.mu)

        ucount = np.diff(R.user_indptr)
        icount = np.bincount(R.items, minlength=n)
        wu = row_weights(ucount, self.reg_weighting)
        wi = row_weights(icount, self.reg_weighting)
        self._regw_u = (self.reg * wu).astype(dt)
        self._regw_i = (self.reg * wi).astype(dt)
        self._regbw_u = (self.reg_bias * wu).astype(dt)
        self._regbw_i = (self.reg_bias * wi).astype(dt)
        self._user_counts = ucount
        self._item_counts = icount

        if self.loss == "sign":
            v64 = ratings.values.astype(np.float64)
            means = np.bincount(ratings.users, weights=v64, minlength=m) / np.maximum(ucount, 1)
            self._vals = np.sign(v64 - means[ratings.users]).astype(dt)
        else:
            self._vals = R.values
        self._hmode = _HESSP_MODE[(self.loss, self.hessian)]

        max_threads = numba.config.NUMBA_NUM_THREADS
        # the user blocks of the parallel COO kernels: given, or one per thread of numba's pool
        # (fixed for the process), never the thread count of a call, so that results do not
        # depend on ``n_threads`` (issue #14 item 6)
        self._coo_blocks = max(1, min(max_threads if coo_blocks is None else coo_blocks, m))
        # the serial COO kernels (below PARALLEL_MIN_RATINGS, or parallel=False) cut the users into
        # as many blocks, but at least SERIAL_BLOCK_MIN_RATINGS ratings each (a block costs a
        # zeroed and added item buffer per call); by default the blocks run on Python threads
        # (the kernels release the GIL), with parallel=False on the calling thread: the same bits
        self._serial_blocks = max(1, min(self._coo_blocks, R.nnz // SERIAL_BLOCK_MIN_RATINGS))
        self._serial_on_threads = threads_below_parallel
        self._n_chunks = max(32, 16 * max_threads)
        self._user_chunks = balanced_chunks(R.user_indptr, self._n_chunks)
        if self.format == "csr":
            self._item_indptr = R.item_indptr
            self._item_users = R.item_users
            self._item_vals = self._vals[R.item_perm] if self.loss == "sign" else R.item_values
            self._item_chunks = balanced_chunks(self._item_indptr, self._n_chunks)
        else:
            # item rows of the COO reduction: equal runs; with fixed user blocks a count fixed by
            # them (the penalty is summed per chunk: it must not follow numba's thread maximum)
            self._item_chunks = balanced_chunks(np.zeros(n + 1, dtype=np.int64),
                                                self._n_chunks if coo_blocks is None else 16 * self._coo_blocks)
        self._user_parts = np.zeros(len(self._user_chunks) - 1)
        self._item_parts = np.zeros(len(self._item_chunks) - 1)
        self._coo_buffers = {}
        self._tile_cache = None
        self._csr_tile_cache = None
        self._csr_scratch_cache = None
        self._serial_scratch_cache = None
        self._serial_layout_cache = None

        # ---------------------------------------------------------------- owned buffers
        N = self.n_params
        # 64-byte aligned (fastmf._alloc): with rank*itemsize a multiple of 64 no row
        # straddles an extra cache line.
        self._theta = aligned_zeros(N, dt)
        self._grad = aligned_zeros(N, dt)
        self._dir = aligned_zeros(N, dt)
        self._hv = aligned_zeros(N, dt)
        self._dummy = np.zeros(1, dtype=dt)
        self._x_last = None
        self._loss = np.nan
        self._fg_valid = False
        self._resid = None
        self._diag = None
        self.reset_counters()

    # ------------------------------------------------------------------ bookkeeping
    def reset_counters(self) -> None:
        """Set ``nfev``, ``njev``, ``nhessp`` and ``n_evaluations`` to zero."""
        self.nfev = 0
        self.njev = 0
        self.nhessp = 0
        self.n_evaluations = 0

    def __repr__(self) -> str:
        return (
            f"MFObjective(n_users={self.n_users}, n_items={self.n_items}, nnz={self.ratings.nnz}, rank={self.rank}, "
            f"reg={self.reg:g}, reg_bias={self.reg_bias:g}, biases={self.biases}, loss={self.loss!r}, "
            f"dtype={self.dtype.name}, format={self.format!r}, hessian={self.hessian!r}, "
            f"reg_weighting={self.reg_weighting!r})"
        )

    def pack(self, P, Q, b=None, c=None) -> np.ndarray:
        """Flat vector ``[P.ravel(), Q.ravel(), b, c]`` (a new array; shapes checked)."""
        P = np.asarray(P)
        Q = np.asarray(Q)
        if P.shape != (self.n_users, self.rank) or Q.shape != (self.n_items, self.rank):
            raise ValueError(
                f"P and Q must have shapes {(self.n_users, self.rank)} and {(self.n_items, self.rank)}, "
                f"got {P.shape} and {Q.shape}"
            )
        if self.biases and (b is None or c is None):
            raise ValueError("this objective has biases: pass b and c")
        if not self.biases and (b is not None or c is not None):
            raise ValueError("this objective has no biases: do not pass b or c")
        return _pack(P, Q, None if b is None else np.asarray(b), None if c is None else np.asarray(c))

    def unpack(self, x):
        """Views ``(P, Q, b, c)`` into ``x`` (``b, c`` are ``None`` without biases)."""
        return _unpack(np.asarray(x), self.n_users, self.n_items, self.rank, self.biases)

    def x0(self, random_state=None, scale: float = 0.1, init: str = "random") -> np.ndarray:
        r"""A starting point (float64), zero biases.

        Parameters
        ----------
        random_state : None, int or numpy Generator
            An int makes the point deterministic.
        scale : float >= 0
            Root mean squared norm of a factor row.
        init : {"random", "svd"}
            ``"random"``: factors drawn i.i.d. :math:`N(0, (\mathrm{scale}/\sqrt{k})^2)`
            (:func:`fastmf.initialization.random_factors`).
            ``"svd"``: the spectral start of :func:`fastmf.initialization.initial_factors`,
            the top-``k`` singular vectors of the centred targets :math:`r_{ui} - \mu`
            (the signs for the sign loss) scaled by the square roots of their singular
            values; needs ``rank < min(n_users, n_items)``.
        """
        values = self._vals if self.loss == "sign" else None
        P0, Q0 = initial_factors(self.ratings, self.rank, init, scale, mu=self.mu, values=values,
                                 random_state=random_state)
        x = np.zeros(self.n_params)
        m, n, k = self.n_users, self.n_items, self.rank
        x[: m * k] = P0.ravel()
        x[m * k:(m + n) * k] = Q0.ravel()
        return x

    @property
    def csr_arrays(self) -> dict:
        """The CSR layout the kernels use (shared arrays: do not modify).

        Keys: ``user_indptr, items, values, user_chunks`` (user side) and, for
        ``format="csr"``, ``item_indptr, item_users, item_values, item_chunks``.
        ``values`` are the ratings (squared loss) or the signs (sign loss).
        """
        R = self.ratings
        out = {"user_indptr": R.user_indptr, "items": R.items, "values": self._vals,
               "user_chunks": self._user_chunks}
        if self.format == "csr":
            out.update(item_indptr=self._item_indptr, item_users=self._item_users, item_values=self._item_vals,
                       item_chunks=self._item_chunks)
        return out

    @property
    def coo_arrays(self) -> dict:
        """The canonical triplets ``users, items, values`` (and ``user_indptr``); shared arrays."""
        R = self.ratings
        return {"users": R.users, "items": R.items, "values": self._vals, "user_indptr": R.user_indptr}

    # ------------------------------------------------------------------ input handling
    def _check_vec(self, x, name: str) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be a real numeric vector, got dtype {x.dtype}")
        if x.ndim != 1 or x.shape[0] != self.n_params:
            raise ValueError(f"{name} must have shape ({self.n_params},), got {x.shape}")
        return x

    @staticmethod
    def _out_dtype(*arrays) -> np.dtype:
        dt = np.result_type(*[a.dtype for a in arrays])
        return dt if dt.kind == "f" else np.dtype(np.float64)

    def _set_x(self, x: np.ndarray) -> None:
        last = self._x_last
        if (last is not None and last.dtype == x.dtype and x.dtype.kind == "f"
                and x.flags.c_contiguous and last.flags.c_contiguous):
            # same float dtype as last time: compare and copy only the chunks that changed
            with thread_limit(self.n_threads if self.parallel else 1, limit_blas=False):
                if not _vec.sync_changed(x, last, self._theta):
                    return
        else:
            self._x_last = None  # stay consistent if the cast below fails
            self._theta[:] = x
            self._x_last = np.array(x, copy=True)
        self._fg_valid = False
        self._resid = None
        self._diag = None

    def _views(self, flat):
        P, Q, b, c = _unpack(flat, self.n_users, self.n_items, self.rank, self.biases)
        if b is None:
            b = c = self._dummy
        return P, Q, b, c

    def _tiles(self) -> dict:
        """The tiled copy of the ratings (built on first use, kept), cut into the fixed
        user blocks (``coo_blocks``, or numba's thread-pool size when it is None).

        See :mod:`fastmf.kernels.tiled`: 8 bytes per rating in float32 (12 in float64)
        plus 12 per (user, item tile) segment, built once (O(nnz), parallel).
        """
        if self._tile_cache is None:
            R = self.ratings
            ubounds = balanced_chunks(R.user_indptr, self._coo_blocks)
            tu, ti = _tiled.tile_shape(self.rank, self.dtype.itemsize)
            self._tile_cache = _tiled.build_tiles(R.user_indptr, R.items, self._vals, ubounds, self.n_items, tu, ti)
        return self._tile_cache

    def _csr_tiles(self) -> tuple[dict, dict]:
        """Tiled copies of both CSR sides for the parallel side kernels (built on first use).

        The user side is cut at the fixed user chunks and tiled over items, the item side at
        the fixed item chunks and tiled over users (:func:`fastmf.kernels.tiled.build_tiles`);
        nothing depends on the thread count.  8 bytes per rating each in float32 (12 in
        float64) plus 12 per segment.
        """
        if self._csr_tile_cache is None:
            R = self.ratings
            rows, cols = _tiled.tile_shape(self.rank, self.dtype.itemsize)
            self._csr_tile_cache = (
                _tiled.build_tiles(R.user_indptr, R.items, self._vals, self._user_chunks, self.n_items, rows, cols),
                _tiled.build_tiles(self._item_indptr, self._item_users, self._item_vals, self._item_chunks,
                                   self.n_users, rows, cols),
            )
        return self._csr_tile_cache

    def _csr_scratch(self):
        """Scratch of the tiled CSR sides: one padded row, one loss and one penalty slot per chunk."""
        nc = max(len(self._user_chunks), len(self._item_chunks)) - 1
        if self._csr_scratch_cache is None:
            pad = -(-self.rank * self.dtype.itemsize // 64) * 64 // self.dtype.itemsize
            self._csr_scratch_cache = (aligned_empty((nc, pad), self.dtype), np.empty(nc), np.empty(nc))
        return self._csr_scratch_cache

    def _serial_layout(self) -> dict:
        """The canonical triplets as per-user segments in ``_serial_blocks`` user blocks (serial COO
        kernels; views of the ratings plus 4 bytes per user, built on first use)."""
        if self._serial_layout_cache is None:
            R = self.ratings
            ub = balanced_chunks(R.user_indptr, self._serial_blocks)
            self._serial_layout_cache = _tiled.serial_layout(R.user_indptr, R.items, self._vals, ub)
        return self._serial_layout_cache

    def _serial_scratch(self) -> tuple:
        """Scratch of the serial COO kernels: item buffers of blocks 1.., one cache-line-padded
        row and two loss slots per block, and the thread count of a call."""
        layout = self._serial_layout()
        if self._serial_scratch_cache is None:
            nb = len(layout["ubounds"]) - 1
            pad = -(-self.rank * self.dtype.itemsize // 64) * 64 // self.dtype.itemsize
            self._serial_scratch_cache = (aligned_empty((nb - 1, self.n_items, self.rank), self.dtype),
                                      aligned_empty((nb - 1, self.n_items), self.dtype),
                                      aligned_empty((nb, pad), self.dtype), np.empty((nb, 2)))
        threads = resolve_n_threads(self.n_threads) if self._serial_on_threads else 1
        return layout, self._serial_scratch_cache, threads

    def _coo_bufs(self, nb: int):
        if nb not in self._coo_buffers:
            self._coo_buffers = {
                nb: (
                    aligned_empty((nb, self.n_items, self.rank), self.dtype),
                    aligned_empty((nb, self.n_items), self.dtype),
                    np.empty(nb),
                    # one row of scratch per block, padded to whole cache lines (no false sharing);
                    # the kernels use its first ``rank`` entries
                    aligned_empty((nb, -(-self.rank * self.dtype.itemsize // 64) * 64 // self.dtype.itemsize),
                                  self.dtype),
                )
            }
        return self._coo_buffers[nb]

    # ------------------------------------------------------------------ computations
    def _compute_fg(self) -> None:
        if self._fg_valid:
            return
        P, Q, b, c = self._views(self._theta)
        gP, gQ, gb, gc = self._views(self._grad)
        R = self.ratings
        ub, sign, mu = self.biases, self.loss == "sign", self._mu
        if self.format == "csr" and self.parallel:
            tu, ti = self._csr_tiles()
            rows, parts, pens = self._csr_scratch()
            with thread_limit(self.n_threads, limit_blas=False):
                lu = _tiled.side_grad_tiled(tu, P, Q, b, c, mu, self._regw_u, self._regbw_u, ub, sign, True, gP, gb,
                                            rows, parts, pens)
                li = _tiled.side_grad_tiled(ti, Q, P, c, b, mu, self._regw_i, self._regbw_i, ub, sign, False, gQ,
                                            gc, rows, parts, pens)
            loss = lu + li
        elif self.format == "csr":
            lu = _csr.grad_side_serial(self._user_chunks, R.user_indptr, R.items, self._vals, P, Q, b, c, mu,
                                       self._regw_u, self._regbw_u, ub, sign, True, gP, gb, self._user_parts)
            li = _csr.grad_side_serial(self._item_chunks, self._item_indptr, self._item_users, self._item_vals, Q, P,
                                       c, b, mu, self._regw_i, self._regbw_i, ub, sign, False, gQ, gc,
                                       self._item_parts)
            loss = lu + li
        elif self.parallel:
            with thread_limit(self.n_threads, limit_blas=False):
                tiles = self._tiles()
                bufQ, bufc, parts, rows = self._coo_bufs(len(tiles["ubounds"]) - 1)
                loss = _tiled.grad_tiled(tiles, self._item_chunks, P, Q, b, c, mu, self._regw_u, self._regbw_u,
                                         self._regw_i, self._regbw_i, ub, sign, gP, gQ, gb, gc, bufQ, bufc, rows,
                                         parts, self._item_parts)
        else:
            layout, (bufQ, bufc, rows, parts), threads = self._serial_scratch()
            loss = _tiled.grad_serial(layout, P, Q, b, c, mu, self._regw_u, self._regbw_u, self._regw_i,
                                      self._regbw_i, ub, sign, gP, gQ, gb, gc, rows, bufQ, bufc, parts, threads)
        self._loss = float(loss)
        self._fg_valid = True
        self.n_evaluations += 1

    def fun(self, x) -> float:
        """The loss :math:`L(x)` (float)."""
        x = self._check_vec(x, "x")
        self.nfev += 1
        self._set_x(x)
        self._compute_fg()
        return self._loss

    def jac(self, x) -> np.ndarray:
        """The gradient :math:`\\nabla L(x)` (a new array of ``x``'s float dtype)."""
        x = self._check_vec(x, "x")
        self.njev += 1
        self._set_x(x)
        self._compute_fg()
        return self._grad.astype(self._out_dtype(x), copy=True)

    def fun_and_jac(self, x) -> tuple[float, np.ndarray]:
        """``(fun(x), jac(x))`` from one computation (for ``minimize(..., jac=True)``)."""
        x = self._check_vec(x, "x")
        self.nfev += 1
        self.njev += 1
        self._set_x(x)
        self._compute_fg()
        return self._loss, self._grad.astype(self._out_dtype(x), copy=True)

    def gradient_norm(self, x) -> float:
        """Euclidean norm of the gradient (accumulated in float64; uses the cache)."""
        x = self._check_vec(x, "x")
        self._set_x(x)
        self._compute_fg()
        return float(np.linalg.norm(self._grad.astype(np.float64)))

    def hessp(self, x, p) -> np.ndarray:
        """Product of the Hessian at ``x`` (Gauss-Newton or exact, per ``hessian``) with ``p``.

        Returns a new array of the float dtype of ``x`` and ``p`` combined.
        """
        x = self._check_vec(x, "x")
        p = self._check_vec(p, "p")
        self.nhessp += 1
        self._set_x(x)
        self._dir[:] = p
        P, Q, b, c = self._views(self._theta)
        dP, dQ, db, dc = self._views(self._dir)
        hP, hQ, hb, hc = self._views(self._hv)
        R = self.ratings
        ub, mode, mu = self.biases, self._hmode, self._mu
        if self.format == "csr" and self.parallel:
            tu, ti = self._csr_tiles()
            rows = self._csr_scratch()[0]
            with thread_limit(self.n_threads, limit_blas=False):
                _tiled.side_hessp_tiled(tu, P, Q, dP, dQ, b, c, db, dc, mu, self._regw_u, self._regbw_u, ub, mode,
                                        hP, hb, rows)
                _tiled.side_hessp_tiled(ti, Q, P, dQ, dP, c, b, dc, db, mu, self._regw_i, self._regbw_i, ub, mode,
                                        hQ, hc, rows)
        elif self.format == "csr":
            _csr.hessp_side_serial(self._user_chunks, R.user_indptr, R.items, self._vals, P, Q, dP, dQ, b, c, db, dc,
                                   mu, self._regw_u, self._regbw_u, ub, mode, hP, hb)
            _csr.hessp_side_serial(self._item_chunks, self._item_indptr, self._item_users, self._item_vals, Q, P, dQ,
                                   dP, c, b, dc, db, mu, self._regw_i, self._regbw_i, ub, mode, hQ, hc)
        elif self.parallel:
            with thread_limit(self.n_threads, limit_blas=False):
                tiles = self._tiles()
                bufQ, bufc, _, rows = self._coo_bufs(len(tiles["ubounds"]) - 1)
                _tiled.hessp_tiled(tiles, self._item_chunks, P, Q, dP, dQ, b, c, db, dc, mu, self._regw_u,
                                   self._regbw_u, self._regw_i, self._regbw_i, ub, mode, hP, hQ, hb, hc, bufQ, bufc,
                                   rows)
        else:
            layout, (bufQ, bufc, rows, _), threads = self._serial_scratch()
            _tiled.hessp_serial(layout, P, Q, dP, dQ, b, c, db, dc, mu, self._regw_u, self._regbw_u, self._regw_i,
                                self._regbw_i, ub, mode, hP, hQ, hb, hc, rows, bufQ, bufc, threads)
        return self._hv.astype(self._out_dtype(x, p), copy=True)

    def diag_gauss_newton(self, x) -> np.ndarray:
        r"""Diagonal of the Gauss-Newton matrix at ``x`` (for a Jacobi preconditioner).

        :math:`G_{p_{uf}p_{uf}} = \sum_i q_{if}^2 + \lambda_f w_u`,
        :math:`G_{b_u b_u} = n_u + \lambda_b w_u` (likewise for items).  It is also the
        diagonal of the exact Hessian of the squared loss.  For the sign loss the
        diagonal of its (exact) Hessian, :math:`\lambda_f w`, is returned.
        """
        x = self._check_vec(x, "x")
        self._set_x(x)
        if self._diag is None:
            P, Q, b, c = self._views(self._theta)
            D = np.empty(self.n_params, dtype=self.dtype)
            dP, dQ, db, dc = self._views(D)
            data = self.loss == "squared"
            R = self.ratings
            if self.format == "csr":
                ich = self._item_chunks
            else:  # the item-major copy is built (once, kept by the Ratings) on first use
                ich = balanced_chunks(R.item_indptr, self._n_chunks)
            if self.parallel:
                with thread_limit(self.n_threads, limit_blas=False):
                    gn_diagonal_side(self._user_chunks, R.user_indptr, R.items, Q, self._regw_u, self._regbw_u,
                                     self.biases, data, dP, db)
                    gn_diagonal_side(ich, R.item_indptr, R.item_users, P, self._regw_i, self._regbw_i,
                                     self.biases, data, dQ, dc)
            else:  # rows are independent: the same values, no prange to compile
                gn_diagonal_rows(0, self.n_users, R.user_indptr, R.items, Q, self._regw_u, self._regbw_u,
                                 self.biases, data, dP, db)
                gn_diagonal_rows(0, self.n_items, R.item_indptr, R.item_users, P, self._regw_i, self._regbw_i,
                                 self.biases, data, dQ, dc)
            self._diag = D
        return self._diag.astype(self._out_dtype(x), copy=True)

    def residuals(self, x) -> np.ndarray:
        """Residuals :math:`e_{ui} = r_{ui} - \\hat r_{ui}` of every rating, canonical order.

        (For the sign loss too: the prediction error of ``p_u . q_i``, not the sign.)
        Cached for the last ``x``; returns a new array of ``x``'s float dtype.
        """
        x = self._check_vec(x, "x")
        self._set_x(x)
        if self._resid is None:
            P, Q, b, c = self._views(self._theta)
            R = self.ratings
            out = np.empty(R.nnz, dtype=self.dtype)
            with thread_limit(self.n_threads if self.parallel else 1, limit_blas=False):
                residuals_codes(R.users, R.items, R.values, P, Q, b, c, self.mu, self.biases, out)
            self._resid = out
        return self._resid.astype(self._out_dtype(x), copy=True)
