"""fastmf._io.atomic_open: temporary files never outlive a save, errors name the target (issue #15)."""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fastmf import _io
from fastmf._io import atomic_open, stale_temp_files, temp_name_pattern

IO_PY = Path(_io.__file__)
HOUR = 3600


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3), OSError("disk full")])
def test_any_error_removes_the_temporary_file_and_keeps_the_old_file(tmp_path, exc):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")
    with pytest.raises(type(exc)):
        with atomic_open(target) as fh:
            fh.write(b"half of the new")
            assert len(_temps(tmp_path)) == 1
            raise exc
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_temporary_names_are_tied_to_their_target(tmp_path):
    target = tmp_path / "a"
    with atomic_open(target) as fh:
        (name,) = _temps(tmp_path)
        fh.write(b"x")
    assert temp_name_pattern("a").fullmatch(name)
    # a temporary file of "a.npz" is not one of "a", nor the other way round
    assert not temp_name_pattern("a").fullmatch(".a.npz.fastmf-0123abcd.tmp")
    assert not temp_name_pattern("a.npz").fullmatch(".a.fastmf-0123abcd.tmp")
    assert not temp_name_pattern("a").fullmatch(".a.fastmf-0123abcd.tmp.bak")


def test_a_later_save_removes_stale_temporary_files_only(tmp_path):
    target = tmp_path / "model.npz"
    stale = tmp_path / ".model.npz.fastmf-0123abcd.tmp"
    fresh = tmp_path / ".model.npz.fastmf-89abcdef.tmp"  # another process saving right now
    other_target = tmp_path / ".other.npz.fastmf-0123abcd.tmp"
    user_file = tmp_path / ".model.npz.backup.tmp"
    for p in (stale, fresh, other_target, user_file):
        p.write_bytes(b"partial")
    for p in (stale, other_target, user_file):
        _age(p, 2 * HOUR)
    _age(fresh, 10 * 60)
    assert stale_temp_files(target) == [stale]
    with atomic_open(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new"
    assert not stale.exists()
    assert fresh.exists() and other_target.exists() and user_file.exists()


def test_errors_name_the_target(tmp_path, monkeypatch):
    target = tmp_path / "model.npz"
    with pytest.raises(FileNotFoundError, match=f"cannot write {tmp_path / 'missing' / 'm.npz'}: folder .* does not exist"):
        with atomic_open(tmp_path / "missing" / "m.npz"):
            pass
    with pytest.raises(IsADirectoryError, match=f"cannot write {tmp_path}: it is a folder"):
        with atomic_open(tmp_path):
            pass

    # a read-only folder: the temporary file cannot be created (simulated: the tests may run as root)
    real_open = os.open

    def denied(p, flags, mode=0o777, *a, **k):
        if str(p).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, flags, mode, *a, **k)

    monkeypatch.setattr(_io.os, "open", denied)
    with pytest.raises(PermissionError) as info:
        with atomic_open(target):
            pass
    msg = str(info.value)
    assert f"cannot write {target}" in msg and "Permission denied" in msg and ".tmp" not in msg
    monkeypatch.undo()

    # the rename fails (e.g. the target is on a read-only bind mount)
    def no_replace(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(src), str(dst))

    monkeypatch.setattr(_io.os, "replace", no_replace)
    with pytest.raises(OSError, match="cannot write .*model.npz: Read-only file system") as info:
        with atomic_open(target) as fh:
            fh.write(b"x")
    assert ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_real_read_only_folder_names_the_target(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=f"cannot write {folder / 'm.npz'}"):
            with atomic_open(folder / "m.npz"):
                pass
    finally:
        folder.chmod(0o700)


KILLED_WRITER = textwrap.dedent(
    """
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("fastmf_io", sys.argv[1])
    io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(io)
    with io.atomic_open(sys.argv[2]) as fh:
        fh.write(b"N" * 1_000_000)
        fh.flush()
        print("writing", flush=True)
        time.sleep(120)  # killed here
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_write_then_a_later_save_cleans_up(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old model")
    # the writer loads _io.py on its own (no numba import): quick to start
    with subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(IO_PY), str(target)],
                          stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline()
            assert line.strip() == "writing", line
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
    assert target.read_bytes() == b"old model"  # the old file survives
    (left,) = _temps(tmp_path)  # the killed save could not clean up
    left = tmp_path / left
    assert temp_name_pattern(target.name).fullmatch(left.name)
    assert left.stat().st_size == 1_000_000

    with atomic_open(target) as fh:  # less than an hour later: maybe still being written, kept
        fh.write(b"model 2")
    assert left.exists()

    _age(left, HOUR + 60)
    with atomic_open(target) as fh:
        fh.write(b"model 3")
    assert target.read_bytes() == b"model 3"
    assert _temps(tmp_path) == []


def test_module_runs_standalone():
    """The SIGKILL test loads _io.py without the package: keep it free of fastmf imports."""
    spec = importlib.util.spec_from_file_location("fastmf_io_standalone", IO_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.atomic_open is not None
