"""The ``fastmf`` command line (also ``python -m fastmf``).

Subcommands::

    fastmf fit [DATASET] [--solver newton|als|sgd|gibbs] [--rank 32] [--reg ...] [--test-size 0.1]
               [--save model.npz] [--plot curve.png] ...
    fastmf predict MODEL USER ITEM [ITEM ...]
    fastmf recommend MODEL USER [-n 10]
    fastmf info [DATASET | MODEL.npz]
    fastmf bench [--dataset ml-latest-small|synthetic] [--rank 32]
    fastmf warmup [--solver newton|als|sgd|gibbs|all ...] [--dtype float32|float64 ...]

``DATASET`` is a MovieLens name (``ml-100k``, ``ml-latest-small``...; see
:mod:`fastmf.data.movielens`), a ratings file (CSV/TSV/``::``, sniffed), or, by
default, the bundled ``ml-latest-small`` so that everything runs offline.

Every error prints one line ``fastmf: error: ...`` on stderr, naming the file
(and, for a bad ratings file, the line and column) and exits with status 1
(usage errors: status 2); there is no traceback unless ``--traceback`` is given
(``fastmf --traceback fit ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["main", "build_parser"]

DEFAULT_DATASET = "ml-latest-small"
PROG = "fastmf"


class CLIError(Exception):
    """A user error with a one-line message."""


# ---------------------------------------------------------------------------- helpers

def _columns(text: str) -> tuple[str, ...]:
    """``--columns user,item,rating[,timestamp]``."""
    cols = tuple(c.strip() for c in text.split(","))
    if len(cols) not in (3, 4) or not all(cols):
        raise argparse.ArgumentTypeError(f"expected 3 or 4 comma-separated column names, got {text!r}")
    return cols


def _weighting(text: str):
    """``--reg-weighting``: a name of :data:`fastmf._weights.REG_WEIGHTINGS` or an exponent."""
    from ._weights import REG_WEIGHTINGS, reg_exponent

    if text in REG_WEIGHTINGS:
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(sorted(REG_WEIGHTINGS))} or an exponent >= 0, got {text!r}") from None
    try:
        reg_exponent(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value

def _load_dataset(spec: str | None, dtype=np.float32, columns: tuple[str, ...] | None = None):
    """A MovieLens name, a ratings file, or (None) the bundled ml-latest-small."""
    from .data.movielens import MOVIELENS_DATASETS, load_movielens, load_ratings_file

    spec = DEFAULT_DATASET if spec is None else spec
    if spec in MOVIELENS_DATASETS:
        try:
            return load_movielens(spec, dtype=dtype)
        except (ValueError, OSError, KeyError) as exc:
            raise CLIError(_with_file(spec, _strip_advice(_message(exc)))) from exc
    path = Path(spec).expanduser()
    if path.is_file():
        _check_text(spec, path)
        try:
            return load_ratings_file(path, dtype=dtype, columns=columns)
        except UnicodeDecodeError as exc:
            raise CLIError(f"{spec}: not a text ratings file (byte {exc.object[exc.start:exc.start + 1].hex()!s} "
                           f"at offset {exc.start} is not UTF-8 text)") from exc
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise CLIError(_data_error(spec, path, exc)) from exc
    if path.is_dir():
        raise CLIError(f"{spec} is a folder; give a ratings file or a MovieLens name")
    raise CLIError(
        f"DATASET {spec!r} is neither a MovieLens name ({', '.join(sorted(MOVIELENS_DATASETS))}) "
        "nor an existing ratings file"
    )


def _check_text(spec: str, path: Path) -> None:
    """A ratings file must be text: reject binary files before the parser quotes their bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise CLIError(f"{spec}: cannot read the file ({exc.strerror or exc})") from exc
    if head.startswith(b"PAR1") or path.suffix.lower() in (".parquet", ".pq"):
        return  # Parquet is binary by design: load_ratings_file reads it (and names the file on errors)
    bad = head.find(b"\0")
    if bad < 0:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
                bad = exc.start
    if bad >= 0:
        raise CLIError(f"{spec}: not a text ratings file (byte {bad}: 0x{head[bad]:02x} is not UTF-8 text)")


