"""One estimate of a whole fit's peak memory, checked before any work.

:func:`estimate_fit_memory` adds up what a fit of each solver holds at its peak, from
the problem's sizes alone (users ``m``, items ``n``, ratings ``nnz``, rank ``k``,
biases, dtype, threads and the solver's options); :func:`check_fit_memory` compares it
with a limit and raises :class:`~fastmf.exceptions.FitMemoryError` (a ``MemoryError``)
naming the estimate, its largest components, the limit and what to change.

The limit is, first found: the solver option ``max_memory`` (bytes, or a string with
units such as ``"8GiB"``), the environment variable ``FASTMF_MAX_MEMORY`` (same form),
else 80% of the memory available now (``psutil.virtual_memory().available`` when psutil is
installed, else ``MemAvailable`` of ``/proc/meminfo``, else physical pages from
``os.sysconf``; no limit when none of them answers).

The counts follow the code (``N`` parameters of ``itemsize`` bytes, ``K = k + biases``):

* every solver: the parameter vectors alive at once (the start, which is float64 when
  drawn by :meth:`MFObjective.x0`, the working copy, the result and the model's copy);
  ALS and Gibbs build an :class:`~fastmf.objective.MFObjective` too (4 owned vectors);
* newton: the objective's 4 owned vectors and its last-``x`` copy, Newton's ``x``,
  ``g``, the trial point and its gradient, Steihaug-CG's ``s, r, z, d, Bd`` and a
  temporary, the Jacobi diagonal (with its float64 inverse); the COO item-side buffers,
  ``threads * n * (k + 1)``; the tiled ratings (8 bytes a rating) and the item-major
  copy the diagonal reads (16 bytes a rating); block-Jacobi's ``(m + n) K^2`` blocks;
* ALS and Gibbs: the item-major copy of the ratings (16 bytes a rating) and the
  per-chunk float64 scratch ``chunks * K * (K + 1)``; Gibbs keeps ``S = ceil(max_iter /
  thin)`` draws, ``S k (m + n)`` values, copied once more into the model;
* SGD: the block layout (user, item codes and value per rating), the working factor
  copies in layout order and the per-row records ``(m + n) * 4`` values.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .exceptions import FitMemoryError

__all__ = ["MemoryEstimate", "estimate_fit_memory", "available_memory", "parse_memory", "memory_limit",
           "check_fit_memory", "ENV_VAR"]

#: Environment variable holding the default limit (``"8GiB"``, ``"500MB"``, ``"1e9"``).
ENV_VAR = "FASTMF_MAX_MEMORY"

#: Share of the available memory a fit may use when no limit is given.
_AVAILABLE_FRACTION = 0.8

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class MemoryEstimate:
    """A fit's estimated peak memory.

    Attributes
    ----------
    solver : str
    components : dict
        Name -> bytes.
    """

    solver: str
    components: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Bytes of all components."""
        return int(sum(self.components.values()))

    def largest(self, n: int = 3) -> list[tuple[str, int]]:
        """The ``n`` largest components, largest first."""
        return sorted(self.components.items(), key=lambda kv: -kv[1])[:n]

    def describe(self, n: int = 3) -> str:
        """``"1.2 GiB (a 0.8 GiB, b 0.3 GiB, ...)"``."""
        parts = ", ".join(f"{name} {format_bytes(b)}" for name, b in self.largest(n) if b > 0)
        return f"{format_bytes(self.total)} ({parts})"


def format_bytes(b: float) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(b) >= size:
            return f"{b / size:.2f} {unit}"
    return f"{int(b)} B"


def parse_memory(value, name: str = "max_memory") -> int:
    """Bytes from a number or a string with units (``"8GiB"``, ``"500 MB"``, ``"1e9"``).

    Raises
    ------
    ValueError
        Not a positive finite amount (named).
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number of bytes or a string such as '8GiB', got {value!r}")
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(f"{name} must be a number of bytes or a string such as '8GiB' or '500MB', "
                             f"got {value!r}")
        try:
            number = float(match.group(1)) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"{name}: cannot read the number in {value!r}") from None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number of bytes or a string such as '8GiB', got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive finite number of bytes, got {value!r}")
    return int(number)


def available_memory() -> int | None:
    """Bytes available now: psutil, else ``/proc/meminfo`` MemAvailable, else ``os.sysconf``; None if unknown."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def memory_limit(max_memory=None) -> tuple[int | None, str]:
    """``(bytes, source)`` of the limit: ``max_memory``, else ``$FASTMF_MAX_MEMORY``, else available memory."""
    if max_memory is not None:
        return parse_memory(max_memory), "max_memory"
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return parse_memory(env, f"${ENV_VAR}"), f"${ENV_VAR}"
    avail = available_memory()
    if avail is None:
        return None, "no limit"
    # leave a margin for the process's other data, the OS and the estimate's error
    return int(_AVAILABLE_FRACTION * avail), f"{_AVAILABLE_FRACTION:.0%} of the available memory"


