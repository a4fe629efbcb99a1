"""splitmix64, the counter-based generator behind fastmf's seeded numba kernels.

Numba's ``np.random`` keeps one state per thread, so results would depend on which
thread ran what.  The synthetic-data generator and the SGD shuffles instead derive
an independent stream per (seed, row) or (seed, epoch, block) with splitmix64
(Steele, Lea & Flood 2014): deterministic whatever the thread count.
"""

from __future__ import annotations

import numba
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  #: splitmix64's increment (2**64 / golden ratio)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


@numba.njit(inline="always")
def mix64(z):
    """splitmix64 finaliser (a bijection of uint64)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(inline="always")
def next_state(state):
    """Advance a splitmix64 state; return (state, 64 random bits)."""
    state = state + GOLDEN
    return state, mix64(state)
