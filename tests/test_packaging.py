"""The wheel: it carries every fastmf module and the bundled ml-latest-small, nothing else.

Builds the wheel once (``pip wheel --no-deps --no-build-isolation``, a few seconds;
needs ``setuptools>=70.1`` from the dev extras) from a copy of the repository's
tracked files, then checks its file list and, unpacked outside the repository,
that :func:`fastmf.data.movielens.bundled_data_dir` finds the data inside the
package through :mod:`importlib.resources`.  ``.ci/run`` additionally installs the
wheel in a fresh venv and runs ``fastmf fit`` offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DATA = {
    "fastmf/_bundled/README.md": "README.md",
    "fastmf/_bundled/ml-latest-small/README.txt": "ml-latest-small/README.txt",
    "fastmf/_bundled/ml-latest-small/ratings.csv": "ml-latest-small/ratings.csv",
    "fastmf/_bundled/ml-latest-small/movies.csv": "ml-latest-small/movies.csv",
}
MAX_WHEEL_BYTES = 1_500_000  # ~1.0 MB today: 0.2 MB of code, the rest the compressed CSVs


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"test_packaging needs the git checkout of the repository ({exc})")
    return [f for f in out.decode().split("\0") if f]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    import setuptools

    major_minor = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
    if major_minor < (70, 1):
        pytest.fail(f"setuptools {setuptools.__version__} cannot build a wheel without the 'wheel' package; "
                    "install the dev extras (pip install -e '.[dev]', setuptools>=70.1)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in _tracked_files():
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           str(src), "-w", str(tmp / "dist")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list((tmp / "dist").glob("fastmf-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        data = {n: zf.read(n) for n in SHIPPED_DATA}
    code = {n for n in names if not n.startswith(("fastmf-", "fastmf/_bundled/"))}
    tracked_code = {f for f in _tracked_files() if f.startswith("fastmf/")}
    assert code == tracked_code  # every module of every subpackage, nothing else (no tests, bench, data/)
    assert {n for n in names if n.startswith("fastmf/_bundled/")} == set(SHIPPED_DATA)
    for name, rel in SHIPPED_DATA.items():
        assert data[name] == (REPO / "data" / rel).read_bytes(), name  # the repository's data/, unchanged
    assert not any("links.csv" in n or "tags.csv" in n for n in names)
    size = wheel.stat().st_size
    assert 700_000 < size < MAX_WHEEL_BYTES, size


def test_unpacked_wheel_finds_its_bundled_data(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    run = tmp_path / "run"  # outside the repository: no data/ on any relative path
    run.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("FASTMF_DATA", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), FASTMF_CACHE=str(tmp_path / "cache"), FASTMF_NO_DOWNLOAD="1",
               FASTMF_MOVIELENS_URL="http://127.0.0.1:9/")
    code = """
import json, importlib.resources, fastmf
from fastmf.data.movielens import bundled_data_dir, load_movielens
r = load_movielens("ml-latest-small")
print(json.dumps({"module": fastmf.__file__, "bundled": str(bundled_data_dir()),
                  "resources": str(importlib.resources.files("fastmf._bundled")),
                  "nnz": r.nnz, "titles": len(r.item_titles)}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=run, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["module"]) == site / "fastmf" / "__init__.py"
    assert Path(got["bundled"]) == site / "fastmf" / "_bundled"
    assert str(site / "fastmf" / "_bundled") in got["resources"]
    assert got["nnz"] == 100_836 and got["titles"] == 9_742
    assert not (tmp_path / "cache").exists()

