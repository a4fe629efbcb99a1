"""save/load (versioned npz, atomic), pickling, and the atomic writer."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

import fastmf.model as model_mod
from fastmf._io import atomic_open
from fastmf.data.synthetic import synthetic
from fastmf.model import FORMAT_VERSION, MatrixFactorization

FAST = dict(solver="sgd", max_iter=2, progress=False, random_state=0)


@pytest.fixture(scope="module")
def data():
    r = synthetic(50, 30, 700, rank=3, random_state=5)
    r.item_titles = {int(i): f"Movie {i}" for i in r.item_ids if i % 3}  # some items without title
    return r


@pytest.fixture(scope="module")
def fitted(data):
    return MatrixFactorization(rank=4, **FAST).fit(data, eval_set=data)


def assert_same_model(a, b, data):
    for name in ("user_factors_", "item_factors_", "user_biases_", "item_biases_", "user_ids_", "item_ids_",
                 "seen_indptr_", "seen_items_"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y)
            assert x.dtype.kind == y.dtype.kind
    assert a.global_mean_ == b.global_mean_ and a.rating_scale_ == b.rating_scale_
    assert a.get_params() == {**b.get_params(), "callbacks": a.callbacks}
    u = data.user_ids[data.users[:40]]
    i = data.item_ids[data.items[:40]]
    np.testing.assert_array_equal(a.predict(u, i), b.predict(u, i))
    for x, y in zip(a.recommend(data.user_ids[:5], n=4), b.recommend(data.user_ids[:5], n=4)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.similar_items(data.item_ids[:3], n=4), b.similar_items(data.item_ids[:3], n=4)):
        np.testing.assert_array_equal(x, y)


def test_save_load_round_trip(fitted, data, tmp_path):
    path = fitted.save(tmp_path / "model.npz")
    assert path == tmp_path / "model.npz" and path.is_file()
    loaded = MatrixFactorization.load(path)
    assert_same_model(fitted, loaded, data)
    assert loaded.history_ == json.loads(json.dumps(fitted.history_))
    assert loaded.n_iter_ == fitted.n_iter_ and loaded.fit_time_ == fitted.fit_time_
    assert loaded.result_.status == fitted.result_.status and loaded.result_.message == fitted.result_.message
    assert loaded.item_titles_ == fitted.item_titles_ and loaded.item_title(data.item_ids[1]) == "Movie 1"
    assert loaded.item_title(data.item_ids[0]) is None
    # plain numpy can read it without pickle
    with np.load(path, allow_pickle=False) as z:
        assert int(z["fastmf_format_version"]) == FORMAT_VERSION
        assert all(z[k].dtype != object for k in z.files)


def test_round_trip_without_biases_and_with_string_ids(data, tmp_path):
    df = data.to_dataframe()
    df["user"] = "user-" + df["user"].astype(str)
    df["item"] = "Ítem " + df["item"].astype(str)  # non-ASCII
    m = MatrixFactorization(rank=2, biases=False, dtype=np.float64, **FAST).fit(df)
    loaded = MatrixFactorization.load(m.save(tmp_path / "s.npz"))
    assert loaded.user_biases_ is None and loaded.user_factors_.dtype == np.float64
    assert loaded.dtype is np.float64
    u, i = df["user"].to_numpy()[:20], df["item"].to_numpy()[:20]
    np.testing.assert_array_equal(m.predict(u, i), loaded.predict(u, i))
    np.testing.assert_array_equal(m.recommend(u[0], n=3)[0], loaded.recommend(u[0], n=3)[0])


def test_save_is_atomic(fitted, data, tmp_path, monkeypatch):
    """A crash in the middle of writing leaves the old file intact and no temporary file."""
    path = tmp_path / "model.npz"
    fitted.save(path)
    old_bytes = path.read_bytes()
    other = MatrixFactorization(rank=3, **{**FAST, "random_state": 1}).fit(data)

    def crashing_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(model_mod.np, "savez", crashing_savez)
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert_same_model(fitted, MatrixFactorization.load(path), data)


def test_atomic_open(tmp_path):
    target = tmp_path / "f.txt"
    with atomic_open(target, "w") as fh:
        fh.write("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write("two")
            raise RuntimeError("boom")
    assert target.read_text() == "one" and os.listdir(tmp_path) == ["f.txt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_open(tmp_path / "nope" / "f.txt"):
            pass
    with pytest.raises(IsADirectoryError):
        with atomic_open(tmp_path):
            pass
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(target, "a"):
            pass


def test_load_errors(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        MatrixFactorization.load(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match="not a fastmf model file"):
        MatrixFactorization.load(text)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(ValueError, match="no fastmf_format_version"):
        MatrixFactorization.load(other)
    arrays = fitted._to_arrays()
    newer = tmp_path / "newer.npz"
    np.savez(newer, **{**arrays, "fastmf_format_version": np.array(FORMAT_VERSION + 1)})
    with pytest.raises(ValueError, match="format version"):
        MatrixFactorization.load(newer)
    partial = tmp_path / "partial.npz"
    np.savez(partial, **{k: v for k, v in arrays.items() if k != "item_factors"})
    with pytest.raises(ValueError, match="missing \\['item_factors'\\]"):
        MatrixFactorization.load(partial)
    bad_shape = tmp_path / "bad.npz"
    np.savez(bad_shape, **{**arrays, "user_ids": arrays["user_ids"][:-1]})
    with pytest.raises(ValueError, match="inconsistent"):
        MatrixFactorization.load(bad_shape)
    assert zipfile.is_zipfile(fitted.save(tmp_path / "ok.npz"))


def test_save_refuses_unserialisable_options(data, tmp_path):
    m = MatrixFactorization(rank=2, **FAST).fit(data)
    m.solver_options = {"schedule": object()}
    with pytest.raises(TypeError, match="JSON"):
        m.save(tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())


def test_callbacks_and_generators_are_not_saved(data, tmp_path):
    m = MatrixFactorization(rank=2, callbacks=lambda r: False,
                            **{**FAST, "random_state": np.random.default_rng(0)}).fit(data)
    loaded = MatrixFactorization.load(m.save(tmp_path / "m.npz"))
    assert loaded.callbacks is None and loaded.random_state is None


def test_pickle_round_trip(fitted, data):
    fitted.predict(data.user_ids[:2], data.item_ids[:2])  # builds the id index caches
    blob = pickle.dumps(fitted)
    clone = pickle.loads(blob)
    assert clone.__dict__.get("_user_index") is None
    assert_same_model(fitted, clone, data)
    unfitted = pickle.loads(pickle.dumps(MatrixFactorization(rank=3)))
    assert unfitted.get_params() == MatrixFactorization(rank=3).get_params()


def test_save_load_unfitted_and_dataframe_titles(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        MatrixFactorization().save(tmp_path / "m.npz")
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 11, 10, 12, 11], "rating": [4.0, 3.0, 5.0, 2.0, 1.0]})
    m = MatrixFactorization(rank=1, **FAST).fit(df)
    loaded = MatrixFactorization.load(m.save(tmp_path / "m.npz"))
    assert loaded.item_titles_ is None and loaded.item_title(10) is None
