r"""Starting factors: random draws, or the top singular vectors of the centred ratings.

Both initialisations give factor rows of the same mean squared norm
:math:`\mathrm{scale}^2`, so ``scale`` means the same thing for either.

``"random"``
    :math:`P_{uj}, Q_{ij} \sim \mathcal N(0, \mathrm{scale}^2/k)` i.i.d.

``"svd"`` (spectral initialisation)
    With :math:`A = U S V^\top` the rank-``k`` truncated SVD of the sparse matrix of
    centred ratings :math:`A_{ui} = r_{ui} - \mu` on the observed entries (zero
    elsewhere; never densified),

    .. math::

        P_0 = \mathrm{scale}\sqrt{m/k}\; U\, D, \qquad
        Q_0 = \mathrm{scale}\sqrt{n/k}\; V\, D, \qquad
        D = \mathrm{diag}\big(\sqrt{s_j / \bar s}\big),

    :math:`\bar s` the mean of the ``k`` singular values.  Then
    :math:`\|P_0\|_F^2 = m\,\mathrm{scale}^2` (likewise for :math:`Q_0`) and
    :math:`P_0 Q_0^\top \propto U S V^\top`: the start already points along the
    data's leading directions, in proportion to their strength, and carries no
    random component.  Users or items without ratings get zero rows.

Why the spectral start: a solver stopped early (validation-based early stopping)
returns a point on the path from ``x0``; from a small random start each direction of
the data grows from its random initial projection, so the stopped model depends on
the seed.  From the spectral start it does not.  On the ml-100k base sets, with
Newton-CG stopped early (``bench/newton_folds.py``), it validated slightly better than
the best random start; fitted to convergence the start hardly matters
(``docs/performance.md``).

Cost: one ARPACK run (``scipy.sparse.linalg.svds``) on the sparse matrix: sparse
matrix-vector products with each side, :math:`O(\mathrm{nnz})` each (single-threaded),
plus :math:`O((m+n)k^2)`; memory one float64 copy of the ratings and the factors.
At ML-20M scale it takes about as long as a whole Newton-CG fit
(``docs/performance.md``), which is why ``"random"`` stays the default.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._validation import check_choice, check_nonnegative_float, check_positive_int, check_random_state
from .data.ratings import Ratings

__all__ = ["INITS", "initial_factors", "random_factors"]

INITS = ("random", "svd")


def random_factors(n_users: int, n_items: int, rank: int, std: float, random_state=None,
                   dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Random starting factors ``(P, Q)``, entries i.i.d. :math:`\\mathcal N(0, \\mathrm{std}^2)`.

    The one random start of fastmf.  ``n_users * rank`` then ``n_items * rank`` standard
    normals are drawn from the generator in one call (``Generator.standard_normal``) and
    multiplied by ``std`` in float64, then cast to ``dtype``.  The draws are those of
    ``rng.normal(0.0, std, size=(n_users, rank))`` followed by
    ``rng.normal(0.0, std, size=(n_items, rank))`` on the same generator, value for
    value, so callers written that way get the same factors.

    Parameters
    ----------
    n_users, n_items : int >= 0
    rank : int >= 1
    std : float >= 0
        Standard deviation of an entry (``initial_factors`` passes ``scale / sqrt(rank)``).
    random_state : None, int or numpy Generator
        A Generator is advanced by ``(n_users + n_items) * rank`` normals.
    dtype : float dtype
        Of the returned arrays (``P`` and ``Q`` are views of one contiguous array).

    Returns
    -------
    P : ndarray, shape (n_users, rank)
    Q : ndarray, shape (n_items, rank)
    """
    rng = check_random_state(random_state)
    m, n, k = int(n_users), int(n_items), int(rank)
    Z = rng.standard_normal((m + n) * k) * std
    if np.dtype(dtype) != Z.dtype:
        Z = Z.astype(dtype)
    return Z[: m * k].reshape(m, k), Z[m * k:].reshape(n, k)


