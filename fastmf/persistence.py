"""Model files: a :class:`FactorModel` and its fit record in a versioned ``.npz``.

Format 1 (written since fastmf 0.1; ``np.load(..., allow_pickle=False)`` reads it)
----------------------------------------------------------------------------------
============================  =====================================================
``fastmf_format_version``     int64 scalar, 1
``fastmf_version``            str, the writer's version
``params_json``               JSON of the estimator parameters (``callbacks`` null)
``user_factors``              P, shape (n_users, k)
``item_factors``              Q, shape (n_items, k)
``user_biases``               b (absent without biases)
``item_biases``               c (absent without biases)
``global_mean``               float64 scalar, mu
``user_ids``, ``item_ids``    int64 or str ids of the rows
``rating_scale``              float64 (2,)
``seen_indptr``               int64 (n_users + 1,); ``seen_items`` int32
``history_json``              JSON list of iteration records
``result_json``               JSON summary of the solver result
``fit_info_json``             JSON n_iter, fit_time, n_eval_dropped, dataset_name
``item_titles``               str per item, with bool ``item_title_known`` (optional)
============================  =====================================================

The fitted hyperparameters (``solver, rank, reg, reg_bias, biases, reg_weighting,
dtype``) are read back from ``params_json``; :func:`save_model` writes the
``FactorModel``'s own values for them, so a file always describes the objective
its factors minimise (even after ``set_params`` on the estimator).
"""

from __future__ import annotations

import json
import numbers
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_open
from .data.ids import raw_ids
from .fitted import FactorModel

__all__ = ["FORMAT_VERSION", "ModelFile", "load_model", "save_model", "to_arrays"]

#: Version of the ``.npz`` model format written by :func:`save_model`.
FORMAT_VERSION = 1

_REQUIRED = {"params_json", "user_factors", "item_factors", "global_mean", "user_ids", "item_ids",
             "rating_scale", "seen_indptr", "seen_items", "history_json", "result_json", "fit_info_json"}
_RESULT_KEYS = ("status", "success", "message", "nit", "n_cg", "nfev", "njev", "nhessp", "fun",
                "grad_norm", "best_iteration", "elapsed")


@dataclass
class ModelFile:
    """What a model file holds: the fitted model and the record of its fit.

    Attributes
    ----------
    model : FactorModel
    params : dict
        Estimator parameters (JSON values; ``dtype`` as a name).
    history : list of dict
    result : dict
        Summary of the solver result (``status`` still an int).
    n_iter : int
    fit_time : float
    n_eval_dropped : int
    """

    model: FactorModel
    params: dict[str, Any]
    history: list
    result: dict
    n_iter: int
    fit_time: float
    n_eval_dropped: int


# ---------------------------------------------------------------------------- writing
def _params_json(params: dict[str, Any], fm: FactorModel) -> str:
    params = dict(params)
    params.update(fm.fitted_params())  # the file describes the fitted objective
    params["callbacks"] = None
    params["dtype"] = np.dtype(params["dtype"]).name if _is_dtype(params["dtype"]) else params["dtype"]
    rs = params.get("random_state")
    if isinstance(rs, np.random.Generator):
        params["random_state"] = None
    elif isinstance(rs, numbers.Integral):
        params["random_state"] = int(rs)
    try:
        return json.dumps(params)
    except TypeError as exc:
        raise TypeError(f"cannot save parameters as JSON ({exc}); keep solver_options to plain values") from exc


