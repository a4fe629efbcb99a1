"""MovieLens readers: the official zips or their extracted folders, and any ratings file.

Supported sets (GroupLens names, official zip ``<name>.zip``):

==================  ======================  =====================  ============  ==========
name                inner folder            ratings file           format        scale
==================  ======================  =====================  ============  ==========
``ml-100k``         ``ml-100k``             ``u.data``             tab, no head  (1, 5)
``ml-1m``           ``ml-1m``               ``ratings.dat``        ``::``        (1, 5)
``ml-10m``          ``ml-10M100K``          ``ratings.dat``        ``::``        (0.5, 5)
``ml-20m``          ``ml-20m``              ``ratings.csv``        csv, header   (0.5, 5)
``ml-25m``          ``ml-25m``              ``ratings.csv``        csv, header   (0.5, 5)
``ml-32m``          ``ml-32m``              ``ratings.csv``        csv, header   (0.5, 5)
``ml-latest-small`` ``ml-latest-small``     ``ratings.csv``        csv, header   (0.5, 5)
==================  ======================  =====================  ============  ==========

Where the files are looked for (:func:`load_movielens` with ``data_home=None``), in order:

1. the folder in the environment variable ``FASTMF_DATA``, if set;
2. for ``ml-latest-small`` only, the bundled copy (:func:`bundled_data_dir`): the
   repository's ``data/`` folder in a source checkout or editable install, the package
   data ``fastmf/_bundled/`` in an installed wheel;
3. the cache folder: ``FASTMF_CACHE``, else ``$XDG_CACHE_HOME/fastmf``, else
   ``~/.cache/fastmf``.

In each folder either the official zip ``<name>.zip`` or the extracted folder (``<inner
folder>/`` or ``<name>/``) is accepted; zips are read in place, never extracted.  When
nothing is found the zip is downloaded from ``https://files.grouplens.org/datasets/movielens/``
(overridable by ``FASTMF_MOVIELENS_URL``) into the cache folder (or into ``data_home``
when one is given), atomically (temporary file, then ``os.replace``) and checked to be a
zip holding the ratings file.

All parsing is vectorised (pyarrow's CSV reader); ``::``-separated files are turned into
tab-separated bytes with a single ``bytes.replace`` first.  No Python loop runs per row.
A plain (not zipped) ``ratings.csv`` of at least ``fastmf.data._csv.FAST_CSV_MIN_BYTES``
(16 MiB) whose first line is exactly ``userId,movieId,rating,timestamp`` is parsed by a
dedicated numba parser instead (:mod:`fastmf.data._csv`: the same columns, bit for bit);
it hands any file it does not fully understand back to pyarrow.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .._validation import check_dtype
from ._sort import factorize_int
from .ratings import Ratings, _check_timestamps

__all__ = [
    "MOVIELENS_DATASETS",
    "ML100K_FOLDS",
    "load_movielens",
    "load_ml100k_fold",
    "load_ratings_file",
    "cache_dir",
    "bundled_data_dir",
]

logger = logging.getLogger("fastmf.data")

DEFAULT_URL = "https://files.grouplens.org/datasets/movielens/"
DOWNLOAD_TIMEOUT = 30.0
ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
_COLS = ("user", "item", "rating", "timestamp")


@dataclass(frozen=True)
class _Spec:
    name: str
    folder: str  # folder inside the official zip
    ratings: str  # ratings file name
    fmt: str  # "tab" (no header), "dcolon" (``::``, no header), "csv" (header)
    scale: tuple[float, float]
    movies: str  # movie titles file
    movies_fmt: str  # "pipe" (u.item), "dcolon", "csv"
    movies_encoding: str


MOVIELENS_DATASETS: dict[str, _Spec] = {
    s.name: s
    for s in (
        _Spec("ml-100k", "ml-100k", "u.data", "tab", (1.0, 5.0), "u.item", "pipe", "latin-1"),
        _Spec("ml-1m", "ml-1m", "ratings.dat", "dcolon", (1.0, 5.0), "movies.dat", "dcolon", "latin-1"),
        _Spec("ml-10m", "ml-10M100K", "ratings.dat", "dcolon", (0.5, 5.0), "movies.dat", "dcolon", "utf-8"),
        _Spec("ml-20m", "ml-20m", "ratings.csv", "csv", (0.5, 5.0), "movies.csv", "csv", "utf-8"),
        _Spec("ml-25m", "ml-25m", "ratings.csv", "csv", (0.5, 5.0), "movies.csv", "csv", "utf-8"),
        _Spec("ml-32m", "ml-32m", "ratings.csv", "csv", (0.5, 5.0), "movies.csv", "csv", "utf-8"),
        _Spec("ml-latest-small", "ml-latest-small", "ratings.csv", "csv", (0.5, 5.0), "movies.csv", "csv", "utf-8"),
    )
}


# ---------------------------------------------------------------------------- folders
def cache_dir() -> Path:
    """The download cache: ``FASTMF_CACHE``, else ``$XDG_CACHE_HOME/fastmf``, else ``~/.cache/fastmf``."""
    if os.environ.get("FASTMF_CACHE"):
        return Path(os.environ["FASTMF_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fastmf"


_BUNDLED_PACKAGE = "fastmf._bundled"
_BUNDLED_RATINGS = ("ml-latest-small", "ratings.csv")


def bundled_data_dir() -> Path | None:
    """The folder holding the bundled ``ml-latest-small/``, or None when fastmf has no bundled copy.

    Looked up in this order:

    1. source checkout (also an editable install): when the imported ``fastmf``
       package sits in a repository (``pyproject.toml`` beside it), the
       repository's ``data/`` folder, so the data always come from the same tree
       as the code;
    2. installed package: the package data of ``fastmf._bundled``, found with
       :func:`importlib.resources` (``site-packages/fastmf/_bundled``; the wheel
       carries it, see ``pyproject.toml``).

    Returns
    -------
    Path or None
        A folder ``d`` with ``d / "ml-latest-small" / "ratings.csv"``; None when
        neither place has it (``fastmf._bundled`` not installed, or installed in a
        zip, which is logged).
    """
    import importlib.resources

    import fastmf

    checkout = Path(fastmf.__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and checkout.joinpath("data", *_BUNDLED_RATINGS).is_file():
        return checkout / "data"
    try:
        root = importlib.resources.files(_BUNDLED_PACKAGE)
    except ModuleNotFoundError:
        return None
    ratings = root.joinpath(_BUNDLED_RATINGS[0]).joinpath(_BUNDLED_RATINGS[1])
    if not ratings.is_file():
        return None
    if not isinstance(ratings, Path):  # e.g. imported from a zip: pyarrow needs a real file
        logger.warning("the bundled %s is not a file on disk (%r); not using it", "/".join(_BUNDLED_RATINGS),
                       ratings)
        return None
    return ratings.parent.parent


def _search_dirs(name: str, data_home) -> list[Path]:
    if data_home is not None:
        return [Path(data_home).expanduser()]
    dirs = []
    if os.environ.get("FASTMF_DATA"):
        dirs.append(Path(os.environ["FASTMF_DATA"]).expanduser())
    if name == "ml-latest-small":
        bundled = bundled_data_dir()
        if bundled is not None:
            dirs.append(bundled)
    dirs.append(cache_dir())
    return dirs


class _Source:
    """One place a data set lives: an official zip or an extracted folder."""

    def __init__(self, path: Path, zip_prefix: str | None = None):
        self.path = path
        self.zip_prefix = zip_prefix  # "ml-100k/" inside a zip; None for a folder

    def __repr__(self) -> str:
        return f"_Source({str(self.path)!r})"

    def has(self, fname: str) -> bool:
        if self.zip_prefix is None:
            return (self.path / fname).is_file()
        with zipfile.ZipFile(self.path) as zf:
            return (self.zip_prefix + fname) in zf.namelist()

    def read_bytes(self, fname: str) -> bytes:
        if self.zip_prefix is None:
            return (self.path / fname).read_bytes()
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(self.zip_prefix + fname)

    def read_table(self, fname: str, **kw) -> pa.Table:
        """pyarrow CSV read straight from the file or the zip member (streamed)."""
        if self.zip_prefix is None:
            return pacsv.read_csv(str(self.path / fname), **kw)
        with zipfile.ZipFile(self.path) as zf, zf.open(self.zip_prefix + fname) as fh:
            return pacsv.read_csv(fh, **kw)


def _zip_prefix(zpath: Path, spec: _Spec) -> str | None:
    """The folder prefix under which ``spec.ratings`` sits in the zip, or None."""
    try:
        with zipfile.ZipFile(zpath) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile:
        return None
    for prefix in (f"{spec.folder}/", f"{spec.name}/", ""):
        if prefix + spec.ratings in names:
            return prefix
    return None


def _find_in(folder: Path, spec: _Spec) -> _Source | None:
    zpath = folder / f"{spec.name}.zip"
    if zpath.is_file():
        prefix = _zip_prefix(zpath, spec)
        if prefix is None:
            raise ValueError(f"{zpath} is not a zip holding {spec.folder}/{spec.ratings}")
        return _Source(zpath, prefix)
    for sub in dict.fromkeys((spec.folder, spec.name)):
        if (folder / sub / spec.ratings).is_file():
            return _Source(folder / sub)
    if folder.name in (spec.folder, spec.name) and (folder / spec.ratings).is_file():
        return _Source(folder)
    return None


def _expected(spec: _Spec) -> str:
    alt = f" or {spec.name}/{spec.ratings}" if spec.folder != spec.name else ""
    return f"{spec.name}.zip or {spec.folder}/{spec.ratings}{alt}"


# ---------------------------------------------------------------------------- download
def _download(spec: _Spec, dest_dir: Path) -> _Source:
    base = os.environ.get("FASTMF_MOVIELENS_URL", DEFAULT_URL)
    url = base.rstrip("/") + f"/{spec.name}.zip"
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{spec.name}.zip"
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=dest_dir)
    try:
        logger.info("downloading %s to %s", url, target)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as resp:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        if not zipfile.is_zipfile(tmp):
            raise ValueError(f"the file downloaded from {url} is not a zip archive")
        prefix = _zip_prefix(Path(tmp), spec)
        if prefix is None:
            raise ValueError(f"the zip downloaded from {url} holds no {spec.folder}/{spec.ratings}")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return _Source(target, prefix)


def _locate(spec: _Spec, data_home, download) -> _Source:
    dirs = _search_dirs(spec.name, data_home)
    for d in dirs:
        src = _find_in(d, spec)
        if src is not None:
            return src
    searched = ", ".join(str(d) for d in dirs)
    msg = f"MovieLens {spec.name!r} not found: expected {_expected(spec)} in {searched}"
    if spec.name == "ml-latest-small" and data_home is None and bundled_data_dir() is None:
        msg += f" (no bundled copy: not a source checkout and no package data {_BUNDLED_PACKAGE} installed)"
    if download is None:
        download = os.environ.get("FASTMF_NO_DOWNLOAD", "").lower() not in ("1", "true", "yes")
        if not download:
            msg += " (download disabled by FASTMF_NO_DOWNLOAD)"
    if not download:
        raise FileNotFoundError(msg)
    dest = Path(data_home).expanduser() if data_home is not None else cache_dir()
    try:
        return _download(spec, dest)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FileNotFoundError(f"{msg}; downloading it into {dest} failed: {exc}") from exc


# ---------------------------------------------------------------------------- parsing
def _convert_options(ncols: int) -> pacsv.ConvertOptions:
    types = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float64(), "timestamp": pa.int64()}
    names = _COLS[:ncols]
    return pacsv.ConvertOptions(column_types={n: types[n] for n in names})


def _read_headerless(data, delimiter: str, ncols: int | None = None) -> pa.Table:
    """Parse user/item/rating[/timestamp] rows without a header from a path, bytes or stream."""
    if ncols is None:
        ncols = 4
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char=False)
    read = pacsv.ReadOptions(column_names=list(_COLS[:ncols]), block_size=1 << 24)
    if isinstance(data, (bytes, bytearray)):
        data = pa.BufferReader(data)
    return pacsv.read_csv(data, read_options=read, parse_options=parse,
                          convert_options=_convert_options(ncols))


def _dcolon_to_tab(raw: bytes) -> bytes:
    if b"\t" in raw:
        raise ValueError("a '::'-separated file must not contain tab characters")
    return raw.replace(b"::", b"\t")


def _dense_codes(ids: np.ndarray):
    """(codes int32, sorted unique ids) of non-negative integer ids by a lookup table, or None.

    O(nnz + max id) instead of a hash factorization; used when the ids are
    non-negative integers whose maximum is not much larger than their number.
    Gives exactly the codes :meth:`Ratings.from_arrays` would (sorted raw ids).
    """
    if ids.dtype.kind not in "iu" or ids.size == 0:
        return None
    if ids.dtype.kind == "i":  # numba, parallel: same table rule and codes
        res = factorize_int(ids)
        return None if res is None or res[1][0] < 0 else res
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi > 4 * ids.size + (1 << 20):
        return None
    present = np.zeros(hi + 1, dtype=bool)
    present[ids] = True
    lookup = np.cumsum(present, dtype=np.int64) - 1
    return lookup[ids].astype(np.int32), np.flatnonzero(present).astype(ids.dtype)


def column_numpy(col) -> np.ndarray:
    """A pyarrow column as an ndarray, as ``col.to_numpy()`` but without importing pandas.

    pyarrow's ``to_numpy`` imports pandas (half a second, more than the parse of a small
    file) on its first call; integer and float columns without nulls -- every column the
    readers ask pyarrow for -- are read from their data buffers instead: zero-copy
    (read-only) for one chunk, one concatenation for several, as ``to_numpy`` does.
    Other columns go through ``to_numpy``.
    """
    typ = col.type
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if col.null_count == 0 and (pa.types.is_integer(typ) or pa.types.is_floating(typ)) and typ.bit_width >= 32:
        kind = "f" if pa.types.is_floating(typ) else ("i" if pa.types.is_signed_integer(typ) else "u")
        dt = np.dtype(f"{kind}{typ.bit_width // 8}")
        parts = [np.frombuffer(ch.buffers()[1], dtype=dt, count=len(ch), offset=ch.offset * dt.itemsize)
                 for ch in chunks if len(ch)]
        if not parts:
            return np.empty(0, dtype=dt)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    return col.to_numpy()


def _table_to_ratings(table: pa.Table, *, dtype, rating_scale, name, duplicates="error") -> Ratings:
    cols = table.column_names
    ts = column_numpy(table.column("timestamp")) if "timestamp" in cols else None
    users, items = column_numpy(table.column("user")), column_numpy(table.column("item"))
    values = column_numpy(table.column("rating"))
    du, di = _dense_codes(users), _dense_codes(items)
    if du is not None and di is not None:
        if not (len(users) == len(items) == len(values)):  # pragma: no cover - a table's columns agree
            raise ValueError("columns of unequal length")
        if ts is not None and ts.dtype != np.int64:  # e.g. Parquet int32 or timestamp columns
            ts = _check_timestamps(ts)
        # the codes are fresh and in range, the timestamps int64: no defensive copies
        return Ratings._from_owned_codes(du[0], di[0], values, ts, du[1], di[1], dtype=dtype,
                                         duplicates=duplicates, rating_scale=rating_scale, name=name)
    return Ratings.from_arrays(users, items, values, ts, dtype=dtype, duplicates=duplicates,
                               rating_scale=rating_scale, name=name)


def _fast_csv_table(path: Path, id_type: pa.DataType) -> pa.Table | None:
    """The user/item/rating/timestamp table of a large plain MovieLens ``ratings.csv`` by the
    dedicated parser (:mod:`fastmf.data._csv`), or None: the caller then reads the file with
    pyarrow as before.

    The dispatch: the parser runs only on a file of at least ``_csv.FAST_CSV_MIN_BYTES``
    whose first line is exactly ``userId,movieId,rating,timestamp``, and gives up (None) on
    any byte outside the plain MovieLens format, so quoted, signed, malformed or
    out-of-range files get pyarrow's result or pyarrow's error, as before.  Its columns are
    bit-identical to pyarrow's (``id_type``: the id type the pyarrow path asks for or
    infers).
    """
    from . import _csv

    cols = _csv.read_movielens_csv(path)
    if cols is None:
        return None
    users, items, ratings, stamps = cols
    if id_type == pa.int64():
        users, items = users.astype(np.int64), items.astype(np.int64)
    return pa.table({"user": users, "item": items, "rating": ratings, "timestamp": stamps})


def _read_spec_ratings(src: _Source, spec: _Spec, fname: str | None = None) -> pa.Table:
    fname = fname or spec.ratings
    if spec.fmt == "tab":
        if src.zip_prefix is None:
            return _read_headerless(str(src.path / fname), "\t")
        return _read_headerless(src.read_bytes(fname), "\t")
    if spec.fmt == "dcolon":
        return _read_headerless(_dcolon_to_tab(src.read_bytes(fname)), "\t")
    if src.zip_prefix is None:
        table = _fast_csv_table(src.path / fname, pa.int32())
        if table is not None:
            return table
    table = src.read_table(
        fname,
        convert_options=pacsv.ConvertOptions(
            # MovieLens ids fit int32; parsing them so saves 8 bytes a rating at 25M+ rows.
            column_types={"userId": pa.int32(), "movieId": pa.int32(), "rating": pa.float64(),
                          "timestamp": pa.int64()},
            include_columns=["userId", "movieId", "rating", "timestamp"],
        ),
        read_options=pacsv.ReadOptions(block_size=1 << 24),
    )
    return table.rename_columns(list(_COLS))


def _read_titles(src: _Source, spec: _Spec) -> dict | None:
    """Raw movie id -> title, or None when the set's movies file is not there."""
    if not src.has(spec.movies):
        return None
    if spec.movies_fmt == "csv":
        t = src.read_table(spec.movies, convert_options=pacsv.ConvertOptions(
            column_types={"movieId": pa.int64(), "title": pa.string()}, include_columns=["movieId", "title"]))
        ids, titles = t.column("movieId"), t.column("title")
    else:
        raw = src.read_bytes(spec.movies)
        if spec.movies_fmt == "dcolon":
            raw, delim, cols = _dcolon_to_tab(raw), "\t", ["movieId", "title", "genres"]
        else:  # u.item: id|title|release date|video date|url|19 genre flags
            delim = "|"
            cols = ["movieId", "title", "release", "video", "url"] + [f"g{j}" for j in range(19)]
        t = pacsv.read_csv(
            pa.BufferReader(raw),
            read_options=pacsv.ReadOptions(column_names=cols, encoding=spec.movies_encoding),
            parse_options=pacsv.ParseOptions(delimiter=delim, quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"movieId": pa.int64(), "title": pa.string()}, include_columns=["movieId", "title"]),
        )
        ids, titles = t.column("movieId"), t.column("title")
    return dict(zip(ids.to_pylist(), titles.to_pylist()))


