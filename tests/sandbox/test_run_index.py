"""The append-only run index (runs.jsonl, store/runindex.py): a run appends to it and never
rewrites sandbox.json; a schema-1 sandbox.json (which listed its runs) is migrated; a torn
last line is tolerated, a bad middle line is an error naming file:line; concurrent runs
leave one consistent index. Parsing and migration logic without an engine, the rest
through the real CLI and engine."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aido import fs
from aido.errors import MetadataError
from aido.store import archive, runindex
from aido.store.records import RunRef, SandboxRecord
from aido.store.store import SandboxStore, marked_running
from aido.store.workspace import DIRNAME, Workspace
from tests.helpers.cli import Aido, spawn
from tests.helpers.files import load, write
from tests.helpers.sandbox import indexed_runs, record, sandbox_root

SID = "abcdefabcdef"


def _ref(number: int, status: str = "success", **fields: Any) -> RunRef:
    rid = f"run-{number:03d}"
    closed = status != "running"
    return RunRef(
        run_id=rid,
        task="t.py",
        status=status,
        started_at="2026-01-01T10:00:00Z",
        completed_at="2026-01-01T10:00:01Z" if closed else None,
        duration_ms=1000 if closed else None,
        exit_code=0 if closed else None,
        evidence=f"runs/{rid}",
        **fields,
    )


def _v1(runs: list[RunRef], **fields: Any) -> dict[str, Any]:
    """A schema-1 sandbox.json as aido 0.x wrote it: the runs listed inside."""
    return {
        "schema_version": 1,
        "id": SID,
        "name": None,
        "created_at": "2026-01-01T10:00:00Z",
        "expires_at": "2099-01-01T10:15:00Z",
        "status": "created",
        "config": {},
        "task_user": "10001:10001",
        "runtime_backend": "docker",
        "auto_cleanup": True,
        "runs": [dict(vars(r)) for r in runs],
        **fields,
    }


@pytest.fixture
def store(tmp_path: Path) -> SandboxStore:
    (tmp_path / DIRNAME / "sandboxes").mkdir(parents=True)
    return SandboxStore(Workspace(tmp_path.resolve()))


def _hand_written(store: SandboxStore, runs: list[RunRef], *, dirs: bool = True) -> Path:
    paths = store.paths(SID)
    paths.runs.mkdir(parents=True)
    for ref in runs if dirs else []:
        paths.run_dir(ref.run_id).mkdir()
    paths.metadata.write_text(json.dumps(_v1(runs), indent=2))
    return paths.root


# -- parsing --------------------------------------------------------------------------------


def test_the_last_line_for_a_run_wins_in_first_appearance_order() -> None:
    lines = [_ref(1, "running"), _ref(2, "running"), _ref(2), _ref(1, "failed")]
    runs = runindex.parse(b"".join(runindex.encode(r) for r in lines), "runs.jsonl")
    assert [(r.run_id, r.status) for r in runs] == [("run-001", "failed"), ("run-002", "success")]


def test_an_entry_is_one_compact_line_with_the_run_ref_fields() -> None:
    line = runindex.encode(_ref(7, artifacts=["runs/run-007/stdout.log"]))
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b", " not in line
    assert json.loads(line) == dict(vars(_ref(7, artifacts=["runs/run-007/stdout.log"])))


def test_a_torn_last_line_is_ignored_with_a_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    data = runindex.encode(_ref(1)) + runindex.encode(_ref(2, "running")) + b'{"run_id":"run-002","ta'
    with caplog.at_level(logging.DEBUG, logger="aido"):
        runs = runindex.parse(data, "x/runs.jsonl")
    assert [(r.run_id, r.status) for r in runs] == [("run-001", "success"), ("run-002", "running")]
    assert "x/runs.jsonl: ignoring a torn last line (23 bytes" in caplog.text


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"{not json\n", "Expecting property name"),
        (
            b'{"run_id":"run-009","task":"t.py","status":"exploded","started_at":"2026-01-01T10:00:00Z"}\n',
            "exploded",
        ),
        (b'{"run_id":"run-009","pwned":1}\n', "unknown run field(s): pwned"),
        (b"[1, 2]\n", "runs must be objects"),
    ],
)
def test_a_bad_middle_line_is_an_error_naming_file_and_line(bad: bytes, reason: str) -> None:
    data = runindex.encode(_ref(1)) + bad + runindex.encode(_ref(2))
    with pytest.raises(MetadataError) as caught:
        runindex.parse(data, "x/runs.jsonl")
    assert caught.value.message.startswith("x/runs.jsonl:2 is invalid: ")
    assert reason in caught.value.message
    assert caught.value.hint == "restore it or destroy the sandbox"


def test_an_append_cuts_off_a_torn_tail_first(tmp_path: Path) -> None:
    index = tmp_path / "runs.jsonl"
    index.write_bytes(runindex.encode(_ref(1, "running")) + b'{"run_id":"run-001","status":"succ')
    runindex.append(index, [_ref(1)])
    assert index.read_bytes() == runindex.encode(_ref(1, "running")) + runindex.encode(_ref(1))
    index.write_bytes(b'{"torn, and the only line')
    runindex.append(index, [_ref(2)])
    assert index.read_bytes() == runindex.encode(_ref(2))


def test_the_index_is_never_read_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(runindex.encode(_ref(1)))
    (tmp_path / "runs.jsonl").symlink_to(target)
    with pytest.raises(MetadataError, match="unreadable"):
        runindex.read(tmp_path / "runs.jsonl")
    with pytest.raises(OSError):
        runindex.append(tmp_path / "runs.jsonl", [_ref(2)])
    assert target.read_bytes() == runindex.encode(_ref(1))


# -- the store: appends, migration ----------------------------------------------------------


def test_begin_and_close_append_and_leave_sandbox_json_alone(store: SandboxStore) -> None:
    root = _hand_written(store, [])
    paths = store.paths(SID)
    os.close(store.begin_run(SID, "t.py")[2])  # the first write migrates the (empty) schema-1 file
    before = paths.metadata.read_bytes()
    stat = paths.metadata.stat()
    os.close(store.begin_run(SID, "t.py")[2])
    assert marked_running(paths) == ["run-001", "run-002"]
    store.close_run(SID, _ref(2))
    assert paths.metadata.read_bytes() == before
    assert (paths.metadata.stat().st_ino, paths.metadata.stat().st_mtime_ns) == (
        stat.st_ino,
        stat.st_mtime_ns,
    )
    lines = (root / "runs.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["running", "running", "success"]
    assert marked_running(paths) == ["run-001"]  # run-002's marker went with its closed entry


def test_a_schema_1_sandbox_is_migrated_at_its_first_write(store: SandboxStore) -> None:
    old = [_ref(1), _ref(2, "failed"), _ref(3, "running")]
    root = _hand_written(store, old)
    paths = store.paths(SID)
    loaded = store.load(SID)  # reading migrates in memory only: the file stays as it is
    assert [r.run_id for r in loaded.runs] == ["run-001", "run-002", "run-003"]
    assert load(paths.metadata)["schema_version"] == 1 and not paths.run_index.exists()

    rid, _, lock_fd = store.begin_run(SID, "t.py")
    os.close(lock_fd)
    assert rid == "run-004"
    data = load(paths.metadata)
    assert data["schema_version"] == 2 and "runs" not in data
    assert {k: v for k, v in data.items()} == {k: v for k, v in _v1([]).items() if k != "runs"} | {
        "schema_version": 2
    }
    assert [dict(vars(r)) for r in runindex.read(paths.run_index)] == [
        *[dict(vars(r)) for r in old],
        dict(vars(runindex.read(paths.run_index)[-1])),
    ]
    assert [(r.run_id, r.status) for r in store.load(SID).runs][-1] == ("run-004", "running")
    # The run it listed as running is one a sweep must still find: it got its marker.
    assert marked_running(paths) == ["run-003", "run-004"]
    assert sorted(p.name for p in root.iterdir()) == [
        ".lock",
        ".running",
        "runs",
        "runs.jsonl",
        "sandbox.json",
    ]


def test_a_migrated_run_whose_directory_is_gone_keeps_its_id(store: SandboxStore) -> None:
    _hand_written(store, [_ref(1), _ref(5)], dirs=False)
    rid, _, lock_fd = store.begin_run(SID, "t.py")
    os.close(lock_fd)
    assert rid == "run-006"


def test_a_migration_cut_short_is_finished_and_the_index_wins(store: SandboxStore) -> None:
    # A crash after the index was written, before sandbox.json lost its list: both exist,
    # and the index is newer (run-002 closed since).
    _hand_written(store, [_ref(1), _ref(2, "running")])
    paths = store.paths(SID)
    runindex.append(paths.run_index, [_ref(1), _ref(2, "running"), _ref(2, "failed")])
    assert [(r.run_id, r.status) for r in store.load(SID).runs] == [
        ("run-001", "success"),
        ("run-002", "failed"),
    ]
    with store.transaction(SID):
        pass
    assert "runs" not in load(paths.metadata)
    assert [(r.run_id, r.status) for r in store.load(SID).runs] == [
        ("run-001", "success"),
        ("run-002", "failed"),
    ]
    assert marked_running(paths) == []  # the index said run-002 had closed: no marker


def test_a_newer_schema_is_still_refused(store: SandboxStore) -> None:
    _hand_written(store, [])
    paths = store.paths(SID)
    paths.metadata.write_text(json.dumps({**_v1([]), "schema_version": 3}))
    before = paths.metadata.read_bytes()
    with pytest.raises(MetadataError, match="written by a newer aido"):
        store.begin_run(SID, "t.py")
    assert paths.metadata.read_bytes() == before and not paths.run_index.exists()


def test_archiving_a_schema_1_sandbox_moves_its_runs_into_the_index(store: SandboxStore) -> None:
    root = _hand_written(store, [_ref(1), _ref(2, "running")])
    staging = root.parent.parent / "archive" / f"{SID}.partial"
    staging.parent.mkdir()
    os.rename(root, staging)
    final = archive.finish(store.workspace, staging, release=lambda paths: None)
    assert final is not None
    data = load(final / "sandbox.json")
    assert (data["schema_version"], data["status"], "runs" in data) == (2, "destroyed", False)
    record = SandboxRecord.from_json(data, source="x", run_index=final / "runs.jsonl")
    assert [(r.run_id, r.status) for r in record.runs] == [("run-001", "success"), ("run-002", "interrupted")]
    assert sorted(p.name for p in final.iterdir()) == ["runs", "runs.jsonl", "sandbox.json"]


# -- the real CLI and engine -----------------------------------------------------------------


def _listing(aido: Aido, sandbox_id: str) -> dict[str, Any]:
    """What `sandbox list`, `runs`, `show` and `logs` say about a sandbox's runs."""
    listed = aido("sandbox", "list", "--all", "--json")
    runs = aido("runs", "--sandbox", sandbox_id, "--json")
    show = aido("show", "1", "--sandbox", sandbox_id, "--json")
    logs = aido("logs", "--sandbox", sandbox_id, "--run", "1")
    latest = aido("logs", "--sandbox", sandbox_id)
    for result in (listed, runs, show, logs, latest):
        assert result.code == 0, result.stderr
    (item,) = [s for s in listed.json["sandboxes"] if s["id"] == sandbox_id]
    return {
        "count": item["runs"],
        "runs": [(r["run_id"], r["status"]) for r in runs.json["runs"]],
        "show": (show.json["run"]["run_id"], show.json["run"]["status"]),
        "logs": logs.stdout,
        "latest": latest.stdout,
    }


