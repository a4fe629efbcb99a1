"""Parquet and Arrow in and out: load_ratings_file on .parquet, ratings_from_arrow, ratings_to_parquet, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from fastmf.cli import main
from fastmf.data.arrow import ratings_from_arrow, ratings_to_parquet, read_parquet_ratings
from fastmf.data.movielens import load_ratings_file
from fastmf.data.ratings import Ratings

REPO_DATA = Path(__file__).resolve().parents[1] / "data"
SMALL_CSV = REPO_DATA / "ml-latest-small" / "ratings.csv"


def _assert_same(a: Ratings, b: Ratings, *, check_ts: bool = True) -> None:
    np.testing.assert_array_equal(a.users, b.users)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.dtype == b.values.dtype
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    if check_ts:
        if a.timestamps is None:
            assert b.timestamps is None
        else:
            np.testing.assert_array_equal(a.timestamps, b.timestamps)


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_int_ids(tmp_path, dtype):
    r = Ratings.from_arrays([7, 3, 7, 100], [2, 2, 50, 9], [1.5, 4.0, 3.25, 5.0], [10, 20, 30, 40], dtype=dtype)
    before = (r.values.copy(), r.users.copy())
    out = ratings_to_parquet(r, tmp_path / "r.parquet")
    assert out == tmp_path / "r.parquet"
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]  # no temporary file left
    np.testing.assert_array_equal(r.values, before[0])  # caller's data untouched
    np.testing.assert_array_equal(r.users, before[1])
    back = read_parquet_ratings(out)
    _assert_same(r, back)
    assert back.user_ids.dtype == r.user_ids.dtype and back.name == "r.parquet"
    # load_ratings_file: the same data, stored as the requested dtype
    via_loader = load_ratings_file(out, dtype=dtype)
    _assert_same(r, via_loader)


def test_round_trip_string_ids_without_timestamps(tmp_path):
    r = Ratings.from_arrays(["bob", "alice", "bob", "zoë"], ["x", "y", "y", "x"], [1, 2, 3, 4], dtype=np.float64)
    ratings_to_parquet(r, tmp_path / "s.parquet", compression=None)
    schema = pq.read_schema(tmp_path / "s.parquet")
    assert schema.names == ["user", "item", "rating"]
    assert schema.field("user").type == pa.string() and schema.field("rating").type == pa.float64()
    back = read_parquet_ratings(tmp_path / "s.parquet")
    _assert_same(r, back)
    assert back.timestamps is None and list(back.user_ids) == ["alice", "bob", "zoë"]


def test_to_parquet_is_atomic_on_failure(tmp_path):
    r = Ratings.from_arrays([1, 2], [1, 1], [3.0, 4.0])
    target = tmp_path / "r.parquet"
    target.write_bytes(b"old content")
    with pytest.raises(Exception):
        ratings_to_parquet(r, target, compression="no-such-codec")
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]
    ratings_to_parquet(r, target)  # replaces the old file
    _assert_same(r, read_parquet_ratings(target))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ratings_to_parquet(r, tmp_path / "absent" / "r.parquet")
    with pytest.raises(TypeError, match="expected Ratings"):
        ratings_to_parquet(pd.DataFrame({"user": [1]}), tmp_path / "x.parquet")


# ------------------------------------------------------------------ column guessing
@pytest.mark.parametrize("names", [
    ("userId", "movieId", "rating", "timestamp"),
    ("user", "item", "rating", "timestamp"),
    ("user_id", "item_id", "rating", "timestamp"),
    ("user_id", "movie_id", "rating", "timestamp"),
    ("UserID", "MovieID", "Rating", "Timestamp"),
])
def test_column_guessing(tmp_path, names):
    u, i, r, t = names
    table = pa.table({"other": ["a", "b", "c"], t: [5, 6, 7], r: [1.0, 2.0, 3.5], i: [10, 20, 10], u: [1, 1, 2]})
    pq.write_table(table, tmp_path / "g.parquet")
    got = load_ratings_file(tmp_path / "g.parquet")
    want = Ratings.from_arrays([1, 1, 2], [10, 20, 10], [1.0, 2.0, 3.5], [5, 6, 7])
    _assert_same(want, got)
    # without the timestamp column: no timestamps
    pq.write_table(table.drop_columns([t]), tmp_path / "n.parquet")
    assert load_ratings_file(tmp_path / "n.parquet").timestamps is None


def test_explicit_columns_dictionary_strings_and_timestamp_type(tmp_path):
    df = pd.DataFrame({"who": pd.Categorical(["u1", "u2", "u1"]), "what": ["a", "a", "b"], "score": [4, 5, 3],
                       "when": pd.to_datetime([1, 2, 3], unit="s")})
    df.to_parquet(tmp_path / "c.parquet")
    assert pa.types.is_dictionary(pq.read_schema(tmp_path / "c.parquet").field("who").type)
    with pytest.raises(ValueError, match=r"c\.parquet: cannot find user/item/rating columns"):
        load_ratings_file(tmp_path / "c.parquet")
    got = load_ratings_file(tmp_path / "c.parquet", columns=("who", "what", "score", "when"), name="mine")
    assert got.name == "mine" and list(got.user_ids) == ["u1", "u2"]
    assert got.values.dtype == np.float32 and got.values.tolist() == [4.0, 3.0, 5.0]
    assert got.timestamps.tolist() == [1, 3, 2]


# ------------------------------------------------------------------ errors
def test_errors_name_the_file_and_column(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("userId,movieId,rating\n1,2,3\n")
    with pytest.raises(ValueError, match=r"bad\.parquet: not a readable Parquet file"):
        load_ratings_file(bad)
    with pytest.raises(FileNotFoundError, match="absent.parquet"):
        read_parquet_ratings(tmp_path / "absent.parquet")

    pq.write_table(pa.table({"user": [1], "item": [2], "rating": [3.0]}), tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=r"m\.parquet: columns \['when'\] not in the header"):
        load_ratings_file(tmp_path / "m.parquet", columns=("user", "item", "rating", "when"))
    with pytest.raises(ValueError, match="columns must be 3 or 4 column names"):
        load_ratings_file(tmp_path / "m.parquet", columns=("user", "item"))

    pq.write_table(pa.table({"user": [1, None], "item": [2, 3], "rating": [3.0, 4.0]}), tmp_path / "null.parquet")
    with pytest.raises(ValueError, match=r"null\.parquet: column 'user' \(user\) has 1 missing values \(first at row 1\)"):
        load_ratings_file(tmp_path / "null.parquet")

    pq.write_table(pa.table({"user": [1], "item": [2], "rating": ["good"]}), tmp_path / "s.parquet")
    with pytest.raises(TypeError, match=r"s\.parquet: column 'rating' \(rating\) must hold numbers, not string"):
        load_ratings_file(tmp_path / "s.parquet")

    pq.write_table(pa.table({"user": pa.array([], pa.int64()), "item": pa.array([], pa.int64()),
                             "rating": pa.array([], pa.float64())}), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"e\.parquet: no ratings"):
        load_ratings_file(tmp_path / "e.parquet")

    # a Parquet file is recognised by its magic bytes whatever its name
    pq.write_table(pa.table({"user": [1], "item": [2], "rating": [3.0]}), tmp_path / "ratings.dat")
    assert load_ratings_file(tmp_path / "ratings.dat").nnz == 1


# ------------------------------------------------------------------ Arrow inputs
def test_ratings_from_arrow_inputs_agree():
    table = pa.table({"userId": ["b", "a", "b", "c"], "movieId": [1, 1, 2, 2], "rating": pa.array([1, 2, 3, 4], pa.float32()),
                      "extra": [0, 0, 0, 0]})
    want = Ratings.from_arrays(["b", "a", "b", "c"], [1, 1, 2, 2], [1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    batches = table.to_batches(max_chunksize=3)
    assert len(batches) == 2
    for data in (table, table.combine_chunks().to_batches()[0], pa.RecordBatchReader.from_batches(table.schema, batches),
                 batches, iter(batches)):
        _assert_same(want, ratings_from_arrow(data))
    assert ratings_from_arrow(table, dtype=np.float64).values.dtype == np.float64
    with pytest.raises(TypeError, match="data must be a pyarrow Table"):
        ratings_from_arrow(pd.DataFrame({"user": [1]}))
    with pytest.raises(TypeError, match="data must be a pyarrow Table.*got int"):
        ratings_from_arrow(3)
    with pytest.raises(TypeError, match="data must be a pyarrow Table.*got a list of dict"):
        ratings_from_arrow([{"user": 1}])
    with pytest.raises(TypeError, match="got a record batch followed by a str"):
        ratings_from_arrow([table.to_batches()[0], "x"])
    with pytest.raises(ValueError, match="no record batches"):
        ratings_from_arrow([])
    with pytest.raises(ValueError, match=r"Arrow data: cannot find user/item/rating columns"):
        ratings_from_arrow(pa.table({"a": [1]}))


# ------------------------------------------------------------------ ml-latest-small
def test_parquet_equal_to_the_csv_gives_the_same_ratings(tmp_path):
    # an independent Parquet copy of the bundled CSV: pyarrow's own CSV reader and writer, MovieLens names
    pq.write_table(pacsv.read_csv(SMALL_CSV), tmp_path / "ratings.parquet", row_group_size=30_000)
    assert pq.ParquetFile(tmp_path / "ratings.parquet").num_row_groups == 4
    from_csv = load_ratings_file(SMALL_CSV)
    from_parquet = load_ratings_file(tmp_path / "ratings.parquet")
    assert from_parquet.nnz == 100_836 and from_parquet.n_users == 610 and from_parquet.n_items == 9_724
    _assert_same(from_csv, from_parquet)
    # and our writer round-trips it
    ratings_to_parquet(from_csv, tmp_path / "ours.parquet")
    _assert_same(from_csv, read_parquet_ratings(tmp_path / "ours.parquet"))


def test_cli_fit_on_parquet(tmp_path, monkeypatch, capsys):
    pq.write_table(pacsv.read_csv(SMALL_CSV), tmp_path / "ratings.parquet")
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "ratings.parquet", "--rank", "4", "--max-iter", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "data: Ratings('ratings.parquet', n_users=610, n_items=9724, nnz=100836" in out
    assert "test RMSE:" in out


def test_ratings_methods_round_trip_through_parquet(tmp_path):
    """``Ratings.to_parquet`` / ``Ratings.from_arrow`` are the data.arrow functions as methods."""
    r = Ratings.from_arrays(np.array(["b", "a", "c", "a"]), np.array([10, 20, 10, 30]),
                            np.array([4.0, 3.5, 1.0, 5.0]), np.array([5, 6, 7, 8]), dtype=np.float64)
    path = r.to_parquet(tmp_path / "r.parquet")
    back = Ratings.from_arrow(pq.read_table(path))
    assert back.values.dtype == np.float64
    for attr in ("users", "items", "values", "timestamps", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(r, attr))