def _n_threads(n_threads) -> int:
    if n_threads is not None:
        return max(int(n_threads), 1)
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def estimate_fit_memory(solver: str, n_users: int, n_items: int, nnz: int, rank: int, biases: bool = True,
                        dtype=np.float32, n_threads: int | None = None, options: dict | None = None,
                        n_validation: int = 0) -> MemoryEstimate:
    """Estimate the peak memory of fitting ``solver`` (bytes, by component).

    Parameters
    ----------
    solver : {"newton", "als", "sgd", "gibbs"}
    n_users, n_items, nnz : int
        ``m``, ``n`` and the number of training ratings.
    rank : int
    biases : bool
    dtype : {np.float32, np.float64}
        Storage of the parameters and ratings.
    n_threads : int, optional
        Numba threads (default: numba's thread count).
    options : dict, optional
        The solver's options (``preconditioner``, ``max_iter``, ``thin``...).
    n_validation : int
        Validation ratings (scored each iteration).

    Returns
    -------
    MemoryEstimate
        Not counted: the caller's own ratings and the compiled kernels.
    """
    options = dict(options or {})
    m, n, nnz, k = int(n_users), int(n_items), int(nnz), int(rank)
    isz = np.dtype(dtype).itemsize
    K = k + (1 if biases else 0)
    N = (m + n) * K  # parameters
    vec = N * isz
    T = _n_threads(n_threads)
    c = {"validation": n_validation * (8 + 8 + 8)}
    if solver == "newton":
        c["parameter vectors (16 of x, gradient, CG s r z d Bd, trial...)"] = 16 * vec
        c["float64 start"] = 8 * N
        c["COO item buffers (threads x items x rank)"] = T * n * (k + 1) * isz
        c["tiled and item-major ratings"] = nnz * (8 + 16)
        if options.get("preconditioner") == "block-jacobi":
            c["block-Jacobi blocks ((m+n) K^2)"] = (m + n) * K * K * isz
    elif solver in ("als", "gibbs"):
        c["parameter vectors (objective 4, start, working, model)"] = 7 * vec
        c["float64 start"] = 8 * N
        c["item-major ratings"] = nnz * 16
        chunks = 64 if solver == "gibbs" else 8 * T
        c["per-chunk scratch (chunks x K x K float64)"] = chunks * K * (K + 1) * 8
        if solver == "gibbs":
            thin = max(int(options.get("thin", 1)), 1)
            draws = -(-max(int(options.get("max_iter", 200)), 1) // thin)
            c[f"kept draws ({draws} x rank x (m+n), twice: result and model)"] = 2 * draws * k * (m + n) * isz
    elif solver == "sgd":
        c["parameter vectors (start, layout-order copies, aligned copies, result, model)"] = 6 * vec
        c["block layout of the ratings"] = nnz * (8 + isz)
        c["row records ((m+n) x 4)"] = (m + n) * 4 * isz
    else:
        raise ValueError(f"unknown solver {solver!r}")
    return MemoryEstimate(solver, c)


_ADVICE = {
    "newton": "a smaller rank, solver='als' (fewer parameter-sized vectors), preconditioner='jacobi' "
              "(not 'block-jacobi')",
    "als": "a smaller rank, or fewer threads (fewer K x K chunk buffers)",
    "sgd": "a smaller rank",
    "gibbs": "a smaller rank, a larger thin or a smaller max_iter (fewer kept draws)",
}


def check_fit_memory(estimate: MemoryEstimate, max_memory=None) -> None:
    """Raise :class:`FitMemoryError` when ``estimate`` exceeds the limit (see :func:`memory_limit`)."""
    limit, source = memory_limit(max_memory)
    if limit is None or estimate.total <= limit:
        return
    raise FitMemoryError(
        f"solver={estimate.solver!r} would need about {estimate.describe()} of memory at its peak, more than "
        f"the limit {format_bytes(limit)} ({source}): use {_ADVICE[estimate.solver]}, or raise the limit with "
        f"solver_options={{'max_memory': ...}} (bytes or e.g. '8GiB') or ${ENV_VAR}",
        estimate=estimate, limit=limit, limit_source=source,
    )
