"""Stopping rules that stop (issue #14 item 2): the float32 loss-stall rule of Newton-CG, the
default validation patience (``early_stopping="auto"``) of the solver functions, the CLI's
validation set carved out of the training part, its compact table, and ``fastmf warmup``."""

from __future__ import annotations

import numpy as np
import pytest

from fastmf.data.synthetic import synthetic
from fastmf.data.splits import train_test_split
from fastmf.objective import MFObjective
from fastmf.solvers import Status, als, newton_cg, sgd
from fastmf.solvers._base import DEFAULT_PATIENCE, RunOptions
from fastmf.solvers.newton import FTOL_FLOAT32, FTOL_ITER_FLOAT32, STALL_GTOL


@pytest.fixture(scope="module")
def small():
    r = synthetic(300, 200, 6000, rank=4, noise=1.0, random_state=0, dtype=np.float32)
    train, val = train_test_split(r, 0.1, random_state=0)
    return r, train, val


def test_default_float32_newton_stops_on_stalled_loss(small):
    r, _, _ = small
    obj = MFObjective(r, 32, reg=0.1, dtype=np.float32, hessian="exact")  # the CLI's rank
    res = newton_cg(obj, random_state=0, progress=False, max_iter=300)
    assert res.status is Status.FTOL, res.message
    assert FTOL_FLOAT32 == 2e-4 and FTOL_ITER_FLOAT32 == 3
    assert "for 3 consecutive steps" in res.message and "ftol=0.0002" in res.message
    rel = [(a["loss"] - b["loss"]) / max(abs(a["loss"]), abs(b["loss"]), 1.0)
           for a, b in zip(res.history[:-1], res.history[1:])]
    assert all(d <= FTOL_FLOAT32 for d in rel[-3:])
    assert not all(d <= FTOL_FLOAT32 for d in rel[-4:-1])  # it stopped at the first such run of 3
    assert res.history[-1]["grad_norm"] <= STALL_GTOL * res.history[0]["grad_norm"]
    # the earlier rules (1e-5 for 3 steps; one step under 1e-7) run longer
    for ftol, ftol_iter in ((1e-5, 3), (1e-7, 1)):
        old = newton_cg(obj, random_state=0, progress=False, max_iter=300, ftol=ftol, ftol_iter=ftol_iter)
        assert old.nit > res.nit


def test_ftol_iter_is_validated(small):
    r, _, _ = small
    with pytest.raises(ValueError, match="ftol_iter"):
        newton_cg(MFObjective(r, 2), random_state=0, progress=False, ftol_iter=0)


def test_auto_early_stopping_resolves_to_the_default_patience(small):
    _, train, val = small
    assert RunOptions(max_iter=3, validation=val, early_stopping="auto").check().early_stopping == DEFAULT_PATIENCE
    assert RunOptions(max_iter=3, validation=None, early_stopping="auto").check().early_stopping is None
    with pytest.raises(ValueError, match="early_stopping"):
        RunOptions(max_iter=3, validation=val, early_stopping="sometimes").check()


@pytest.mark.parametrize("solver", ["newton", "als", "sgd"])
def test_validation_stall_stops_by_default(small, solver):
    """With a validation set and no early_stopping given, a stalled validation RMSE ends the
    run (the best iterate is returned); min_delta=1 makes every iteration a stall."""
    _, train, val = small
    if solver == "newton":
        res = newton_cg(MFObjective(train, 8, dtype=np.float32), random_state=0, progress=False, max_iter=100,
                        validation=val, min_delta=1.0, tol=0, ftol=0)
    elif solver == "als":
        res = als(train, 8, progress=False, max_iter=100, tol=0, validation=val, min_delta=1.0)
    else:
        res = sgd(train, 8, progress=False, max_iter=100, validation=val, min_delta=1.0)
    assert res.status is Status.EARLY_STOPPING, res.message
    assert res.nit == res.best_iteration + DEFAULT_PATIENCE
    assert "did not improve" in res.message


def test_early_stopping_none_only_records(small):
    _, train, val = small
    res = als(train, 8, progress=False, max_iter=8, tol=0, validation=val, min_delta=1.0, early_stopping=None)
    assert res.status is Status.MAX_ITER and res.nit == 8
    assert all(rec["val_rmse"] is not None for rec in res.history)


