"""Type checks that do not import pandas or scipy (``import fastmf`` and ``fastmf fit`` use neither).

An object can be a pandas DataFrame or a scipy sparse matrix only if its module was imported
(by whoever built it), so the checks look the module up in :data:`sys.modules` and answer
``False`` without importing it.
"""

from __future__ import annotations

import sys

__all__ = ["is_dataframe", "is_pandas_1d", "is_sparse"]


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