def to_arrays(fm: FactorModel, params: dict[str, Any], history: list, result, *, n_iter: int, fit_time: float,
              n_eval_dropped: int) -> dict[str, np.ndarray]:
    """The entries of a format-1 model file (see the module docstring).

    Raises
    ------
    TypeError
        Ids that are neither integers nor strings, or parameters that are not
        JSON-serialisable.
    """
    params_json = _params_json(params, fm)
    summary = {key: _jsonable(result[key]) for key in _RESULT_KEYS if key in result}
    arrays: dict[str, np.ndarray] = {
        "fastmf_format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "fastmf_version": np.array(_fastmf_version()),
        "params_json": np.array(params_json),
        "user_factors": fm.P,
        "item_factors": fm.Q,
        "global_mean": np.array(fm.mu, dtype=np.float64),
        "user_ids": _ids_for_saving(fm.user_ids, "user"),
        "item_ids": _ids_for_saving(fm.item_ids, "item"),
        "rating_scale": np.array(fm.rating_scale, dtype=np.float64),
        "seen_indptr": np.asarray(fm.seen_indptr, dtype=np.int64),
        "seen_items": np.asarray(fm.seen_items, dtype=np.int32),
        "history_json": np.array(json.dumps([{k: _jsonable(v) for k, v in rec.items()} for rec in history])),
        "result_json": np.array(json.dumps(summary)),
        "fit_info_json": np.array(json.dumps({
            "n_iter": int(n_iter), "fit_time": float(fit_time),
            "n_eval_dropped": int(n_eval_dropped), "dataset_name": fm.dataset_name,
        })),
    }
    if fm.b is not None:
        arrays["user_biases"] = fm.b
        arrays["item_biases"] = fm.c
    if fm.item_titles:
        titles = [fm.item_titles.get(k) for k in fm.item_ids.tolist()]
        arrays["item_titles"] = np.array(["" if t is None else str(t) for t in titles])
        arrays["item_title_known"] = np.array([t is not None for t in titles], dtype=bool)
    return arrays


def save_model(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (from :func:`to_arrays`) to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


# ---------------------------------------------------------------------------- reading
# What numpy and zipfile raise on a damaged or hostile file (read with allow_pickle=False).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, MemoryError,
                struct.error, UnicodeDecodeError, SyntaxError, TypeError, OverflowError, NotImplementedError,
                IndexError)
_JSON_FIELDS = {"params_json": dict, "history_json": list, "result_json": dict, "fit_info_json": dict}


def _reason(exc: BaseException) -> str:
    """numpy's or zipfile's complaint, rephrased: never a hint to enable pickle."""
    msg = str(exc)
    if "pickle" in msg.lower():
        return "it is neither a .npz archive nor a .npy array (fastmf never loads pickled data)"
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _fail(path: Path, field: str, msg: str) -> ValueError:
    return ValueError(f"{path}: invalid model file, field {field!r}: {msg}")


def _read_entries(path: Path) -> dict[str, np.ndarray]:
    """Every entry of the ``.npz`` at ``path``, read eagerly with ``allow_pickle=False``.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        A directory, a file numpy cannot read as ``.npz`` (text, random bytes, a
        truncated or corrupt archive, pickled or object arrays), or a ``.npy`` file.
    """
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a fastmf model file (.npz)")
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ValueError(f"{path} is not a fastmf model file (.npz): {_reason(exc)}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, not a fastmf model file (.npz)")
    with data:
        entries = {}
        for key in data.files:
            try:
                entries[key] = data[key]
            except _READ_ERRORS as exc:
                raise ValueError(f"{path}: corrupt model file, entry {key!r} cannot be read: {_reason(exc)}") from None
    return entries


def _check_header(path: Path, entries: dict) -> None:
    """Raise ``ValueError`` unless the entries are those of a readable fastmf model file."""
    if "fastmf_format_version" not in entries:
        raise ValueError(f"{path} is not a fastmf model file (no fastmf_format_version entry)")
    v = entries["fastmf_format_version"]
    if v.shape != () or v.dtype.kind not in "iu":
        raise _fail(path, "fastmf_format_version", f"must be an integer scalar, got {v.dtype} of shape {v.shape}")
    version = int(v)
    if version > FORMAT_VERSION or version < 1:
        raise ValueError(f"{path} has model format version {version}; this fastmf reads versions 1..{FORMAT_VERSION} "
                         "(upgrade fastmf)")
    missing = sorted(_REQUIRED - set(entries))
    if missing:
        raise ValueError(f"{path} is an incomplete fastmf model file: missing {missing}")


