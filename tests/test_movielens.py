"""MovieLens readers: counts, formats, titles, folds, search order, download, errors."""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastmf.data import movielens as ml
from fastmf.data.movielens import load_ml100k_fold, load_movielens, load_ratings_file

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No FASTMF_DATA, an empty cache in tmp, downloads off by default."""
    monkeypatch.delenv("FASTMF_DATA", raising=False)
    monkeypatch.delenv("FASTMF_MOVIELENS_URL", raising=False)
    monkeypatch.setenv("FASTMF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FASTMF_NO_DOWNLOAD", "1")
    return tmp_path


@pytest.fixture(scope="module")
def ml100k(ml100k_zip):
    return load_movielens("ml-100k", ml100k_zip.parent, download=False)


def _triplets(r):
    return set(zip(r.user_ids[r.users].tolist(), r.item_ids[r.items].tolist(), r.values.tolist(),
                   r.timestamps.tolist()))


# ------------------------------------------------------------------ ml-100k
def test_ml100k_counts_and_content(ml100k, ml100k_zip):
    r = ml100k
    assert (r.nnz, r.n_users, r.n_items) == (100_000, 943, 1_682)
    assert r.name == "ml-100k" and r.rating_scale == (1.0, 5.0)
    assert r.dtype == np.float32 and r.timestamps is not None
    # against an independent pandas read of u.data
    with zipfile.ZipFile(ml100k_zip) as zf:
        df = pd.read_csv(io.BytesIO(zf.read("ml-100k/u.data")), sep="\t", header=None,
                         names=["u", "i", "r", "t"])
    assert _triplets(r) == set(zip(df.u.tolist(), df.i.tolist(), df.r.astype(float).tolist(), df.t.tolist()))
    assert r.timestamps.min() == 874724710 and r.timestamps.max() == 893286638
    assert r.item_titles[1] == "Toy Story (1995)"
    assert r.item_titles[543] == "Misérables, Les (1995)"  # latin-1
    assert len(r.item_titles) == 1_682


def test_ml100k_float64(ml100k_zip):
    r = load_movielens("ml-100k", ml100k_zip.parent, dtype=np.float64, download=False)
    assert r.dtype == np.float64 and r.global_mean == pytest.approx(3.52986)


@pytest.mark.parametrize("fold, n_train, n_test", [(f"u{j}", 80_000, 20_000) for j in range(1, 6)]
                         + [("ua", 90_570, 9_430), ("ub", 90_570, 9_430)])
def test_ml100k_folds(fold, n_train, n_test, ml100k_zip, ml100k):
    split = load_ml100k_fold(fold, ml100k_zip.parent, download=False)
    train, test = split
    assert train.nnz == n_train
    assert test.nnz + split.n_dropped == n_test
    assert split.n_dropped >= 0
    # one code space, the one of u.data
    for part in (train, test):
        assert part.shape == (943, 1682)
        np.testing.assert_array_equal(part.user_ids, ml100k.user_ids)
        np.testing.assert_array_equal(part.item_ids, ml100k.item_ids)
    # dropped ones are exactly the test ratings with an unknown user or item
    keep = load_ml100k_fold(fold, ml100k_zip.parent, drop_unknown=False, download=False)
    assert keep.n_dropped == 0 and keep.test.nnz == n_test
    tr_items = np.bincount(train.items, minlength=1682) > 0
    tr_users = np.bincount(train.users, minlength=943) > 0
    unknown = ~(tr_items[keep.test.items] & tr_users[keep.test.users])
    assert unknown.sum() == split.n_dropped
    assert tr_users[test.users].all() and tr_items[test.items].all()
    # train and test are disjoint and inside u.data
    full = _triplets(ml100k)
    assert _triplets(train) <= full and _triplets(keep.test) <= full
    assert not (_triplets(train) & _triplets(keep.test))


def test_ml100k_folds_partition_the_data(ml100k_zip, ml100k):
    tests = [load_ml100k_fold(f"u{j}", ml100k_zip.parent, drop_unknown=False, download=False).test
             for j in range(1, 6)]
    union = set().union(*(_triplets(t) for t in tests))
    assert union == _triplets(ml100k)


def test_fold_bad_name(ml100k_zip):
    with pytest.raises(ValueError, match="fold must be one of"):
        load_ml100k_fold("u6", ml100k_zip.parent)


# ------------------------------------------------------------------ ml-latest-small
def _check_small(r):
    assert (r.nnz, r.n_users, r.n_items) == (100_836, 610, 9_724)
    assert r.rating_scale == (0.5, 5.0) and r.name == "ml-latest-small"
    assert set(np.unique(r.values).tolist()) == {x / 2 for x in range(1, 11)}
    assert r.item_titles[1] == "Toy Story (1995)"
    assert r.item_titles[11] == "American President, The (1995)"  # quoted CSV field
    assert len(r.item_titles) == 9_742  # movies.csv also lists unrated movies


def test_latest_small_from_shared_zip(shared_data, isolated_env):
    _check_small(load_movielens("ml-latest-small", shared_data, download=False))


def test_latest_small_from_extracted_folder(shared_data, isolated_env):
    with zipfile.ZipFile(shared_data / "ml-latest-small.zip") as zf:
        zf.extractall(isolated_env / "home")
    r = load_movielens("ml-latest-small", isolated_env / "home", download=False)
    _check_small(r)
    # data_home may also be the extracted folder itself
    r2 = load_movielens("ml-latest-small", isolated_env / "home" / "ml-latest-small", download=False)
    np.testing.assert_array_equal(r2.values, r.values)


def test_latest_small_bundled(shared_data, isolated_env):
    assert (REPO_DATA / "ml-latest-small" / "ratings.csv").is_file()
    assert ml.bundled_data_dir() == REPO_DATA
    r = load_movielens("ml-latest-small")  # no FASTMF_DATA, empty cache, no download: the bundled copy
    _check_small(r)
    ref = load_movielens("ml-latest-small", shared_data, download=False)
    np.testing.assert_array_equal(r.users, ref.users)
    np.testing.assert_array_equal(r.values, ref.values)
    np.testing.assert_array_equal(r.timestamps, ref.timestamps)


def test_fastmf_data_env_comes_first(shared_data, isolated_env, monkeypatch):
    # a tiny ml-latest-small in FASTMF_DATA wins over the bundled one
    home = isolated_env / "envdata" / "ml-latest-small"
    home.mkdir(parents=True)
    (home / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,10\n4,2,5.0,11\n")
    monkeypatch.setenv("FASTMF_DATA", str(isolated_env / "envdata"))
    r = load_movielens("ml-latest-small")
    assert r.nnz == 2 and r.item_titles is None


# ------------------------------------------------------------------ format samples
def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def test_ml1m_sample(shared_data, tmp_path):
    src = shared_data / "format-samples" / "ml-1m"
    (tmp_path / "ml-1m").mkdir()
    for f in ("ratings.dat", "movies.dat"):
        shutil.copy(src / f, tmp_path / "ml-1m" / f)
    r = load_movielens("ml-1m", tmp_path, download=False)
    n_rows = _lines(src / "ratings.dat")  # 19 rows (18 newlines, the last line has none)
    assert r.nnz == n_rows == 19
    assert r.rating_scale == (1.0, 5.0) and r.name == "ml-1m"
    rows = [line.split(b"::") for line in (src / "ratings.dat").read_bytes().splitlines()]
    assert r.user_ids.tolist() == sorted({int(x[0]) for x in rows})
    assert r.item_ids.tolist() == sorted({int(x[1]) for x in rows})
    first = {(u, i): (v, t) for u, i, v, t in zip(r.user_ids[r.users], r.item_ids[r.items], r.values, r.timestamps)}
    assert first[(1, 1193)] == (5.0, 978300760) and first[(6, 1193)] == (2.0, 978300760)
    assert r.item_titles[1] == "Toy Story (1995)"
    assert r.item_titles[73] == "Misérables, Les (1995)"  # latin-1
    assert len(r.item_titles) == 3_883
    # the same from a zip laid out like the official one
    (tmp_path / "z").mkdir()
    with zipfile.ZipFile(tmp_path / "z" / "ml-1m.zip", "w") as zf:
        for f in ("ratings.dat", "movies.dat"):
            zf.write(src / f, f"ml-1m/{f}")
    rz = load_movielens("ml-1m", tmp_path / "z", download=False)
    np.testing.assert_array_equal(rz.values, r.values)
    assert rz.item_titles == r.item_titles


def test_ml10m_sample(shared_data, tmp_path):
    src = shared_data / "format-samples" / "ml-10M100K" / "ratings.dat"
    (tmp_path / "ml-10M100K").mkdir()
    shutil.copy(src, tmp_path / "ml-10M100K" / "ratings.dat")
    r = load_movielens("ml-10m", tmp_path, download=False)
    assert r.nnz == _lines(src) == 220
    assert r.rating_scale == (0.5, 5.0) and r.item_titles is None  # no movies.dat in the sample
    assert r.user_ids[0] == 1 and r.timestamps.min() > 8e8


def test_ml25m_sample(shared_data, tmp_path):
    src = shared_data / "format-samples" / "ml-25m" / "ratings.csv"
    (tmp_path / "ml-25m").mkdir()
    shutil.copy(src, tmp_path / "ml-25m" / "ratings.csv")
    r = load_movielens("ml-25m", tmp_path, download=False)
    df = pd.read_csv(src)
    assert r.nnz == len(df) == _lines(src) - 1 == 10_000
    assert r.n_users == df.userId.nunique() == 75
    assert r.n_items == df.movieId.nunique()
    assert np.isclose(r.global_mean, df.rating.mean())
    assert np.all(r.values * 2 == np.round(r.values * 2))


# ------------------------------------------------------------------ load_ratings_file
def test_ratings_file_formats(shared_data, ml100k_zip, ml100k, tmp_path):
    with zipfile.ZipFile(ml100k_zip) as zf:
        (tmp_path / "u.data").write_bytes(zf.read("ml-100k/u.data"))
    r = load_ratings_file(tmp_path / "u.data")
    assert r.nnz == 100_000 and r.name == "u.data"
    np.testing.assert_array_equal(r.values, ml100k.values)
    np.testing.assert_array_equal(r.timestamps, ml100k.timestamps)
    r1m = load_ratings_file(shared_data / "format-samples" / "ml-1m" / "ratings.dat")
    assert r1m.nnz == 19
    r25 = load_ratings_file(shared_data / "format-samples" / "ml-25m" / "ratings.csv", rating_scale=(0.5, 5))
    assert r25.nnz == 10_000 and r25.rating_scale == (0.5, 5.0)


def test_ratings_file_headers_and_string_ids(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("who,what,score,when\nann,x,4,100\nbob,y,2.5,50\nann,y,1,70\n")
    with pytest.raises(ValueError, match="cannot find user/item/rating columns"):
        load_ratings_file(p)
    r = load_ratings_file(p, columns=("who", "what", "score", "when"), name="mine")
    assert r.name == "mine" and r.nnz == 3
    np.testing.assert_array_equal(r.user_ids, ["ann", "bob"])
    assert r.timestamps.tolist() == [100, 70, 50]
    with pytest.raises(ValueError, match=r"columns \['nope'\] not in the header"):
        load_ratings_file(p, columns=("who", "what", "nope"))
    q = tmp_path / "q.csv"
    q.write_text("user_id,item_id,rating\n1,1,3\n1,2,4\n")
    assert load_ratings_file(q).timestamps is None
    h = tmp_path / "h.csv"
    h.write_text("1,1,3.0\n2,1,4.0\n")
    assert load_ratings_file(h).nnz == 2


def test_ratings_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ratings file not found"):
        load_ratings_file(tmp_path / "absent.csv")
    e = tmp_path / "empty.csv"
    e.write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_ratings_file(e)
    five = tmp_path / "five.tsv"
    five.write_text("1\t2\t3\t4\t5\n")
    with pytest.raises(ValueError, match="3 or 4 columns"):
        load_ratings_file(five)
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating\n1,2,4\n1,2,5\n")
    with pytest.raises(ValueError, match="duplicate"):
        load_ratings_file(bad)
    assert load_ratings_file(bad, duplicates="last").values.tolist() == [5.0]
    nan = tmp_path / "nan.csv"
    nan.write_text("userId,movieId,rating\n1,2,4\n1,3,nan\n")
    with pytest.raises(ValueError, match="NaN or inf: first at row 1"):
        load_ratings_file(nan)
    out = tmp_path / "out.csv"
    out.write_text("userId,movieId,rating\n1,2,4\n1,3,7\n")
    with pytest.raises(ValueError, match="outside the declared rating_scale"):
        load_ratings_file(out, rating_scale=(1, 5))


# ------------------------------------------------------------------ errors, search order
def test_unknown_name_and_bad_arguments(isolated_env):
    with pytest.raises(ValueError, match="unknown MovieLens set 'ml-2m'"):
        load_movielens("ml-2m")
    with pytest.raises(TypeError, match="name must be a string"):
        load_movielens(100)
    with pytest.raises(TypeError, match="dtype must be"):
        load_movielens("ml-latest-small", dtype=np.int64)
    with pytest.raises(TypeError, match="download must be None, True or False"):
        load_movielens("ml-latest-small", download="yes")


def test_missing_file_error_names_files_and_folders(isolated_env, monkeypatch):
    with pytest.raises(FileNotFoundError) as info:
        load_movielens("ml-10m", isolated_env / "nowhere", download=False)
    msg = str(info.value)
    assert "ml-10m.zip" in msg and "ml-10M100K/ratings.dat" in msg and str(isolated_env / "nowhere") in msg
    monkeypatch.setenv("FASTMF_DATA", str(isolated_env / "envdir"))
    with pytest.raises(FileNotFoundError) as info:
        load_movielens("ml-25m")
    msg = str(info.value)
    assert "ml-25m.zip" in msg and "ml-25m/ratings.csv" in msg
    assert str(isolated_env / "envdir") in msg and str(isolated_env / "cache") in msg
    assert "FASTMF_NO_DOWNLOAD" in msg


def test_no_network_error(isolated_env, monkeypatch):
    # a port nobody listens on: the download fails fast, the error names files, folders and the failure
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("FASTMF_MOVIELENS_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(FileNotFoundError) as info:
        load_movielens("ml-1m", isolated_env / "home", download=True)
    msg = str(info.value)
    assert "ml-1m.zip" in msg and str(isolated_env / "home") in msg and "downloading it into" in msg
    assert not list((isolated_env / "home").glob("*"))  # no partial file left


def test_wrong_zip_is_an_error(tmp_path):
    with zipfile.ZipFile(tmp_path / "ml-1m.zip", "w") as zf:
        zf.writestr("something/else.txt", "x")
    with pytest.raises(ValueError, match="is not a zip holding ml-1m/ratings.dat"):
        load_movielens("ml-1m", tmp_path, download=False)


# ------------------------------------------------------------------ download via a local HTTP server
@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))

    class Quiet(handler.func):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_download_from_local_server(http_root, isolated_env, monkeypatch):
    root, url = http_root
    with zipfile.ZipFile(root / "ml-latest-small.zip", "w") as zf:
        zf.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,5\n2,10,3.5,6\n2,20,1.0,7\n")
        zf.writestr("ml-latest-small/movies.csv", 'movieId,title,genres\n10,"Film, The (2000)",Drama\n20,Other,Comedy\n')
    monkeypatch.setenv("FASTMF_MOVIELENS_URL", url)
    monkeypatch.delenv("FASTMF_NO_DOWNLOAD")
    monkeypatch.setattr(ml, "bundled_data_dir", lambda: None)  # as in a non-editable install
    r = load_movielens("ml-latest-small")  # download=None: fetched into the cache
    assert r.nnz == 3 and r.n_users == 2 and r.item_titles == {10: "Film, The (2000)", 20: "Other"}
    cached = isolated_env / "cache" / "ml-latest-small.zip"
    assert cached.is_file() and zipfile.is_zipfile(cached)
    assert [p.name for p in cached.parent.iterdir()] == ["ml-latest-small.zip"]  # no temp files
    # second call reads the cache, not the server
    (root / "ml-latest-small.zip").unlink()
    assert load_movielens("ml-latest-small").nnz == 3
    # data_home given: the download goes there
    with zipfile.ZipFile(root / "ml-100k.zip", "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t10\n2\t1\t3\t11\n")
    r = load_movielens("ml-100k", isolated_env / "home", download=True)
    assert r.nnz == 2 and r.item_titles is None and (isolated_env / "home" / "ml-100k.zip").is_file()


def test_download_not_a_zip_or_missing(http_root, isolated_env, monkeypatch):
    root, url = http_root
    (root / "ml-1m.zip").write_text("<html>not a zip</html>")
    monkeypatch.setenv("FASTMF_MOVIELENS_URL", url)
    with pytest.raises(FileNotFoundError, match="not a zip archive"):
        load_movielens("ml-1m", isolated_env / "home", download=True)
    assert list((isolated_env / "home").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="404"):
        load_movielens("ml-20m", isolated_env / "home", download=True)
    with zipfile.ZipFile(root / "ml-32m.zip", "w") as zf:
        zf.writestr("ml-32m/README.txt", "no ratings")
    with pytest.raises(FileNotFoundError, match="holds no ml-32m/ratings.csv"):
        load_movielens("ml-32m", isolated_env / "home", download=True)
    assert list((isolated_env / "home").iterdir()) == []
    # download=False never touches the network
    monkeypatch.delenv("FASTMF_NO_DOWNLOAD")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_movielens("ml-1m", isolated_env / "home", download=False)


def test_not_found_says_when_there_is_no_bundled_copy(isolated_env, monkeypatch):
    monkeypatch.setattr(ml, "bundled_data_dir", lambda: None)  # an install without fastmf._bundled
    with pytest.raises(FileNotFoundError, match=r"no bundled copy: .*fastmf\._bundled.*FASTMF_NO_DOWNLOAD"):
        load_movielens("ml-latest-small")
