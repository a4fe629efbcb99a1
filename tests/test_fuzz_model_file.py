"""Fuzzing ``load``: a mutated model file is a clean ``ValueError`` or a valid model.

Mutations of a small valid file: truncation, byte flips anywhere in the file
(mostly caught by the zip CRC), and array-level edits that keep the archive
well-formed (drop or resize an entry, change its dtype, flip bytes inside its
data, replace it by a scalar, edit the parameters JSON).  A loaded model must pass
its own validation and score every known (user, item) pair finitely: a flipped
byte inside a float may change a prediction, an out-of-bounds read never.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmf import serving
from fastmf.data.synthetic import synthetic
from fastmf.model import MatrixFactorization

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint64", "bool", "complex64", "<U3"]
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(allow_nan=True),
                        st.text(max_size=5), st.lists(st.integers(0, 3), max_size=2))


@pytest.fixture(scope="module")
def base():
    m = MatrixFactorization(rank=2, solver="sgd", max_iter=1, progress=False, random_state=0)
    m.fit(synthetic(8, 6, 30, rank=2, random_state=1))
    arrays = m._to_arrays()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return arrays, buf.getvalue()


def _check(path):
    """Load: a ValueError, or a model valid by its own checks that scores every known pair finitely."""
    try:
        model = MatrixFactorization.load(path)
    except ValueError:
        return
    fm = model.model_.validate()
    users = np.repeat(fm.user_ids, fm.n_items)
    items = np.tile(fm.item_ids, fm.n_users)
    pred = serving.predict(fm, users, items, unknown="raise")
    assert np.isfinite(pred).all()
    model.recommend(fm.user_ids[:2], n=2)


def _mutate_array(a: np.ndarray, op: str, data) -> np.ndarray | None:
    if op == "drop":
        return None
    if op == "resize":
        n = data.draw(st.integers(0, 12))
        flat = a.reshape(-1)
        return np.resize(flat, n) if a.ndim <= 1 else np.resize(a, (n,) + a.shape[1:])
    if op == "dtype":
        try:
            return a.astype(data.draw(st.sampled_from(DTYPES)))
        except (ValueError, TypeError, OverflowError):
            return a
    if op == "scalar":
        return np.array(data.draw(st.one_of(st.integers(-5, 5), st.floats(), st.text(max_size=3))))
    if op == "bytes" and a.nbytes and a.dtype.kind != "U":
        raw = bytearray(a.tobytes())
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        return np.frombuffer(bytes(raw), dtype=a.dtype).reshape(a.shape).copy()
    return a


@FUZZ
@given(data=st.data())
def test_array_level_mutations(base, tmp_path, data):
    arrays = dict(base[0])
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(arrays)))
        op = data.draw(st.sampled_from(["drop", "resize", "dtype", "scalar", "bytes", "json"]))
        if op == "json" and key.endswith("_json"):
            try:
                value = json.loads(str(arrays[key]))
            except ValueError:  # an earlier mutation broke it
                value = None
            if isinstance(value, dict) and value:
                value[data.draw(st.sampled_from(sorted(value)))] = data.draw(JSON_VALUES)
            else:
                value = data.draw(JSON_VALUES)
            arrays[key] = np.array(json.dumps(value) if data.draw(st.booleans()) else json.dumps(value)[:-1])
        else:
            new = _mutate_array(arrays[key], op, data)
            if new is None:
                del arrays[key]
            else:
                arrays[key] = new
    path = tmp_path / "fuzz.npz"
    np.savez(path, **arrays)
    _check(path)


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_byte_level_mutations(base, tmp_path, data):
    raw = bytearray(base[1])
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(raw))
    _check(path)