def _message(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(msg).split()) or type(exc).__name__


# library advice that names a Python keyword argument, with the CLI's equivalent (None: drop it)
_ADVICE = (
    (re.compile(r";?\s*pass columns=\(user, item, rating\[, timestamp\]\)"),
     "; name them with --columns USER,ITEM,RATING[,TIMESTAMP]"),
    (re.compile(r";?\s*pass drop_unknown=False to keep them"), None),
    (re.compile(r";?\s*pass duplicates='last' or 'mean' to combine duplicates"), None),
    (re.compile(r"\btest_size=(\S+)"), r"--test-size \1"),
    (re.compile(r"\bn_threads\b"), "--threads"),
    (re.compile(r"\binit='(\w+)'"), r"--init \1"),
    (re.compile(r"\brank=(\d+)"), r"--rank \1"),
    (re.compile(r"This file contains pickled \(object\) data\..*"), "not a NumPy .npz archive"),
)


def _strip_advice(msg: str) -> str:
    """Replace advice about library keyword arguments by the CLI's own options."""
    for pattern, replacement in _ADVICE:
        msg = pattern.sub(replacement or "", msg)
    return msg.strip()


def _with_file(name: str, msg: str) -> str:
    """``msg`` prefixed by ``name:`` unless it already names the file."""
    return msg if name in msg else f"{name}: {msg}"


_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'")
_SHAPE = re.compile(r"Expected (\d+) columns, got (\d+): (.*)")


def _split_line(line: str) -> list[str]:
    for sep in ("::", "\t", ",", ";", "|"):
        if sep in line:
            return [f.strip().strip('"') for f in line.split(sep)]
    return [line.strip()]


def _data_error(spec: str, path: Path, exc: BaseException) -> str:
    """A ratings-file error naming the file and, when it can be found, the line and column."""
    msg = _strip_advice(_message(exc))
    m = _CONVERSION.search(msg)
    shape = _SHAPE.search(msg)
    if m is None and shape is None:
        return _with_file(spec, msg)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read(1 << 26).splitlines()
    except OSError:
        return _with_file(spec, msg)
    header = _split_line(lines[0]) if lines else []
    if m is not None:
        col, kind, value = int(m.group(1)), m.group(2), m.group(3)
        what = "a number" if kind in ("double", "float", "int64", "int32") else kind
        for lineno, line in enumerate(lines, start=1):
            fields = _split_line(line)
            if col < len(fields) and fields[col] == value:
                name = header[col] if lineno > 1 and col < len(header) and not _is_number(header[col]) else None
                column = f"column {col + 1}" + (f" ({name!r})" if name else "")
                return f"{spec}, line {lineno}, {column}: {value!r} is not {what}"
        return f"{spec}, column {col + 1}: {value!r} is not {what}"
    expected, got, row = shape.groups()
    for lineno, line in enumerate(lines, start=1):
        if line.rstrip() == row.rstrip():
            return f"{spec}, line {lineno}: expected {expected} columns, got {got}"
    return f"{spec}: a line has {got} columns instead of {expected}: {row[:60]!r}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_model(path: str):
    """Load a model file; any failure becomes a one-line error naming the file."""
    from .model import MatrixFactorization

    try:
        return MatrixFactorization.load(path)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt file can fail in many ways
        msg = _message(exc)
        if isinstance(exc, FileNotFoundError) or "fastmf model file" in msg:
            raise CLIError(_with_file(path, msg)) from exc
        raise CLIError(f"{path}: not a valid fastmf model file ({type(exc).__name__}: {msg})") from exc


@contextlib.contextmanager
def _about(name: str):
    """Errors raised in the block become one-line errors naming ``name`` (a file or data set)."""
    try:
        yield
    except CLIError as exc:
        raise CLIError(_with_file(name, _message(exc))) from exc
    except (ValueError, TypeError, KeyError, IndexError, ArithmeticError) as exc:
        raise CLIError(_with_file(name, _strip_advice(_message(exc)))) from exc


def _coerce_id(text: str, ids: np.ndarray, what: str):
    """A command-line id in the type of the model's ids (int ids need an integer)."""
    if ids.dtype.kind in "iu":
        try:
            return int(text)
        except ValueError:
            raise CLIError(f"{what} id {text!r} is not an integer, and this model's {what} ids are integers") from None
    return text


