"""Files in a sandbox's trees, for the API: read from outputs/, written into inputs/.

Both trees may hold whatever a task left there (links to anywhere, fifos, directories
where a file was expected), so a path is walked one component at a time through
directory descriptors opened with O_NOFOLLOW: nothing is followed out of the tree, and a
path with ``..``, an absolute path or a NUL is refused before anything is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from aido.errors import FileNotInSandbox, UsageError

MAX_PATH = 4096
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def parts_of(path: str | os.PathLike[str], tree: str) -> list[str]:
    """The components of a path relative to ``tree`` (outputs, inputs); UsageError for
    anything that could leave it."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise UsageError(f"a path in {tree}/ must be text, got {type(text).__name__}")
    shown = f"{tree}/ path {text!r}"
    if not text.strip() or "\0" in text or len(text) > MAX_PATH:
        raise UsageError(
            f"{shown}: expected a relative path like report.json or data/a.csv",
            hint=f"give a path inside {tree}/",
        )
    if text.startswith("/"):
        raise UsageError(f"{shown} is absolute", hint=f"give it relative to {tree}/, e.g. report.json")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"{shown} leaves {tree}/ ('..' is not allowed)", hint=f"give a path inside {tree}/")
    if not parts:
        raise UsageError(f"{shown} names {tree}/ itself, not a file")
    return parts


@contextlib.contextmanager
def _walk(root: Path, parts: list[str], *, create: bool) -> Iterator[int]:
    """The descriptor of the directory holding parts[-1], reached without following any
    link; ``create`` makes missing directories (0o755)."""
    fd = os.open(root, DIR_FLAGS)
    try:
        for name in parts[:-1]:
            try:
                nxt = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                nxt = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def read_file(root: Path, path: str | os.PathLike[str], tree: str, *, max_bytes: int) -> bytes:
    """A regular file's bytes under ``root``; FileNotInSandbox when it is missing, not a
    regular file, or reached through a link; UsageError when larger than ``max_bytes``."""
    parts = parts_of(path, tree)
    shown = "/".join(parts)
    try:
        with _walk(root, parts, create=False) as dir_fd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise _missing(tree, shown, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileNotInSandbox(f"{tree}/{shown} is not a regular file", hint=f"list the files of {tree}/")
        if st.st_size > max_bytes:
            raise UsageError(
                f"{tree}/{shown} is {st.st_size} bytes, more than the {max_bytes} asked for",
                hint="pass a larger max_bytes, or read it from the outputs directory",
            )
        chunks, left = [], max_bytes + 1
        while left and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:  # it grew while being read
            raise UsageError(f"{tree}/{shown} is larger than the {max_bytes} bytes asked for")
        return data
    finally:
        os.close(fd)


def write_file(root: Path, path: str | os.PathLike[str], data: bytes, tree: str, *, mode: int) -> str:
    """Write ``data`` at ``path`` under ``root`` by write-then-rename inside the final
    directory: an entry a task left at that name (a link, a file) is replaced, never
    followed; a directory there is refused. Returns the path written, normalised."""
    parts = parts_of(path, tree)
    shown = "/".join(parts)
    temp = f".aido-put-{os.getpid()}-{secrets.token_hex(6)}"
    try:
        with _walk(root, parts, create=True) as dir_fd:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise UsageError(f"{tree}/{shown} is a directory", hint="choose another name")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
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
    except OSError as exc:
        raise UsageError(f"cannot write {tree}/{shown}: {exc.strerror or exc}") from None
    return shown


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _missing(tree: str, shown: str, exc: OSError) -> FileNotInSandbox:
    import errno

    if exc.errno == errno.ELOOP:
        return FileNotInSandbox(f"{tree}/{shown} is a symbolic link (links are never followed)")
    if exc.errno == errno.ENOTDIR:
        return FileNotInSandbox(f"{tree}/{shown}: a part of the path is not a directory")
    return FileNotInSandbox(f"no file {tree}/{shown}", hint=f"list the files of {tree}/")
