"""Packing of the model parameters into one flat vector.

The flat vector ``theta`` is what :mod:`scipy.optimize` sees::

    theta = [P.ravel(), Q.ravel(), b, c]        (biases=True)
    theta = [P.ravel(), Q.ravel()]              (biases=False)

``P`` has shape ``(n_users, rank)``, ``Q`` has shape ``(n_items, rank)`` and both
are raveled in C order; ``b`` (length ``n_users``) are the user biases and ``c``
(length ``n_items``) the item biases.  :func:`unpack` returns *views* into
``theta`` (no copy), so kernels can write gradients straight into a flat
output buffer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["n_params", "pack", "unpack"]


def n_params(n_users: int, n_items: int, rank: int, biases: bool) -> int:
    """Length of the flat parameter vector: ``(m + n) * k (+ m + n with biases)``."""
    size = (n_users + n_items) * rank
    if biases:
        size += n_users + n_items
    return size


def unpack(theta: np.ndarray, n_users: int, n_items: int, rank: int, biases: bool):
    """Split ``theta`` into views ``(P, Q, b, c)``; ``b`` and ``c`` are ``None`` without biases.

    Raises
    ------
    ValueError
        If ``theta`` is not one-dimensional or has the wrong length.
    """
    if theta.ndim != 1:
        raise ValueError(f"parameter vector must be 1-D, got shape {theta.shape}")
    expected = n_params(n_users, n_items, rank, biases)
    if theta.shape[0] != expected:
        raise ValueError(
            f"parameter vector has length {theta.shape[0]}, expected {expected} "
            f"(n_users={n_users}, n_items={n_items}, rank={rank}, biases={biases})"
        )
    mk = n_users * rank
    nk = n_items * rank
    P = theta[:mk].reshape(n_users, rank)
    Q = theta[mk : mk + nk].reshape(n_items, rank)
    if biases:
        b = theta[mk + nk : mk + nk + n_users]
        c = theta[mk + nk + n_users :]
        return P, Q, b, c
    return P, Q, None, None


def pack(P: np.ndarray, Q: np.ndarray, b: np.ndarray | None = None, c: np.ndarray | None = None, dtype=None) -> np.ndarray:
    """Concatenate ``P, Q`` (and ``b, c`` if given) into a new flat vector.

    ``b`` and ``c`` must be both given or both ``None``.
    """
    if (b is None) != (c is None):
        raise ValueError("user and item biases must be given together (both or neither)")
    if P.ndim != 2 or Q.ndim != 2 or P.shape[1] != Q.shape[1]:
        raise ValueError(f"P and Q must be 2-D with the same number of columns, got {P.shape} and {Q.shape}")
    parts = [np.ravel(P), np.ravel(Q)]
    if b is not None:
        if b.shape != (P.shape[0],) or c.shape != (Q.shape[0],):
            raise ValueError(
                f"bias shapes {b.shape}, {c.shape} do not match P {P.shape} and Q {Q.shape}"
            )
        parts += [b, c]
    if dtype is None:
        dtype = np.result_type(*parts)
    return np.concatenate(parts).astype(dtype, copy=False)
