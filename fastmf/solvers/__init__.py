"""Solvers: trust-region Newton-CG, ALS, parallel blocked SGD and Gibbs sampling, with one run interface.

All return a :class:`SolverResult` (packed ``x = [P, Q, b, c]`` plus ``mu``, ``rank``,
``biases``, a per-iteration ``history``); all run in the one loop of
:func:`fastmf.solvers._base.run_iterations` and take ``max_iter``, ``tol``, ``max_time``,
``validation``, ``early_stopping``, ``callbacks``, ``progress``, ``random_state`` and
``n_threads``.  :mod:`fastmf.solvers.registry` describes each (:func:`get_solver_spec`).

The solver modules are imported on first use (``fastmf.solvers.als`` ...), so that
``import fastmf`` does not import every solver and its kernels.
"""

import sys
import types
import warnings

from .._lazy import lazy_attributes
from ..exceptions import ConvergenceWarning, DivergenceError
from ._base import IterationRecord, SolverResult, Status
from .registry import SOLVERS, SolverSpec, get_solver_spec

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

#: public name -> (module, attribute), imported on first access
_LAZY = {
    "als": (".als", "als"),
    "gibbs": (".gibbs", "gibbs"),
    "newton_cg": (".newton", "newton_cg"),
    "sign_loss_bound": (".newton", "sign_loss_bound"),
    "sgd": (".sgd", "sgd"),
}


def _deprecated(name):
    if name == "fit_newton_cg":
        # stacklevel 3: this function, the package's __getattr__, then the caller's access
        warnings.warn("fastmf.solvers.fit_newton_cg is deprecated and will be removed in the next release: "
                      "use MatrixFactorization(solver='newton') or newton_cg(MFObjective(...))",
                      DeprecationWarning, stacklevel=3)
        from ._compat import fit_newton_cg

        return fit_newton_cg
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), fallback=_deprecated)


class _SolversPackage(types.ModuleType):
    """``fastmf.solvers.als`` (``gibbs``, ``sgd``) is the solver function, as when this package
    imported them eagerly: the import system's ``setattr(package, "als", <module>)`` after the
    submodule's first import keeps the function instead (the module stays in ``sys.modules``)."""

    def __setattr__(self, name, value):
        if name in ("als", "gibbs", "sgd") and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _SolversPackage
