"""Files in a sandbox's trees (outputs/, work/, inputs/), read, listed and written without
ever following a link: the one place the API (get_file, put_file) and the MCP tools
(read_file, run_file, list_outputs) reach into what a task left behind.

Those trees are written by tasks, and a hostile task plants links in them (``outputs/p ->
/etc/shadow``), swaps directories for links, or leaves FIFOs. So nothing here is opened
by path: every component is opened relative to its parent's descriptor with O_NOFOLLOW,
the last one also with O_NONBLOCK, and only a regular file is read. A link is listed as a
link and never followed; a path with ``..``, an absolute path, a backslash or a NUL is
refused before anything is opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from aido.errors import FileNotInSandbox, UsageError
from aido.values import dataclass

ROOTS = ("outputs", "work", "inputs")
MAX_PATH = 4096
MAX_LISTED = 1000
LIST_HINT = "list the files with list_outputs"

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafePath(UsageError):
    """A path that could leave the tree it names a file in."""

    code = "unsafe_path"


def split_path(
    path: str | os.PathLike[str],
    within: str = "the sandbox",
    *,
    example: str = "outputs/report.json",
    roots: tuple[str, ...] = (),
) -> list[str]:
    """The components of ``path``, relative to ``within`` (named in messages: "outputs/",
    "the sandbox"); UnsafePath for anything that could leave it. With ``roots`` the first
    component must be one of them (``outputs/a.txt`` relative to the sandbox)."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_PATH or "\0" in text or "\\" in text:
        raise UnsafePath(f"path {text!r}: expected a relative path like {example}")
    if text.startswith("/"):
        raise UnsafePath(f"path {text!r} is absolute", hint=f"give it relative to {within}, like {example}")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"path {text!r} contains '..': it leaves {within}")
    if roots and (not parts or parts[0] not in roots):
        named = ", ".join(f"{r}/" for r in roots[:-1])
        raise UnsafePath(f"path {text!r}: expected it to start with {named} or {roots[-1]}/")
    if not parts:
        raise UnsafePath(f"path {text!r} names {within} itself, not a file")
    return parts


class _Blocked(Exception):
    """A component of a path could not be opened: ``reason`` says why in words."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing


@contextlib.contextmanager
def _parent(root: Path, parts: list[str], *, create: bool = False) -> Iterator[int]:
    """The descriptor of the directory holding parts[-1], reached without following any
    link; ``create`` makes missing directories (0o755)."""
    try:
        fd = os.open(root, _DIR)
    except OSError as exc:
        raise _blocked(root.name, exc, False) from None
    try:
        for i, name in enumerate(parts[:-1]):
            try:
                try:
                    sub = os.open(name, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                    sub = os.open(name, _DIR, dir_fd=fd)
            except OSError as exc:
                raise _blocked("/".join(parts[: i + 1]), exc, _is_link(fd, name)) from None
            os.close(fd)
            fd = sub
        yield fd
    finally:
        os.close(fd)


def _blocked(where: str, exc: OSError, link: bool) -> _Blocked:
    if exc.errno == errno.ELOOP or link:
        return _Blocked(f"{where} is a symbolic link (links in a sandbox are never followed)")
    if exc.errno == errno.ENOENT:
        return _Blocked("no such file in the sandbox", missing=True)
    if exc.errno == errno.ENOTDIR:
        return _Blocked(f"{where} is not a directory")
    return _Blocked(f"{where} cannot be opened ({exc.strerror or exc})")


def _is_link(dir_fd: int, name: str) -> bool:
    # O_DIRECTORY | O_NOFOLLOW on a link fails with ENOTDIR, not ELOOP: say what it is.
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_regular(root: Path, parts: list[str]) -> int:
    """A read descriptor of the regular file root/parts; FileNotInSandbox for anything else."""
    shown = "/".join(parts)
    try:
        with _parent(root, parts) as fd:
            try:
                opened = os.open(parts[-1], _FILE, dir_fd=fd)
            except OSError as exc:
                raise _blocked(shown, exc, _is_link(fd, parts[-1])) from None
    except _Blocked as why:
        hint = LIST_HINT if why.missing else None
        raise FileNotInSandbox(f"{shown}: {why.reason}" if why.missing else why.reason, hint=hint) from None
    mode = os.fstat(opened).st_mode
    if not stat.S_ISREG(mode):
        os.close(opened)
        what = "a directory, not a regular file" if stat.S_ISDIR(mode) else "not a regular file"
        raise FileNotInSandbox(f"{shown} is {what}", hint=LIST_HINT)
    return opened


def _pread(fd: int, limit: int, offset: int) -> bytes:
    chunks = []
    while limit > 0 and (chunk := os.pread(fd, min(limit, 1 << 20), offset)):
        chunks.append(chunk)
        limit -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class FileRead:
    data: bytes
    size: int  # the whole file's size
    offset: int


def read_file(root: Path, parts: list[str], *, offset: int, limit: int) -> FileRead:
    """Up to ``limit`` bytes at ``offset`` of the regular file ``parts`` (from split_path)
    under the directory ``root``, never through a link."""
    fd = _open_regular(root, parts)
    try:
        size = os.fstat(fd).st_size
        return FileRead(data=_pread(fd, limit, offset) if offset < size else b"", size=size, offset=offset)
    finally:
        os.close(fd)


def read_whole(root: Path, parts: list[str], *, max_bytes: int) -> bytes:
    """All of a regular file's bytes, as read_file reaches it; UsageError when it is (or
    grows while being read) larger than ``max_bytes``."""
    shown = "/".join(parts)
    read = read_file(root, parts, offset=0, limit=max_bytes + 1)
    if read.size > max_bytes or len(read.data) > max_bytes:
        raise UsageError(
            f"{shown} is {max(read.size, len(read.data))} bytes, more than the {max_bytes} asked for",
            hint="pass a larger max_bytes, or read it from the outputs directory",
        )
    return read.data


def write_file(root: Path, parts: list[str], data: bytes, *, mode: int) -> None:
    """Write ``data`` at root/parts by write-then-rename inside the final directory
    (missing directories are made): an entry a task left at that name (a link, a file) is
    replaced, never followed; a directory there, or a link on the way, is refused."""
    shown = "/".join(parts)
    temp = f".aido-put-{os.getpid()}-{secrets.token_hex(6)}"
    try:
        with _parent(root, parts, create=True) as dir_fd:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise UsageError(f"{shown} is a directory", hint="choose another name")
            fd = os.open(
                temp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dir_fd,
            )
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                os.rename(temp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=dir_fd)
                raise
    except _Blocked as why:
        raise UsageError(f"cannot write {shown}: {why.reason}") from None
    except OSError as exc:
        raise UsageError(f"cannot write {shown}: {exc.strerror or exc}") from None


def read_own(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes at ``offset`` of a file aido wrote (a captured stream), and its
    size; (b"", 0) when it is absent or not a regular file. Never through a link."""
    try:
        fd = os.open(path, _FILE)
    except FileNotFoundError:
        return b"", 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return b"", 0
        return (_pread(fd, limit, offset) if offset < st.st_size else b""), st.st_size
    finally:
        os.close(fd)


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
        while stack and not more:
            fd, prefix = stack.pop()
            try:
                for name in sorted(os.listdir(fd)):
                    if len(found) >= limit:
                        more = True
                        break
                    found.append(_entry(fd, name, f"{prefix}/{name}", stack))
            finally:
                os.close(fd)
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
            target: str | None = os.readlink(name, dir_fd=fd)
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
