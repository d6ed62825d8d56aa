"""Disk usage of task-writable trees, measured while a hostile task writes (sandbox/diskusage.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aido.host.diskusage import DiskUsage, exceeded, measure
from tests.helpers.files import as_unprivileged

MiB = 1 << 20


def _write(path: Path, size: int) -> Path:
    """A file with ``size`` real (allocated) bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def _measure_in_thread(roots: list[Path], timeout: float = 10.0, **kwargs: Any) -> DiskUsage:
    """measure() that fails the test instead of hanging it if something blocks."""
    result: list[DiskUsage] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(measure(roots, **kwargs))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "measure() blocked"
    if errors:
        raise errors[0]
    return result[0]


# -- counting ----------------------------------------------------------------------------------


def test_counts_files_dirs_and_bytes(tmp_path: Path) -> None:
    work, outputs = tmp_path / "work", tmp_path / "outputs"
    _write(work / "a.bin", MiB)
    _write(work / "sub" / "b.bin", MiB)
    _write(outputs / "c.bin", MiB)
    usage = measure([work, outputs])
    assert usage.files == 4  # a.bin, sub, sub/b.bin, c.bin
    assert usage.complete
    assert 3 * MiB <= usage.bytes_used < 4 * MiB
    assert 3 * MiB <= usage.apparent_bytes < 4 * MiB


