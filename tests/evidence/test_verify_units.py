"""The pure parts of verify and export, without a sandbox: the tar reader refuses what it
must without writing anything, the tree never follows a link, the export writer leaves no
partial bundle, findings read as documented, and the verdict follows from them."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from aido.evidence.attestation import FAIL, INFO, WARN, Finding, Seal, verdict
from aido.evidence.bundle import read_bundle, write_bundle
from aido.evidence.eventlog import EventLog
from aido.evidence.tree import DIR, FILE, LINK, DirTree


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def test_the_reader_refuses_unsafe_links_devices_and_duplicates(tmp_path: Path) -> None:
    fifo = tarfile.TarInfo("runs/run-001/fifo")
    fifo.type = tarfile.FIFOTYPE
    hard = tarfile.TarInfo("events.log.link")
    hard.type, hard.linkname = tarfile.LNKTYPE, "events.log"
    bundle = _tar(
        tmp_path / "b.tar.gz",
        [
            (tarfile.TarInfo("events.log"), b"{}\n"),
            (tarfile.TarInfo("events.log"), b"{}\n"),
            (tarfile.TarInfo("/etc/evil"), b"x"),
            (tarfile.TarInfo("a/../../evil"), b"x"),
            (fifo, b""),
            (hard, b""),
        ],
    )
    before = sorted(os.listdir(tmp_path))
    tree, found = read_bundle(bundle)
    assert [f.code for f in found] == [
        "duplicate_member",
        "unsafe_member",
        "unsafe_member",
        "special_member",
        "link_member",
    ]
    assert all(f.level == FAIL for f in found)
    assert sorted(os.listdir(tmp_path)) == before
    assert (
        tree.kind("events.log") == FILE and tree.sha256("events.log") == hashlib.sha256(b"{}\n").hexdigest()
    )


def test_a_file_that_is_not_a_tar_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    assert _codes(read_bundle(path)[1]) == {"bundle_invalid"}


def test_the_tree_never_follows_a_link_on_the_way(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stdout.log").write_text("hi\n")
    root = tmp_path / "sandbox"
    (root / "runs").mkdir(parents=True)
    (root / "runs" / "run-001").symlink_to(elsewhere)
    tree = DirTree(root)
    assert tree.kind("runs/run-001") == LINK
    assert tree.kind("runs/run-001/stdout.log") is None
    with pytest.raises(OSError):
        tree.read("runs/run-001/stdout.log")
    assert tree.walk("runs") == [("runs/run-001", LINK)]
    (root / "runs" / "run-002").mkdir()
    os.mkfifo(root / "runs" / "run-002" / "pipe")
    with pytest.raises(OSError):
        tree.sha256("runs/run-002/pipe")  # not opened for reading: would block
    assert ("runs/run-002", DIR) in tree.walk("runs")


def test_an_export_that_fails_leaves_no_file(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    (root / "runs" / "run-001").mkdir(parents=True)
    (root / "runs" / "run-001" / "stdout.log").write_text("changed since the seal\n")
    (root / "events.log").write_text("{}\n")
    seal = Seal(
        "run-001",
        "0" * 64,
        "trusted",
        {"subject": [{"name": "runs/run-001/stdout.log", "digest": {"sha256": "0" * 64}}], "predicate": {}},
    )
    out = tmp_path / "out" / "run.tar.gz"
    out.parent.mkdir()
    with pytest.raises(OSError, match="changed while it was exported"):
        write_bundle(DirTree(root), b"{}", seal, b"pem", out, outputs=True)
    assert list(out.parent.iterdir()) == []


def test_findings_read_as_documented() -> None:
    digest_a, digest_b = "9f1c" + "0" * 60, "02ab" + "1" * 60
    finding = Finding(
        FAIL,
        "digest_mismatch",
        "runs/run-003/stdout.log",
        "sha256 mismatch",
        f"sha256:{digest_a}",
        f"sha256:{digest_b}",
    )
    assert finding.line() == (
        "FAIL runs/run-003/stdout.log: sha256 mismatch (expected sha256:9f1c0000…, found sha256:02ab1111…)"
    )
    assert finding.as_json()["expected"] == f"sha256:{digest_a}"


def test_the_verdict() -> None:
    info = Finding(INFO, "output_changed_later", "outputs/a", "m")
    warn = Finding(WARN, "unsealed_tail", "events.log", "m")
    cannot = Finding(WARN, "untrusted_key", "x", "m")
    fail = Finding(FAIL, "missing", "x", "m")
    assert verdict([]) == 0 and verdict([info]) == 0 and verdict([info], strict=True) == 0
    assert verdict([warn]) == 0 and verdict([warn], strict=True) == 1
    assert verdict([cannot]) == 4 and verdict([cannot], strict=True) == 1
    assert verdict([cannot, fail]) == 1


def test_prefix_digests_match_whatever_order_they_are_asked_in() -> None:
    data = b"".join(b'{"n":%d}\n' % n for n in range(1, 9))
    log = EventLog(data)
    lines = data.splitlines(keepends=True)
    for n in (3, 5, 8, 2, 8, 1):
        assert log.prefix_sha256(n) == hashlib.sha256(b"".join(lines[:n])).hexdigest()


def test_a_bundle_retarred_with_dot_slash_names_reads_the_same(tmp_path: Path) -> None:
    bundle = _tar(tmp_path / "b.tar.gz", [(tarfile.TarInfo("./events.log"), b"{}\n")])
    tree, found = read_bundle(bundle)
    assert found == [] and tree.kind("events.log") == FILE