def _fmt(v, spec: str = ".6g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (float, np.floating)):
        return format(float(v), spec)
    return str(v)


def _print_table(rows: list[list[str]], header: list[str], out=None) -> None:
    out = sys.stdout if out is None else out
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)), file=out)
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)), file=out)


def compact_rows(n: int, max_rows: int = 20) -> list[int]:
    """Indices of the table rows ``fastmf fit`` shows out of ``n``: all when ``n <= max_rows``,
    else about ``max_rows`` evenly spaced ones, always including the first and the last."""
    if n <= max_rows:
        return list(range(n))
    step = -(-(n - 1) // (max_rows - 1))  # ceil: at most max_rows rows with the last one added
    keep = list(range(0, n - 1, step))
    keep.append(n - 1)
    return keep


def history_table(history: list[dict], max_rows: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-iteration table printed by ``fastmf fit`` (with ``max_rows``:
    the rows of :func:`compact_rows`, the last iteration always shown)."""
    cols = [("iteration", "iter", "d"), ("loss", "loss", ".6g")]
    optional = [
        ("grad_norm", "grad norm", ".4g"),
        ("n_cg", "CG steps", "d"),
        ("learning_rate", "learning rate", ".4g"),
        ("noise_variance", "sigma^2", ".4g"),
        ("val_rmse", "val RMSE", ".4f"),
    ]
    for key, name, spec in optional:
        if any(rec.get(key) is not None for rec in history):
            cols.append((key, name, spec))
    cols.append(("elapsed", "time (s)", ".3f"))
    header = [name for _, name, _ in cols]
    rows = []
    if max_rows is not None:
        history = [history[j] for j in compact_rows(len(history), max_rows)]
    for rec in history:
        row = []
        for key, _, spec in cols:
            v = rec.get(key)
            if v is None:
                row.append("-")
            elif isinstance(v, str):
                row.append(v)
            elif spec == "d":
                row.append(str(int(v)))
            else:
                row.append(_fmt(float(v), spec))
        rows.append(row)
    return header, rows


#: Rows of the ``fastmf fit`` table (the last iteration always among them).
MAX_TABLE_ROWS = 20


def _summary(solver: str, res, test_rmse, fit_time: float, n_iter: int) -> str:
    """The one-line summary closing ``fastmf fit``."""
    status = res.get("status")
    name = getattr(status, "name", str(status)).lower()
    best = res.get("best_iteration")
    text = f"summary:   {solver}, {n_iter} iterations, stopped by {name}"
    if best is not None and name == "early_stopping":
        text += f" (best validation iteration {best})"
    if test_rmse is not False and test_rmse is not None:
        text += f", test RMSE {test_rmse:.4f}"
    return text + f", {fit_time:.2f} s"


# ---------------------------------------------------------------------------- commands
def cmd_fit(args) -> int:
    from .data.splits import train_test_split
    from .model import MatrixFactorization

    dtype = np.dtype(args.dtype).type
    if not 0.0 <= args.test_size < 1.0:
        raise CLIError(f"--test-size must be in [0, 1), got {args.test_size}")
    if not 0.0 <= args.validation_size < 1.0:
        raise CLIError(f"--validation-size must be in [0, 1), got {args.validation_size}")
    if args.patience < 1:
        raise CLIError(f"--patience must be >= 1, got {args.patience}")
    if args.refit < 0:
        raise CLIError(f"--refit must be >= 0, got {args.refit}")
    early = args.solver != "gibbs" and args.validation_size > 0
    if args.save is not None and not Path(args.save).expanduser().parent.is_dir():
        raise CLIError(f"--save {args.save}: folder {Path(args.save).expanduser().parent} does not exist")
    if args.plot is not None:
        if not Path(args.plot).expanduser().parent.is_dir():
            raise CLIError(f"--plot {args.plot}: folder {Path(args.plot).expanduser().parent} does not exist")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install 'fastmf[plot]'") from None
    model = MatrixFactorization(
        rank=args.rank, solver=args.solver, reg=args.reg, reg_bias=args.reg_bias, biases=not args.no_biases,
        reg_weighting=args.reg_weighting, dtype=dtype, n_threads=args.threads, max_iter=args.max_iter,
        tol=args.tol, random_state=args.seed, init=args.init, progress=not args.no_progress,
        early_stopping=args.patience if early else None,
    )
    model._validated_params()  # parameter errors before loading any data
    ratings = _load_dataset(args.dataset, dtype, columns=args.columns)
    data_name = args.dataset or DEFAULT_DATASET
    print(f"data: {ratings!r}")
    test = None
    if args.test_size > 0:
        try:
            train, test = train_test_split(ratings, args.test_size, random_state=args.seed)
        except ValueError as exc:
            reason = _strip_advice(_message(exc))
            if "--test-size" not in reason:
                reason = f"cannot hold out --test-size {args.test_size:g} of its {ratings.nnz:,} ratings: {reason}"
            raise CLIError(f"{data_name}: {reason}; use --test-size 0 to fit on all ratings") from exc
    else:
        train = ratings
    val = None
    fit_part = train
    if early:
        # the validation set that stops the fit is carved out of the training part (same splitter
        # and seed), never the test set whose RMSE is reported
        try:
            fit_part, val = train_test_split(train, args.validation_size, random_state=args.seed)
        except ValueError as exc:
            raise CLIError(f"{data_name}: cannot hold out --validation-size {args.validation_size:g} of the "
                           f"{train.nnz:,} training ratings: {_strip_advice(_message(exc))}; use "
                           "--validation-size 0 to fit without early stopping") from exc
    parts = [f"{train.nnz:,} train"]
    if val is not None:
        parts = [f"{fit_part.nnz:,} train + {val.nnz:,} validation (early stopping, patience {args.patience}"
                 + (f"; then {args.refit} iterations on all {train.nnz:,})" if args.refit > 0 else ")")]
    if test is not None:
        parts.append(f"{test.nnz:,} test (not seen by the fit)")
    if val is not None or test is not None:
        print(f"split: {' / '.join(parts)} ratings (seed {args.seed})")
    fit_time = 0.0
    with warnings.catch_warnings(record=True) as caught, _about(data_name):
        warnings.simplefilter("always")
        model.fit(fit_part, eval_set=val)
        fit_time += model.fit_time_
        history = list(model.history_)
        stopped = model.result_
        curves = model
        if val is not None and args.refit > 0:
            if args.plot is not None:
                import copy

                curves = copy.deepcopy(model)  # the early-stopping run's curves (loss, validation RMSE)
            # the early-stopped model, refined on all the training ratings (validation part included)
            from .exceptions import ConvergenceWarning

            model.set_params(max_iter=args.refit, early_stopping=None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of iterations, by design
                model.fit(train, warm_start=True)
            fit_time += model.fit_time_
            last = history[-1]["elapsed"]
            history += [dict(rec, iteration=f"refit {rec['iteration']}", val_rmse=None, elapsed=last + rec["elapsed"])
                        for rec in model.history_[1:]]
    for w in caught:  # e.g. a solver's ConvergenceWarning: one line, no source location
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    header, rows = history_table(history, max_rows=None if args.full_table else MAX_TABLE_ROWS)
    print()
    _print_table(rows, header)
    if len(rows) < len(history):
        print(f"({len(rows)} of {len(history)} rows; --full-table shows all)")
    print()
    res = model.result_
    print(f"solver:    {args.solver} ({stopped.get('message', '')})")
    if stopped is not res:
        print(f"refit:     {len(model.history_) - 1} iterations on all {train.nnz:,} training ratings from the "
              f"early-stopped model (iteration {stopped.get('best_iteration')})")
    if test is not None:
        ev = model.evaluate(test)
        print(f"test RMSE: {ev['rmse']:.4f}  (MAE {ev['mae']:.4f}, {ev['n']:,} held-out ratings)")
    print(f"fit time:  {fit_time:.2f} s")
    n_iter = stopped.get("nit", 0) + (res.get("nit", 0) if res is not stopped else 0)
    print(_summary(args.solver, stopped, test is not None and ev["rmse"], fit_time, n_iter))
    if args.save is not None:
        path = model.save(Path(args.save).expanduser())
        print(f"saved model to {path}")
    if args.plot is not None:
        from .plot import plot_history

        metrics = ("loss", "val_rmse") if val is not None else ("loss",)
        with _about(args.plot):
            plot_history(curves, labels=[args.solver], metrics=metrics, path=Path(args.plot).expanduser(),
                         title=f"{ratings.name or 'ratings'}: {args.solver}, rank {args.rank}")
        print(f"saved plot to {args.plot}")
    return 0


def cmd_predict(args) -> int:
    from .exceptions import UnknownIdWarning

    model = _load_model(args.model)
    with _about(args.model), warnings.catch_warnings(record=True) as caught:
        user = _coerce_id(args.user, model.user_ids_, "user")
        items = [_coerce_id(i, model.item_ids_, "item") for i in args.items]
        warnings.simplefilter("always", UnknownIdWarning)
        preds = model.predict(np.array([user] * len(items)), np.array(items), unknown=args.unknown)
    for w in caught:
        if issubclass(w.category, UnknownIdWarning):
            print(f"{PROG}: note: {w.message}", file=sys.stderr)
    for item, pred in zip(items, preds):
        print(f"{user}\t{item}\t{_fmt(float(pred), '.4f')}")
    return 0


def cmd_recommend(args) -> int:
    from .exceptions import UnknownIdWarning

    if args.n < 1:
        raise CLIError(f"-n must be >= 1, got {args.n}")
    model = _load_model(args.model)
    with _about(args.model), warnings.catch_warnings(record=True) as caught:
        user = _coerce_id(args.user, model.user_ids_, "user")
        n = min(args.n, model.n_items_)
        warnings.simplefilter("always", UnknownIdWarning)
        items, scores = model.recommend(user, n=n, exclude_seen=not args.include_seen,
                                        min_ratings=args.min_ratings)
    for w in caught:
        if issubclass(w.category, UnknownIdWarning):
            print(f"{PROG}: note: {w.message}", file=sys.stderr)
    rows = []
    has_titles = bool(model.item_titles_)
    for rank, (item, score) in enumerate(zip(items.tolist(), scores.tolist()), start=1):
        row = [str(rank), str(item), _fmt(score, ".4f")]
        if has_titles:
            row.append(model.item_title(item) or "")
        rows.append(row)
    header = ["rank", "item", "score"] + (["title"] if has_titles else [])
    notes = [] if args.include_seen else ["seen items excluded"]
    if args.min_ratings:
        notes.append(f"items with >= {args.min_ratings} ratings")
    print(f"top {n} for user {user}" + (f" ({', '.join(notes)})" if notes else ""))
    # titles left-aligned: print the numeric columns with the table helper, then the title
    if has_titles:
        widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header[:3])]
        print("  ".join(h.rjust(w) for h, w in zip(header[:3], widths)) + "  title")
        for r in rows:
            print("  ".join(c.rjust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    else:
        _print_table(rows, header)
    return 0


def cmd_info(args) -> int:
    spec = args.target
    if spec is not None and spec.endswith(".npz") and Path(spec).expanduser().is_file():
        return _model_info(Path(spec).expanduser())
    ratings = _load_dataset(spec, columns=args.columns)
    stats = ratings.describe()
    if ratings.rating_scale is not None:
        stats["rating_scale"] = ratings.rating_scale
    stats["titles"] = len(ratings.item_titles) if ratings.item_titles else 0
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = f"{int(value):,}"
        print(f"{key.ljust(width)}  {value}")
    return 0


def _model_info(path: Path) -> int:
    model = _load_model(str(path))
    with _about(str(path)):
        return _print_model_info(path, model)


def _print_model_info(path: Path, model) -> int:
    res = model.result_
    lines = {
        "model": str(path),
        "dataset": model.dataset_name_ or "-",
        "solver": model.solver,
        "rank": model.user_factors_.shape[1],
        "biases": model.user_biases_ is not None,
        "reg": model.reg,
        "reg_weighting": model.reg_weighting,
        "dtype": np.dtype(model.dtype).name,
        "n_users": model.n_users_,
        "n_items": model.n_items_,
        "global_mean": model.global_mean_,
        "rating_scale": model.rating_scale_,
        "iterations": model.n_iter_,
        "status": res.get("message", "-"),
        "fit_time_s": model.fit_time_,
        "titles": len(model.item_titles_) if model.item_titles_ else 0,
    }
    width = max(len(k) for k in lines)
    for key, value in lines.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        print(f"{key.ljust(width)}  {value}")
    return 0


def _time_calls(fn, repeat: int) -> float:
    """Best wall-clock seconds of ``repeat`` calls (after one warm-up call)."""
    fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cmd_bench(args) -> int:
    from ._threading import thread_limit
    from .objective import MFObjective
    from .reference import DenseMF

    if args.repeat < 1:
        raise CLIError(f"--repeat must be >= 1, got {args.repeat}")
    if args.dataset == "synthetic":
        from .data.synthetic import synthetic_preset

        ratings = synthetic_preset("ml-100k", random_state=0, dtype=np.float64)
    else:
        ratings = _load_dataset(args.dataset, np.float64)
    cells = ratings.n_users * ratings.n_items
    if cells > 5e7:
        raise CLIError(
            f"{ratings.name}: {ratings.n_users} x {ratings.n_items} is too large for the dense reference "
            "(limit 5e7 cells); use ml-100k, ml-latest-small or synthetic"
        )
    print(f"data: {ratings!r}")
    print(f"rank {args.rank}, float64, biases, best of {args.repeat} calls after a warm-up")
    dense = DenseMF.from_ratings(ratings, args.rank, reg=0.05)
    rows = []
    with thread_limit(args.threads) as n_threads:
        obj = MFObjective(ratings, args.rank, reg=0.05, dtype=np.float64, n_threads=args.threads)
        x = obj.x0(random_state=0)
        v = np.random.default_rng(1).normal(size=x.shape[0])
        xs = (x, x + 1e-9)  # alternate two points so the objective's cache never answers
        turn = [0]

        def fast_fg():
            turn[0] ^= 1
            return obj.fun_and_jac(xs[turn[0]])

        checks = [
            ("loss + gradient", fast_fg, lambda: (dense.fun(x), dense.jac(x))),
            ("Gauss-Newton hessp", lambda: obj.hessp(x, v), lambda: dense.hessp(x, v)),
        ]
        for name, fast, ref in checks:
            t_fast = _time_calls(fast, args.repeat)
            t_ref = _time_calls(ref, args.repeat)
            rows.append([name, f"{t_fast * 1e3:.2f}", f"{t_ref * 1e3:.2f}", f"{t_ref / t_fast:.1f}x"])
        # agreement, so the comparison is between equal computations
        g_fast = obj.jac(x)
        g_ref = dense.jac(x)
        rel = float(np.linalg.norm(g_fast - g_ref) / np.linalg.norm(g_ref))
    print(f"threads: {n_threads}")
    _print_table(rows, ["computation", "fastmf (ms)", "dense reference (ms)", "speed-up"])
    print(f"gradient agreement: relative difference {rel:.1e}")
    return 0


def cmd_warmup(args) -> int:
    from ._warmup import warmup

    solvers = [s for s in args.solver] if args.solver else ["newton"]
    dtypes = args.dtype or ["float32"]
    t0 = time.perf_counter()
    report = warmup(solvers, dtypes, n_threads=args.threads)
    for key, info in report.items():
        what = f"{info['compiled']} kernel specialisations compiled" if info["compiled"] else "loaded from the cache"
        print(f"{key}: {info['seconds']:.2f} s ({what})")
    import numba

    where = numba.config.CACHE_DIR or "__pycache__ next to the fastmf sources"
    print(f"warm-up done in {time.perf_counter() - t0:.2f} s; numba cache: {where}")
    return 0


# ---------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``fastmf: error: ...`` (exit status 2)."""

    def error(self, message: str):
        where = self.prog if self.prog != PROG else PROG
        self.exit(2, f"{PROG}: error: {' '.join(message.split())} (see '{where} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="Numba-accelerated matrix factorization of explicit ratings (MovieLens).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details on stderr")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    f = sub.add_parser("fit", help="fit a model on a data set and report test RMSE",
                       description="Fit a matrix factorization; print a per-iteration table (at most "
                                   f"{MAX_TABLE_ROWS} rows), the test RMSE, the fit time and a one-line summary. "
                                   "A validation part of the training ratings (--validation-size) stops the fit "
                                   "when its RMSE stalls; the test ratings are never seen by the fit.")
    f.add_argument("dataset", nargs="?", default=None, metavar="DATASET",
                   help="MovieLens name (ml-100k, ml-latest-small, ...) or a ratings file; "
                        f"default: the bundled {DEFAULT_DATASET}")
    f.add_argument("--columns", type=_columns, default=None, metavar="USER,ITEM,RATING[,TIMESTAMP]",
                   help="header names of the columns of a ratings file whose header is not recognised")
    f.add_argument("--solver", choices=("newton", "als", "sgd", "gibbs"), default="newton",
                   help="default: newton; gibbs = Bayesian biased MF by Gibbs sampling (no --reg: its prior "
                        "precisions are sampled)")
    f.add_argument("--rank", type=int, default=32, help="number of latent factors (default 32)")
    f.add_argument("--reg", type=float, default=0.1, help="L2 weight of the factors (default 0.1)")
    f.add_argument("--reg-bias", type=float, default=None, help="L2 weight of the biases (default: --reg)")
    f.add_argument("--reg-weighting", type=_weighting, default="count", metavar="{count,sqrt-count,uniform,ALPHA}",
                   help="penalty weight of each row: its rating count n (default), sqrt(n), 1, or n**ALPHA")
    f.add_argument("--no-biases", action="store_true", help="fit factors only (no user/item biases)")
    f.add_argument("--init", choices=("random", "svd"), default="random",
                   help="starting factors: random draws (default) or the spectral start (top singular vectors "
                        "of the centred ratings; needs rank < min(users, items))")
    f.add_argument("--max-iter", type=int, default=None,
                   help="iterations (Newton, ALS), epochs (SGD) or draws after the burn-in (Gibbs); "
                        "default: the solver's")
    f.add_argument("--tol", type=float, default=None, help="stopping tolerance; default: the solver's")
    f.add_argument("--test-size", type=float, default=0.1,
                   help="fraction of ratings held out at random for the test RMSE (default 0.1; 0: none)")
    f.add_argument("--validation-size", type=float, default=0.05,
                   help="fraction of the training ratings held out to stop the fit early when their RMSE "
                        "stalls (default 0.05; 0: no early stopping; never the test ratings; not gibbs)")
    f.add_argument("--patience", type=int, default=5,
                   help="iterations (epochs) without a validation-RMSE improvement of 1e-4 before stopping "
                        "(default 5); the best iteration's model is kept")
    f.add_argument("--refit", type=int, default=5, metavar="N",
                   help="after early stopping, refine the model for N iterations on all the training ratings "
                        "(validation part included; default 5, 0: keep the early-stopped model)")
    f.add_argument("--full-table", action="store_true",
                   help=f"print every iteration (default: at most {MAX_TABLE_ROWS} rows, the last one always)")
    f.add_argument("--seed", type=int, default=0, help="seed of the split and the initial factors (default 0)")
    f.add_argument("--threads", type=int, default=None, help="threads for numba and BLAS (default: all)")
    f.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    f.add_argument("--save", metavar="PATH", default=None, help="save the model (.npz)")
    f.add_argument("--plot", metavar="PATH", default=None, help="save loss / validation-RMSE curves (PNG)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict ratings with a saved model",
                       description="Print the predicted rating of USER for each ITEM (raw ids).")
    p.add_argument("model", metavar="MODEL", help="model file written by 'fastmf fit --save'")
    p.add_argument("user", metavar="USER")
    p.add_argument("items", metavar="ITEM", nargs="+")
    p.add_argument("--unknown", choices=("mean", "nan", "raise"), default=None,
                   help="unknown-id policy (default: the model's, normally 'mean')")
    p.set_defaults(func=cmd_predict)

    r = sub.add_parser("recommend", help="top-n items for a user with a saved model",
                       description="Print USER's top-n items (raw ids, scores, titles when known).")
    r.add_argument("model", metavar="MODEL")
    r.add_argument("user", metavar="USER")
    r.add_argument("-n", type=int, default=10, help="number of items (default 10)")
    r.add_argument("--include-seen", action="store_true", help="also rank items the user rated in training")
    r.add_argument("--min-ratings", type=int, default=None, metavar="K",
                   help="only recommend items with at least K training ratings (rarely rated items get "
                        "large, barely regularised biases)")
    r.set_defaults(func=cmd_recommend)

    i = sub.add_parser("info", help="statistics of a data set (or a saved model)",
                       description="Print a data set's statistics (default: the bundled ml-latest-small), "
                                   "or a summary of a saved model (.npz).")
    i.add_argument("target", nargs="?", default=None, metavar="DATASET|MODEL",
                   help=f"MovieLens name, ratings file or model .npz; default {DEFAULT_DATASET}")
    i.add_argument("--columns", type=_columns, default=None, metavar="USER,ITEM,RATING[,TIMESTAMP]",
                   help="header names of the columns of a ratings file whose header is not recognised")
    i.set_defaults(func=cmd_info)

    b = sub.add_parser("bench", help="quick kernel comparison against the dense reference",
                       description="Time fastmf's sparse loss+gradient and Hessian-vector product against "
                                   "the dense numpy reference (a few seconds).")
    b.add_argument("--dataset", default=DEFAULT_DATASET,
                   help=f"'synthetic' (ML-100K shape), a MovieLens name or a ratings file; default {DEFAULT_DATASET}")
    b.add_argument("--rank", type=int, default=32)
    b.add_argument("--repeat", type=int, default=3, help="timed calls per computation (best is kept)")
    b.add_argument("--threads", type=int, default=None)
    b.set_defaults(func=cmd_bench)

    w = sub.add_parser("warmup", help="compile the kernels a fit needs (or load them from numba's cache)",
                       description="Compile, or load from numba's on-disk cache, the kernels of a fit so that "
                                   "later fits start at once: run it in a Docker image build, or before forking "
                                   "worker processes.  Prints the seconds per solver and dtype and how many kernel "
                                   "specialisations were compiled (0: all from the cache).")
    w.add_argument("--solver", action="append", choices=("newton", "als", "sgd", "gibbs", "all"), default=None,
                   help="solver to warm up (repeatable; default newton; 'all': every solver)")
    w.add_argument("--dtype", action="append", choices=("float32", "float64"), default=None,
                   help="dtype of the fits to come (repeatable; default float32)")
    w.add_argument("--threads", type=int, default=None, help="threads of the warm-up fits (default: all)")
    w.set_defaults(func=cmd_warmup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from .exceptions import NotFittedError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, KeyError, OSError, ImportError, ArithmeticError,
            NotFittedError) as exc:
        if args.traceback:
            raise
        print(f"{PROG}: error: {_strip_advice(_message(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: still one line unless --traceback
        if args.traceback:
            raise
        print(f"{PROG}: error: internal error ({type(exc).__name__}: {_message(exc)}); "
              "run with --traceback for details", file=sys.stderr)
        return 1


def console_main() -> None:
    """Entry point of the ``fastmf`` command and ``python -m fastmf``: :func:`main`, then exit at once.

    The interpreter's own teardown spends 0.2-0.3 s freeing numba's compiled code and LLVM
    state (measured after a warm ``fastmf fit``: 0.31 s from the last atexit handler to the end
    of the process, 0.02 s without it; a fifth of that command's wall time).  Once the command
    has finished, its files written and closed, this runs the ``atexit`` handlers, flushes the
    standard streams and leaves with :func:`os._exit`, skipping only that teardown.
    :func:`main` itself returns normally, for callers in Python.  An exception that escapes
    ``main`` (``--traceback``) takes the normal path.
    """
    try:
        status = main()
    except SystemExit as exc:  # argparse's usage errors and --help
        if exc.code is None:
            status = 0
        elif isinstance(exc.code, int):
            status = exc.code
        else:
            print(exc.code, file=sys.stderr)
            status = 1
    _exit_now(status)


def _exit_now(status: int) -> None:
    import atexit
    import os

    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing more to write
                pass
        os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    console_main()