# ---------------------------------------------------------------------------- public API
def _spec(name: str) -> _Spec:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if name not in MOVIELENS_DATASETS:
        raise ValueError(f"unknown MovieLens set {name!r}; known: {sorted(MOVIELENS_DATASETS)}")
    return MOVIELENS_DATASETS[name]


def _check_download(download):
    if download is not None and not isinstance(download, bool):
        raise TypeError(f"download must be None, True or False, got {download!r}")


def load_movielens(name: str, data_home: str | os.PathLike | None = None, *, dtype=np.float32,
                   download: bool | None = None) -> Ratings:
    """Load a MovieLens rating set as :class:`~fastmf.data.ratings.Ratings`.

    Parameters
    ----------
    name : {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small"}
    data_home : path, optional
        Folder holding ``<name>.zip`` or the extracted folder.  Default: search
        ``FASTMF_DATA``, the bundled ``data/`` (ml-latest-small), then the cache
        (see the module docstring).  When given, only this folder is searched and a
        download goes into it.
    dtype : {np.float32, np.float64}
        Storage dtype of the ratings.
    download : bool or None
        ``None`` (default): download when the file is absent, unless the environment
        variable ``FASTMF_NO_DOWNLOAD`` is set to 1/true/yes.  ``True``: download when
        absent.  ``False``: never download.

    Returns
    -------
    Ratings
        Raw ids are MovieLens' user and movie ids; timestamps (seconds) are kept;
        ``rating_scale`` is (1, 5) for ml-100k/ml-1m and (0.5, 5) otherwise;
        ``item_titles`` maps movie id to title when the set's movies file is
        present (``None`` otherwise); ``name`` is ``name``.

    Raises
    ------
    ValueError
        Unknown ``name``; a malformed file.
    FileNotFoundError
        The set is absent and could not be downloaded: the message names the
        expected file(s), every folder searched and the download error.
    """
    spec = _spec(name)
    dt = check_dtype(dtype)
    _check_download(download)
    src = _locate(spec, data_home, download)
    table = _read_spec_ratings(src, spec)
    r = _table_to_ratings(table, dtype=dt, rating_scale=spec.scale, name=spec.name)
    r.item_titles = _read_titles(src, spec)
    return r


