"""Disk usage of the task-writable trees (``work/``, ``outputs/``), measured from
the host while the task is still writing to them.

The task owns everything below the roots and changes it concurrently with the
walk, so the walk trusts nothing: it descends with directory file descriptors
opened O_NOFOLLOW | O_DIRECTORY relative to their parent's descriptor, only
ever lstat()s everything else (no file is opened, so no file is read and no
fifo, socket or device can block it), and skips entries that vanish or change
type under it. It is iterative, holds one directory open at a time whatever the
depth (a task cannot hide data below the walk's reach: no depth is out of it), and
stops as soon as a limit is exceeded, so a million tiny files cost at most
``stop_files`` entries of work.

Sizes are what the files occupy on disk (``st_blocks * 512``, as ``du`` counts),
so a 1 TiB sparse file counts the few blocks it really has; its 1 TiB shows in
``apparent_bytes`` only. A file with several hard links is counted once.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from aido.config.units import format_size
from aido.values import dataclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# The entry vanished, or was replaced by a non-directory or a symlink, between
# being listed and being opened: a race with the task, not a gap in the count.
_RACED = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


@dataclass(frozen=True)
class DiskUsage:
    bytes_used: int  # allocated bytes (st_blocks * 512): what the trees really take on disk
    apparent_bytes: int  # sum of st_size (a 1 TiB sparse file shows here)
    files: int  # every directory entry counted (files, dirs, links, fifos...)
    complete: bool  # False when the walk stopped early or left something unmeasured


class _Stop(Exception):
    """A limit was exceeded: the walk ends here."""


class _Tally:
    def __init__(self, stop_bytes: int | None, stop_files: int | None) -> None:
        self.stop_bytes = stop_bytes
        self.stop_files = stop_files
        self.bytes_used = 0
        self.apparent_bytes = 0
        self.files = 0
        self.complete = True
        self.linked: set[tuple[int, int]] = set()  # (st_dev, st_ino) of files with st_nlink > 1

    def add(self, st: os.stat_result, *, entry: bool = True) -> None:
        """Count one lstat() result; raise _Stop once a limit is exceeded."""
        if entry:
            self.files += 1
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in self.linked:
                self._check()
                return
            self.linked.add(key)
        self.bytes_used += st.st_blocks * 512
        self.apparent_bytes += st.st_size
        self._check()

    def _check(self) -> None:
        if (self.stop_files is not None and self.files > self.stop_files) or (
            self.stop_bytes is not None and self.bytes_used > self.stop_bytes
        ):
            raise _Stop

    def failed(self, exc: OSError) -> None:
        """An entry could not be measured: a race is ignored, anything else
        (a directory the task made unreadable, EMFILE, EIO) leaves the count short."""
        if exc.errno not in _RACED:
            self.complete = False

    def result(self) -> DiskUsage:
        return DiskUsage(self.bytes_used, self.apparent_bytes, self.files, self.complete)


def measure(
    roots: Sequence[Path],
    *,
    stop_bytes: int | None = None,
    stop_files: int | None = None,
    max_depth: int | None = None,
) -> DiskUsage:
    """Usage of everything below ``roots`` (each root directory's own blocks
    included, the root itself not counted as a file).

    The walk stops, with ``complete=False``, as soon as ``bytes_used`` exceeds
    ``stop_bytes`` or ``files`` exceeds ``stop_files``. By default the walk goes as deep
    as the tree does (in one descriptor); with ``max_depth``, directories deeper than
    that below a root are counted but not descended into (``complete=False``).
    Directories that cannot be read are counted, not descended into (``complete=False``).
    A missing root counts as empty.
    """
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"max_depth must be at least 0, got {max_depth}")
    tally = _Tally(stop_bytes, stop_files)
    try:
        for root in roots:
            _walk(tally, root, max_depth)
    except _Stop:
        tally.complete = False
    return tally.result()


def _walk(tally: _Tally, root: Path, max_depth: int | None) -> None:
    try:
        top = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            # The root is not a directory (or is a symlink): count it, never follow it.
            try:
                tally.add(os.lstat(root))
            except OSError as again:
                tally.failed(again)
            return
        tally.complete = False
        return
    # One frame per directory on the way down: its identity (st_dev, st_ino) and the names
    # of its subdirectories still to walk. Only the current directory is open: the walk
    # goes back up through "..", which must be that very parent (if the task moved the
    # directory meanwhile, the walk ends short rather than go anywhere else), so any depth
    # costs one descriptor and no path is ever resolved.
    current = top
    try:
        st = os.fstat(top)
        tally.add(st, entry=False)
        stack = [((st.st_dev, st.st_ino), _list(tally, top, descend=max_depth is None or max_depth >= 1))]
        while True:
            _, pending = stack[-1]
            if pending:
                name = pending.pop()
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=current)
                except OSError as exc:
                    tally.failed(exc)
                    continue
                os.close(current)
                current = sub
                st = os.fstat(sub)
                stack.append(((st.st_dev, st.st_ino), []))
                stack[-1][1].extend(_list(tally, sub, descend=max_depth is None or len(stack) <= max_depth))
                continue
            stack.pop()
            if not stack:
                return
            try:
                parent = os.open("..", _DIR_FLAGS, dir_fd=current)
            except OSError:
                tally.complete = False
                return
            os.close(current)
            current = parent
            st = os.fstat(parent)
            if (st.st_dev, st.st_ino) != stack[-1][0]:
                tally.complete = False  # moved while walked: what is left is not measured
                return
    finally:
        os.close(current)


def _list(tally: _Tally, dir_fd: int, *, descend: bool) -> list[str]:
    """Count the entries of one directory; return the names of its subdirectories
    to walk next (none when ``descend`` is false: the depth cap)."""
    subdirs: list[str] = []
    try:
        # os.scandir(fd) lists a duplicate of the descriptor; entry.stat() is an
        # fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW), never a path lookup from /.
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    tally.failed(exc)
                    continue
                tally.add(st)
                if stat.S_ISDIR(st.st_mode):
                    if descend:
                        subdirs.append(entry.name)
                    else:
                        tally.complete = False
    except OSError as exc:
        tally.failed(exc)
    return subdirs


def exceeded(
    usage: DiskUsage, *, max_bytes: int, max_files: int, where: str = "work/ and outputs/"
) -> str | None:
    """Why ``usage`` is over a limit, for the user; None when it is within both."""
    if usage.bytes_used > max_bytes:
        used, limit = format_size(usage.bytes_used), format_size(max_bytes)
        if used.replace(".0", "") == limit:  # "1.0G used of 1G" would not read as over
            used = f"{usage.bytes_used} bytes"
        return f"disk limit exceeded: {used} used of {limit} in {where}"
    if usage.files > max_files:
        return f"file limit exceeded: {usage.files} files of {max_files}"
    return None
