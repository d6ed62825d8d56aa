"""File operations on paths that hostile code may have prepared.

Metadata and evidence are written atomically (a temporary file, fsync, rename),
and every file aido creates is opened with O_NOFOLLOW | O_EXCL, so a symlink
planted at that name can never redirect the write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _temp_token() -> str:
    # os.urandom, not `secrets`: importing that module costs ~6 ms on every aido start.
    return os.urandom(4).hex()


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{_temp_token()}.tmp")
    fd = os.open(tmp, _CREATE, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_json(path: Path, data: Any, *, mode: int = 0o644) -> None:
    atomic_write_bytes(
        path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode=mode
    )


def create_new(path: Path, *, mode: int = 0o644) -> int:
    """A new file that must not exist yet (not even as a dangling symlink)."""
    return os.open(path, _CREATE, mode)


def write_new(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write a whole file that must not exist yet (O_EXCL | O_NOFOLLOW), then set its mode."""
    fd = create_new(path, mode=0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        os.fchmod(handle.fileno(), mode)


def append_line(path: Path, line: str) -> None:
    """Append one whole line with one write(2) on an O_APPEND descriptor, so
    concurrent writers never interleave inside a line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the block (flock on a lock file)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def hold_lock(path: Path, *, wait: bool = True) -> int | None:
    """Take an exclusive flock on a directory (or existing file) and return the descriptor
    that holds it; None when ``wait`` is false and someone else holds it. The lock lasts
    until the descriptor is closed, or the process dies, whichever comes first: a lock
    nobody holds means its owner is gone (even across a machine restart)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_locked(path: Path) -> bool:
    """Whether a live process holds ``hold_lock`` on path (False if it does not exist)."""
    try:
        fd = hold_lock(path, wait=False)
    except OSError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def read_json(path: Path) -> Any:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return json.loads(handle.read())


def remove_tree(path: Path) -> None:
    """Delete a tree that a task wrote to, never following a link out of it.

    shutil.rmtree uses the fd-based walk on Linux (``rmtree.avoids_symlink_attacks``);
    directories the task made unreadable (mode 000) are opened up and retried.
    """
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return

    def fix_and_retry(func: Any, name: str, exc_info: Any) -> None:
        # Open up the directory (and its parent) the task locked, then retry.
        for target in (os.path.dirname(name), name):
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.lstat(target).st_mode):
                    os.chmod(target, 0o700)
        if func in (os.rmdir, os.unlink):
            func(name)
        elif func in (os.open, os.scandir, os.lstat):
            _rmtree(name)
        else:
            raise exc_info[1] if isinstance(exc_info, tuple) else exc_info

    def _rmtree(target: str | Path) -> None:
        if sys.version_info >= (3, 12):
            shutil.rmtree(target, onexc=lambda f, n, e: fix_and_retry(f, n, (type(e), e, None)))
        else:
            shutil.rmtree(target, onerror=fix_and_retry)

    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - every Linux has it
        raise RuntimeError("refusing to delete a sandbox tree without a symlink-safe rmtree")
    _rmtree(path)