def _json_field(path: Path, entries: dict, field: str):
    a = entries[field]
    if a.shape != () or a.dtype.kind != "U":
        raise _fail(path, field, f"must be a JSON string, got {a.dtype} of shape {a.shape}")
    try:
        value = json.loads(str(a))
    except (ValueError, RecursionError) as exc:
        raise _fail(path, field, f"invalid JSON ({exc})") from None
    if not isinstance(value, _JSON_FIELDS[field]):
        raise _fail(path, field, f"must hold a JSON {_JSON_FIELDS[field].__name__}, got {type(value).__name__}")
    return value


def _array_field(path: Path, entries: dict, field: str, ndim: int, kinds: str) -> np.ndarray:
    a = entries[field]
    if a.ndim != ndim or a.dtype.kind not in kinds:
        raise _fail(path, field, f"expected a {ndim}-D array of kind {kinds!r}, got {a.dtype} of shape {a.shape}")
    return a


def _check_params(path: Path, params: dict) -> dict[str, Any]:
    """The estimator parameters of the file, checked by the estimator's own validation."""
    from .model import MatrixFactorization, _validated_params  # model imports this module

    valid = set(MatrixFactorization._get_param_names())
    kwargs = {k: v for k, v in params.items() if k in valid}
    if kwargs.get("callbacks") is not None:
        raise _fail(path, "params_json", "callbacks must be null")
    nt = kwargs.get("n_threads")
    if isinstance(nt, int) and not isinstance(nt, bool) and nt != 0:
        kwargs["n_threads"] = None  # its upper bound depends on the machine: checked when fitting
    try:
        return _validated_params(MatrixFactorization(**kwargs))
    except (TypeError, ValueError) as exc:
        raise _fail(path, "params_json", str(exc)) from None


def _check_record(path: Path, summary: dict, info: dict, history: list) -> None:
    """``result_json``, ``fit_info_json`` and ``history_json`` hold what :meth:`load` uses."""
    extra = sorted(set(summary) - set(_RESULT_KEYS))
    if extra:
        raise _fail(path, "result_json", f"unknown keys {extra}")
    for key, v in summary.items():
        if isinstance(v, (list, dict)):
            raise _fail(path, "result_json", f"{key} must be a plain value, got {v!r}")
    if not all(isinstance(rec, dict) for rec in history):
        raise _fail(path, "history_json", "must be a list of records (JSON objects)")
    for key in ("n_iter", "n_eval_dropped"):
        v = info.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _fail(path, "fit_info_json", f"{key} must be an integer >= 0, got {v!r}")
    ft = info.get("fit_time")
    if isinstance(ft, bool) or not isinstance(ft, (int, float)) or not np.isfinite(ft) or ft < 0:
        raise _fail(path, "fit_info_json", f"fit_time must be a finite number >= 0, got {ft!r}")
    if not isinstance(info.get("dataset_name"), (str, type(None))):
        raise _fail(path, "fit_info_json", f"dataset_name must be a string or null, got {info['dataset_name']!r}")


def _titles(path: Path, entries: dict, item_ids: np.ndarray) -> dict | None:
    if "item_titles" not in entries:
        return None
    if "item_title_known" not in entries:
        raise _fail(path, "item_title_known", "missing (item_titles is present)")
    t = _array_field(path, entries, "item_titles", 1, "U")
    known = _array_field(path, entries, "item_title_known", 1, "b")
    if t.shape != item_ids.shape or known.shape != item_ids.shape:
        raise _fail(path, "item_titles", f"{t.shape[0]} titles and {known.shape[0]} flags for {item_ids.shape[0]} items")
    return {i: s for i, s, k in zip(item_ids.tolist(), t.tolist(), known.tolist()) if k}


