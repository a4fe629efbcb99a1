"""Solvers: trust-region Newton-CG, ALS, parallel blocked SGD and Gibbs sampling, with one run interface.

All return a :class:`SolverResult` (packed ``x = [P, Q, b, c]`` plus ``mu``, ``rank``,
``biases``, a per-iteration ``history``); all run in the one loop of
:func:`fastmf.solvers._base.run_iterations` and take ``max_iter``, ``tol``, ``max_time``,
``validation``, ``early_stopping``, ``callbacks``, ``progress``, ``random_state`` and
``n_threads``.  :mod:`fastmf.solvers.registry` describes each (:func:`get_solver_spec`).
"""

import warnings

from ..exceptions import ConvergenceWarning, DivergenceError
from ._base import IterationRecord, SolverResult, Status
from .als import als
from .gibbs import gibbs
from .newton import newton_cg, sign_loss_bound
from .registry import SOLVERS, SolverSpec, get_solver_spec
from .sgd import sgd

__all__ = [
    "ConvergenceWarning",
    "DivergenceError",
    "IterationRecord",
    "SOLVERS",
    "SolverResult",
    "SolverSpec",
    "Status",
    "als",
    "get_solver_spec",
    "gibbs",
    "newton_cg",
    "sgd",
    "sign_loss_bound",
]


def __getattr__(name):
    if name == "fit_newton_cg":
        warnings.warn("fastmf.solvers.fit_newton_cg is deprecated and will be removed in the next release: "
                      "use MatrixFactorization(solver='newton') or newton_cg(MFObjective(...))",
                      DeprecationWarning, stacklevel=2)
        from ._compat import fit_newton_cg

        return fit_newton_cg
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
