"""Atomic file writes.

:func:`atomic_open` writes to a temporary file in the destination's folder and,
only once everything has been written, flushed and ``fsync``-ed, moves it over the
destination with :func:`os.replace` (atomic on POSIX and Windows when both paths
are on the same file system, which a sibling temporary file guarantees).  A crash
or an exception at any point before the rename leaves the destination untouched
(an older file there stays readable) and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_open"]


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
        Write the whole content to it.  If the ``with`` block raises, the
        temporary file is deleted, ``path`` is left as it was and the exception
        propagates.

    Raises
    ------
    FileNotFoundError
        The destination folder does not exist.
    IsADirectoryError
        ``path`` is an existing folder.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a normal open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(folder)
