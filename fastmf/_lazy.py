"""Type checks that do not import pandas or scipy (``import fastmf`` and ``fastmf fit`` use neither).

An object can be a pandas DataFrame or a scipy sparse matrix only if its module was imported
(by whoever built it), so the checks look the module up in :data:`sys.modules` and answer
``False`` without importing it.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["is_dataframe", "is_pandas_1d", "is_sparse", "lazy_attributes"]


def lazy_attributes(package: str, table: dict, namespace: dict, fallback=None):
    """PEP 562 ``__getattr__`` and ``__dir__`` for a package whose public names load on first access.

    ``table`` maps a public name to ``(module, attribute)``: ``module`` relative to
    ``package``, ``attribute`` ``None`` for the module itself.  The first access imports it and
    stores it in ``namespace`` (the package's ``globals()``), so later accesses are plain
    lookups.  ``fallback(name)``, if given, answers names outside ``table`` (or raises
    ``AttributeError``).
    """

    def __getattr__(name):
        if name in table:
            module, attr = table[name]
            value = importlib.import_module(module, package)
            if attr is not None:
                value = getattr(value, attr)
            namespace[name] = value
            return value
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__


def is_dataframe(x) -> bool:
    """``isinstance(x, pandas.DataFrame)``, without importing pandas."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.DataFrame)


def is_pandas_1d(x) -> bool:
    """``isinstance(x, (pandas.Series, pandas.Index))``, without importing pandas."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, (pd.Series, pd.Index))


def is_sparse(x) -> bool:
    """``scipy.sparse.issparse(x)``, without importing scipy."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(x)
