"""File operations on paths that hostile code may have prepared.

Metadata and evidence are written atomically (a temporary file, fsync, rename),
and every file aido creates is opened with O_NOFOLLOW | O_EXCL, so a symlink
planted at that name can never redirect the write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aido.values import dataclass

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


# Directories held open at once while removing a tree (two descriptors each: the
# directory and its listing); a directory deeper than that is first moved up.
REMOVE_OPEN_DEPTH = 64
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_EMPTY_PASSES = 8  # how often a directory is listed again when something reappears in it


@dataclass
class Removed:
    """What a removal deleted: entries (files, directories, links...) and the bytes
    freed on disk (``st_blocks * 512`` of each directory and of each file's last link)."""

    entries: int = 0
    bytes: int = 0


def remove_tree(path: Path) -> Removed:
    """Delete a file, link or tree that a task wrote to, never following a link out of it.

    The walk is iterative and descriptor-based (every name is looked up relative to its
    directory's descriptor with O_NOFOLLOW, never as a path, so PATH_MAX does not apply),
    holds at most ``REMOVE_OPEN_DEPTH`` directories open, and moves a directory deeper
    than that up to the top of the tree (one rename) to delete it from there: any depth,
    any number of entries, in bounded memory and descriptors. Directories the task made
    unreadable or unwritable (mode 000, 0500...) are opened up as it goes.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Removed()
    if not stat.S_ISDIR(st.st_mode):
        path.unlink()
        return Removed(1, st.st_blocks * 512 if st.st_nlink <= 1 else 0)
    parent = os.open(path.parent, _DIR_OPEN)  # the caller's directory, not the task's
    try:
        top = _open_dir(parent, path.name)
        try:
            removed = _empty(top)
        finally:
            os.close(top)
        os.rmdir(path.name, dir_fd=parent)
    finally:
        os.close(parent)
    removed.entries += 1
    removed.bytes += st.st_blocks * 512
    return removed


def empty_tree(path: Path) -> Removed:
    """Delete everything inside the directory ``path`` (which stays) as remove_tree does;
    a missing directory is empty. ``path`` itself must not be a link."""
    try:
        top = os.open(path, _DIR_OPEN)
    except FileNotFoundError:
        return Removed()
    try:
        _writable(top)
        return _empty(top)
    finally:
        os.close(top)


def _chmod_at(dir_fd: int, name: str, mode: int) -> None:
    """chmod the directory ``name`` in dir_fd without following a link: Linux has no
    lchmod, so it is pinned with an O_PATH descriptor and changed through /proc."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def _writable(dir_fd: int) -> None:
    """Give the owner rwx on an open directory (entries can only be listed and unlinked
    with them); root needs no bits, and a directory of someone else stays as it is."""
    if stat.S_IMODE(os.fstat(dir_fd).st_mode) & 0o700 != 0o700:
        with contextlib.suppress(OSError):
            os.fchmod(dir_fd, 0o700)


def _open_dir(dir_fd: int, name: str) -> int:
    """Open the directory ``name`` in dir_fd (never through a link) for removal."""
    try:
        fd = os.open(name, _DIR_OPEN, dir_fd=dir_fd)
    except PermissionError:  # mode 000 (or no r): open it up, then open it
        _chmod_at(dir_fd, name, 0o700)
        fd = os.open(name, _DIR_OPEN, dir_fd=dir_fd)
    try:
        _writable(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class _Level:
    fd: int
    name: str  # in the level above; "" for the top
    listing: Iterator[os.DirEntry[str]]
    seen: bool = False  # whether this listing returned anything
    passes: int = 1  # listings of this directory so far (of one below the top)

    def close(self) -> None:
        close = getattr(self.listing, "close", None)
        if close is not None:
            close()
        if self.name:
            os.close(self.fd)


def _empty(top: int) -> Removed:
    """Delete everything below the open directory ``top``."""
    removed = Removed()
    moved = 0
    levels = [_Level(top, "", os.scandir(top))]
    try:
        while levels:
            level = levels[-1]
            entry = next(level.listing, None)
            if entry is None:
                level.close()
                if level.seen and not level.name:
                    # The top again, until a listing finds it empty: directories moved up
                    # into it may not have been listed (each pass deletes what it finds).
                    level.listing, level.seen = os.scandir(level.fd), False
                    continue
                levels.pop()
                if not level.name:
                    continue
                try:
                    os.rmdir(level.name, dir_fd=levels[-1].fd)
                except OSError as exc:
                    if exc.errno != errno.ENOTEMPTY or level.passes >= _EMPTY_PASSES:
                        raise
                    fd = _open_dir(levels[-1].fd, level.name)  # something new: list it again
                    levels.append(_Level(fd, level.name, os.scandir(fd), passes=level.passes + 1))
                continue
            level.seen = True
            name = entry.name
            try:
                st = os.stat(name, dir_fd=level.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                try:
                    os.unlink(name, dir_fd=level.fd)
                except FileNotFoundError:
                    continue
                except IsADirectoryError:  # swapped for a directory: the next pass sees it
                    continue
                removed.entries += 1
                removed.bytes += st.st_blocks * 512 if st.st_nlink <= 1 else 0
                continue
            removed.entries += 1
            removed.bytes += st.st_blocks * 512
            if len(levels) < REMOVE_OPEN_DEPTH:
                fd = _open_dir(level.fd, name)
                try:
                    levels.append(_Level(fd, name, os.scandir(fd)))
                except BaseException:
                    os.close(fd)
                    raise
                continue
            # Too deep to hold open: move it up to the top (same filesystem), where a
            # later listing of the top finds it. Counted once, when it is deleted there.
            removed.entries -= 1
            removed.bytes -= st.st_blocks * 512
            moved = _move_up(levels, level.fd, name, moved)
    finally:
        for level in levels:
            level.close()
    return removed


def _move_up(levels: list[_Level], dir_fd: int, name: str, moved: int) -> int:
    """Rename directory ``name`` of dir_fd to a fresh name in the shallowest level that
    takes it (a mount boundary refuses with EXDEV); returns the counter of names used."""
    error: OSError | None = None
    for level in levels[:-1]:
        while True:
            moved += 1
            fresh = f".aido-deep-{moved}"
            try:
                os.stat(fresh, dir_fd=level.fd, follow_symlinks=False)
            except FileNotFoundError:
                break
        try:
            try:
                os.rename(name, fresh, src_dir_fd=dir_fd, dst_dir_fd=level.fd)
            except PermissionError:  # moving a directory rewrites its "..": it needs w
                _chmod_at(dir_fd, name, 0o700)
                os.rename(name, fresh, src_dir_fd=dir_fd, dst_dir_fd=level.fd)
            level.seen = True  # so that it is listed again
            return moved
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            error = exc
    raise error or OSError(errno.EXDEV, os.strerror(errno.EXDEV), name)
