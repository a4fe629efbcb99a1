"""The dedicated MovieLens ``ratings.csv`` parser (:mod:`fastmf.data._csv`) against pyarrow.

The fast parser must give pyarrow's columns bit for bit, and hand every file it does not
fully understand back to pyarrow (same result, same error).  Its size threshold is
monkeypatched to 0 so that small files take the fast path.
"""

from __future__ import annotations

import zipfile

import numba
import numpy as np
import pyarrow as pa
import pytest

from fastmf.data import _csv
from fastmf.data.movielens import (
    MOVIELENS_DATASETS,
    _read_spec_ratings,
    _Source,
    column_numpy,
    load_movielens,
    load_ratings_file,
)

HEADER = b"userId,movieId,rating,timestamp"
COLS = ("user", "item", "rating", "timestamp")
FIELDS = ("users", "items", "values", "user_ids", "item_ids", "user_indptr", "timestamps")


def _pyarrow_columns(path):
    """The four columns the pyarrow reader of load_movielens gives (fast path off)."""
    old = _csv.FAST_CSV_MIN_BYTES
    _csv.FAST_CSV_MIN_BYTES = 1 << 62
    try:
        table = _read_spec_ratings(_Source(path.parent), MOVIELENS_DATASETS["ml-25m"], path.name)
    finally:
        _csv.FAST_CSV_MIN_BYTES = old
    return [column_numpy(table.column(c)) for c in COLS]