def load_ml100k_fold(fold: str = "u1", data_home: str | os.PathLike | None = None, *, dtype=np.float32,
                     drop_unknown: bool = True, download: bool | None = None):
    """The official ml-100k train/test folds ``u1..u5`` (5-fold CV) and ``ua``/``ub`` (10 per user).

    Both parts share one code space, built from the ids of the full ``u.data``
    (943 users, 1,682 items), so codes agree between train and test (and with
    ``load_movielens("ml-100k")``).

    Parameters
    ----------
    fold : {"u1", "u2", "u3", "u4", "u5", "ua", "ub"}
    data_home, dtype, download
        As in :func:`load_movielens`.
    drop_unknown : bool
        Drop test ratings whose user or item has no rating in the train part
        (default); the number dropped is in ``result.n_dropped`` and logged.

    Returns
    -------
    Split
        ``(train, test)`` (unpacks as a pair) with ``.n_dropped``; train/test
        hold 80,000/20,000 ratings for u1..u5 and 90,570/9,430 for ua/ub before
        dropping.
    """
    from .splits import Split, _drop_unknown

    if fold not in ML100K_FOLDS:
        raise ValueError(f"fold must be one of {ML100K_FOLDS}, got {fold!r}")
    spec = MOVIELENS_DATASETS["ml-100k"]
    dt = check_dtype(dtype)
    _check_download(download)
    src = _locate(spec, data_home, download)
    full = _read_spec_ratings(src, spec)
    user_ids = np.unique(column_numpy(full.column("user")))
    item_ids = np.unique(column_numpy(full.column("item")))
    titles = _read_titles(src, spec)
    parts = []
    for suffix in ("base", "test"):
        fname = f"{fold}.{suffix}"
        if not src.has(fname):
            raise FileNotFoundError(f"{fname} not found in {src.path}")
        t = _read_spec_ratings(src, spec, fname)
        u, i = column_numpy(t.column("user")), column_numpy(t.column("item"))
        uc, ic = np.searchsorted(user_ids, u), np.searchsorted(item_ids, i)
        if np.any(user_ids[np.minimum(uc, len(user_ids) - 1)] != u) or np.any(
                item_ids[np.minimum(ic, len(item_ids) - 1)] != i):
            raise ValueError(f"{fname} holds ids that are not in u.data")
        r = Ratings.from_codes(uc, ic, column_numpy(t.column("rating")), timestamps=column_numpy(t.column("timestamp")),
                               user_ids=user_ids, item_ids=item_ids, dtype=dt, rating_scale=spec.scale,
                               name=f"ml-100k/{fname}")
        r.item_titles = titles
        parts.append(r)
    train, test = parts
    n_dropped = 0
    if drop_unknown:
        test, n_dropped = _drop_unknown(train, test)
        if n_dropped:
            logger.info("ml-100k fold %s: dropped %d test ratings whose user or item is not in train",
                        fold, n_dropped)
    return Split(train, test, n_dropped)


