"""The snapshot on trees a hostile task can leave: wide trees under a low descriptor
limit, names as long and as odd as the kernel allows, floods of entries it has notes
about. It must record what it can, say what it did not, in bounded descriptors and
memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aido.evidence import snapshot as snapshots
from aido.evidence.snapshot import snapshot
from tests.helpers.files import in_child


def test_a_wide_tree_is_walked_whole_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    """The walk used to open every subdirectory of a directory before walking any: 600
    of them under a 256-descriptor limit left 350 "not walked: Too many open files"."""
    work = tmp_path / "work"
    for i in range(600):
        (work / f"d{i:03d}").mkdir(parents=True)
        (work / f"d{i:03d}" / "f.txt").write_text(str(i))

    def walk() -> None:
        snap = snapshot(work)
        assert snap.notes == []
        assert len(snap.entries) == 1200
        assert snap.entries["d599/f.txt"].sha256 is not None

    in_child(walk, max_fds=256)


def test_the_longest_odd_names_at_full_depth_stay_in_bounded_memory(tmp_path: Path) -> None:
    """31 levels of 255-byte names that are not UTF-8 (each byte shown as \\xff: 1,020
    characters a level), 10,000 files at the bottom: 300+ MB of paths if all were kept.
    The walk keeps a bounded amount of names and says where it stopped."""
    work = tmp_path / "work"
    work.mkdir()
    name = b"\xff" * 255
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(31):
        os.mkdir(name, dir_fd=fd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    for i in range(10_000):
        os.close(os.open(name[:-6] + b"%06d" % i, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)

    def walk() -> None:
        snap = snapshot(work)
        assert 100 < len(snap.entries) < 10_000
        assert snap.notes[-1].startswith(f"stopped after {len(snap.entries)} entries: their names passed")
        assert all("\\xff" in path and "\udcff" not in path for path in snap.entries)

    in_child(walk, max_rss=150 << 20)


def test_notes_about_a_flood_of_odd_files_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshots, "MAX_NOTES", 10)
    work = tmp_path / "work"
    work.mkdir()
    for i in range(40):
        with open(work / f"sparse{i:02d}", "wb") as handle:
            handle.truncate(1 << 30)
    snap = snapshot(work, max_entries=30)
    assert len(snap.entries) == 30
    assert len(snap.notes) == 12
    assert all("not hashed" in note for note in snap.notes[:10])
    assert snap.notes[10:] == ["20 more notes not kept", "stopped after 30 entries"]
    assert all(entry.sha256 is None and entry.size == 1 << 30 for entry in snap.entries.values())
