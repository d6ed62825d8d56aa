"""File operations on attacker-prepared paths (sandbox/fs.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aido import fs
from tests.helpers.files import as_unprivileged


def _fixed_token(monkeypatch: pytest.MonkeyPatch, token: str = "deadbeef") -> None:
    monkeypatch.setattr(fs, "_temp_token", lambda: token)


# -- atomic writes -----------------------------------------------------------------------------


def test_atomic_write_json_writes_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sandbox.json"
    fs.atomic_write_json(target, {"a": 1, "text": "héllo"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 1, "text": "héllo"}
    assert target.read_text(encoding="utf-8").endswith("\n")
    assert "héllo" in target.read_text(encoding="utf-8")  # ensure_ascii=False
    assert os.listdir(tmp_path) == ["sandbox.json"]
    assert stat.S_IMODE(target.stat().st_mode) & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_atomic_write_replaces_existing_content(tmp_path: Path) -> None:
    target = tmp_path / "sandbox.json"
    fs.atomic_write_json(target, {"v": 1})
    fs.atomic_write_json(target, {"v": 2})
    assert fs.read_json(target) == {"v": 2}


def test_atomic_write_replaces_a_symlink_at_the_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "sandbox.json"
    target.symlink_to(victim)
    fs.atomic_write_json(target, {"ok": True})
    assert not target.is_symlink()
    assert json.loads(target.read_text()) == {"ok": True}
    assert victim.read_text() == "precious"


def test_atomic_write_replaces_a_dangling_symlink_at_the_target(tmp_path: Path) -> None:
    would_be_created = tmp_path / "outside" / "created-by-follow.txt"
    (tmp_path / "outside").mkdir()
    target = tmp_path / "sandbox.json"
    target.symlink_to(would_be_created)
    fs.atomic_write_json(target, [1])
    assert not would_be_created.exists()
    assert not target.is_symlink()
    assert json.loads(target.read_text()) == [1]


def test_atomic_write_never_follows_a_symlink_at_the_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_token(monkeypatch)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "sandbox.json"
    planted = tmp_path / ".sandbox.json.deadbeef.tmp"
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        fs.atomic_write_json(target, {"evil": True})
    assert victim.read_text() == "precious"
    assert not target.exists()
    assert planted.is_symlink()  # not ours to delete


def test_atomic_write_never_follows_a_dangling_symlink_at_the_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_token(monkeypatch)
    would_be_created = tmp_path / "created-through-link"
    (tmp_path / ".active.deadbeef.tmp").symlink_to(would_be_created)
    with pytest.raises(FileExistsError):
        fs.atomic_write_bytes(tmp_path / "active", b"abcdefabcdef\n")
    assert not would_be_created.exists()
    assert not os.path.lexists(tmp_path / "active")


def test_atomic_write_cleans_up_its_temp_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(fs.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        fs.atomic_write_bytes(tmp_path / "x.json", b"{}")
    assert os.listdir(tmp_path) == []


def test_create_new_refuses_existing_files_and_symlinks(tmp_path: Path) -> None:
    existing = tmp_path / "stdout.log"
    existing.write_text("old")
    with pytest.raises(FileExistsError):
        fs.create_new(existing)
    assert existing.read_text() == "old"

    dangling = tmp_path / "stderr.log"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        fs.create_new(dangling)
    assert not (tmp_path / "nowhere").exists()

    fd = fs.create_new(tmp_path / "fresh.log")
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
    assert (tmp_path / "fresh.log").read_bytes() == b"x"


def test_read_json_refuses_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text('{"a": 1}')
    link = tmp_path / "sandbox.json"
    link.symlink_to(real)
    assert fs.read_json(real) == {"a": 1}
    with pytest.raises(OSError):
        fs.read_json(link)


# -- append_line --------------------------------------------------------------------------------


def test_append_line_adds_exactly_one_newline(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    fs.append_line(log, "one")
    fs.append_line(log, "two\n")
    fs.append_line(log, "thrée")
    assert log.read_text(encoding="utf-8") == "one\ntwo\nthrée\n"


def test_append_line_refuses_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    log = tmp_path / "events.log"
    log.symlink_to(victim)
    with pytest.raises(OSError):
        fs.append_line(log, "evil")
    assert victim.read_text() == "precious\n"


def _expected_lines(writers: int, per_writer: int, width: int) -> set[str]:
    return {
        f"{w:03d}-{i:05d}-" + chr(ord("a") + w % 26) * width
        for w in range(writers)
        for i in range(per_writer)
    }


def _check_whole_lines(log: Path, expected: set[str]) -> None:
    data = log.read_text(encoding="ascii")
    assert data.endswith("\n")
    lines = data[:-1].split("\n")
    assert len(lines) == len(expected)
    assert set(lines) == expected  # every line whole: no interleaving, no loss


def test_append_line_from_many_threads_keeps_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    writers, per_writer, width = 16, 150, 3000
    barrier = threading.Barrier(writers)

    def work(w: int) -> None:
        barrier.wait()
        for i in range(per_writer):
            fs.append_line(log, f"{w:03d}-{i:05d}-" + chr(ord("a") + w % 26) * width)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    _check_whole_lines(log, _expected_lines(writers, per_writer, width))


def test_append_line_from_many_processes_keeps_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    start = tmp_path / "go"
    writers, per_writer, width = 6, 300, 5000
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from aido.fs import append_line\n"
        "w = int(sys.argv[1]); log = Path(sys.argv[2]); go = Path(sys.argv[3])\n"
        "while not go.exists(): time.sleep(0.005)\n"
        f"for i in range({per_writer}):\n"
        f"    append_line(log, f'{{w:03d}}-{{i:05d}}-' + chr(ord('a') + w % 26) * {width})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(w), str(log), str(start)]) for w in range(writers)
    ]
    start.write_text("")
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    _check_whole_lines(log, _expected_lines(writers, per_writer, width))


# -- locked -------------------------------------------------------------------------------------


def test_locked_serialises_threads(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    inside = 0
    peak = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        for _ in range(20):
            with fs.locked(lock):
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert peak == 1
    assert lock.is_file()


# -- remove_tree ----------------------------------------------------------------------------------


def _outside_dir(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    outside = tmp_path / "outside"
    (outside / "nested").mkdir(parents=True)
    contents = {"keep.txt": b"keep me", "nested/deep.txt": b"me too"}
    for rel, data in contents.items():
        (outside / rel).write_bytes(data)
    return outside, contents


def _assert_untouched(outside: Path, contents: dict[str, bytes]) -> None:
    for rel, data in contents.items():
        assert (outside / rel).read_bytes() == data
    found = {str(p.relative_to(outside)) for p in outside.rglob("*") if p.is_file()}
    assert found == set(contents)


def test_remove_tree_does_not_follow_a_symlink_out(tmp_path: Path) -> None:
    outside, contents = _outside_dir(tmp_path)
    tree = tmp_path / "sandbox"
    (tree / "work" / "sub").mkdir(parents=True)
    (tree / "work" / "file.txt").write_text("task wrote this")
    (tree / "work" / "escape").symlink_to(outside)
    (tree / "work" / "sub" / "escape-file").symlink_to(outside / "keep.txt")
    (tree / "work" / "sub" / "up").symlink_to("../../..")
    os.mkfifo(tree / "work" / "fifo")
    fs.remove_tree(tree)
    assert not os.path.lexists(tree)
    _assert_untouched(outside, contents)


def test_remove_tree_on_a_symlink_removes_only_the_link(tmp_path: Path) -> None:
    outside, contents = _outside_dir(tmp_path)
    link = tmp_path / "sandbox"
    link.symlink_to(outside)
    fs.remove_tree(link)
    assert not os.path.lexists(link)
    _assert_untouched(outside, contents)


def test_remove_tree_missing_path_is_fine(tmp_path: Path) -> None:
    fs.remove_tree(tmp_path / "never-existed")
    assert list(tmp_path.iterdir()) == []


def test_rmtree_is_symlink_safe_here() -> None:
    assert shutil.rmtree.avoids_symlink_attacks


def _build_locked_tree(root: Path) -> None:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "f.txt").write_text("x")
    (root / "a" / "b" / "g.txt").write_text("y")
    (root / "a" / "h.txt").write_text("z")
    (root / "other").mkdir()
    (root / "other" / "i.txt").write_text("w")
    (root / "other" / "ro.txt").write_text("v")
    os.chmod(root / "other" / "ro.txt", 0)
    for directory in (root / "a" / "b" / "c", root / "a" / "b", root / "a", root / "other"):
        os.chmod(directory, 0)


def test_remove_tree_handles_mode_000_directories() -> None:
    def body(base: Path) -> None:
        tree = base / "sandbox"
        _build_locked_tree(tree)
        with pytest.raises(PermissionError):
            os.listdir(tree / "a")  # really locked for this user
        fs.remove_tree(tree)
        assert not os.path.lexists(tree)

    as_unprivileged(body)


def test_remove_tree_mode_000_tree_with_symlink_out() -> None:
    def body(base: Path) -> None:
        outside = base / "outside"
        outside.mkdir()
        (outside / "keep.txt").write_text("keep")
        tree = base / "sandbox"
        (tree / "locked").mkdir(parents=True)
        (tree / "locked" / "escape").symlink_to(outside)
        os.chmod(tree / "locked", 0)
        fs.remove_tree(tree)
        assert not os.path.lexists(tree)
        assert (outside / "keep.txt").read_text() == "keep"

    as_unprivileged(body)