def test_a_run_appends_to_the_index_and_never_rewrites_sandbox_json(
    sandbox: str, aido: Aido, project: Path
) -> None:
    write(project / "t.py", "print('hi')\n")
    metadata = sandbox_root(project, sandbox) / "sandbox.json"
    before, stat = metadata.read_bytes(), metadata.stat()
    for _ in range(2):
        result = aido("run", "t.py")
        assert result.code == 0, result.stderr
    # Fails on the old code, which rewrote sandbox.json two or three times per run.
    assert metadata.read_bytes() == before
    assert (metadata.stat().st_ino, metadata.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert "runs" not in load(metadata)
    lines = [json.loads(line) for line in (metadata.parent / "runs.jsonl").read_text().splitlines()]
    assert [(e["run_id"], e["status"]) for e in lines] == [
        ("run-001", "running"),
        ("run-001", "success"),
        ("run-002", "running"),
        ("run-002", "success"),
    ]
    assert lines[-1] == record(project, sandbox)["runs"][-1]
    assert list((metadata.parent / ".running").iterdir()) == []


def _to_schema_1(root: Path) -> None:
    """Rewrite a sandbox (live or archived) as aido before the run index left it: the
    runs listed in sandbox.json, no runs.jsonl."""
    data = load(root / "sandbox.json")
    runs = indexed_runs(root)
    (root / "runs.jsonl").unlink()
    (root / "sandbox.json").write_text(json.dumps({**data, "schema_version": 1, "runs": runs}, indent=2))


def test_a_schema_1_workspace_reads_the_same_before_and_after_migration(
    sandbox: str, aido: Aido, project: Path
) -> None:
    write(project / "t.py", "import sys\nprint('out', sys.argv[1:])\n")
    for arg in ("a", "b"):
        assert aido("run", "t.py", "--", arg).code == 0
    root = sandbox_root(project, sandbox)
    expected = _listing(aido, sandbox)
    assert expected["count"] == 2 and expected["runs"] == [("run-001", "success"), ("run-002", "success")]
    assert (expected["logs"], expected["latest"]) == ("out ['a']\n", "out ['b']\n")

    _to_schema_1(root)
    old = (root / "sandbox.json").read_bytes()
    assert _listing(aido, sandbox) == expected  # read as it is, not rewritten by readers
    assert (root / "sandbox.json").read_bytes() == old and not (root / "runs.jsonl").exists()

    result = aido("run", "t.py", "--", "c")  # the first write migrates
    assert result.code == 0, result.stderr
    data = load(root / "sandbox.json")
    assert data["schema_version"] == 2 and "runs" not in data
    after = _listing(aido, sandbox)
    assert after["count"] == 3
    assert after["runs"] == [*expected["runs"], ("run-003", "success")]
    assert (after["show"], after["logs"], after["latest"]) == (expected["show"], "out ['a']\n", "out ['c']\n")


def test_schema_1_archives_read_and_a_schema_1_sandbox_archives_with_its_index(
    sandbox: str, aido: Aido, project: Path
) -> None:
    write(project / "t.py", "print('kept')\n")
    assert aido("run", "t.py").code == 0
    root = sandbox_root(project, sandbox)
    _to_schema_1(root)
    assert aido("sandbox", "destroy", sandbox).code == 0  # archives it: the runs move into the index
    archived = project / ".aido" / "archive" / sandbox
    data = load(archived / "sandbox.json")
    assert (data["schema_version"], data["status"], "runs" in data) == (2, "destroyed", False)
    assert [(r["run_id"], r["status"]) for r in indexed_runs(archived)] == [("run-001", "success")]
    expected = _listing(aido, sandbox)
    assert expected["runs"] == [("run-001", "success")] and expected["logs"] == "kept\n"

    # An archive made by an aido before the index: read from its sandbox.json as it is.
    _to_schema_1(archived)
    old = (archived / "sandbox.json").read_bytes()
    assert _listing(aido, sandbox) == expected
    assert (archived / "sandbox.json").read_bytes() == old


def test_a_torn_last_line_is_tolerated_and_cut_off_by_the_next_run(
    sandbox: str, aido: Aido, project: Path
) -> None:
    write(project / "t.py", "print('hi')\n")
    assert aido("run", "t.py").code == 0
    index = sandbox_root(project, sandbox) / "runs.jsonl"
    with index.open("ab") as handle:
        handle.write(b'{"run_id":"run-002","task":"t.py","sta')  # a crash mid-append
    listed = aido("runs", "--json")
    assert listed.code == 0, listed.stderr
    assert [r["run_id"] for r in listed.json["runs"]] == ["run-001"]
    assert aido("run", "t.py").code == 0
    lines = [json.loads(line) for line in index.read_text().splitlines()]  # every line whole again
    assert [(e["run_id"], e["status"]) for e in lines][-2:] == [
        ("run-002", "running"),
        ("run-002", "success"),
    ]


def test_a_damaged_index_names_its_line(sandbox: str, aido: Aido, project: Path) -> None:
    write(project / "t.py", "print('hi')\n")
    assert aido("run", "t.py").code == 0
    index = sandbox_root(project, sandbox) / "runs.jsonl"
    lines = index.read_bytes().splitlines(keepends=True)
    index.write_bytes(lines[0] + b"garbage\n" + b"".join(lines[1:]))
    result = aido("runs", "--sandbox", sandbox)
    assert result.code == 3
    assert f"{index}:2 is invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_runs_leave_a_consistent_index(sandbox: str, aido: Aido, project: Path) -> None:
    write(project / "t.py", "print('hi')\n")
    processes = [
        spawn(project, "run", "t.py", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(10)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    root = sandbox_root(project, sandbox)
    lines = [json.loads(line) for line in (root / "runs.jsonl").read_bytes().splitlines()]
    ids = [f"run-{n:03d}" for n in range(1, 11)]
    assert sorted(e["run_id"] for e in lines) == sorted(ids * 2)  # one running and one closed line each
    for rid in ids:
        assert [e["status"] for e in lines if e["run_id"] == rid] == ["running", "success"]
    assert sorted(p.name for p in (root / "runs").iterdir()) == ids
    assert list((root / ".running").iterdir()) == []
    assert fs.read_json(root / "sandbox.json")["schema_version"] == 2
    listed = aido("sandbox", "list", "--json")
    assert [s["runs"] for s in listed.json["sandboxes"]] == [10]
