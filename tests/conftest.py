"""Shared fixtures.

The real MovieLens files live outside the repo, in ``../shared/data`` by default;
set ``FASTMF_TEST_DATA`` to point elsewhere.  Tests that need them use the
``shared_data`` fixture: it skips when the folder is missing on a developer's
machine, and *fails* under ``CI=true`` (CI must never pass by skipping).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data_dir() -> Path:
    return Path(os.environ.get("FASTMF_TEST_DATA", str(DEFAULT_SHARED_DATA)))


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"test data not found at {path} (set FASTMF_TEST_DATA to the shared data folder)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + " -- under CI this is an error, not a skip")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder holding ml-100k.zip, ml-latest-small.zip and format-samples/."""
    return _require(shared_data_dir())


@pytest.fixture(scope="session")
def ml100k_zip(shared_data) -> Path:
    return _require(shared_data / "ml-100k.zip")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
