"""The command line, through subprocesses (``python -m fastmf ...``), and the README walk-through.

Every command of the README's "Getting started" section is listed in ``README_STEPS`` and run
here verbatim (with ``fastmf`` replaced by ``python -m fastmf``), in order, in a temporary
folder.  The Python example of the README is ``README_PYTHON`` below, run as a script.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pathlib import Path

from fastmf.cli import history_table, main

REPO_ROOT = Path(__file__).resolve().parents[1]

README_STEPS = [
    "fastmf info",
    "fastmf fit --rank 16 --max-iter 8 --save model.npz --plot curve.png",
    "fastmf predict model.npz 1 31 1029",
    "fastmf recommend model.npz 1 -n 10 --min-ratings 20",
    "fastmf info model.npz",
    "fastmf fit ratings.csv --solver als --rank 8 --max-iter 5 --test-size 0.2 --no-progress",
    "fastmf fit --solver sgd --rank 16 --max-iter 10 --no-progress --save sgd.npz",
    "fastmf fit --solver gibbs --rank 8 --max-iter 60 --no-progress --save gibbs.npz",
    "fastmf bench --repeat 2",
]

README_PYTHON = textwrap.dedent(
    """
    import numpy as np
    import fastmf

    ratings = fastmf.load_movielens("ml-latest-small")   # bundled, offline
    train, test = fastmf.train_test_split(ratings, test_size=0.1, random_state=0)

    model = fastmf.MatrixFactorization(rank=16, solver="newton", max_iter=10, random_state=0, progress=False)
    model.fit(train)
    print("test RMSE", round(model.evaluate(test)["rmse"], 4))

    print(model.predict(1, 31))                          # raw MovieLens ids
    items, scores = model.recommend(1, n=5, min_ratings=20)  # seen items excluded
    print([model.item_title(i) for i in items])
    print(model.similar_items(1, n=3)[0])                # cosine on item factors

    # a new user, folded in from a few ratings (no retraining)
    print(model.recommend_new_user([1, 260, 1196], [5.0, 4.5, 5.0], n=3)[0])

    model.save("model.npz")                              # atomic, versioned, validated on load
    same = fastmf.MatrixFactorization.load("model.npz")
    assert np.array_equal(same.predict([1, 2], [31, 50]), model.predict([1, 2], [31, 50]))

    from fastmf.plot import plot_history
    plot_history(model, path="history.png")
    print("ok")
    """
)


def run(args, cwd, check_rc: int | None = 0, timeout: float = 300, module: bool = True):
    """Run ``python -m fastmf ARGS`` (or the command ``args`` itself with ``module=False``)."""
    env = dict(os.environ, FASTMF_NO_DOWNLOAD="1", PYTHONWARNINGS="default")
    # the checkout under test, not whichever fastmf is installed
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "fastmf", *args] if module else args
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def fastmf_args(line: str) -> list[str]:
    parts = shlex.split(line)
    assert parts[0] == "fastmf"
    return parts[1:]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    # a small ratings file (string user ids, float ratings), as a user would bring
    rng = np.random.default_rng(0)
    rows = {(f"u{rng.integers(0, 60)}", int(rng.integers(1, 80))) for _ in range(1500)}
    with open(d / "ratings.csv", "w") as fh:
        fh.write("user,item,rating\n")
        for u, i in sorted(rows):
            fh.write(f"{u},{i},{rng.integers(1, 6)}\n")
    return d


@pytest.fixture(scope="module")
def readme_outputs(workdir):
    """Run every README step once, in order; later tests inspect the outputs."""
    out = {}
    for line in README_STEPS:
        out[line] = run(fastmf_args(line), workdir)
    return out


def test_readme_steps_run(readme_outputs, workdir):
    for line, proc in readme_outputs.items():
        assert proc.returncode == 0, line
    assert (workdir / "model.npz").is_file() and (workdir / "sgd.npz").is_file()
    assert (workdir / "curve.png").stat().st_size > 1000


def test_fit_gibbs_prints_noise_variance_and_saves_the_posterior_mean(readme_outputs, workdir):
    line = next(s for s in README_STEPS if "--solver gibbs" in s)
    out = readme_outputs[line].stdout
    header = next(l for l in out.splitlines() if l.strip().startswith("iter"))
    # gibbs does not early-stop: no validation part, and the test ratings are not given to the fit
    assert "sigma^2" in header and "val RMSE" not in header
    rows = [l for l in out.splitlines() if l.split() and l.split()[0].isdigit()]
    assert len(rows) <= 20 and rows[-1].split()[0] == str(50 + 60)  # compact: the last sweep shown
    assert f"({len(rows)} of 110 rows" in out
    rmse = float(next(l for l in out.splitlines() if l.startswith("test RMSE:")).split()[2])
    assert 0.5 < rmse < 1.1
    from fastmf.model import MatrixFactorization

    model = MatrixFactorization.load(workdir / "gibbs.npz")
    assert model.solver == "gibbs" and model.user_factors_.shape[1] == 8 * 60


def test_info_dataset(readme_outputs):
    out = readme_outputs["fastmf info"].stdout
    assert "ml-latest-small" in out and "100,836" in out and "610" in out


def test_fit_prints_table_rmse_and_time(readme_outputs):
    proc = readme_outputs[README_STEPS[1]]
    out = proc.stdout
    lines = out.splitlines()
    header = next(l for l in lines if l.strip().startswith("iter"))
    for col in ("loss", "grad norm", "val RMSE", "time (s)"):
        assert col in header
    start = lines.index(header)
    table = [l for l in lines[start + 1:] if l.strip()][:8]
    assert all(l.split()[0].isdigit() for l in table)
    rmse = float(next(l for l in lines if l.startswith("test RMSE:")).split()[2])
    assert 0.5 < rmse < 1.2
    assert any(l.startswith("fit time:") for l in lines)
    assert "saved model to model.npz" in out and "saved plot to curve.png" in out
    assert "newton-cg" in proc.stderr  # the progress bar (stderr)
    # warnings are one line each ("fastmf: warning: ..."), without a source location
    assert ".py:" not in proc.stderr and "Traceback" not in proc.stderr


def test_fit_other_solvers(readme_outputs):
    als = readme_outputs[README_STEPS[5]].stdout
    assert "data: Ratings('ratings.csv'" in als and "test RMSE:" in als and "solver:    als" in als
    sgd = readme_outputs[README_STEPS[6]]
    assert "learning rate" in sgd.stdout and "epoch" not in sgd.stderr.lower().replace("n_epochs", "")


def test_fit_spectral_start(workdir, readme_outputs, capsys, monkeypatch):
    """--init svd reaches the estimator: same seed, different start, so a different first loss."""
    monkeypatch.chdir(workdir)
    losses = {}
    for init in ("random", "svd"):
        assert main(["fit", "ratings.csv", "--rank", "4", "--max-iter", "1", "--no-progress", "--init", init]) == 0
        lines = capsys.readouterr().out.splitlines()
        header = next(i for i, l in enumerate(lines) if l.strip().startswith("iter"))
        losses[init] = lines[header + 1].split()[1]
    assert losses["random"] != losses["svd"]


def test_predict_and_recommend(readme_outputs, workdir):
    from fastmf.model import MatrixFactorization

    model = MatrixFactorization.load(workdir / "model.npz")
    lines = readme_outputs[README_STEPS[2]].stdout.splitlines()
    assert len(lines) == 2
    for line, item in zip(lines, (31, 1029)):
        u, i, p = line.split("\t")
        assert (u, i) == ("1", str(item))
        assert float(p) == pytest.approx(model.predict(1, item), abs=1e-4)
    rec = readme_outputs[README_STEPS[3]].stdout.splitlines()
    assert rec[0].startswith("top 10 for user 1") and rec[1].split()[:4] == ["rank", "item", "score", "title"]
    items, scores = model.recommend(1, n=10, min_ratings=20)
    for j, line in enumerate(rec[2:12]):
        parts = line.split(maxsplit=3)
        assert parts[0] == str(j + 1) and parts[1] == str(items[j])
        assert float(parts[2]) == pytest.approx(scores[j], abs=1e-4)
        assert parts[3] == model.item_title(items[j])
    info = readme_outputs["fastmf info model.npz"].stdout
    assert "rank" in info and "16" in info and "newton" in info


def test_bench(readme_outputs):
    out = readme_outputs["fastmf bench --repeat 2"].stdout
    assert "speed-up" in out and "loss + gradient" in out and "hessp" in out
    rel = float(out.split("relative difference")[1].split()[0])
    assert rel < 1e-10


def test_predict_unknown_ids_note(workdir, readme_outputs):
    proc = run(["predict", "model.npz", "999999", "31"], workdir)
    assert "note:" in proc.stderr and "unknown" in proc.stderr
    proc = run(["predict", "model.npz", "999999", "31", "--unknown", "raise"], workdir, check_rc=1)
    assert proc.stderr.strip() == "fastmf: error: model.npz: unknown user id 999999 (1 predictions with an unknown id)"


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "missing.npz", "1", "2"], "model file not found"),
        (["predict", "ratings.csv", "1", "2"], "not a fastmf model file"),
        (["predict", "model.npz", "abc", "31"], "is not an integer"),
        (["recommend", "model.npz", "1", "-n", "0"], "-n must be >= 1"),
        (["fit", "no-such-data"], "neither a MovieLens name"),
        (["fit", "--rank", "0"], "rank must be >= 1"),
        (["fit", "--test-size", "1.5"], "--test-size"),
        (["fit", "ratings.csv", "--save", "no/such/dir/m.npz"], "does not exist"),
        (["fit", "ratings.csv", "--init", "svd", "--rank", "3000"], "--init svd needs rank < min(n_users, n_items)"),
        (["info", "missing.csv"], "neither a MovieLens name"),
    ],
)
def test_errors_are_one_line(workdir, readme_outputs, args, message, capsys, monkeypatch):
    """In-process (fast): exit status 1 and a single 'fastmf: error:' line on stderr."""
    monkeypatch.chdir(workdir)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastmf: error: ") and message in err[0], err


def test_error_through_subprocess(workdir, readme_outputs):
    proc = run(["recommend", "nothing.npz", "1"], workdir, check_rc=1)
    assert proc.stderr == "fastmf: error: model file not found: nothing.npz\n"
    assert proc.stdout == ""


def test_unknown_user_recommend_is_non_personalised(workdir, readme_outputs, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(["recommend", "model.npz", "424242"]) == 0
    out = capsys.readouterr()
    assert "note:" in out.err and "top 10" in out.out


@pytest.mark.parametrize("sub", [[], ["fit"], ["predict"], ["recommend"], ["info"], ["bench"]])
def test_help_everywhere(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*sub, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: fastmf")


def test_usage_errors_exit_2(workdir, capsys):
    assert run([], workdir, check_rc=2).stderr == (
        "fastmf: error: the following arguments are required: COMMAND (see 'fastmf --help')\n")
    for argv, text in ((["fit", "--solver", "bfgs"], "invalid choice"), (["predict", "model.npz"], "required"),
                       (["fit", "--reg-weighting", "log"], "sqrt-count"),
                       (["fit", "--reg-weighting", "-1"], "exponent must be finite and >= 0")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and text in capsys.readouterr().err


def test_console_script(workdir):
    exe = shutil.which("fastmf")
    if exe is None:
        pytest.skip("the fastmf console script is not on PATH (package not installed)")
    proc = run([exe, "--version"], workdir, module=False)
    assert proc.stdout.startswith("fastmf ")


def test_readme_python_example(workdir):
    script = workdir / "example.py"
    script.write_text(README_PYTHON)
    proc = run([sys.executable, str(script)], workdir, module=False)
    assert proc.stdout.strip().endswith("ok")
    assert (workdir / "history.png").stat().st_size > 1000


README_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


#: Pages whose commands the walk-through also runs (the README shows the first steps and
#: links to these for the rest).
DOC_PAGES = [os.path.join(REPO_ROOT, "docs", name) for name in ("getting_started.md", "benchmarks.md")]


def readme_blocks(language: str, path: str = README_PATH) -> list[str]:
    """The fenced code blocks of README.md (or another Markdown page) in ``language``."""
    import re

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return [m.group(1) for m in re.finditer(r"```" + language + r"\n(.*?)```", text, flags=re.S)]


def test_readme_is_what_the_tests_run():
    """The commands of the README and of its command pages, and the README's Python example,
    are exactly what this file runs."""
    shown = []
    for block in [b for page in [README_PATH, *DOC_PAGES] for b in readme_blocks("bash", page)]:
        for line in block.splitlines():
            cmd = line.split("#")[0].strip()
            if cmd.startswith("fastmf "):
                shown.append(cmd)
            elif cmd == "fastmf":
                shown.append(cmd)
    for cmd in shown:
        if cmd == "fastmf fit":
            continue  # the main command; run (with its defaults) by test_main_command_defaults
        assert cmd in README_STEPS, f"README command not exercised by the tests: {cmd}"
    for step in README_STEPS:
        assert step in shown, f"README_STEPS has a command the README does not show: {step}"
    python_blocks = readme_blocks("python")
    assert README_PYTHON.strip() in [b.strip() for b in python_blocks]


def test_readme_other_python_blocks_run(workdir):
    """Every other Python block of the README runs as shown."""
    blocks = [b for b in readme_blocks("python") if b.strip() != README_PYTHON.strip()]
    assert blocks, "the README should show the scipy.optimize embedding"
    for n, block in enumerate(blocks):
        script = workdir / f"readme_block_{n}.py"
        script.write_text(block)
        run([sys.executable, str(script)], workdir, module=False)


def test_main_command_defaults(workdir):
    """``fastmf fit`` with no argument: the bundled data, offline, to a test RMSE."""
    proc = run(["fit", "--no-progress"], workdir)
    assert "test RMSE" in proc.stdout and "ml-latest-small" in proc.stdout


def test_history_table_columns():
    header, rows = history_table([
        {"iteration": 1, "loss": 2.0, "elapsed": 0.5, "val_rmse": None, "learning_rate": 0.1},
        {"iteration": 2, "loss": 1.5, "elapsed": 1.0, "val_rmse": None, "learning_rate": 0.1},
    ])
    assert header == ["iter", "loss", "learning rate", "time (s)"]
    assert rows[1] == ["2", "1.5", "0.1", "1.000"]


# ---------------------------------------------------------------------------- every error path (issue #15)

@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """Bad data files, a small good model and corrupt copies of it (no README run: fast)."""
    from fastmf import MatrixFactorization, load_ratings_file

    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    pairs = rng.choice(50 * 30, size=500, replace=False)
    with open(d / "good.csv", "w") as fh:
        fh.write("user,item,rating\n")
        for p in pairs:
            fh.write(f"{p // 30},{p % 30},{rng.integers(1, 6)}\n")
    (d / "text.csv").write_text("user,item,rating\n1,2,4\n1,3,five\n2,3,3\n")
    (d / "binary.dat").write_bytes(bytes(rng.integers(128, 256, 3000, dtype=np.uint8)))
    (d / "empty.csv").write_bytes(b"")
    (d / "nocolumn.csv").write_text("user,movie,score\n1,2,3\n2,3,4\n")
    (d / "ragged.csv").write_text("user,item,rating\n1,2,4\n1,3\n2,3,3\n")
    (d / "tiny.csv").write_text("user,item,rating\n1,2,4\n3,4,5\n")
    (d / "tiny2.csv").write_text("user,item,rating\n1,2,4\n3,4,5\n5,6,3\n7,8,2\n")
    with pytest.warns(Warning):
        model = MatrixFactorization(rank=2, solver="als", max_iter=2, progress=False,
                                    random_state=0).fit(load_ratings_file(d / "good.csv"))
    model.save(d / "model.npz")
    arrays = dict(np.load(d / "model.npz"))
    (d / "truncated.npz").write_bytes((d / "model.npz").read_bytes()[:2000])
    np.savez(d / "badjson.npz", **{**arrays, "params_json": np.array('{"rank": ')})
    np.savez(d / "badversion.npz", **{**arrays, "fastmf_format_version": np.array("x")})
    np.savez(d / "badmean.npz", **{**arrays, "global_mean": np.array([1.5, 2.0])})
    np.savez(d / "badshape.npz", **{**arrays, "user_factors": arrays["user_factors"][:5]})
    np.savez(d / "missing_field.npz", **{k: v for k, v in arrays.items() if k != "item_ids"})
    return d


# (argv, text that must be in the message besides the file name, or None)
ERROR_CASES = [
    (["fit", "text.csv"], "line 3, column 3 ('rating'): 'five' is not a number"),
    (["info", "text.csv"], "line 3, column 3"),
    (["fit", "binary.dat"], "not a text ratings file"),
    (["info", "binary.dat"], "not a text ratings file"),
    (["fit", "empty.csv"], "empty"),
    (["info", "empty.csv"], "empty"),
    (["fit", "missing.csv"], "neither a MovieLens name"),
    (["info", "missing.csv"], "neither a MovieLens name"),
    (["fit", "nocolumn.csv"], "--columns USER,ITEM,RATING"),
    (["fit", "nocolumn.csv", "--columns", "user,item,rating"], "not in the header"),
    (["fit", "ragged.csv"], "line 3: expected 3 columns, got 2"),
    (["fit", "tiny.csv", "--no-progress"], "--test-size 0 to fit on all ratings"),
    (["fit", "tiny2.csv", "--no-progress", "--test-size", "0.5"], "--test-size 0 to fit on all ratings"),
    (["predict", "missing.npz", "1", "2"], "not found"),
    (["predict", "text.csv", "1", "2"], "not a fastmf model file"),
    (["predict", "binary.dat", "1", "2"], "not a fastmf model file"),
    (["predict", "empty.csv", "1", "2"], "not a fastmf model file"),
    (["predict", "truncated.npz", "1", "2"], "not a fastmf model file"),
    (["predict", "badjson.npz", "1", "2"], "not a valid fastmf model file"),
    (["recommend", "badversion.npz", "1"], "model file"),
    (["info", "badmean.npz"], "not a valid fastmf model file"),
    (["recommend", "badshape.npz", "1"], "inconsistent model file"),
    (["predict", "missing_field.npz", "1", "2"], "missing ['item_ids']"),
    (["predict", "model.npz", "999", "2", "--unknown", "raise"], "unknown user id 999"),
    (["predict", "model.npz", "1", "9999", "--unknown", "raise"], "unknown item id 9999"),
    (["predict", "model.npz", "one", "2"], "user id 'one' is not an integer"),
    (["recommend", "model.npz", "1.5"], "user id '1.5' is not an integer"),
    (["fit", "good.csv", "--save", "nowhere/m.npz"], "does not exist"),
    (["fit", "good.csv", "--init", "svd", "--rank", "3000", "--no-progress"], "--init svd needs rank"),
]
# bad numbers: usage errors (status 2), one line too; no file involved
USAGE_CASES = [
    (["fit", "good.csv", "--rank", "abc"], "argument --rank: invalid int value: 'abc'"),
    (["fit", "good.csv", "--reg", "1e"], "argument --reg: invalid float value"),
    (["recommend", "model.npz", "1", "-n", "ten"], "argument -n: invalid int value"),
    (["fit", "good.csv", "--columns", "a,b"], "3 or 4 comma-separated column names"),
    (["fit", "--solver", "bfgs"], "invalid choice"),
]
BAD_NUMBER_CASES = [
    (["fit", "good.csv", "--rank", "0"], "rank must be >= 1"),
    (["fit", "good.csv", "--reg", "-1"], "reg must be >= 0"),
    (["fit", "good.csv", "--reg", "nan"], "reg must be finite"),
    (["fit", "good.csv", "--test-size", "1.5"], "--test-size"),
    (["fit", "good.csv", "--threads", "0"], "--threads must be"),
    (["recommend", "model.npz", "1", "-n", "-3"], "-n must be >= 1"),
]


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fastmf: error: "), lines[0]
    assert "Traceback" not in captured.err and "pass drop_unknown" not in captured.err
    assert not re.search(r"[a-z_]=", lines[0]), f"names a Python argument, not a CLI option: {lines[0]}"
    return lines[0]


@pytest.mark.parametrize("args, text", ERROR_CASES, ids=[" ".join(a) for a, _ in ERROR_CASES])
def test_every_error_names_the_file(bad_inputs, args, text, capsys, monkeypatch):
    monkeypatch.chdir(bad_inputs)
    assert main(args) == 1
    line = _one_error_line(capsys)
    file_arg = "nowhere/m.npz" if "--save" in args else args[1]
    assert file_arg in line, line
    assert text in line, line


@pytest.mark.parametrize("args, text", USAGE_CASES, ids=[" ".join(a) for a, _ in USAGE_CASES])
def test_usage_errors_are_one_line(bad_inputs, args, text, capsys, monkeypatch):
    monkeypatch.chdir(bad_inputs)
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    line = _one_error_line(capsys)
    assert text in line and "--help" in line, line


@pytest.mark.parametrize("args, text", BAD_NUMBER_CASES, ids=[" ".join(a) for a, _ in BAD_NUMBER_CASES])
def test_bad_numbers_are_one_line(bad_inputs, args, text, capsys, monkeypatch):
    monkeypatch.chdir(bad_inputs)
    assert main(args) == 1
    assert text in _one_error_line(capsys)


def test_internal_errors_are_one_line_unless_traceback(bad_inputs, capsys, monkeypatch):
    import fastmf.cli as cli

    def broken(args):
        raise RuntimeError("something unexpected")

    monkeypatch.chdir(bad_inputs)
    monkeypatch.setattr(cli, "cmd_info", broken)
    assert main(["info", "good.csv"]) == 1
    line = _one_error_line(capsys)
    assert "RuntimeError: something unexpected" in line and "--traceback" in line
    with pytest.raises(RuntimeError):
        main(["--traceback", "info", "good.csv"])


def test_corrupt_model_through_subprocess(bad_inputs):
    """The real entry point: one stderr line, status 1; ``--traceback`` shows the traceback."""
    proc = run(["predict", "badjson.npz", "1", "2"], bad_inputs, check_rc=1, timeout=120)
    assert proc.stderr.startswith("fastmf: error: badjson.npz: not a valid fastmf model file")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    proc = run(["--traceback", "predict", "badjson.npz", "1", "2"], bad_inputs, check_rc=1, timeout=120)
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize("argv, status, out, err", [
    (["--help"], 0, "usage:", ""),
    (["info", "missing.csv"], 1, "", "neither a MovieLens name"),
    (["fit", "good.csv", "--rank", "abc"], 2, "", "invalid int value"),
])
def test_console_main_exits_at_once_with_status_output_and_atexit(tmp_path, argv, status, out, err):
    """``console_main`` (the ``fastmf`` command, ``python -m fastmf``) leaves with ``os._exit``
    after the command: the status, everything printed, and other atexit handlers all survive."""
    code = textwrap.dedent(f"""
        import atexit, sys
        atexit.register(lambda: print("other atexit handler ran", flush=True))
        from fastmf.cli import console_main
        sys.argv = ["fastmf", *{argv!r}]
        console_main()
        print("not reached")
    """)
    env = dict(os.environ, FASTMF_NO_DOWNLOAD="1")
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == status, proc.stderr
    assert out in proc.stdout and err in proc.stderr
    assert proc.stdout.rstrip().endswith("other atexit handler ran")
    assert "not reached" not in proc.stdout