def _model(path: Path, entries: dict, p: dict[str, Any], info: dict) -> FactorModel:
    """The :class:`FactorModel` of validated entries (every field checked before use)."""
    P = _array_field(path, entries, "user_factors", 2, "f")
    Q = _array_field(path, entries, "item_factors", 2, "f")
    has_b, has_c = "user_biases" in entries, "item_biases" in entries
    if has_b != has_c:
        raise _fail(path, "item_biases" if has_b else "user_biases", "biases must be present for both users and items")
    if has_b != p["biases"]:
        raise _fail(path, "user_biases", f"biases={p['biases']} in the parameters, biases {'' if has_b else 'not '}saved")
    b = _array_field(path, entries, "user_biases", 1, "f") if has_b else None
    c = _array_field(path, entries, "item_biases", 1, "f") if has_b else None
    if P.dtype != p["dtype"]:
        raise _fail(path, "user_factors", f"dtype {P.dtype} but the parameters say {p['dtype']}")
    mu = _array_field(path, entries, "global_mean", 0, "iuf")
    rs = _array_field(path, entries, "rating_scale", 1, "iuf")
    if rs.shape != (2,):
        raise _fail(path, "rating_scale", f"must hold 2 values, got shape {rs.shape}")
    ids = {}
    for field in ("user_ids", "item_ids"):
        try:
            ids[field] = raw_ids(_array_field(path, entries, field, 1, "iuU"), field)
        except (TypeError, ValueError) as exc:
            raise _fail(path, field, str(exc)) from None
    ip = _array_field(path, entries, "seen_indptr", 1, "iu")
    si = _array_field(path, entries, "seen_items", 1, "iu")
    try:
        fm = FactorModel(
            P, Q, b, c, float(mu), ids["user_ids"], ids["item_ids"], ip, si, tuple(float(v) for v in rs),
            item_titles=_titles(path, entries, ids["item_ids"]), dataset_name=info.get("dataset_name"),
            solver=p["solver"], rank=p["rank"], reg=p["reg"], reg_bias=p["reg_bias"], reg_weighting=p["reg_weighting"],
        ).validate()
    except ValueError as exc:
        raise ValueError(f"{path}: inconsistent model file: {exc}") from None
    # the CSR is checked (values in range): now in the dtypes the serving code expects
    return fm.replace(seen_indptr=ip.astype(np.int64, copy=False), seen_items=si.astype(np.int32, copy=False))


def load_model(path: str | os.PathLike) -> ModelFile:
    """Read and validate a model file written by :func:`save_model` (formats 1..:data:`FORMAT_VERSION`).

    A model file is untrusted input: every entry is checked before anything uses
    it (format version; each array's dtype, shape and consistency with the others;
    finite factors, biases and mean; unique, representable ids; the seen-items
    CSR; the rating scale; the parameters by the estimator's own validation; the
    fit record), so no kernel ever sees an inconsistent model.  Nothing is
    unpickled.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ModelFile

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        One message naming the file and the offending field: not a readable
        ``.npz`` (text, random bytes, a ``.npy`` file, a truncated archive, a
        directory), a format version out of range, a missing entry, or any
        invalid or inconsistent field.
    """
    path = Path(path)
    entries = _read_entries(path)
    _check_header(path, entries)
    params = _json_field(path, entries, "params_json")
    history = _json_field(path, entries, "history_json")
    summary = _json_field(path, entries, "result_json")
    info = _json_field(path, entries, "fit_info_json")
    p = _check_params(path, params)
    _check_record(path, summary, info, history)
    fm = _model(path, entries, p, info)
    return ModelFile(fm, params, history, summary, info["n_iter"], info["fit_time"], info["n_eval_dropped"])


# ---------------------------------------------------------------------------- helpers
def _is_dtype(x) -> bool:
    try:
        np.dtype(x)
        return True
    except TypeError:
        return False


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, float) and not np.isfinite(v):
        return None if np.isnan(v) else v
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def _ids_for_saving(ids: np.ndarray, what: str) -> np.ndarray:
    if ids.dtype.kind in "iu":
        if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
            raise TypeError(f"cannot save {what} ids above 2**63 - 1: model files store integer ids as int64")
        return ids.astype(np.int64)
    if ids.dtype.kind == "U":
        return ids
    if ids.dtype.kind == "O" and all(isinstance(x, str) for x in ids):
        return np.array(ids.tolist(), dtype=str) if len(ids) else np.array([], dtype="<U1")
    raise TypeError(f"cannot save {what} ids of dtype {ids.dtype}: only integer or string ids can be saved")


def _fastmf_version() -> str:
    try:
        from . import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"
