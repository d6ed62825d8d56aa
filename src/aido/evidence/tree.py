"""What ``aido verify`` reads evidence from: a sandbox directory on disk, or the members of
a bundle held in memory. Both answer the same four questions (what kind of entry a name
is, its bytes, its sha256, what lies under a directory) for names relative to the
sandbox directory, ``/``-separated, so the checks never see which one they read.

On disk nothing is ever followed: every component of a name is opened with O_NOFOLLOW
relative to its parent, so a run directory swapped for a link (or a file for one) is
reported as a link, never read through.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from aido.evidence.seal import fd_sha256
from aido.values import dataclass, field

FILE, DIR, LINK, OTHER = "file", "dir", "link", "other"
MAX_READ = 64 * 1024 * 1024  # envelopes, summaries, events.log: read whole; never more than this


def safe_name(name: object) -> bool:
    """A relative, normalised, ``/``-separated name that stays inside its root."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    return LINK if stat.S_ISLNK(mode) else OTHER


class DirTree:
    """A sandbox (or archive) directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def _parent(self, name: str) -> Iterator[tuple[int, str]]:
        """A descriptor of ``name``'s parent, reached without following any link."""
        parts = name.split("/")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = sub
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def kind(self, name: str) -> str | None:
        """FILE, DIR, LINK or OTHER; None if absent (or a component on the way is not a directory)."""
        if not safe_name(name):
            return None
        try:
            with self._parent(name) as (fd, last):
                return _kind(os.stat(last, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            return None

    def _open(self, name: str) -> int:
        if not safe_name(name):
            raise OSError(f"unsafe name {name!r}")
        with self._parent(name) as (fd, last):
            opened = os.open(last, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
        if not stat.S_ISREG(os.fstat(opened).st_mode):
            os.close(opened)
            raise OSError(f"{name} is not a regular file")
        return opened

    def open(self, name: str) -> BinaryIO:
        """A regular file, opened without following a link (OSError for anything else)."""
        return os.fdopen(self._open(name), "rb")

    def read(self, name: str, limit: int = MAX_READ) -> bytes:
        with os.fdopen(self._open(name), "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise OSError(f"{name} is larger than {limit} bytes")
        return data

    def sha256(self, name: str) -> str:
        fd = self._open(name)
        try:
            return fd_sha256(fd)
        finally:
            os.close(fd)

    def walk(self, top: str) -> list[tuple[str, str]]:
        """(name, kind) of everything under the directory ``top``, links not followed."""
        found: list[tuple[str, str]] = []
        stack = [top]
        while stack:
            current = stack.pop()
            try:
                with self._parent(current + "/.") as (fd, _):
                    names = os.listdir(fd)
                    kinds = [(n, _kind(os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode)) for n in names]
            except OSError:
                continue
            for entry, kind in sorted(kinds):
                name = f"{current}/{entry}"
                found.append((name, kind))
                if kind == DIR:
                    stack.append(name)
        return sorted(found)


@dataclass
class Member:
    kind: str
    sha256: str = ""
    size: int = 0
    data: bytes | None = None  # kept only for the small files the checks parse


@dataclass
class MemTree:
    """A bundle's members, read once from the tar stream (see aido.evidence.bundle)."""

    members: dict[str, Member] = field(default_factory=dict)

    def kind(self, name: str) -> str | None:
        member = self.members.get(name)
        if member is not None:
            return member.kind
        prefix = name + "/"
        return DIR if any(n.startswith(prefix) for n in self.members) else None

    def read(self, name: str, limit: int = MAX_READ) -> bytes:
        member = self.members.get(name)
        if member is None or member.kind != FILE:
            raise OSError(f"{name} is not a regular file of the bundle")
        if member.data is None:
            raise OSError(f"{name} is larger than aido reads whole")
        return member.data

    def sha256(self, name: str) -> str:
        member = self.members.get(name)
        if member is None or member.kind != FILE:
            raise OSError(f"{name} is not a regular file of the bundle")
        return member.sha256

    def walk(self, top: str) -> list[tuple[str, str]]:
        prefix = top + "/"
        found: dict[str, str] = {}
        for name, member in self.members.items():
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                found[prefix + "/".join(parts[:depth])] = DIR
            found[name] = member.kind
        return sorted(found.items())
