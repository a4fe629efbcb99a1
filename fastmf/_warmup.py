"""Compile (or load from numba's cache) the kernels a fit needs, ahead of the first fit.

fastmf's kernels are numba functions compiled on first call and cached on disk
(``cache=True``: in ``__pycache__`` next to the sources, or under ``NUMBA_CACHE_DIR``).
The first fit in a fresh environment therefore spends most of its time compiling; a
process that finds the cache warm only loads the machine code (a fraction of a second).
:func:`warmup` does that first fit on a small random problem, so the cost is paid where
you choose:

* in a Docker image build (``RUN fastmf warmup --solver all``), so that containers start
  with a warm cache (the cache directory must be writable at build time and shipped in the
  image; set ``NUMBA_CACHE_DIR`` when the package directory is read-only at run time);
* before forking worker processes (``multiprocessing`` with ``fork``, gunicorn
  ``preload_app``): the children inherit the compiled kernels instead of each compiling
  them;
* at the start of a benchmark, so that timings exclude compilation.

The problem is small (2,000 users x 2,000 items, 20,000 ratings) and uses the same argument
types as a fit on loaded data (int32 codes, int64 offsets, the chosen float dtype), so the
specialisations compiled are exactly those a fit needs.  Paths a small problem does not
take are compiled explicitly: the MovieLens reader (the bundled ml-latest-small is loaded,
as ``fastmf fit`` does), the parallel Newton-CG kernels of problems with
:data:`fastmf.objective.PARALLEL_MIN_RATINGS` ratings or more (smaller ones run serially),
the parallel prediction and the parallel parameter sync of problems with
:data:`fastmf.kernels._vec.PARALLEL_MIN_SIZE` parameters or more.  The parallel id coding
of inputs of :data:`fastmf.data._sort.PARALLEL_MIN_IDS` ids or more (four argument types)
is left to its first use.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["warmup", "WARMUP_SOLVERS"]

#: Solvers :func:`warmup` knows (``"all"`` selects every one).
WARMUP_SOLVERS = ("newton", "als", "sgd", "gibbs")

_SHAPE = (2000, 2000, 20000)  # users, items, ratings: (m + n) * (rank + 1) >= 2**17 at rank 32


def _problem(dtype):
    from .data.ratings import Ratings

    m, n, nnz = _SHAPE
    rng = np.random.default_rng(0)
    codes = rng.choice(m * n, size=nnz, replace=False)
    users, items = (a.astype(np.int32) for a in np.divmod(codes, n))  # as the readers build them
    values = rng.integers(1, 11, size=nnz) / 2.0
    ratings = Ratings.from_codes(users, items, values, m, n, dtype=dtype, rating_scale=(0.5, 5.0),
                                 name="warmup")
    return ratings


def _solvers(solver) -> tuple[str, ...]:
    if solver is None:
        return ("newton",)
    names = (solver,) if isinstance(solver, str) else tuple(solver)
    if "all" in names:
        return WARMUP_SOLVERS
    for name in names:
        if name not in WARMUP_SOLVERS:
            raise ValueError(f"unknown solver {name!r}; known: {', '.join(WARMUP_SOLVERS)} or 'all'")
    return names


def warmup(solver="newton", dtype="float32", *, n_threads: int | None = None) -> dict[str, dict]:
    """Compile, or load from numba's on-disk cache, the kernels of a fit.

    Runs, for each solver, a two-iteration fit with a validation set, a warm-started refit,
    ``evaluate`` and ``predict`` on a small random problem (the ``fastmf fit`` path), so
    that a later fit in this process, or in any process sharing the cache, starts at once.

    Parameters
    ----------
    solver : str or sequence of str
        ``"newton"`` (default), ``"als"``, ``"sgd"``, ``"gibbs"``, a list of them, or ``"all"``.
    dtype : {"float32", "float64"} or sequence of them
        The dtype(s) the fits will use (default float32, the estimator's).
    n_threads : int, optional
        Threads of the warm-up fits (the kernels compiled do not depend on it).

    Returns
    -------
    dict
        ``{"newton/float32": {"seconds": ..., "compiled": ...}, ...}``: wall-clock seconds and
        the number of kernel specialisations compiled (0: everything came from the cache).
        The first solver of each dtype also counts the reader and the parallel sync (see
        the module notes).
    """
    import warnings

    from .model import MatrixFactorization

    dtypes = (dtype,) if isinstance(dtype, (str, type, np.dtype)) else tuple(dtype)
    report = {}
    for dt in dtypes:
        dt = np.dtype(dt)
        ratings = _problem(dt)
        from .data.splits import train_test_split

        train, val = train_test_split(ratings, 0.1, random_state=0)
        for name in _solvers(solver):
            counter = _CompileCounter()
            t0 = time.perf_counter()
            with counter, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params = dict(solver=name, rank=32, dtype=dt.type, max_iter=2, progress=False, random_state=0,
                              n_threads=n_threads)
                if name == "gibbs":
                    params["solver_options"] = {"burn_in": 1}
                else:
                    params["early_stopping"] = 5
                model = MatrixFactorization(**params).fit(train, eval_set=val)
                if name != "gibbs":  # the fastmf fit path: a warm-started refit on all the ratings
                    model.set_params(max_iter=1, early_stopping=None)
                    model.fit(ratings, warm_start=True)
                model.evaluate(val)
                model.predict(val.user_ids[val.users[:10]], val.item_ids[val.items[:10]])
                if name == _solvers(solver)[0]:  # once per dtype, counted with its first solver
                    _other_paths(dt, ratings)
            report[f"{name}/{dt.name}"] = {"seconds": time.perf_counter() - t0, "compiled": counter.count}
    return report


def _other_paths(dtype, ratings=None) -> None:
    """Compile what the small fits above do not: the reader of ``fastmf fit``'s default data
    set, and the parallel kernels of large problems (the Newton-CG objective's, which small
    problems run serially below :data:`fastmf.objective.PARALLEL_MIN_RATINGS` ratings, the
    parallel prediction and the parallel parameter sync)."""
    from .kernels import _vec
    from .kernels.predict import _predict
    from .objective import MFObjective

    if ratings is not None:
        obj = MFObjective(ratings, 32, dtype=dtype, hessian="exact", parallel=True)
        x = obj.x0(random_state=0)
        obj.fun_and_jac(x)
        obj.hessp(x, x)
        obj.diag_gauss_newton(x)
        P, Q, b, c = obj._views(obj._theta)
        _predict(ratings.users, ratings.items, P, Q, b, c, 0.0, True, np.empty(ratings.nnz))

    try:
        from .data.movielens import bundled_data_dir, load_movielens

        if bundled_data_dir() is not None:
            load_movielens("ml-latest-small", dtype=dtype, download=False)
    except Exception:  # noqa: BLE001 - a missing or unreadable bundle only leaves the reader cold
        pass
    x = np.zeros(256, dtype=dtype)
    _vec._sync_parallel(x, x.copy(), x.copy(), 4)


class _CompileCounter:
    """Counts fastmf kernel compilations (numba's event API) inside a ``with`` block."""

    def __init__(self):
        self.count = 0
        self._listener = None

    def __enter__(self):
        try:
            from numba.core import event

            counter = self

            class _Listener(event.Listener):
                def on_start(self, ev):
                    pass

                def on_end(self, ev):
                    fn = getattr(ev.data.get("dispatcher"), "py_func", None)
                    if fn is not None and fn.__module__.startswith("fastmf"):
                        counter.count += 1

            self._listener = _Listener()
            event.register("numba:compile", self._listener)
        except Exception:  # noqa: BLE001 - the count is informative only
            self._listener = None
        return self

    def __exit__(self, *exc):
        if self._listener is not None:
            from numba.core import event

            event.unregister("numba:compile", self._listener)
        return False