def test_empty_and_missing_roots_are_empty(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    usage = measure([tmp_path / "work", tmp_path / "missing"])
    assert usage.files == 0
    assert usage.complete
    assert measure([]) == DiskUsage(0, 0, 0, True)
    assert measure([tmp_path / "missing"]) == DiskUsage(0, 0, 0, True)


def test_sparse_terabyte_counts_allocated_blocks_only(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with open(work / "sparse", "wb") as handle:
        handle.truncate(1 << 40)
    started = time.monotonic()
    usage = measure([work])
    assert time.monotonic() - started < 2
    assert usage.apparent_bytes >= 1 << 40
    assert usage.bytes_used < MiB
    assert usage.files == 1
    assert exceeded(usage, max_bytes=MiB, max_files=10) is None


def test_hard_links_counted_once(tmp_path: Path) -> None:
    work, outputs = tmp_path / "work", tmp_path / "outputs"
    original = _write(work / "big", 2 * MiB)
    os.link(original, work / "again")
    (work / "sub").mkdir()
    os.link(original, work / "sub" / "third")
    outputs.mkdir()
    os.link(original, outputs / "across-roots")
    usage = measure([work, outputs])
    assert usage.files == 5  # every name is an entry ...
    assert 2 * MiB <= usage.bytes_used < 3 * MiB  # ... but the blocks are counted once
    assert 2 * MiB <= usage.apparent_bytes < 3 * MiB


# -- hostile trees -----------------------------------------------------------------------------


def test_symlinks_are_counted_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside / "big", 4 * MiB)
    for i in range(50):
        (outside / f"f{i}").touch()
    work = tmp_path / "work"
    work.mkdir()
    (work / "to-file").symlink_to(outside / "big")
    (work / "to-dir").symlink_to(outside)
    (work / "dangling").symlink_to(tmp_path / "nowhere")
    (work / "loop").symlink_to("loop")
    usage = measure([work])
    assert usage.files == 4
    assert usage.complete
    assert usage.bytes_used < MiB
    assert usage.apparent_bytes < 64 << 10  # the root and each link's own size (its target's length)


def test_root_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    _write(tmp_path / "real" / "big", 2 * MiB)
    (tmp_path / "work").symlink_to(tmp_path / "real")
    usage = measure([tmp_path / "work"])
    assert usage.files == 1  # the link itself
    assert usage.bytes_used < MiB


def test_fifo_socket_and_device_do_not_block(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    os.mkfifo(work / "fifo")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.chdir(work):  # a short relative path: AF_UNIX paths are limited to 108 bytes
            listener.bind("sock")
        listener.listen()
        with contextlib.suppress(PermissionError):  # mknod of a device needs CAP_MKNOD
            os.mknod(work / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        usage = _measure_in_thread([work])
    finally:
        listener.close()
    assert usage.files == len(os.listdir(work))
    assert usage.complete


def test_deep_nesting_is_iterative_and_capped_only_when_asked(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    depth = 5000
    _nest(work, depth)
    try:
        usage = measure([work])  # no RecursionError, and no depth out of reach
        assert usage.complete
        assert usage.files == depth
        shallow = measure([work], max_depth=3)
        assert shallow.files == 4  # counted one level past the cap, not entered
        assert not shallow.complete
        top_only = measure([work], max_depth=0)
        assert top_only.files == 1
        assert not top_only.complete
    finally:
        _unnest(work)


def test_depth_cap_on_a_tree_within_it_is_complete(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "a" / "b" / "c").mkdir(parents=True)
    (work / "a" / "b" / "c" / "f").touch()
    assert measure([work], max_depth=3) == measure([work])
    assert measure([work], max_depth=3).complete
    assert not measure([work], max_depth=2).complete
    with pytest.raises(ValueError):
        measure([work], max_depth=-1)


def _nest(root: Path, depth: int) -> None:
    """root/d/d/d/... ``depth`` levels deep, built through descriptors (the path is
    longer than PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
    finally:
        os.close(fd)


def _unnest(root: Path) -> None:
    """Remove what _nest built without recursion or long paths: pull root/d/d up to
    root/next, remove the emptied root/d, rename next to d, repeat."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                os.rename("d/d", "next", src_dir_fd=fd, dst_dir_fd=fd)
            except FileNotFoundError:
                os.rmdir("d", dir_fd=fd)
                return
            os.rmdir("d", dir_fd=fd)
            os.rename("next", "d", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)


def test_many_files_stop_early(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for i in range(20000):
        (work / f"f{i}").touch()
    usage = measure([work], stop_files=1000)
    assert usage.files == 1001
    assert not usage.complete
    assert exceeded(usage, max_bytes=1 << 30, max_files=1000) == "file limit exceeded: 1001 files of 1000"
    full = measure([work])
    assert full.files == 20000
    assert full.complete


def test_bytes_stop_early(tmp_path: Path) -> None:
    work = tmp_path / "work"
    for i in range(10):
        _write(work / f"f{i}", MiB)
    usage = measure([work], stop_bytes=3 * MiB)
    assert not usage.complete
    assert 3 * MiB < usage.bytes_used <= 5 * MiB
    assert usage.files < 10
    reason = exceeded(usage, max_bytes=3 * MiB, max_files=100)
    assert reason is not None
    assert reason.startswith("disk limit exceeded: ")
    assert reason.endswith(" used of 3M in work/ and outputs/")
    # Exactly at the limit is within it.
    assert measure([work], stop_bytes=measure([work]).bytes_used).complete


# -- races and unreadable directories -----------------------------------------------------------


class _RacingScandir:
    """os.scandir that lets ``before_yield`` change the tree after an entry is listed
    and before the walk stats it."""

    def __init__(self, real: Any, before_yield: Any) -> None:
        self.real = real
        self.before_yield = before_yield

    def __call__(self, fd: int) -> Any:
        return _Entries(self.real(fd), fd, self.before_yield)


class _Entries:
    def __init__(self, inner: Any, fd: int, before_yield: Any) -> None:
        self.inner, self.fd, self.before_yield = inner, fd, before_yield

    def __enter__(self) -> Iterator[os.DirEntry[str]]:
        return self._iter()

    def __exit__(self, *exc: object) -> None:
        self.inner.close()

    def _iter(self) -> Iterator[os.DirEntry[str]]:
        for entry in self.inner:
            self.before_yield(self.fd, entry.name)
            yield entry


def test_entries_vanishing_between_listing_and_stat_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    for i in range(10):
        _write(work / f"f{i}", 4096)

    def delete_odd(fd: int, name: str) -> None:
        if int(name[1:]) % 2:
            os.unlink(name, dir_fd=fd)

    monkeypatch.setattr(os, "scandir", _RacingScandir(os.scandir, delete_odd))
    usage = measure([work])
    assert usage.files == 5
    assert usage.complete  # a race, not a gap: the next poll sees the tree as it is


@pytest.mark.parametrize("replacement", ["vanish", "fifo", "symlink", "file"])
def test_directory_replaced_between_listing_and_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replacement: str
) -> None:
    outside = tmp_path / "outside"
    _write(outside / "big", 2 * MiB)
    work = tmp_path / "work"
    _write(work / "sub" / "inner", 2 * MiB)
    _write(work / "kept" / "x", 4096)
    real_open = os.open
    raced: list[bool] = []

    def racing_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if path == "sub" and dir_fd is not None and not raced:
            raced.append(True)
            shutil.rmtree(work / "sub")
            if replacement == "fifo":
                os.mkfifo(work / "sub")
            elif replacement == "symlink":
                (work / "sub").symlink_to(outside)
            elif replacement == "file":
                _write(work / "sub", 8 * MiB)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", racing_open)
    usage = _measure_in_thread([work])
    assert raced
    assert usage.complete
    assert usage.files == 3  # sub (as listed), kept, kept/x: sub/inner was never seen
    assert usage.bytes_used < MiB


def test_unreadable_directory_as_root_or_not(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _write(work / "locked" / "inside", 4096)
    (work / "locked").chmod(0)
    try:
        usage = measure([work])  # root reads it anyway; anyone else cannot: no exception either way
    finally:
        (work / "locked").chmod(0o700)
    if os.geteuid() == 0:
        assert usage.files == 2
        assert usage.complete


def test_unreadable_directory_leaves_the_count_short() -> None:
    def body(base: Path) -> None:
        work = base / "work"
        _write(work / "locked" / "inside", 4096)
        _write(work / "open" / "x", 4096)
        (work / "locked").chmod(0)
        (work / "noexec").mkdir()
        (work / "noexec" / "y").touch()
        (work / "noexec").chmod(0o444)  # listable, but its entries cannot be stat()ed
        usage = measure([work])
        assert usage.files == 4  # locked, open, open/x, noexec (y cannot be stat()ed)
        assert not usage.complete  # what the task hid there is not known
        (work / "locked").chmod(0o700)
        (work / "noexec").chmod(0o700)

    as_unprivileged(body)


def test_every_descriptor_is_closed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    for i in range(30):
        _write(work / f"d{i}" / "e" / "f", 4096)
    before = len(os.listdir("/proc/self/fd"))
    measure([work])
    measure([work], stop_files=7)
    measure([work], max_depth=1)
    assert len(os.listdir("/proc/self/fd")) == before


# -- exceeded() ---------------------------------------------------------------------------------


def test_exceeded_messages() -> None:
    gib = 1 << 30
    within = DiskUsage(bytes_used=gib, apparent_bytes=gib, files=100000, complete=True)
    assert exceeded(within, max_bytes=gib, max_files=100000) is None
    over = DiskUsage(bytes_used=int(1.2 * gib), apparent_bytes=0, files=3, complete=False)
    assert (
        exceeded(over, max_bytes=gib, max_files=100000)
        == "disk limit exceeded: 1.2G used of 1G in work/ and outputs/"
    )
    assert exceeded(over, max_bytes=gib, max_files=10, where="outputs/") == (
        "disk limit exceeded: 1.2G used of 1G in outputs/"
    )
    files = DiskUsage(bytes_used=0, apparent_bytes=0, files=100001, complete=False)
    assert exceeded(files, max_bytes=gib, max_files=100000) == "file limit exceeded: 100001 files of 100000"
    # Barely over: the rounded size would read "1.0G used of 1G", so the exact count is shown.
    barely = DiskUsage(bytes_used=gib + 4096, apparent_bytes=0, files=1, complete=True)
    assert exceeded(barely, max_bytes=gib, max_files=10) == (
        f"disk limit exceeded: {gib + 4096} bytes used of 1G in work/ and outputs/"
    )
    # Apparent size (sparse files) is not what the limit is about.
    sparse = DiskUsage(bytes_used=4096, apparent_bytes=1 << 40, files=1, complete=True)
    assert exceeded(sparse, max_bytes=gib, max_files=10) is None