def _sniff(head: bytes) -> tuple[str, bool, int]:
    """(delimiter, has_header, n_columns) from the first line of a ratings file."""
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if not first.strip():
        raise ValueError("the file is empty or starts with an empty line")
    if b"::" in first:
        delim = "::"
    elif b"\t" in first:
        delim = "\t"
    elif b"," in first:
        delim = ","
    elif b";" in first:
        delim = ";"
    else:
        raise ValueError(f"cannot tell the column separator from the first line {first[:80]!r}")
    fields = first.decode("utf-8", errors="replace").split(delim)

    def numeric(s: str) -> bool:
        try:
            float(s)
            return True
        except ValueError:
            return False

    has_header = not numeric(fields[2].strip()) if len(fields) >= 3 else True
    return delim, has_header, len(fields)


_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIXES = (".parquet", ".pq")

_ML_CSV_COLUMNS = ("userId", "movieId", "rating", "timestamp")
_HEADER_GUESSES = (
    _ML_CSV_COLUMNS,
    ("user", "item", "rating", "timestamp"),
    ("user_id", "item_id", "rating", "timestamp"),
    ("user_id", "movie_id", "rating", "timestamp"),
    ("UserID", "MovieID", "Rating", "Timestamp"),
)


def _choose_columns(available: list[str], columns, source) -> tuple[str, ...]:
    """The user/item/rating[/timestamp] column names to read from a file with named columns.

    ``columns`` when given (3 or 4 names), else the first of :data:`_HEADER_GUESSES`
    whose user/item/rating names are all in ``available`` (its timestamp name only
    if present).  Errors name ``source`` and the missing columns.
    """
    if columns is not None:
        if isinstance(columns, str) or len(columns) not in (3, 4) or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"columns must be 3 or 4 column names, got {columns!r}")
        chosen = tuple(columns)
    else:
        chosen = None
        for guess in _HEADER_GUESSES:
            if all(c in available for c in guess[:3]):
                chosen = guess if guess[3] in available else guess[:3]
                break
        if chosen is None:
            raise ValueError(f"{source}: cannot find user/item/rating columns in the header {available}; "
                             "pass columns=(user, item, rating[, timestamp])")
    missing = [c for c in chosen if c not in available]
    if missing:
        raise ValueError(f"{source}: columns {missing} not in the header {available}")
    return chosen


