r"""Partitioning the ratings into ``B`` user blocks and ``B`` item blocks.

User block ``b`` holds *all* the ratings of the contiguous users
``[user_bounds[b], user_bounds[b+1])``; item block ``b`` all the ratings of the items
``[item_bounds[b], item_bounds[b+1])``.  The bounds cut the users (items) into runs
of about equal rating count (:func:`fastmf.kernels._chunks.balanced_chunks`, which also
charges one unit per row), so ``B`` is a property of the data and of the parameter
``n_blocks`` only, never of the number of workers.  Every rating is stored twice:
once in its user block, once in its item block (Spark's blocked ALS keeps an
``InBlock`` per side the same way).

Block ``b`` (both halves) lives on worker ``workers[b % W]`` (workers sorted by
address) for the whole fit.  The arrays of one half (:class:`BlockHalf`):

* ``lo, hi``: its row range (users for the user half, items for the item half);
* ``indptr`` (int64, ``hi - lo + 1``), ``cols`` (int32 *local* column indices) and
  ``vals`` (``dtype``): the CSR of its rows, columns increasing inside a row (the
  order of the canonical in-process arrays, so that row sums accumulate in the same
  order);
* ``needed`` (int64, sorted): the global codes of the other side's rows touched
  (``cols`` index into it).  These are the only factor rows the block ever receives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels._chunks import balanced_chunks

__all__ = ["BlockHalf", "BlockLayout", "default_n_blocks", "split_triplets", "assemble_half", "halves_from_ratings"]


def default_n_blocks(nnz: int) -> int:
    """Default ``B``: one block per 2 million ratings, at least 4, at most 256.

    It depends on the data size only (so results do not depend on the cluster).
    """
    return int(min(256, max(4, math.ceil(nnz / 2_000_000))))


@dataclass
class BlockLayout:
    """Row bounds of the user blocks and item blocks (int64 arrays of ``B + 1`` entries)."""

    user_bounds: np.ndarray
    item_bounds: np.ndarray

    @property
    def n_blocks(self) -> int:
        return len(self.user_bounds) - 1

    @classmethod
    def from_counts(cls, user_counts: np.ndarray, item_counts: np.ndarray, n_blocks: int) -> "BlockLayout":
        """Cut users and items into ``n_blocks`` runs of equal rating count each.

        Both sides get exactly the same number of blocks (the smaller of the two
        feasible counts), so block ``b`` pairs user block ``b`` with item block ``b``.
        """
        if isinstance(n_blocks, bool) or int(n_blocks) != n_blocks or n_blocks < 1:
            raise ValueError(f"n_blocks must be a positive integer, got {n_blocks!r}")
        B = int(min(n_blocks, len(user_counts), len(item_counts)))
        while True:
            ub = balanced_chunks(np.concatenate(([0], np.cumsum(user_counts))), B)
            ib = balanced_chunks(np.concatenate(([0], np.cumsum(item_counts))), B)
            if len(ub) == len(ib):
                return cls(ub.astype(np.int64), ib.astype(np.int64))
            B = min(len(ub), len(ib)) - 1

    def user_block_of(self, users: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.user_bounds, users, side="right") - 1

    def item_block_of(self, items: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.item_bounds, items, side="right") - 1


@dataclass
class BlockHalf:
    """One side of one block (see the module docstring)."""

    lo: int
    hi: int
    indptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    needed: np.ndarray
    n_fixed_rows: int = 0

    @property
    def n_rows(self) -> int:
        return self.hi - self.lo

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.cols.nbytes + self.vals.nbytes + self.needed.nbytes)


def split_triplets(df, layout: BlockLayout) -> tuple[list, list]:
    """Split one coded partition into its pieces per user block and per item block.

    Returns ``(by_user, by_item)``, each a list of ``B`` tuples ``(users, items,
    values, partition, row)`` of arrays.
    """
    u = df["user"].to_numpy()
    i = df["item"].to_numpy()
    v = df["rating"].to_numpy()
    p = df["_partition"].to_numpy()
    r = df["_row"].to_numpy()
    out = []
    for blk in (layout.user_block_of(u), layout.item_block_of(i)):
        order = np.argsort(blk, kind="stable")
        bounds = np.searchsorted(blk[order], np.arange(layout.n_blocks + 1))
        pieces = []
        for b in range(layout.n_blocks):
            sel = order[bounds[b]:bounds[b + 1]]
            pieces.append((u[sel], i[sel], v[sel], p[sel], r[sel]))
        out.append(pieces)
    return out[0], out[1]


def assemble_half(pieces: list, lo: int, hi: int, by: str, check_duplicates: bool) -> BlockHalf:
    """Sort the pieces of one block half into CSR (see the module docstring).

    Parameters
    ----------
    pieces : list of (users, items, values, partition, row) tuples
    lo, hi : row range of the half
    by : {"user", "item"}
    check_duplicates : bool
        Raise ``ValueError`` naming both source partitions and rows of the first
        repeated (user, item) pair.
    """
    if pieces:
        u = np.concatenate([p[0] for p in pieces])
        i = np.concatenate([p[1] for p in pieces])
        v = np.concatenate([p[2] for p in pieces])
        part = np.concatenate([p[3] for p in pieces])
        row = np.concatenate([p[4] for p in pieces])
    else:  # pragma: no cover - a block always gets a (possibly empty) piece list
        u = i = np.zeros(0, np.int32)
        v = np.zeros(0)
        part = np.zeros(0, np.int32)
        row = np.zeros(0, np.int64)
    rows, cols = (u, i) if by == "user" else (i, u)
    order = np.lexsort((cols, rows))
    rows, cols, v = rows[order], cols[order], v[order]
    if check_duplicates and len(rows) > 1:
        dup = np.flatnonzero((rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1]))
        if dup.size:
            j = int(dup[0])
            a, b = order[j], order[j + 1]
            uu, ii = (rows[j], cols[j]) if by == "user" else (cols[j], rows[j])
            raise ValueError(
                f"duplicate rating for (user code {int(uu)}, item code {int(ii)}): partition {int(part[a])} "
                f"row {int(row[a])} and partition {int(part[b])} row {int(row[b])}; remove duplicates before fitting"
            )
    local_rows = (rows - lo).astype(np.int64)
    indptr = np.zeros(hi - lo + 1, dtype=np.int64)
    np.cumsum(np.bincount(local_rows, minlength=hi - lo), out=indptr[1:])
    needed, local_cols = np.unique(cols, return_inverse=True)
    return BlockHalf(lo=int(lo), hi=int(hi), indptr=indptr, cols=local_cols.astype(np.int32).ravel(),
                     vals=np.ascontiguousarray(v), needed=needed.astype(np.int64))


def halves_from_ratings(ratings, layout: BlockLayout, b: int, dtype) -> tuple[BlockHalf, BlockHalf]:
    """Both halves of block ``b`` cut from a local :class:`fastmf.Ratings` (client side)."""
    R = ratings.astype(dtype)
    u0, u1 = int(layout.user_bounds[b]), int(layout.user_bounds[b + 1])
    s, e = int(R.user_indptr[u0]), int(R.user_indptr[u1])
    cols = R.items[s:e]
    needed, local = np.unique(cols, return_inverse=True)
    uh = BlockHalf(lo=u0, hi=u1, indptr=(R.user_indptr[u0:u1 + 1] - s).astype(np.int64),
                   cols=local.astype(np.int32).ravel(), vals=np.array(R.values[s:e]), needed=needed.astype(np.int64))
    i0, i1 = int(layout.item_bounds[b]), int(layout.item_bounds[b + 1])
    s, e = int(R.item_indptr[i0]), int(R.item_indptr[i1])
    cols = R.item_users[s:e]
    needed, local = np.unique(cols, return_inverse=True)
    ih = BlockHalf(lo=i0, hi=i1, indptr=(R.item_indptr[i0:i1 + 1] - s).astype(np.int64),
                   cols=local.astype(np.int32).ravel(), vals=np.array(R.item_values[s:e]),
                   needed=needed.astype(np.int64))
    return uh, ih