def initial_factors(
    ratings: Ratings,
    rank: int,
    init: str = "random",
    scale: float = 0.1,
    *,
    mu: float = 0.0,
    values: np.ndarray | None = None,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Starting factors ``(P0, Q0)`` in float64 (see the module docstring for the maths).

    Parameters
    ----------
    ratings : Ratings
        Training ratings (only their pattern and values are read).
    rank : int >= 1
        ``k``.  ``init="svd"`` needs ``k < min(n_users, n_items)``.
    init : {"random", "svd"}
        Random Gaussian draws, or the spectral start.
    scale : float >= 0
        Root mean squared norm of a factor row.
    mu : float
        Offset subtracted from the values before the SVD (the model's global mean;
        ``0`` for a model without biases).  Ignored by ``"random"``.
    values : ndarray, shape (nnz,), optional
        Values to factor instead of ``ratings.values`` (in the ratings' order), e.g. the
        sign targets of the sign loss.  Ignored by ``"random"``.
    random_state : None, int or numpy Generator
        Seeds the draws (``"random"``) or ARPACK's starting vector (``"svd"``);
        an int makes the result deterministic.

    Returns
    -------
    P0 : ndarray, shape (n_users, rank)
    Q0 : ndarray, shape (n_items, rank)

    Raises
    ------
    ValueError
        Bad ``rank``, ``init``, ``scale`` or ``mu``; ``"svd"`` with ``rank >= min(n_users,
        n_items)``; ``values`` of the wrong length or not finite; ARPACK not converging.
    """
    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    k = check_positive_int(rank, "rank")
    init = check_choice(init, "init", set(INITS))
    scale = check_nonnegative_float(scale, "scale")
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not np.isfinite(mu):
        raise ValueError(f"mu must be a finite real number, got {mu!r}")
    rng = check_random_state(random_state)
    m, n = ratings.n_users, ratings.n_items
    if init == "random":
        return random_factors(m, n, k, scale / np.sqrt(k), rng)

    if k >= min(m, n):
        raise ValueError(
            f"init='svd' needs rank < min(n_users, n_items) = {min(m, n)} (a truncated SVD), got rank={k}; "
            "use init='random' or a smaller rank"
        )
    if values is None:
        vals = ratings.values.astype(np.float64)
    else:
        vals = np.asarray(values)
        if vals.shape != (ratings.nnz,):
            raise ValueError(f"values must have shape ({ratings.nnz},), got {vals.shape}")
        vals = vals.astype(np.float64)
        if not np.all(np.isfinite(vals)):
            raise ValueError("values contain NaN or inf")
    vals = vals - float(mu)  # a new array: the caller's values are never modified
    if not np.any(vals):
        raise ValueError("init='svd': the centred ratings are all zero (no direction to start from); "
                         "use init='random'")
    import scipy.sparse as sp  # on use (init='svd'): a random start does not import scipy.sparse

    A = sp.csr_array((vals, ratings.items, ratings.user_indptr), shape=(m, n))
    v0 = rng.standard_normal(min(m, n))
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, svds  # on use: import cost

    try:
        U, s, Vt = svds(A, k=k, v0=v0)
    except (ArpackNoConvergence, ArpackError) as exc:  # pragma: no cover - depends on ARPACK
        raise ValueError(f"init='svd': ARPACK failed for rank {k} ({exc}); use init='random'") from exc
    # A singular pair is defined up to sign, and which sign ARPACK returns depends on the
    # machine's BLAS/LAPACK and instruction set (seen: the same seed gave opposite signs on two
    # CPUs).  Fix it as scikit-learn's ``svd_flip`` does: the largest-|.| entry of each left
    # vector is positive, so the start is the same everywhere up to round-off.
    signs = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])])
    signs[signs == 0] = 1.0
    U = U * signs
    Vt = Vt * signs[:, None]
    mean_s = float(s.mean())
    d = np.sqrt(np.maximum(s, 0.0) / mean_s)
    P0 = U * (scale * np.sqrt(m / k) * d)
    Q0 = Vt.T * (scale * np.sqrt(n / k) * d)
    # ARPACK leaves round-off (~1e-18) in the rows of empty users/items: make them exact zeros
    P0[np.diff(ratings.user_indptr) == 0] = 0.0
    Q0[np.bincount(ratings.items, minlength=n) == 0] = 0.0
    return np.ascontiguousarray(P0), np.ascontiguousarray(Q0)
