"""Symlink-safe snapshots and their comparison (evidence/snapshot.py)."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from aido.evidence.snapshot import HASH_LIMIT, TEXT_LIMIT, Entry, Snapshot, compare, display_name, snapshot
from tests.helpers.files import as_unprivileged


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _snapshot_with_timeout(root: Path, timeout: float = 10, **kwargs: int) -> Snapshot:
    result: list[Snapshot] = []
    thread = threading.Thread(target=lambda: result.append(snapshot(root, **kwargs)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"snapshot of {root} did not finish within {timeout}s"
    return result[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    root = tmp_path / "work"
    root.mkdir()
    return root


def test_records_files_and_dirs(work: Path) -> None:
    (work / "a.txt").write_bytes(b"hello\n")
    (work / "sub").mkdir()
    (work / "sub" / "b.bin").write_bytes(b"\x00\x01")
    os.chmod(work / "a.txt", 0o640)
    snap = snapshot(work)
    assert set(snap.entries) == {"a.txt", "sub", "sub/b.bin"}
    assert snap.entries["a.txt"] == Entry("file", 6, 0o640, _sha(b"hello\n"))
    assert snap.entries["a.txt"].text == "hello\n"
    assert snap.entries["sub"].kind == "dir"
    assert snap.entries["sub/b.bin"].sha256 == _sha(b"\x00\x01")
    assert snap.entries["sub/b.bin"].text is None  # binary: no text kept
    assert snap.notes == []


def test_compare_detects_added_modified_removed(work: Path) -> None:
    (work / "keep.txt").write_text("same\n")
    (work / "change.txt").write_text("before\n")
    (work / "gone.txt").write_text("bye\n")
    before = snapshot(work)
    (work / "change.txt").write_text("after, longer\n")
    (work / "gone.txt").unlink()
    (work / "new").mkdir()
    (work / "new" / "file.txt").write_text("fresh\n")
    after = snapshot(work)

    changes, _ = compare(before, after, prefix="work")
    assert changes == [
        {
            "path": "work/change.txt",
            "change": "modified",
            "type": "file",
            "size": 14,
            "sha256": _sha(b"after, longer\n"),
        },
        {"path": "work/gone.txt", "change": "removed", "type": "file", "size": 4, "sha256": _sha(b"bye\n")},
        {
            "path": "work/new/file.txt",
            "change": "added",
            "type": "file",
            "size": 6,
            "sha256": _sha(b"fresh\n"),
        },
    ]


def test_same_size_content_change_is_detected_by_hash(work: Path) -> None:
    target = work / "f.txt"
    target.write_text("aaaa")
    before = snapshot(work)
    target.write_text("bbbb")
    os.utime(target, (0, 0))
    changes, _ = compare(before, snapshot(work), prefix="work")
    assert [(c["path"], c["change"], c["size"]) for c in changes] == [("work/f.txt", "modified", 4)]


def test_mode_change_is_a_modification(work: Path) -> None:
    (work / "run.sh").write_text("echo hi\n")
    before = snapshot(work)
    os.chmod(work / "run.sh", 0o755)
    changes, diff = compare(before, snapshot(work), prefix="work")
    assert [(c["path"], c["change"]) for c in changes] == [("work/run.sh", "modified")]
    assert diff == ""  # same text: nothing to diff


def test_no_changes(work: Path) -> None:
    (work / "a.txt").write_text("x")
    (work / "d").mkdir()
    assert compare(snapshot(work), snapshot(work), prefix="work") == ([], "")


def test_symlink_to_outside_file_is_recorded_not_followed(tmp_path: Path, work: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("version one of a host file")
    (work / "link").symlink_to(secret)
    before = snapshot(work)
    entry = before.entries["link"]
    assert entry.kind == "symlink"
    assert entry.target == str(secret)
    assert entry.sha256 is None
    assert entry.text is None

    # The target's content changes; had the walk read through the link, the hash would change.
    secret.write_text("version TWO of a host file, different size")
    after = snapshot(work)
    assert after.entries["link"] == entry
    assert compare(before, after, prefix="work") == ([], "")


def test_symlink_to_outside_directory_is_not_descended(tmp_path: Path, work: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "private.key").write_text("-----BEGIN KEY-----")
    (work / "escape").symlink_to(outside)
    (work / "up").symlink_to("..")
    snap = snapshot(work)
    assert set(snap.entries) == {"escape", "up"}
    assert snap.entries["escape"] == Entry(
        "symlink", snap.entries["escape"].size, snap.entries["escape"].mode, target=str(outside)
    )
    assert snap.entries["up"].target == ".."


def test_symlink_added_and_retargeted(tmp_path: Path, work: Path) -> None:
    before = snapshot(work)
    (work / "link").symlink_to("/etc/passwd")
    middle = snapshot(work)
    changes, diff = compare(before, middle, prefix="outputs")
    assert changes == [
        {"path": "outputs/link", "change": "added", "type": "symlink", "target": "/etc/passwd"}
    ]
    assert diff == ""
    (work / "link").unlink()
    (work / "link").symlink_to("/etc/shadow")
    changes, _ = compare(middle, snapshot(work), prefix="outputs")
    assert changes == [
        {"path": "outputs/link", "change": "modified", "type": "symlink", "target": "/etc/shadow"}
    ]


def test_dangling_symlink(work: Path) -> None:
    (work / "dangling").symlink_to("/nonexistent/target")
    snap = snapshot(work)
    assert snap.entries["dangling"].kind == "symlink"
    assert snap.entries["dangling"].target == "/nonexistent/target"


def test_fifo_is_recorded_without_blocking(work: Path) -> None:
    os.mkfifo(work / "pipe")
    (work / "after.txt").write_text("still walked")
    snap = _snapshot_with_timeout(work)
    assert snap.entries["pipe"] == Entry("fifo", 0, snap.entries["pipe"].mode)
    assert snap.entries["after.txt"].sha256 == _sha(b"still walked")


def test_socket_is_recorded(tmp_path: Path) -> None:
    # AF_UNIX paths are limited to ~108 bytes: use a short directory.
    with tempfile.TemporaryDirectory(prefix="aido") as short:
        root = Path(short)
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(str(root / "s"))
            snap = _snapshot_with_timeout(root)
        finally:
            server.close()
    assert snap.entries["s"].kind == "socket"
    assert snap.entries["s"].sha256 is None


def test_device_nodes_are_never_opened() -> None:
    # /dev holds char devices (e.g. /dev/zero would never end if read); record, never open.
    snap = _snapshot_with_timeout(Path("/dev"), max_depth=1)
    devices = {k: e for k, e in snap.entries.items() if e.kind == "device"}
    assert "null" in devices or "zero" in devices
    assert all(e.sha256 is None for e in devices.values())


def test_sparse_terabyte_file_is_recorded_by_size_not_hashed(work: Path) -> None:
    big = work / "huge.bin"
    with open(big, "wb") as handle:
        handle.truncate(1 << 40)
    started = time.monotonic()
    snap = _snapshot_with_timeout(work, timeout=10)
    assert time.monotonic() - started < 2
    assert snap.entries["huge.bin"] == Entry("file", 1 << 40, snap.entries["huge.bin"].mode, None)
    assert snap.notes == [f"huge.bin: not hashed: larger than {HASH_LIMIT >> 20} MiB"]


def test_grown_sparse_file_shows_as_modified_by_size(work: Path) -> None:
    big = work / "huge.bin"
    with open(big, "wb") as handle:
        handle.truncate(1 << 30)
    before = snapshot(work)
    with open(big, "r+b") as handle:
        handle.truncate(1 << 40)
    changes, _ = compare(before, snapshot(work), prefix="work")
    assert changes == [
        {"path": "work/huge.bin", "change": "modified", "type": "file", "size": 1 << 40, "sha256": None}
    ]


def test_many_files_stop_at_max_entries_with_a_note(work: Path) -> None:
    for i in range(60):
        (work / f"f{i:03d}").write_text(str(i))
    fds = _open_fds()
    snap = snapshot(work, max_entries=25)
    assert len(snap.entries) == 25
    assert snap.notes == ["stopped after 25 entries"]
    assert _open_fds() == fds  # every directory descriptor closed


def test_max_entries_inside_nested_dirs_closes_descriptors(work: Path) -> None:
    for d in range(5):
        sub = work / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for i in range(10):
            (sub / f"f{i}").write_text("x")
    fds = _open_fds()
    snap = snapshot(work, max_entries=17)
    assert len(snap.entries) == 17
    assert "stopped after 17 entries" in snap.notes
    assert _open_fds() == fds


def test_deep_nesting_stops_at_max_depth_with_a_note(work: Path) -> None:
    deep = work
    for level in range(10):
        deep = deep / f"l{level}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("deep")
    fds = _open_fds()
    snap = snapshot(work, max_depth=3)
    assert set(snap.entries) == {"l0", "l0/l1", "l0/l1/l2"}
    assert snap.notes == ["l0/l1/l2: not descended: deeper than 3 levels"]
    assert _open_fds() == fds


def test_default_depth_limit_bounds_a_very_deep_tree(work: Path) -> None:
    deep = work
    for _ in range(60):
        deep = deep / "d"
    deep.mkdir(parents=True)
    snap = snapshot(work)
    assert max(len(p.split("/")) for p in snap.entries) == 32
    assert any("not descended: deeper than 32 levels" in n for n in snap.notes)


def test_missing_root_is_a_note(tmp_path: Path) -> None:
    snap = snapshot(tmp_path / "nope")
    assert snap.entries == {}
    assert snap.notes == ["nope: not walked: No such file or directory"]


def test_root_that_is_a_symlink_is_not_walked(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "x").write_text("x")
    (tmp_path / "work").symlink_to(real)
    snap = snapshot(tmp_path / "work")
    assert snap.entries == {}
    assert len(snap.notes) == 1
    assert snap.notes[0].startswith("work: not walked: ")


def test_unreadable_file_and_directory_are_noted() -> None:
    def body(base: Path) -> None:
        work = base / "work"
        (work / "closed").mkdir(parents=True)
        (work / "closed" / "inside.txt").write_text("x")
        (work / "locked.txt").write_text("x")
        (work / "ok.txt").write_text("ok")
        os.chmod(work / "locked.txt", 0)
        os.chmod(work / "closed", 0)
        fds = _open_fds()
        snap = snapshot(work)
        assert snap.entries["locked.txt"].kind == "file"
        assert snap.entries["locked.txt"].sha256 is None
        assert snap.entries["closed"].kind == "dir"
        assert "closed/inside.txt" not in snap.entries
        assert snap.entries["ok.txt"].sha256 == _sha(b"ok")
        assert sorted(snap.notes) == [
            "closed: not walked: Permission denied",
            "locked.txt: unreadable: Permission denied",
        ]
        assert _open_fds() == fds

    as_unprivileged(body)


# -- diffs ----------------------------------------------------------------------------------------


def test_unified_diff_for_small_text_files(work: Path) -> None:
    (work / "notes.txt").write_text("one\ntwo\nthree\n")
    (work / "old.txt").write_text("remove me\n")
    before = snapshot(work)
    (work / "notes.txt").write_text("one\n2\nthree\n")
    (work / "old.txt").unlink()
    (work / "new.txt").write_text("brand new\n")
    _, diff = compare(before, snapshot(work), prefix="work")
    assert diff == (
        "--- /dev/null\n"
        "+++ b/work/new.txt\n"
        "@@ -0,0 +1 @@\n"
        "+brand new\n"
        "--- a/work/notes.txt\n"
        "+++ b/work/notes.txt\n"
        "@@ -1,3 +1,3 @@\n"
        " one\n"
        "-two\n"
        "+2\n"
        " three\n"
        "--- a/work/old.txt\n"
        "+++ /dev/null\n"
        "@@ -1 +0,0 @@\n"
        "-remove me\n"
    )


def test_diff_marks_missing_final_newline(work: Path) -> None:
    (work / "a.txt").write_text("x\ny")
    before = snapshot(work)
    (work / "a.txt").write_text("x\nz")
    _, diff = compare(before, snapshot(work), prefix="work")
    assert "-y\n\\ No newline at end of file\n" in diff
    assert "+z\n\\ No newline at end of file\n" in diff


def test_no_diff_for_binary_files(work: Path) -> None:
    (work / "data.bin").write_bytes(b"text\x00more")
    before = snapshot(work)
    (work / "data.bin").write_bytes(b"text\x00changed")
    (work / "added.bin").write_bytes(b"\x00\x01\x02")
    (work / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))  # not UTF-8: binary for us
    changes, diff = compare(before, snapshot(work), prefix="work")
    assert {c["path"] for c in changes} == {"work/data.bin", "work/added.bin", "work/latin1.txt"}
    assert diff == ""


def test_no_diff_for_large_text_files(work: Path) -> None:
    big = work / "big.txt"
    big.write_text("a\n" * (TEXT_LIMIT // 2 + 10))
    assert big.stat().st_size > TEXT_LIMIT
    before = snapshot(work)
    assert before.entries["big.txt"].text is None
    assert before.entries["big.txt"].sha256 is not None
    big.write_text("b\n" * (TEXT_LIMIT // 2 + 10))
    changes, diff = compare(before, snapshot(work), prefix="work")
    assert [c["change"] for c in changes] == ["modified"]
    assert diff == ""


def test_file_replaced_by_directory(work: Path) -> None:
    (work / "thing").write_text("file\n")
    before = snapshot(work)
    (work / "thing").unlink()
    (work / "thing").mkdir()
    changes, diff = compare(before, snapshot(work), prefix="work")
    assert changes == [{"path": "work/thing", "change": "modified", "type": "dir"}]
    assert diff == ""


def test_empty_directories_are_not_changes(work: Path) -> None:
    before = snapshot(work)
    (work / "empty").mkdir()
    assert compare(before, snapshot(work), prefix="work") == ([], "")


def test_permissions_recorded_from_lstat(work: Path) -> None:
    (work / "x").write_text("x")
    os.chmod(work / "x", 0o4755)
    assert snapshot(work).entries["x"].mode == stat.S_IMODE(os.lstat(work / "x").st_mode)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain.txt", "plain.txt"),
        ("caf\u00e9", "caf\u00e9"),
        ("new\nline", "new\\x0aline"),
        ("esc\x1b]0;t\x07", "esc\\x1b]0;t\\x07"),
        ("c1\u009b2J", "c1\\x9b2J"),
        (os.fsdecode(b"bad\xff"), "bad\\xff"),
    ],
)
def test_display_name_escapes_what_could_forge_or_break_evidence(raw: str, shown: str) -> None:
    assert display_name(raw) == shown
    assert shown.encode("utf-8")  # always encodable: json.dumps and the diff never fail on it


def test_sparse_and_over_budget_files_are_recorded_by_size_without_reading(tmp_path: Path) -> None:
    (tmp_path / "sparse").write_bytes(b"")
    os.truncate(tmp_path / "sparse", 200 << 20)
    snap = snapshot(tmp_path)
    entry = snap.entries["sparse"]
    assert (entry.kind, entry.size, entry.sha256) == ("file", 200 << 20, None)
    assert any("sparse" in note for note in snap.notes)


def test_an_entry_swapped_between_file_and_symlink_is_recorded_consistently(tmp_path: Path) -> None:
    # A task flips a name between a regular file and a symlink while the host walks it:
    # each look must pair the type with its own content (a symlink always has its target,
    # a file its hash), never a symlink type with a missing target.
    root = tmp_path / "outputs"
    root.mkdir()
    target = str(tmp_path / "elsewhere")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            (root / "x.tmp").write_text("decoy\n")
            os.replace(root / "x.tmp", root / "x")
            if os.path.lexists(root / "l.tmp"):
                os.remove(root / "l.tmp")
            os.symlink(target, root / "l.tmp")
            os.replace(root / "l.tmp", root / "x")

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    kinds = set()
    try:
        for _ in range(3000):
            entry = snapshot(root).entries.get("x")
            if entry is None:
                continue
            kinds.add(entry.kind)
            if entry.kind == "symlink":
                assert entry.target == target
            elif entry.kind == "file":
                assert entry.sha256 == _sha(b"decoy\n")
            else:
                assert entry.kind == "other"  # changed under every look: recorded as such
    finally:
        stop.set()
        swapper.join()
    assert {"file", "symlink"} <= kinds


def test_exclude_skips_only_top_level_names(work: Path) -> None:
    (work / ".aido").mkdir()
    (work / ".aido" / "state.json").write_text("{}")
    (work / "sub" / ".aido").mkdir(parents=True)
    (work / "sub" / ".aido" / "kept.txt").write_text("kept")
    taken = snapshot(work, exclude=frozenset({".aido"}))
    assert not [path for path in taken.entries if path.startswith(".aido")]
    assert "sub/.aido/kept.txt" in taken.entries
