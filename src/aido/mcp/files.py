"""Files of a sandbox as an agent names them: ``outputs/report.json``, ``work/x.py``,
``inputs/data.csv``, the task's own /outputs, /work and /inputs.

Those trees are written by tasks, and a hostile task plants links in them (``outputs/p ->
/etc/shadow``), swaps directories for links, or leaves FIFOs. So nothing here is opened
by path: every component is opened relative to its parent's descriptor with O_NOFOLLOW,
the last one also with O_NONBLOCK, and only a regular file is read. A link is listed as a
link and never followed.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from aido.errors import UsageError

ROOTS = ("outputs", "work", "inputs")
MAX_PATH = 4096
MAX_LISTED = 1000

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafePath(UsageError):
    code = "unsafe_path"


def split_path(path: str) -> list[str]:
    """``outputs/a/b.txt`` as its components, refusing anything that could leave the tree."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH or "\0" in path or "\\" in path:
        raise UnsafePath(f"path {path!r}: expected a path like outputs/report.json")
    if path.startswith("/"):
        raise UnsafePath(
            f"path {path!r} is absolute",
            hint="give it relative to the sandbox, like outputs/report.json (the task's "
            "/outputs/report.json)",
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"path {path!r} contains '..': it must stay inside the sandbox")
    if not parts or parts[0] not in ROOTS:
        raise UnsafePath(f"path {path!r}: expected it to start with outputs/, work/ or inputs/")
    return parts


@dataclass(frozen=True)
class FileRead:
    data: bytes
    size: int  # the whole file's size
    offset: int


def read_file(root: Path, path: str, *, offset: int, limit: int) -> FileRead:
    """Up to ``limit`` bytes at ``offset`` of the regular file ``path`` under the sandbox
    directory ``root``, never through a link."""
    parts = split_path(path)
    fd = _open(root, parts, path)
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, limit, offset) if offset < size else b""
    finally:
        os.close(fd)
    return FileRead(data=data, size=size, offset=offset)


def _open(root: Path, parts: list[str], shown: str) -> int:
    fd = os.open(root, _DIR)
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                sub = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                raise _refusal(shown, "/".join(parts[: i + 1]), exc, _is_link(fd, part)) from None
            os.close(fd)
            fd = sub
        try:
            opened = os.open(parts[-1], _FILE, dir_fd=fd)
        except OSError as exc:
            raise _refusal(shown, shown, exc, _is_link(fd, parts[-1])) from None
    finally:
        os.close(fd)
    mode = os.fstat(opened).st_mode
    if not stat.S_ISREG(mode):
        os.close(opened)
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise UnsafePath(f"{shown} is {what}", hint="list the files with list_outputs")
    return opened


def _refusal(shown: str, where: str, exc: OSError, link: bool) -> UsageError:
    if exc.errno == errno.ELOOP or link:
        return UnsafePath(f"{where} is a symbolic link: links in a sandbox are never followed")
    if exc.errno == errno.ENOENT:
        return UsageError(f"{shown}: no such file in the sandbox", hint="list the files with list_outputs")
    if exc.errno == errno.ENOTDIR:
        return UnsafePath(f"{where} is not a directory")
    return UsageError(f"{shown}: cannot be read ({exc.strerror})")


def _is_link(dir_fd: int, name: str) -> bool:
    # O_DIRECTORY | O_NOFOLLOW on a link fails with ENOTDIR, not ELOOP: say what it is.
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class Entry:
    path: str  # outputs/a/b.txt
    kind: str  # file, dir, link, other
    size: int | None  # files only
    target: str | None = None  # links only: where it points (never followed)


def list_tree(root: Path, top: str = "outputs", *, limit: int = MAX_LISTED) -> tuple[list[Entry], bool]:
    """Every entry under ``top`` (one of ROOTS) of the sandbox directory ``root``, links
    listed and not followed; at most ``limit`` of them, and whether there were more."""
    found: list[Entry] = []
    try:
        start = os.open(top, _DIR, dir_fd=(base := os.open(root, _DIR)))
    except OSError:
        return [], False
    finally:
        os.close(base)
    stack: list[tuple[int, str]] = [(start, top)]
    more = False
    try:
        while stack:
            fd, prefix = stack.pop()
            try:
                names = sorted(os.listdir(fd))
                for name in names:
                    if len(found) >= limit:
                        more = True
                        break
                    found.append(_entry(fd, name, f"{prefix}/{name}", stack))
            finally:
                os.close(fd)
            if more:
                break
    finally:
        for fd, _ in stack:
            os.close(fd)
    return sorted(found, key=lambda e: e.path), more


def _entry(fd: int, name: str, path: str, stack: list[tuple[int, str]]) -> Entry:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return Entry(path, "other", None)
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=fd)
        except OSError:
            target = None
        return Entry(path, "link", None, target)
    if stat.S_ISDIR(st.st_mode):
        try:
            sub = os.open(name, _DIR, dir_fd=fd)
        except OSError:
            return Entry(path, "other", None)  # swapped for something else meanwhile
        stack.append((sub, path))
        return Entry(path, "dir", None)
    if stat.S_ISREG(st.st_mode):
        return Entry(path, "file", st.st_size)
    return Entry(path, "other", None)
