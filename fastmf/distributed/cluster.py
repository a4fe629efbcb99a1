"""Client side of the sharded ratings: building the block actors and calling them in rounds.

:func:`distribute` turns a Dask DataFrame, a Parquet path or a local
:class:`fastmf.Ratings` into a :class:`DistributedRatings`: ``B`` block actors
(:class:`fastmf.distributed.shards.BlockShard`), block ``b`` pinned to worker
``sorted(workers)[b % W]`` (``allow_other_workers=False``).  The ratings travel once,
from their source partitions (or from the client for a local ``Ratings``) to the
block's worker; afterwards only factor rows move.

:meth:`DistributedRatings.round` is the one communication primitive: one call of the
same actor method on every block (arguments per block), results returned in block
order.  It is bounded by a timeout and turns a lost worker into
:class:`WorkerLostError` naming the worker, its blocks and what to do.  It also
counts the bytes of the numpy arrays sent and received (``stats``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .._validation import check_dtype
from .blocks import BlockLayout, assemble_half, default_n_blocks, halves_from_ratings, split_triplets
from .shards import BlockShard

__all__ = ["DistributedRatings", "WorkerLostError", "distribute", "resolve_client"]

logger = logging.getLogger("fastmf")

DEFAULT_TIMEOUT = 600.0


from ..exceptions import WorkerLostError  # noqa: E402  (raised here; defined with the other errors)


def resolve_client(client=None):
    """``client`` or the current :func:`distributed.get_client`; a clear error without one."""
    import distributed

    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        return client
    try:
        return distributed.get_client()
    except ValueError as exc:
        raise ValueError(
            "no Dask client: pass client=distributed.Client(...) or create one first "
            "(e.g. distributed.Client(distributed.LocalCluster()))"
        ) from exc


def _nbytes(obj) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    return 0


@dataclass
class DistributedRatings:
    """Ratings sharded over a Dask cluster in ``B`` blocks (see the module docstring).

    Attributes
    ----------
    client : distributed.Client
    layout : BlockLayout
    workers : list of str
        Worker address of each block.
    user_ids, item_ids : ndarray
        Raw id of each code.
    user_counts, item_counts : ndarray of int64
    global_mean : float
    nnz : int
    dtype : numpy dtype
        Storage dtype of the ratings on the workers.
    rating_scale : (float, float) or None
    items_needed, users_needed : list of ndarray
        Per block, the item rows its user half touches and the user rows its item half touches.
    stats : dict
        ``rounds``, ``calls``, ``bytes_sent``, ``bytes_received`` (numpy payloads).
    """

    client: object
    layout: BlockLayout
    workers: list
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_counts: np.ndarray
    item_counts: np.ndarray
    global_mean: float
    nnz: int
    dtype: np.dtype
    rating_scale: tuple | None
    actors: list = field(default_factory=list, repr=False)
    actor_futures: list = field(default_factory=list, repr=False)
    items_needed: list = field(default_factory=list, repr=False)
    users_needed: list = field(default_factory=list, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    stats: dict = field(default_factory=lambda: dict(rounds=0, calls=0, bytes_sent=0, bytes_received=0))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_blocks(self) -> int:
        return self.layout.n_blocks

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    def reset_stats(self) -> None:
        self.stats.update(rounds=0, calls=0, bytes_sent=0, bytes_received=0)

    # ------------------------------------------------------------------ communication
    def _lost_workers(self, wait: float = 3.0) -> list:
        """Block workers the scheduler no longer knows (polls up to ``wait`` seconds)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
            except Exception:  # pragma: no cover - scheduler itself gone
                return sorted(set(self.workers))
            lost = sorted(set(self.workers) - alive)
            if lost or time.monotonic() >= deadline:
                return lost
            time.sleep(0.2)

    def _fail(self, method: str, block: int, exc: BaseException):
        from distributed.comm.core import CommClosedError

        comm_error = isinstance(exc, (CommClosedError, OSError, TimeoutError)) or "Timeout" in type(exc).__name__
        lost = self._lost_workers(3.0 if comm_error else 0.0)
        if lost or comm_error:
            where = lost or [self.workers[block]]
            blocks = {w: [b for b, wb in enumerate(self.workers) if wb == w] for w in where}
            desc = "; ".join(f"worker {w} (blocks {bl})" for w, bl in blocks.items())
            raise WorkerLostError(
                f"{'lost' if lost else 'no answer from'} {desc} during {method!r} "
                f"({type(exc).__name__}: {exc}). The fit was aborted and no factors are returned: the blocks' "
                "ratings lived only on that worker. Check the worker's logs (memory limit?), make sure the "
                "cluster has its workers back, and fit again (the ratings are re-partitioned from the source)."
            ) from exc
        raise exc

    def round(self, method: str, args: list | None = None, timeout: float | None = None) -> list:
        """Call ``method`` on every block (``args[b]`` a tuple, or none); results in block order.

        Raises
        ------
        WorkerLostError
            A block's worker died or did not answer within ``timeout`` seconds
            (default ``self.timeout``).
        Exception
            An error raised by the method on a worker (re-raised as is).
        """
        timeout = self.timeout if timeout is None else timeout
        B = len(self.actors)
        args = [()] * B if args is None else args
        futures = []
        for b in range(B):
            try:
                futures.append(getattr(self.actors[b], method)(*args[b]))
            except Exception as exc:  # connection refused at submission
                self._fail(method, b, exc)
        self.stats["rounds"] += 1
        self.stats["calls"] += B
        self.stats["bytes_sent"] += _nbytes(args)
        deadline = time.monotonic() + timeout
        out = []
        for b, fut in enumerate(futures):
            try:
                res = fut.result(timeout=max(deadline - time.monotonic(), 0.001))
            except Exception as exc:
                self._fail(method, b, exc)
            out.append(res)
        self.stats["bytes_received"] += _nbytes(out)
        return out

    def configure(self, spec: dict) -> None:
        """Send the problem constants (rank, reg, mu, ...) to every block."""
        self.round("configure", [(spec,)] * self.n_blocks)

    def seen(self) -> tuple[np.ndarray, np.ndarray]:
        """``(user_indptr, items)`` of all users, gathered from the blocks (global codes)."""
        parts = self.round("seen_items")
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        items = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32)
        off = 0
        for b, (ip, _) in enumerate(parts):
            lo, hi = int(self.layout.user_bounds[b]), int(self.layout.user_bounds[b + 1])
            indptr[lo + 1:hi + 1] = ip[1:] + off
            off += int(ip[-1])
        return indptr, items

    def close(self) -> None:
        """Release the block actors (and their ratings) on the workers."""
        for f in self.actor_futures:
            try:
                f.release()
            except Exception:  # pragma: no cover - client already closed
                pass
        self.actors = []
        self.actor_futures = []

    def __enter__(self) -> "DistributedRatings":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _block_workers(client, n_blocks: int) -> tuple[list, dict]:
    info = client.scheduler_info(n_workers=-1)["workers"]
    if not info:
        raise ValueError("the Dask cluster has no workers")
    addrs = sorted(info)
    return [addrs[b % len(addrs)] for b in range(n_blocks)], {a: int(info[a]["nthreads"]) for a in addrs}


