"""fs.remove_tree and fs.empty_tree on the trees a hostile task can leave behind: any
depth, paths far past PATH_MAX, locked directories, odd files and names. The tree must
go, in bounded descriptors and memory, and nothing outside it may be touched."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aido import fs
from tests.helpers.files import as_unprivileged, in_child

LONG = "d" * 250  # a 250-byte name: 20 levels of it pass PATH_MAX (4096)


@pytest.fixture(autouse=True)
def _no_deep_tree_left(tmp_path: Path) -> Iterator[None]:
    """Whatever a failing test leaves goes with rm (iterative): a 5,000-level tree left in
    pytest's temporary directory would break pytest's own (recursive) clean-up later."""
    yield
    subprocess.run(["rm", "-rf", "--one-file-system", str(tmp_path)], check=False)


def _nest(top: Path, depth: int, name: str = "a", every: Callable[[int, int], None] | None = None) -> None:
    """``depth`` nested directories below ``top``, made by descriptor (never by a path,
    which would pass PATH_MAX); ``every(level, dir_fd)`` may add to each level."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
            if every is not None:
                every(level, fd)
    finally:
        os.close(fd)


def _outside(base: Path) -> Path:
    outside = base / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    os.chmod(outside / "keep.txt", 0o644)
    return outside


def _assert_kept(outside: Path) -> None:
    assert (outside / "keep.txt").read_text() == "keep"
    assert stat.S_IMODE((outside / "keep.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE(outside.stat().st_mode) in (0o755, 0o700, 0o777)


def test_a_5000_level_tree_is_removed_without_recursion(tmp_path: Path) -> None:
    """shutil.rmtree recursed once per level: RecursionError at about 1,000."""
    tree = tmp_path / "tree"
    tree.mkdir()
    _nest(tree, 5000)
    removed = fs.remove_tree(tree)
    assert not os.path.lexists(tree)
    assert removed.entries == 5001
    assert os.listdir(tmp_path) == []


def test_a_tree_past_path_max_with_locked_levels_goes_in_few_descriptors() -> None:
    """As a user the mode bits apply to: 1,500 levels of 250-byte names (375 KB of path),
    every 100th level mode 000, every 7th 0500 (no w), with files and links out at each
    level; at most 256 descriptors. Nothing outside is touched."""

    def body(base: Path) -> None:
        outside = _outside(base)
        tree = base / "tree"
        tree.mkdir()

        def add(level: int, fd: int) -> None:
            os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
            os.symlink(str(outside), "out", dir_fd=fd)
            os.symlink(str(outside / "keep.txt"), "keep", dir_fd=fd)
            if level % 7 == 0:
                os.chmod("f", 0, dir_fd=fd)

        _nest(tree, 1500, LONG, add)
        fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
        chain = [fd]
        try:  # lock levels from the bottom up, so that the locking walk itself can pass
            for _ in range(1500):
                chain.append(os.open(LONG, os.O_RDONLY | os.O_DIRECTORY, dir_fd=chain[-1]))
                if len(chain) > 500:
                    os.close(chain.pop(1))  # keep few open: locked levels need no reopening
            for level, dir_fd in enumerate(chain[1:]):
                os.fchmod(dir_fd, 0o500 if level % 7 == 0 else 0 if level % 100 == 0 else 0o700)
        finally:
            for dir_fd in chain:
                os.close(dir_fd)

        def remove() -> None:
            fs.remove_tree(tree)

        in_child(remove, max_fds=256)
        assert not os.path.lexists(tree)
        _assert_kept(outside)

    as_unprivileged(body)


def test_odd_entries_and_names_are_removed_never_opened_or_followed() -> None:
    def body(base: Path) -> None:
        outside = _outside(base)
        os.link(outside / "keep.txt", base / "hardlink-source")  # a hard link keeps the file
        tree = base / "tree"
        (tree / "sub").mkdir(parents=True)
        os.mkfifo(tree / "fifo")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(tree / "sub" / "sock"))
        (tree / "setuid").write_text("x")
        os.chmod(tree / "setuid", 0o6755)
        os.mkdir(tree / "sticky")
        os.chmod(tree / "sticky", 0o1777)
        (tree / "sticky" / "in").write_text("x")
        os.mkdir(tree / "noexec")
        (tree / "noexec" / "in").write_text("x")
        os.chmod(tree / "noexec", 0o600)  # listable, not searchable
        for raw in (b"\xff\xfe-not-utf8", b"ctl-\x1b[31m-\n-\r-\t", "x" * 255):
            name = raw if isinstance(raw, bytes) else raw.encode()
            os.close(os.open(os.fsencode(tree) + b"/" + name, os.O_CREAT | os.O_WRONLY, 0))
        os.link(base / "hardlink-source", tree / "hardlink")
        (tree / "sub" / "escape").symlink_to(outside)
        (tree / "sub" / "dangling").symlink_to(base / "nowhere")
        with open(tree / "sparse", "wb") as sparse:
            sparse.truncate(1 << 40)
        removed = fs.remove_tree(tree)
        listener.close()
        assert not os.path.lexists(tree)
        assert removed.entries == 16  # the tree and its 15 entries
        _assert_kept(outside)
        assert (base / "hardlink-source").read_text() == "keep"

    as_unprivileged(body)


def test_empty_tree_keeps_the_root_and_counts_what_went(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    for i in range(300):
        (root / f"f{i}").write_bytes(b"x" * 5000)
    _nest(root, 200)
    os.chmod(root / "a", 0)
    removed = fs.empty_tree(root)
    assert os.listdir(root) == []
    assert root.is_dir()
    assert removed.entries == 500
    assert removed.bytes >= 300 * 4096
    assert fs.empty_tree(tmp_path / "missing") == fs.Removed()


def test_a_wide_and_deep_tree_goes_in_bounded_descriptors_and_memory(tmp_path: Path) -> None:
    """30,000 entries in one directory and 2,000 sibling directories, 300 levels deep
    each of 20 of them: at most 256 descriptors, and no whole listing held in memory."""
    tree = tmp_path / "tree"
    tree.mkdir()
    flat = tree / "flat"
    flat.mkdir()
    for i in range(30_000):
        os.close(os.open(flat / f"{i:06d}-{'n' * 100}", os.O_CREAT | os.O_WRONLY, 0o644))
    for i in range(2000):
        (tree / f"dir{i}").mkdir()
    for i in range(20):
        _nest(tree / f"dir{i}", 300)

    def remove() -> None:
        fs.remove_tree(tree)

    in_child(remove, max_fds=256, max_rss=200 << 20)
    assert not os.path.lexists(tree)
