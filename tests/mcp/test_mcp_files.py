"""Reading a sandbox's files for an agent (aido.mcp.files): a hostile task controls
outputs/, so links, swapped directories, FIFOs and escaping names are refused, never
followed. Pure filesystem tests, no engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aido.errors import UsageError
from aido.mcp.files import list_tree, read_file, split_path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    sandbox = tmp_path / "sandbox"
    for sub in ("outputs", "work", "inputs"):
        (sandbox / sub).mkdir(parents=True)
    (tmp_path / "host-secret").write_text("SECRET")
    outputs = sandbox / "outputs"
    (outputs / "a").mkdir()
    (outputs / "a" / "b.txt").write_text("hello")
    os.symlink(tmp_path / "host-secret", outputs / "leak")
    os.symlink(tmp_path, outputs / "up")  # a directory link
    os.symlink("loop", outputs / "loop")
    os.mkfifo(outputs / "fifo")
    return sandbox


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "is absolute"),
        ("outputs/../../host-secret", "contains '..'"),
        ("sandbox.json", "expected it to start with outputs/, work/ or inputs/"),
        ("", "expected a path like outputs/report.json"),
        ("outputs/a\0b", "expected a path like outputs/report.json"),
        ("outputs\\..\\x", "expected a path like outputs/report.json"),
    ],
)
def test_names_that_could_leave_the_sandbox_are_refused(path: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        split_path(path)
    assert message in caught.value.message


def test_a_regular_file_is_read_in_pieces(root: Path) -> None:
    assert read_file(root, "outputs/a/b.txt", offset=0, limit=100).data == b"hello"
    piece = read_file(root, "./outputs//a/b.txt", offset=1, limit=3)
    assert (piece.data, piece.size) == (b"ell", 5)
    assert read_file(root, "outputs/a/b.txt", offset=99, limit=3).data == b""


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("outputs/leak", "outputs/leak is a symbolic link"),
        ("outputs/up/host-secret", "outputs/up is a symbolic link"),
        ("outputs/loop", "outputs/loop is a symbolic link"),
        ("outputs/fifo", "not a regular file"),
        ("outputs/a", "is a directory"),
        ("outputs/a/b.txt/c", "is not a directory"),
        ("outputs/nothing", "no such file in the sandbox"),
    ],
)
def test_links_fifos_and_directories_are_refused(root: Path, path: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        read_file(root, path, offset=0, limit=100)
    assert message in caught.value.message
    assert "SECRET" not in caught.value.message


def test_a_listing_shows_links_without_following_them(root: Path, tmp_path: Path) -> None:
    entries, more = list_tree(root, "outputs")
    shown = {e.path: (e.kind, e.size, e.target) for e in entries}
    assert shown == {
        "outputs/a": ("dir", None, None),
        "outputs/a/b.txt": ("file", 5, None),
        "outputs/leak": ("link", None, str(tmp_path / "host-secret")),
        "outputs/up": ("link", None, str(tmp_path)),
        "outputs/loop": ("link", None, "loop"),
        "outputs/fifo": ("other", None, None),
    }
    assert more is False
    assert len(list_tree(root, "outputs", limit=2)[0]) == 2 and list_tree(root, "outputs", limit=2)[1] is True


def test_an_outputs_directory_swapped_for_a_link_lists_nothing(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    os.symlink("/etc", sandbox / "outputs")
    assert list_tree(sandbox, "outputs") == ([], False)
    with pytest.raises(UsageError, match="symbolic link"):
        read_file(sandbox, "outputs/passwd", offset=0, limit=10)
