"""Atomic file writes.

:func:`atomic_open` writes to a temporary file in the destination's folder and,
only once everything has been written, flushed and ``fsync``-ed, moves it over the
destination with :func:`os.replace` (atomic on POSIX and Windows when both paths
are on the same file system, which a sibling temporary file guarantees).  An
exception at any point before the rename (``KeyboardInterrupt`` included) leaves
the destination untouched (an older file there stays readable) and removes the
temporary file.

A process killed outright (SIGKILL, power loss) cannot remove its temporary file.
Temporary files are therefore named after their target,
``.<target name>.fastmf-<8 hex digits>.tmp``, and every later write to the same
target removes such files older than :data:`STALE_AFTER` seconds (one hour: a
save still running in another process is never disturbed).

Errors name the destination, not the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import IO, Iterator

__all__ = ["STALE_AFTER", "atomic_open", "stale_temp_files", "temp_name_pattern"]

#: Age in seconds after which a leftover temporary file of a target counts as abandoned.
STALE_AFTER = 3600.0

_TAG = "fastmf"


def temp_name_pattern(target_name: str) -> re.Pattern:
    """Regular expression matching the temporary file names of ``target_name`` (and no other target's)."""
    return re.compile(rf"\.{re.escape(target_name)}\.{_TAG}-[0-9a-f]{{8}}\.tmp")


def stale_temp_files(path: str | os.PathLike, older_than: float = STALE_AFTER) -> list[Path]:
    """Temporary files of ``path`` left by crashed writes, last modified ``older_than`` seconds ago or more."""
    path = Path(path)
    folder = path.parent
    pattern = temp_name_pattern(path.name)
    now = time.time()
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                found.append(Path(entry.path))
        except OSError:
            continue
    return found


def _remove_stale(path: Path) -> None:
    """Best effort: delete the abandoned temporary files of ``path``."""
    for tmp in stale_temp_files(path):
        with contextlib.suppress(OSError):
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    """Best-effort fsync of a folder so the rename itself is durable (POSIX only)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _target_error(exc: OSError, path: Path) -> OSError:
    """The same kind of OSError, worded about ``path`` (the temporary file is an implementation detail)."""
    reason = exc.strerror or str(exc)
    new = type(exc)(exc.errno, f"cannot write {path}: {reason}") if exc.errno else type(exc)(
        f"cannot write {path}: {reason}"
    )
    return new


def _create_temp(path: Path, folder: Path) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{path.name}.{_TAG}-{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot write {path}: no free temporary file name in {folder}")  # pragma: no cover


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it to ``path`` on success.

    Parameters
    ----------
    path : path
        Destination.  Its folder must exist.
    mode : {"wb", "w"}
        Binary or text mode.

    Yields
    ------
    file object
        Write the whole content to it.  If the ``with`` block raises (any
        exception, ``KeyboardInterrupt`` included), the temporary file is
        deleted, ``path`` is left as it was and the exception propagates.

    Raises
    ------
    FileNotFoundError
        The destination folder does not exist.
    IsADirectoryError
        ``path`` is an existing folder.
    PermissionError, OSError
        The folder is not writable, the disk is full...; the message names ``path``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    _remove_stale(path)
    try:
        fd, tmp = _create_temp(path, folder)
    except OSError as exc:
        raise _target_error(exc, path) from None
    try:
        try:
            fh = os.fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        with fh:
            try:
                yield fh
            except OSError as exc:
                # an error of the temporary file itself (e.g. disk full) is reported on the target
                if exc.filename is not None and Path(exc.filename) == tmp:
                    raise _target_error(exc, path) from exc
                raise
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                raise _target_error(exc, path) from exc
        try:
            # the file was created 0600; give it the permissions a normal open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except OSError as exc:
            raise _target_error(exc, path) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)