def _assert_bits_equal(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


def _assert_fast_equals_pyarrow(path):
    fast = _csv.read_movielens_csv(path, min_bytes=0)
    assert fast is not None, "the fast parser fell back"
    for a, b in zip(fast, _pyarrow_columns(path)):
        _assert_bits_equal(a, b)
    return fast


def _write(tmp_path, body: bytes, header: bytes = HEADER + b"\n", name="ml-25m"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    path = folder / "ratings.csv"
    path.write_bytes(header + body)
    return path


def _load(loader, path, threshold, monkeypatch, **kw):
    """(Ratings or the exception) of ``loader`` with the fast parser's threshold set."""
    monkeypatch.setattr(_csv, "FAST_CSV_MIN_BYTES", threshold)
    try:
        if loader == "movielens":
            return load_movielens("ml-25m", data_home=path.parent.parent, download=False, **kw)
        return load_ratings_file(path, **kw)
    except Exception as exc:  # compared by type and message
        return exc


def _assert_same_outcome(a, b):
    if isinstance(a, Exception) or isinstance(b, Exception):
        assert type(a) is type(b) and str(a) == str(b), (a, b)
        return
    for f in FIELDS:
        _assert_bits_equal(getattr(a, f), getattr(b, f))
    assert (a.name, a.rating_scale, a.item_titles) == (b.name, b.rating_scale, b.item_titles)


@pytest.fixture
def latest_small(shared_data, tmp_path):
    """The real ml-latest-small ratings.csv, extracted from the shared zip."""
    with zipfile.ZipFile(shared_data / "ml-latest-small.zip") as zf:
        data = zf.read("ml-latest-small/ratings.csv")
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_bytes(data)
    return folder / "ratings.csv"


# ---------------------------------------------------------------------------- equality
def test_real_latest_small_bit_identical(latest_small, monkeypatch):
    users, items, ratings, stamps = _assert_fast_equals_pyarrow(latest_small)
    assert len(users) == 100_836 and set(np.unique(ratings)) == {x / 2 for x in range(1, 11)}
    for loader in ("movielens", "file"):
        for dtype in (np.float32, np.float64):
            if loader == "movielens":
                def run(t):
                    monkeypatch.setattr(_csv, "FAST_CSV_MIN_BYTES", t)
                    return load_movielens("ml-latest-small", data_home=latest_small.parent.parent,
                                          dtype=dtype, download=False)
            else:
                def run(t):
                    return _load("file", latest_small, t, monkeypatch, dtype=dtype)
            fast, slow = run(0), run(1 << 62)
            assert not isinstance(fast, Exception)
            _assert_same_outcome(fast, slow)


def test_real_ml25m_head_without_final_newline(shared_data):
    path = shared_data / "format-samples" / "ml-25m" / "ratings.csv"
    data = path.read_bytes()
    assert not data.endswith(b"\n")
    users, *_ = _assert_fast_equals_pyarrow(path)
    # SOURCES.md says 9,999 rows; the file holds 10,000 (its 10,000 newlines end the header and
    # 9,999 rows, and the last row has none)
    assert len(users) == data.count(b"\n") == 10_000


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
@pytest.mark.parametrize("final", [True, False])
def test_synthetic_line_ends(tmp_path, rng, eol, final):
    n = 500
    rows = [f"{u},{m},{r},{t}".encode() for u, m, r, t in zip(
        np.sort(rng.integers(1, 1000, n)), rng.integers(1, 10**6, n), ["4", "3.5", "4.0", "0.5", "5.25"] * 100,
        rng.integers(0, 2**40, n))]
    body = eol.join(rows) + (eol if final else b"")
    _assert_fast_equals_pyarrow(_write(tmp_path, body, HEADER + eol))


def test_one_row_and_extremes(tmp_path):
    _assert_fast_equals_pyarrow(_write(tmp_path, b"1,2,3.5,4"))
    # the largest int32 ids, leading zeros, an 18-digit timestamp, 6 integer digits
    body = b"2147483647,2147483647,999999.999,999999999999999999\n0007,0,000.000,0\n"
    _assert_fast_equals_pyarrow(_write(tmp_path, body))


def test_ratings_with_0_to_3_fraction_digits(tmp_path, rng):
    """Correctly rounded decimals: N / 10**d equals pyarrow's parse for every d <= 3."""
    n = 20_000
    ints = rng.integers(0, 10**6, n)
    digits = rng.integers(0, 4, n)
    fracs = [("" if d == 0 else "." + str(rng.integers(0, 10**d)).zfill(d)) for d in digits]
    lines = [f"{j},{j % 7},{a}{f},{j}" for j, (a, f) in enumerate(zip(ints, fracs))]
    lines += [f"{n + k},1,{v},1" for k, v in enumerate(
        ("0.1", "0.2", "0.3", "0.7", "1.001", "2.675", "0.015", "9.995", "123456.789", "0.000", "5.0"))]
    fast = _assert_fast_equals_pyarrow(_write(tmp_path, "\n".join(lines).encode() + b"\n"))
    np.testing.assert_array_equal(fast[2][-11:], [float(v) for v in (
        "0.1", "0.2", "0.3", "0.7", "1.001", "2.675", "0.015", "9.995", "123456.789", "0.000", "5.0")])


def test_empty_body_gives_the_same_error(tmp_path, monkeypatch):
    """A header-only file is left to pyarrow: its error depends on the newline after the header."""
    for header in (HEADER, HEADER + b"\n", HEADER + b"\r\n"):
        path = _write(tmp_path, b"", header)
        assert _csv.read_movielens_csv(path, min_bytes=0) is None
        for loader in ("movielens", "file"):
            fast, slow = _load(loader, path, 0, monkeypatch), _load(loader, path, 1 << 62, monkeypatch)
            assert isinstance(fast, (ValueError, pa.ArrowInvalid))
            _assert_same_outcome(fast, slow)


def test_duplicates_still_an_error(tmp_path, monkeypatch):
    path = _write(tmp_path, b"1,2,3.5,4\n1,3,4.0,5\n1,2,1.0,6\n")
    for loader in ("movielens", "file"):
        fast = _load(loader, path, 0, monkeypatch)
        assert isinstance(fast, ValueError) and "duplicate" in str(fast)
        _assert_same_outcome(fast, _load(loader, path, 1 << 62, monkeypatch))


# ---------------------------------------------------------------------------- fallback
GOOD = b"1,2,3.5,1000\n"
FALLBACKS = {
    "quoted field": b'"1",2,3.5,1000\n',
    "minus sign": b"-1,2,3.5,1000\n",
    "plus sign": b"1,+2,3.5,1000\n",
    "exponent": b"1,2,3e0,1000\n",
    "negative rating": b"1,2,-3.5,1000\n",
    "space": b"1, 2,3.5,1000\n",
    "trailing space": b"1,2,3.5,1000 \n",
    "three fields": b"1,2,3.5\n",
    "five fields": b"1,2,3.5,1000,7\n",
    "empty field": b"1,,3.5,1000\n",
    "empty line": b"\n",
    "user id over int32": b"2147483648,2,3.5,1000\n",
    "movie id over int32": b"1,99999999999,3.5,1000\n",
    "four fraction digits": b"1,2,3.1234,1000\n",
    "seven integer digits": b"1,2,1234567,1000\n",
    "19-digit timestamp": b"1,2,3.5,1000000000000000000\n",
    "dot without digits": b"1,2,4.,1000\n",
    "leading dot": b"1,2,.5,1000\n",
    "nan rating": b"1,2,nan,1000\n",
    "bare carriage return": b"1,2,3.5,1000\r",
    "tab": b"1\t2\t3.5\t1000\n",
}


@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_unhandled_bytes_fall_back_to_pyarrow(tmp_path, monkeypatch, case):
    # the bad line in the middle of good ones, in the second of two chunks
    path = _write(tmp_path, GOOD * 5000 + FALLBACKS[case] + b"3,4,5.0,1001\n")
    assert _csv.read_movielens_csv(path, min_bytes=0) is None
    for loader in ("movielens", "file"):
        _assert_same_outcome(_load(loader, path, 0, monkeypatch), _load(loader, path, 1 << 62, monkeypatch))


@pytest.mark.parametrize("header", [b'"userId","movieId","rating","timestamp"', b"userId,movieId,rating",
                                   b"\xef\xbb\xbfuserId,movieId,rating,timestamp", b"userId,movieId,rating,timestamp,",
                                   b"user,item,rating,timestamp", b"userId,movieId,rating,timestamp ",
                                   b"userId,movieId,rating,timestamp\r\r"])
def test_other_headers_fall_back(tmp_path, monkeypatch, header):
    path = _write(tmp_path, b"1,2,3.5,1000\n2,2,4.0,1001\n", header + b"\n")
    assert _csv.read_movielens_csv(path, min_bytes=0) is None
    for loader in ("movielens", "file"):
        _assert_same_outcome(_load(loader, path, 0, monkeypatch), _load(loader, path, 1 << 62, monkeypatch))


def test_id_over_int32_is_pyarrows_error(tmp_path, monkeypatch):
    path = _write(tmp_path, b"1,2,3.5,1000\n3000000000,2,3.5,1000\n")
    fast = _load("movielens", path, 0, monkeypatch)
    assert isinstance(fast, pa.ArrowInvalid) and "3000000000" in str(fast)
    # load_ratings_file infers int64 ids: the pyarrow path reads the id, so must the dispatch
    r = _load("file", path, 0, monkeypatch)
    assert r.user_ids.tolist() == [1, 3_000_000_000]
    _assert_same_outcome(r, _load("file", path, 1 << 62, monkeypatch))


# ---------------------------------------------------------------------------- dispatch
def _spy(monkeypatch):
    calls = []
    real = _csv._parse

    def parse(*args):
        calls.append(args[1:])
        return real(*args)

    monkeypatch.setattr(_csv, "_parse", parse)
    return calls


def test_dispatch_by_threshold(latest_small, monkeypatch):
    calls = _spy(monkeypatch)
    size = latest_small.stat().st_size
    for threshold, used in ((0, True), (size, True), (size + 1, False), (_csv.FAST_CSV_MIN_BYTES, False)):
        calls.clear()
        monkeypatch.setattr(_csv, "FAST_CSV_MIN_BYTES", threshold)
        r = load_movielens("ml-latest-small", data_home=latest_small.parent.parent, download=False)
        assert r.nnz == 100_836 and bool(calls) == used, threshold
        calls.clear()
        load_ratings_file(latest_small)
        assert bool(calls) == used, threshold
    monkeypatch.undo()
    assert _csv.FAST_CSV_MIN_BYTES == 16 << 20


def test_zip_and_other_columns_never_take_the_fast_path(shared_data, latest_small, monkeypatch):
    calls = _spy(monkeypatch)
    monkeypatch.setattr(_csv, "FAST_CSV_MIN_BYTES", 0)
    r = load_movielens("ml-latest-small", data_home=shared_data, download=False)  # the zip
    assert r.nnz == 100_836 and not calls
    r = load_ratings_file(latest_small, columns=("userId", "movieId", "rating"))
    assert r.timestamps is None and not calls
    load_ratings_file(latest_small, columns=["userId", "movieId", "rating", "timestamp"])
    assert len(calls) == 1


def test_thread_count_independent(tmp_path, rng):
    n = 30_000
    body = "".join(f"{u},{m},{r / 2},{t}\n" for u, m, r, t in zip(
        np.sort(rng.integers(0, 5000, n)), rng.integers(0, 10**5, n), rng.integers(1, 11, n),
        rng.integers(0, 2**31, n))).encode()
    path = _write(tmp_path, body)
    assert len(body) >> 16 >= 2  # two chunks with two threads
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _csv.read_movielens_csv(path, min_bytes=0)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _csv.read_movielens_csv(path, min_bytes=0)
    finally:
        numba.set_num_threads(before)
    for a, b, c in zip(one, two, _pyarrow_columns(path)):
        _assert_bits_equal(a, b)
        _assert_bits_equal(a, c)


def test_chunks_are_line_aligned(tmp_path):
    """Every cut is just after a newline, whatever the chunk count (more chunks than lines too)."""
    import mmap

    path = _write(tmp_path, b"1,2,3.5,1000\n" * 50 + b"22,33,4.5,1001")
    data = path.read_bytes()
    body = len(HEADER) + 1
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for k in (1, 2, 3, 7, 200):
            cuts = _csv._cuts(mm, body, len(data), k)
            assert cuts[0] == body and cuts[-1] == len(data) and np.all(np.diff(cuts) >= 0)
            assert all(data[c - 1:c] == b"\n" for c in cuts[1:-1] if c < len(data))