def load_ratings_file(path: str | os.PathLike, *, columns: tuple[str, ...] | None = None, dtype=np.float32,
                      rating_scale: tuple[float, float] | None = None, duplicates: str = "error",
                      name: str | None = None) -> Ratings:
    """Read an arbitrary ratings file: Parquet, or text whose format is sniffed from the first line.

    Parquet (a file starting with ``PAR1`` or named ``*.parquet``/``*.pq``) is read
    by :func:`fastmf.data.arrow.read_parquet_ratings`, only the chosen columns,
    with the same column names and ``columns`` rule as a CSV header.  Text accepted: CSV
    (``,`` or ``;``) or TSV with a header naming the columns
    (``userId,movieId,rating[,timestamp]``, ``user,item,rating[,timestamp]``,
    ``user_id,item_id|movie_id,rating[,timestamp]`` or any names given in
    ``columns``), or without a header: ``user item rating [timestamp]`` separated
    by tabs (u.data), ``::`` (ratings.dat) or commas.  Ids may be integers or
    strings.

    Parameters
    ----------
    path : path
    columns : tuple of str, optional
        Header names of the user, item, rating (and optionally timestamp)
        columns, for a file with a header whose names are not one of the above.
    dtype, rating_scale, duplicates
        As in :meth:`Ratings.from_arrays`.
    name : str, optional
        Defaults to the file name.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file; unknown separator; unknown header; a headerless file
        without 3 or 4 columns; a ``.parquet`` file that is not Parquet; any bad
        rating (see :meth:`Ratings.from_arrays`).
    TypeError
        A Parquet column of the wrong type (e.g. non-numeric ratings).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ratings file not found: {path}")
    dt = check_dtype(dtype)
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    name = path.name if name is None else name
    if head[:4] == _PARQUET_MAGIC or path.suffix.lower() in _PARQUET_SUFFIXES:
        from .arrow import read_parquet_ratings

        return read_parquet_ratings(path, columns=columns, dtype=dt, rating_scale=rating_scale,
                                    duplicates=duplicates, name=name)
    delim, has_header, ncols = _sniff(head)
    if not has_header:
        if ncols not in (3, 4):
            raise ValueError(f"{path}: a file without a header must have 3 or 4 columns "
                             f"(user, item, rating[, timestamp]); the first line has {ncols}")
        if delim == "::":
            table = _read_headerless(_dcolon_to_tab(path.read_bytes()), "\t", ncols)
        else:
            parse = pacsv.ParseOptions(delimiter=delim, quote_char=False)
            read = pacsv.ReadOptions(column_names=list(_COLS[:ncols]), block_size=1 << 24)
            table = pacsv.read_csv(str(path), read_options=read, parse_options=parse,
                                   convert_options=pacsv.ConvertOptions(column_types={"rating": pa.float64()}))
    else:
        if delim == "::":
            raise ValueError(f"{path}: '::'-separated files with a header are not supported")
        read = pacsv.ReadOptions(block_size=1 << 24)
        parse = pacsv.ParseOptions(delimiter=delim)
        header = [h.strip().strip('"') for h in head.split(b"\n", 1)[0].rstrip(b"\r").decode().split(delim)]
        chosen = _choose_columns(header, columns, path)
        table = None
        if chosen == _ML_CSV_COLUMNS:  # pyarrow infers int64 ids here
            table = _fast_csv_table(path, pa.int64())
        if table is None:
            types = {chosen[2]: pa.float64()}
            if len(chosen) == 4:
                types[chosen[3]] = pa.int64()
            table = pacsv.read_csv(str(path), read_options=read, parse_options=parse,
                                   convert_options=pacsv.ConvertOptions(include_columns=list(chosen),
                                                                        column_types=types))
            table = table.select(list(chosen)).rename_columns(list(_COLS[:len(chosen)]))
    if table.num_rows == 0:
        raise ValueError(f"{path}: no ratings in the file")
    return _table_to_ratings(table, dtype=dt, rating_scale=rating_scale, name=name, duplicates=duplicates)
