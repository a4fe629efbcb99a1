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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_open
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
def _open(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a fastmf model file (.npz): {exc}") from exc


def _check_header(path: Path, keys: set) -> None:
    """Raise ``ValueError`` unless the entries are those of a readable fastmf model file."""
    if "fastmf_format_version" not in keys:
        raise ValueError(f"{path} is not a fastmf model file (no fastmf_format_version entry)")


def load_model(path: str | os.PathLike) -> ModelFile:
    """Read a model file written by :func:`save_model` (any format up to :data:`FORMAT_VERSION`).

    Raises
    ------
    FileNotFoundError
    ValueError
        Not a fastmf model file, a newer format version, missing entries or
        inconsistent shapes.
    """
    path = Path(path)
    with _open(path) as data:
        keys = set(data.files)
        _check_header(path, keys)
        version = int(data["fastmf_format_version"])
        if version > FORMAT_VERSION or version < 1:
            raise ValueError(
                f"{path} has model format version {version}; this fastmf reads versions 1..{FORMAT_VERSION} "
                "(upgrade fastmf)"
            )
        missing = sorted(_REQUIRED - keys)
        if missing:
            raise ValueError(f"{path} is an incomplete fastmf model file: missing {missing}")
        params = json.loads(str(data["params_json"]))
        arrays = {k: data[k] for k in ("user_factors", "item_factors", "user_ids", "item_ids", "seen_indptr",
                                       "seen_items", "rating_scale")}
        has_b = "user_biases" in keys
        b = data["user_biases"] if has_b else None
        c = data["item_biases"] if has_b else None
        mu = float(data["global_mean"])
        history = json.loads(str(data["history_json"]))
        summary = json.loads(str(data["result_json"]))
        info = json.loads(str(data["fit_info_json"]))
        titles = None
        if "item_titles" in keys:
            known = data["item_title_known"]
            titles = {i: t for i, t, k in zip(arrays["item_ids"].tolist(), data["item_titles"].tolist(), known) if k}
    m, n = arrays["user_factors"].shape[0], arrays["item_factors"].shape[0]
    if arrays["item_factors"].shape[1] != arrays["user_factors"].shape[1] or len(arrays["user_ids"]) != m or len(
            arrays["item_ids"]) != n or arrays["seen_indptr"].shape[0] != m + 1:
        raise ValueError(f"{path}: inconsistent array shapes in the model file")
    try:
        fm = FactorModel(
            arrays["user_factors"], arrays["item_factors"], b, c, mu, arrays["user_ids"], arrays["item_ids"],
            arrays["seen_indptr"], arrays["seen_items"], tuple(float(v) for v in arrays["rating_scale"]),
            item_titles=titles, dataset_name=info.get("dataset_name"), **_fitted_hyperparameters(params),
        )
    except ValueError as exc:
        raise ValueError(f"{path}: inconsistent array shapes in the model file ({exc})") from exc
    return ModelFile(fm, params, history, summary, info["n_iter"], info["fit_time"], info["n_eval_dropped"])


def _fitted_hyperparameters(params: dict[str, Any]) -> dict[str, Any]:
    """The ``FactorModel`` hyperparameters from a file's parameters (defaults as the estimator's)."""
    out = {"solver": params.get("solver", "newton"), "reg": params.get("reg", 0.1),
           "reg_bias": params.get("reg_bias"), "reg_weighting": params.get("reg_weighting", "count")}
    if params.get("rank") is not None:
        out["rank"] = params["rank"]
    return out


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
