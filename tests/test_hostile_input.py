"""Issue #15: hostile ids, ratings and model files.

One test per probe of the issue's table (each failed on the code before the fix:
a warning only, a silent merge, a numpy ``UFuncTypeError``, an out-of-bounds read,
an ``IndexError``/``TypeError`` traceback or numpy's ``allow_pickle`` hint).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from fastmf.data.ratings import Ratings
from fastmf.data.synthetic import synthetic
from fastmf.model import MatrixFactorization

TINY = dict(rank=2, solver="sgd", max_iter=1, progress=False, random_state=0)


def _ratings(users, n=None):
    n = len(users) if n is None else n
    return Ratings.from_arrays(users, np.arange(n), np.linspace(1.0, 5.0, n))


@pytest.fixture(scope="module")
def fitted():
    return MatrixFactorization(**TINY).fit(synthetic(12, 9, 60, rank=2, random_state=3))


@pytest.fixture(scope="module")
def arrays(fitted):
    return fitted._to_arrays()


def _save(tmp_path, arrays, **changes):
    path = tmp_path / "m.npz"
    out = {k: v for k, v in {**arrays, **changes}.items() if v is not None}
    np.savez(path, **out)
    return path


# ---------------------------------------------------------------------------- ids
def test_float_ids_beyond_2_53_are_refused_not_merged():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old code only warned (RuntimeWarning: invalid cast)
        with pytest.raises(ValueError, match=r"user ids above 2\*\*53 .* at row 0 \(value 1e\+19\)"):
            _ratings([1e19, 2e19, 3.0])
        with pytest.raises(ValueError, match=r"above 2\*\*53 .* at row 1"):
            _ratings(np.array([3.0, 2.0**53 + 2]))
    assert _ratings(np.array([3.0, 2.0**53])).user_ids.tolist() == [3, 2**53]


def test_uint64_ids_beyond_int64_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"int64 .* at row 0 \(value 9223372036854775808\)"):
        _ratings(np.array([2**63, 2**64 - 1, 5], dtype=np.uint64))
    with pytest.raises(ValueError, match=r"int64 .* at row 1 \(value 18446744073709551615\)"):
        _ratings([5, 2**64 - 1])  # a list: Python ints, same rule
    # uint64 ids that fit are int64 ids: they survive save/load and address the same rows
    users = np.array([5, 2**63 - 1, 7], dtype=np.uint64)
    m = MatrixFactorization(**TINY).fit(Ratings.from_arrays(users, [0, 1, 2], [1.0, 3.0, 5.0]))
    loaded = MatrixFactorization.load(m.save(tmp_path / "u.npz"))
    assert loaded.user_ids_.tolist() == [5, 7, 2**63 - 1]
    np.testing.assert_array_equal(loaded.predict(users, [0, 1, 2], unknown="raise"),
                                  m.predict(users, [0, 1, 2], unknown="raise"))


def test_object_and_mixed_ids_are_refused():
    with pytest.raises(ValueError, match=r"whole numbers.* at row 0 \(value 1.5\)"):
        _ratings(np.array([1.5, 2.0], dtype=object))
    with pytest.raises(ValueError, match=r"mix strings and numbers.* at row 1 \(value 1\)"):
        _ratings(["a", 1])  # used to become the strings "a", "1"
    with pytest.raises(ValueError, match=r"mix strings and numbers.* at row 1"):
        _ratings(np.array(["a", 1], dtype=object))
    df = pd.DataFrame({"user": pd.Series([1, "b"], dtype=object), "item": [0, 1], "rating": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"user ids mix strings and numbers.* at row 1 \(value 'b'\)"):
        Ratings.from_dataframe(df)
    with pytest.raises(ValueError, match=r"must be integers or strings: first tuple id at row 0"):
        _ratings(np.array([(1, 2), (3, 4), 5], dtype=object))
    # whole numbers in an object column are integer ids; predict(1) finds them
    r = _ratings(np.array([1, 2.0], dtype=object))
    assert r.user_ids.dtype == np.int64 and r.user_codes(1) == 0 and r.user_codes(2) == 1


def test_lookup_is_exact_and_unrepresentable_ids_are_unknown(fitted):
    u0 = int(fitted.user_ids_[0])
    i0 = int(fitted.item_ids_[0])
    assert fitted.user_codes([u0, float(u0), np.uint64(u0)]).tolist() == [0, 0, 0]
    codes = fitted.user_codes([str(u0), u0 + 0.5, 1e19, 2**64 - 1, 2**70, True, None], missing="ignore")
    assert (codes == -1).all()
    with pytest.raises(KeyError, match="unknown user id 1e\\+19"):
        fitted.predict(1e19, i0, unknown="raise")
    # a mixed list is not turned into strings: the int still finds its row
    with pytest.warns(UserWarning, match="unknown"):
        mixed = fitted.predict([u0, "x"], [i0, i0], unknown="nan")
    assert mixed[0] == fitted.predict(u0, i0) and np.isnan(mixed[1])


# ---------------------------------------------------------------------------- ratings
def test_rating_overflowing_float32_is_a_value_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"ratings overflow float32: first at row 1 \(value 1e\+39\)"):
            Ratings.from_arrays([1, 2], [1, 2], [3.0, 1e39])
    assert Ratings.from_arrays([1, 2], [1, 2], [3.0, 1e39], dtype=np.float64).values[1] == 1e39


@pytest.mark.parametrize("scale", ["ab", (5, 1), (np.nan, 5), (1, 3, 5), (1, np.inf), ("1", 5), 5])
def test_nonsense_rating_scale_is_a_value_error(scale):
    with pytest.raises(ValueError, match="rating_scale must be"):
        Ratings.from_arrays([1, 2], [1, 2], [3.0, 4.0], rating_scale=scale)


# ---------------------------------------------------------------------------- model files
def test_one_element_item_biases_is_refused(arrays, tmp_path):
    path = _save(tmp_path, arrays, item_biases=arrays["item_biases"][:1])
    with pytest.raises(ValueError, match=r"m\.npz.*biases of shapes"):
        MatrixFactorization.load(path)


def _params(arrays, **changes):
    return np.array(json.dumps({**json.loads(str(arrays["params_json"])), **changes}))


@pytest.mark.parametrize("case, field", [
    ("seen_items_out_of_range", "seen_items"),
    ("seen_indptr_decreasing", "seen_indptr"),
    ("float16_factors", "user_factors"),
    ("rank_abc", "rank"),
    ("dtype_int32", "dtype"),
    ("version_abc", "fastmf_format_version"),
    ("version_list", "fastmf_format_version"),
    ("params_not_json", "params_json"),
    ("nan_factor", "user_factors"),
    ("duplicate_ids", "user_ids"),
    ("huge_factors", "overflow"),
    ("result_extra_key", "result_json"),
])
def test_invalid_model_fields_are_one_value_error(arrays, tmp_path, case, field):
    a = arrays
    P = a["user_factors"].copy()
    P[0, 0] = np.nan
    ids = a["user_ids"].copy()
    ids[1] = ids[0]
    changes = {
        "seen_items_out_of_range": dict(seen_items=np.full_like(a["seen_items"], len(a["item_ids"]) + 10)),
        "seen_indptr_decreasing": dict(seen_indptr=a["seen_indptr"][::-1].copy()),
        "float16_factors": dict(user_factors=a["user_factors"].astype(np.float16),
                                item_factors=a["item_factors"].astype(np.float16)),
        "rank_abc": dict(params_json=_params(a, rank="abc")),
        "dtype_int32": dict(params_json=_params(a, dtype="int32")),
        "version_abc": dict(fastmf_format_version=np.array("abc")),
        "version_list": dict(fastmf_format_version=np.array([1, 2])),
        "params_not_json": dict(params_json=np.array("{rank: 2")),
        "nan_factor": dict(user_factors=P),
        "duplicate_ids": dict(user_ids=ids),
        "huge_factors": dict(user_factors=np.full_like(a["user_factors"], 1e30),
                             item_factors=np.full_like(a["item_factors"], 1e30)),
        "result_extra_key": dict(result_json=np.array(json.dumps({"x": 1}))),
    }[case]
    path = _save(tmp_path, a, **changes)
    with pytest.raises(ValueError) as info:
        MatrixFactorization.load(path)
    msg = str(info.value)
    assert str(path) in msg and field in msg, msg


def test_unreadable_files_are_clean_value_errors(arrays, tmp_path, fitted):
    rng = np.random.default_rng(0)
    cases = {}
    (tmp_path / "random.npz").write_bytes(rng.bytes(2000))
    (tmp_path / "text.npz").write_text("user,item,rating\n1,2,3.5\n")
    np.save(tmp_path / "array.npy", np.arange(5))
    good = fitted.save(tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "folder.npz").mkdir()
    np.savez(tmp_path / "pickled.npz", **{**arrays, "user_ids": np.array([object()] * 3, dtype=object)})
    for name in ("random.npz", "text.npz", "array.npy", "truncated.npz", "folder.npz", "pickled.npz"):
        with pytest.raises(ValueError) as info:
            MatrixFactorization.load(tmp_path / name)
        cases[name] = str(info.value)
        assert name in cases[name] and "allow_pickle" not in cases[name], cases[name]
        assert "pickle" not in repr(info.value.__cause__)
    assert "directory" in cases["folder.npz"] and ".npy" in cases["array.npy"]
