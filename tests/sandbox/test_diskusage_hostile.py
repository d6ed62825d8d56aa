"""The disk meter on trees a hostile task builds to hide from it: data far below any
depth cap, and directories moved while the walk is inside them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aido.host.diskusage import measure
from tests.helpers.files import in_child

MiB = 1 << 20


def test_data_hidden_thousands_of_levels_down_is_measured_in_one_descriptor(tmp_path: Path) -> None:
    """The walk stopped descending at 256 levels (one descriptor each): a task could put
    any amount of data below that and the disk meter never saw it."""
    work = tmp_path / "work"
    work.mkdir()
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(3000):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    hidden = os.open("hidden.bin", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
    os.write(hidden, os.urandom(8 * MiB))
    os.close(hidden)
    os.close(fd)

    def walk() -> None:
        usage = measure([work])
        assert usage.complete
        assert usage.files == 3001
        assert usage.bytes_used >= 8 * MiB
        assert not measure([work], stop_bytes=4 * MiB).complete  # the meter would stop the run

    try:
        in_child(walk, max_fds=32)
    finally:  # rm is iterative: a deep tree left behind would break pytest's own clean-up
        subprocess.run(["rm", "-rf", str(work)], check=False)


def test_a_directory_moved_away_while_walked_ends_the_walk_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk goes back up through "..": if the task moved the directory it is in, ".."
    is somewhere else, which must never be measured (here: a big file outside)."""
    work = tmp_path / "work"
    (work / "a" / "b" / "c").mkdir(parents=True)
    (work / "a" / "b" / "c" / "f").write_bytes(b"x" * 4096)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "big").write_bytes(os.urandom(8 * MiB))
    inode = (work / "a" / "b" / "c").stat().st_ino
    real_open = os.open
    moved: list[bool] = []

    def moving_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if path == ".." and dir_fd is not None and os.fstat(dir_fd).st_ino == inode and not moved:
            moved.append(True)
            os.rename(work / "a" / "b" / "c", elsewhere / "c")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", moving_open)
    usage = measure([work])
    assert moved
    assert not usage.complete
    assert usage.bytes_used < 8 * MiB