def distribute(data, client=None, *, n_blocks: int | None = None, dtype=np.float32, columns=None,
               rating_scale=None, timeout: float = DEFAULT_TIMEOUT) -> DistributedRatings:
    """Partition ratings into ``n_blocks`` blocks held by block actors on the cluster.

    Parameters
    ----------
    data : dask.dataframe.DataFrame, Parquet path/glob, or fastmf.Ratings
        Raw-id ratings (Dask, coded on the cluster by :func:`fastmf.distributed.coding.code_frame`)
        or a local ``Ratings`` (already coded; its blocks are scattered once from the client).
    client : distributed.Client, optional
        Default :func:`distributed.get_client`.
    n_blocks : int, optional
        ``B``; default :func:`fastmf.distributed.blocks.default_n_blocks` (data size only).
        Results depend on ``B`` (a fit is bit-identical for a given ``B`` whatever the
        number of workers); for ALS they do not depend on it either.
    dtype : {np.float32, np.float64}
        Storage dtype of the ratings on the workers.
    columns : (user, item, rating), optional
        Column names of a Dask frame (default: guessed as in ``Ratings.from_dataframe``).
    rating_scale : (low, high), optional
        Declared scale of a Dask frame's ratings (checked per partition).
    timeout : float
        Seconds any one round may take before the worker is declared lost.

    Returns
    -------
    DistributedRatings
        Call :meth:`DistributedRatings.close` (or use it as a context manager) to free the workers.
    """
    from ..data.ratings import Ratings

    client = resolve_client(client)
    dt = check_dtype(dtype)
    if isinstance(data, Ratings):
        R = data
        facts = dict(user_ids=R.user_ids, item_ids=R.item_ids, user_counts=R.user_counts,
                     item_counts=R.item_counts, global_mean=R.global_mean, nnz=R.nnz,
                     rating_scale=(float(R.values.min()), float(R.values.max())) if R.rating_scale is None
                     else tuple(map(float, R.rating_scale)))
        B = default_n_blocks(R.nnz) if n_blocks is None else n_blocks
        layout = BlockLayout.from_counts(R.user_counts, R.item_counts, B)
        workers, nthreads = _block_workers(client, layout.n_blocks)
        half_futs = []
        for b in range(layout.n_blocks):
            uh, ih = halves_from_ratings(R, layout, b, dt)
            half_futs.append(client.scatter([uh, ih], workers=[workers[b]], direct=True))
    else:
        from .coding import code_frame, read_input

        coded = code_frame(read_input(data, columns), client, dtype=dt, rating_scale=rating_scale)
        facts = dict(user_ids=coded.user_ids, item_ids=coded.item_ids, user_counts=coded.user_counts,
                     item_counts=coded.item_counts, global_mean=coded.global_mean, nnz=coded.nnz,
                     rating_scale=coded.rating_scale)
        B = default_n_blocks(coded.nnz) if n_blocks is None else n_blocks
        layout = BlockLayout.from_counts(coded.user_counts, coded.item_counts, B)
        workers, nthreads = _block_workers(client, layout.n_blocks)
        Bn = layout.n_blocks
        split_futs = client.map(_split_partition, [client.compute(p) for p in coded.frame.to_delayed()],
                                layout=layout, pure=False)
        piece = [[client.submit(_piece, s, j, pure=False) for j in range(2 * Bn)] for s in split_futs]
        half_futs = []
        for b in range(Bn):
            ub = (int(layout.user_bounds[b]), int(layout.user_bounds[b + 1]))
            ib = (int(layout.item_bounds[b]), int(layout.item_bounds[b + 1]))
            kw = dict(workers=[workers[b]], allow_other_workers=False, pure=False)
            uh = client.submit(assemble_half, [p[b] for p in piece], ub[0], ub[1], "user", True, **kw)
            ih = client.submit(assemble_half, [p[Bn + b] for p in piece], ib[0], ib[1], "item", False, **kw)
            half_futs.append([uh, ih])
        del piece, split_futs
    actor_futs = [
        client.submit(BlockShard, b, half_futs[b][0], half_futs[b][1], nthreads[workers[b]], actor=True,
                      workers=[workers[b]], allow_other_workers=False, pure=False)
        for b in range(layout.n_blocks)
    ]
    ds = DistributedRatings(client=client, layout=layout, workers=workers, dtype=dt, timeout=timeout, **facts)
    ds.actor_futures = actor_futs
    try:
        with client.as_current():  # actor handles bind to the client current at unpickling: this one
            ds.actors = [f.result(timeout=timeout) for f in actor_futs]
    except Exception:
        ds.close()
        raise
    del half_futs
    info = ds.round("describe")
    ds.items_needed = [d["items_needed"] for d in info]
    ds.users_needed = [d["users_needed"] for d in info]
    ds.stats["bytes_ratings"] = int(sum(d["nbytes"] for d in info))
    ds.reset_stats()
    return ds


def _split_partition(df, layout):
    by_user, by_item = split_triplets(df, layout)
    return by_user + by_item


def _piece(pieces, j):
    return pieces[j]