def test_estimator_eval_set_is_monitor_only(small):
    """The estimator cannot tell a validation set from a test set: its eval_set does not stop
    the fit unless early_stopping is given."""
    from fastmf import MatrixFactorization

    _, train, val = small
    m = MatrixFactorization(solver="newton", rank=32, max_iter=30, tol=0, progress=False, random_state=0,
                            solver_options={"ftol": 0})
    m.fit(train, eval_set=val)
    # It runs to max_iter or to float32 convergence (a radius too small to change x), never to a
    # validation stop.
    assert m.result_.status is not Status.EARLY_STOPPING, m.result_.message
    assert "did not improve" not in m.result_.message
    assert m.n_iter_ == 30 or "trust radius too small" in m.result_.message, m.result_.message
    val_rmse = [rec["val_rmse"] for rec in m.history_ if rec.get("accepted", True)]
    assert int(np.argmin(val_rmse)) < len(val_rmse) - DEFAULT_PATIENCE  # "auto" would have stopped it


# ---------------------------------------------------------------------------- CLI
def test_compact_rows():
    from fastmf.cli import compact_rows

    assert compact_rows(5) == [0, 1, 2, 3, 4]
    assert compact_rows(20) == list(range(20))
    for n in (21, 42, 78, 111, 1000):
        rows = compact_rows(n)
        assert len(rows) <= 20 and rows[0] == 0 and rows[-1] == n - 1
        assert rows == sorted(set(rows))


def test_history_table_max_rows_keeps_the_last():
    from fastmf.cli import history_table

    hist = [{"iteration": i, "loss": 1.0 / (i + 1), "elapsed": 0.1 * i, "val_rmse": None} for i in range(78)]
    hist.append({"iteration": "refit 1", "loss": 0.001, "elapsed": 8.0, "val_rmse": None})
    header, rows = history_table(hist, max_rows=20)
    assert len(rows) <= 20 and rows[-1][0] == "refit 1" and rows[0][0] == "0"


def _fit(capsys, *args):
    from fastmf.cli import main

    rc = main(["fit", "--no-progress", "--rank", "4", *args])
    out = capsys.readouterr().out
    assert rc == 0, out
    return out


def test_cli_fit_validation_is_carved_from_train(capsys, monkeypatch):
    """The validation set that stops the fit is disjoint from the reported test set (and the
    fit never sees the test ratings)."""
    from fastmf.model import MatrixFactorization

    seen = {}
    orig = MatrixFactorization.fit

    def spy(self, X, y=None, *, eval_set=None, warm_start=False):
        seen.setdefault("fits", []).append((X, eval_set, warm_start))
        return orig(self, X, y, eval_set=eval_set, warm_start=warm_start)

    monkeypatch.setattr(MatrixFactorization, "fit", spy)
    evals = []
    orig_eval = MatrixFactorization.evaluate

    def spy_eval(self, X, y=None, **kw):
        evals.append(X)
        return orig_eval(self, X, y, **kw)

    monkeypatch.setattr(MatrixFactorization, "evaluate", spy_eval)
    out = _fit(capsys, "--max-iter", "12")
    (fit_part, val, w0), (full, none, w1) = seen["fits"]
    test = evals[-1]
    assert not w0 and w1 and none is None and val is not None

    def pairs(r):
        return set(zip(r.user_ids[r.users].tolist(), r.item_ids[r.items].tolist()))

    t, v, f, a = pairs(test), pairs(val), pairs(fit_part), pairs(full)
    assert not (t & v) and not (t & f) and not (t & a) and not (v & f)
    assert v | f <= a  # (validation ratings of items or users absent from the fit part are dropped)
    assert "validation (early stopping, patience 5" in out and "test (not seen by the fit)" in out
    assert "refit:" in out and out.splitlines()[-1].startswith("summary:")


def test_cli_fit_table_is_compact_with_the_last_row(capsys):
    out = _fit(capsys, "--max-iter", "40", "--patience", "40", "--validation-size", "0.05")
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip().startswith("iter"))
    table = []
    for l in lines[start + 1:]:
        if not l.strip() or l.startswith("("):
            break
        table.append(l)
    assert len(table) <= 20
    assert table[-1].split()[:2] == ["refit", "5"]
    assert "--full-table shows all" in out
    summary = lines[-1]
    assert summary.startswith("summary:") and "test RMSE" in summary


def test_cli_fit_without_validation(capsys):
    out = _fit(capsys, "--max-iter", "5", "--validation-size", "0")
    assert "validation" not in out.split("iter")[0] and "refit:" not in out
    assert "val RMSE" not in out


def test_cli_warmup_runs(capsys):
    from fastmf.cli import main

    assert main(["warmup", "--solver", "als", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "als/float32:" in out and "warm-up done" in out


def test_warmup_function_reports():
    from fastmf._warmup import warmup

    rep = warmup("sgd", "float32", n_threads=1)
    assert set(rep) == {"sgd/float32"} and rep["sgd/float32"]["seconds"] > 0
    with pytest.raises(ValueError, match="unknown solver"):
        warmup("lbfgs")
