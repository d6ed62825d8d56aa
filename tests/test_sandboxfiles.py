"""A sandbox's files as the API and the MCP tools reach them (aido.host.sandboxfiles): a
hostile task controls outputs/ (and inputs/ when writable), so links, swapped directories,
FIFOs and escaping names are refused, never followed. Pure filesystem tests, no engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aido.errors import FileNotInSandbox, UsageError
from aido.host.sandboxfiles import ROOTS, list_tree, read_file, read_whole, split_path, write_file


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
        ("", "expected a relative path like outputs/report.json"),
        ("outputs/a\0b", "expected a relative path like outputs/report.json"),
        ("outputs\\..\\x", "expected a relative path like outputs/report.json"),
    ],
)
def test_names_that_could_leave_the_sandbox_are_refused(path: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        split_path(path, roots=ROOTS)
    assert message in caught.value.message


def test_a_regular_file_is_read_in_pieces(root: Path) -> None:
    assert read_file(root, ["outputs", "a", "b.txt"], offset=0, limit=100).data == b"hello"
    piece = read_file(root, split_path("./outputs//a/b.txt", roots=ROOTS), offset=1, limit=3)
    assert (piece.data, piece.size) == (b"ell", 5)
    assert read_file(root, ["outputs", "a", "b.txt"], offset=99, limit=3).data == b""


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
    with pytest.raises(FileNotInSandbox) as caught:
        read_file(root, split_path(path, roots=ROOTS), offset=0, limit=100)
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
    with pytest.raises(FileNotInSandbox, match="symbolic link"):
        read_file(sandbox, ["outputs", "passwd"], offset=0, limit=10)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../escape.txt", "contains '..': it leaves inputs/"),
        ("/etc/passwd", "is absolute"),
        (" ", "expected a relative path like data/a.csv"),
        (".", "names inputs/ itself, not a file"),
    ],
)
def test_a_path_within_one_tree_is_refused_the_same_way(path: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        split_path(path, "inputs/", example="data/a.csv")


def test_a_whole_read_is_refused_over_its_limit(root: Path) -> None:
    assert read_whole(root, ["outputs", "a", "b.txt"], max_bytes=5) == b"hello"
    with pytest.raises(UsageError, match="is 5 bytes, more than the 4 asked for"):
        read_whole(root, ["outputs", "a", "b.txt"], max_bytes=4)


def test_a_write_replaces_a_link_and_never_goes_through_one(root: Path, tmp_path: Path) -> None:
    outputs = root / "outputs"
    write_file(root, ["outputs", "new", "deep", "x.txt"], b"made", mode=0o444)
    assert (outputs / "new" / "deep" / "x.txt").read_bytes() == b"made"
    write_file(root, ["outputs", "leak"], b"replaced", mode=0o444)  # the link itself is replaced
    assert not (outputs / "leak").is_symlink() and (tmp_path / "host-secret").read_text() == "SECRET"
    with pytest.raises(UsageError, match="cannot write outputs/up/x: outputs/up is a symbolic link"):
        write_file(root, ["outputs", "up", "x"], b"x", mode=0o444)
    with pytest.raises(UsageError, match="outputs/a is a directory"):
        write_file(root, ["outputs", "a"], b"x", mode=0o444)
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in outputs.iterdir() if p.name.startswith(".aido")) == []
