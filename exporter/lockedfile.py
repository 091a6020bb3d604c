"""Files several programs edit: changes under an exclusive lock, written whole and renamed into place.

A reader never sees half a file, and two concurrent edits never lose one another: each takes the lock
(``<file>.lock``, never deleted, so every editor locks the same inode), reads, and writes a temporary file
in the same folder that replaces the old one by a rename. The new file keeps the old one's mode and owner,
so the service that reads it still can.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_TIMEOUT = 30.0  # seconds to wait for another edit to finish before giving up


class EditError(Exception):
    """The file cannot be locked or written; str() says which file and why."""


@contextlib.contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Holds the exclusive lock of `path` (its sibling ``<name>.lock``) for the `with` block."""
    lock_path = path.with_name(path.name + ".lock")
    if not path.parent.is_dir():
        raise EditError(f"the folder of {path.name}, {path.parent}, does not exist")
    try:
        handle = open(lock_path, "a+b")  # noqa: SIM115 - closed by the with below
    except OSError as err:
        raise EditError(f"cannot open the lock file {lock_path}: {err.strerror or err}") from None
    with handle:
        deadline = time.monotonic() + timeout
        while not _try_lock(handle):
            if time.monotonic() > deadline:
                raise EditError(f"another process has held {lock_path} for over {timeout:g}s; try again")
            time.sleep(0.01)
        try:
            yield
        finally:
            _unlock(handle)


def replace(path: Path, text: str, new_mode: int = 0o644) -> None:
    """Writes `text` to `path` through a synced temporary file and a rename; `new_mode` for a new file."""
    folder = path.parent
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise EditError(f"cannot write in {folder}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        _take_mode_and_owner(path, temp, new_mode)
        _rename(temp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise EditError(f"cannot write {path}: {err.strerror or err}") from None
    _sync_folder(folder)


def _try_lock(handle: Any) -> bool:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(handle: Any) -> None:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _take_mode_and_owner(old: Path, new: str, new_mode: int) -> None:
    try:
        info = os.stat(old)
    except FileNotFoundError:
        os.chmod(new, new_mode)
        return
    os.chmod(new, stat.S_IMODE(info.st_mode))
    if hasattr(os, "chown"):
        with contextlib.suppress(PermissionError):
            os.chown(new, info.st_uid, info.st_gid)


def _rename(temp: str, path: Path) -> None:
    # On Windows a file another process has open cannot be replaced for a moment: retry briefly.
    for attempt in range(50):
        try:
            os.replace(temp, path)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 49:
                raise
            time.sleep(0.05)


def _sync_folder(folder: Path) -> None:
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
