"""The conversion path before issue #14 item 3, kept as a private reference.

Used by ``tests/test_conversion.py`` (results must be identical) and
``bench/conversion.py`` (before/after timings).  Not for production use: the
generic ``pd.factorize(sort=True)`` coding and the ``np.argsort`` of a combined
int64 key are several times slower than :mod:`fastmf.data._sort`.
"""

from __future__ import annotations

import numpy as np

from .._validation import as_1d, check_dtype, check_ratings_values, check_raw_ids
from ._layout import first_unsorted
from .ids import IdIndex, as_id_array
from .ratings import Ratings, _check_timestamps, _py


def reference_canonicalize(ucodes, icodes, vals, ts, user_ids, item_ids, duplicates):
    """The former ``Ratings._canonicalize`` body: canonical (codes, values, timestamps)."""
    n_items = len(item_ids)
    if first_unsorted(ucodes, icodes) >= 0:
        key = ucodes.astype(np.int64) * n_items + icodes
        order = np.argsort(key, kind="stable")
        key = key[order]
        dup = key[1:] == key[:-1]
        if dup.any():
            if duplicates == "error":
                pos = np.flatnonzero(dup) + 1
                j = pos[np.argmin(order[pos])]
                a, b = sorted((int(order[j - 1]), int(order[j])))
                raise ValueError(
                    f"duplicate (user, item) pair ({_py(user_ids[ucodes[b]])!r}, {_py(item_ids[icodes[b]])!r}) "
                    f"at rows {a} and {b}; pass duplicates='last' or 'mean' to combine duplicates"
                )
            last = np.append(~dup, True)
            starts = np.flatnonzero(np.insert(~dup, 0, True))
            if duplicates == "mean":
                sums = np.add.reduceat(vals[order].astype(np.float64), starts)
                counts = np.diff(np.append(starts, len(order)))
                keep = order[last]
                ucodes, icodes = ucodes[keep], icodes[keep]
                vals = (sums / counts).astype(vals.dtype)
                if ts is not None:
                    ts = np.maximum.reduceat(ts[order], starts)
            else:
                keep = order[last]
                ucodes, icodes, vals = ucodes[keep], icodes[keep], vals[keep]
                ts = None if ts is None else ts[keep]
        else:
            ucodes, icodes, vals = ucodes[order], icodes[order], vals[order]
            ts = None if ts is None else ts[order]
    return ucodes, icodes, vals, ts


def reference_from_arrays(users, items, ratings, timestamps=None, *, dtype=np.float32, duplicates="error"):
    """The former ``Ratings.from_arrays`` (no rating_scale/name): generic factorize + argsort."""
    dt = check_dtype(dtype)
    u = check_raw_ids(as_id_array(users, "users"), "user ids")
    i = check_raw_ids(as_id_array(items, "items"), "item ids")
    vals = check_ratings_values(as_1d(ratings, "ratings"), dt)
    ts = None if timestamps is None else _check_timestamps(as_1d(timestamps, "timestamps"))
    ucodes, uidx = IdIndex.factorize(u, "user ids")
    icodes, iidx = IdIndex.factorize(i, "item ids")
    uc, ic, v, t = reference_canonicalize(ucodes, icodes, vals, ts, uidx.ids, iidx.ids, duplicates)
    return Ratings(np.ascontiguousarray(uc, dtype=np.int32), np.ascontiguousarray(ic, dtype=np.int32),
                   np.ascontiguousarray(v), uidx.ids, iidx.ids, timestamps=t)
