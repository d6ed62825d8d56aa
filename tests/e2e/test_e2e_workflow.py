"""The whole user workflow through the real ``aido`` command and the real engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import load, sha256, write
from tests.helpers.sandbox import events, record, run_dir, sandbox_root, sandbox_up, summary

pytestmark = pytest.mark.docker

HELLO = 'print("hello from the sandbox")\n'
RUN_ENVELOPE_KEYS = {
    "schema_version",
    "command",
    "status",
    "sandbox_id",
    "run_id",
    "task",
    "task_source",
    "exit_code",
    "duration_ms",
    "timed_out",
    "oom_killed",
    "pids_limit_reached",
    "stop_reason",
    "message",
    "limits_exceeded",
    "exit_code_of_run",
    "artifacts",
    "outputs_dir",
    "evidence_dir",
    "output",
    "changes",
    "network",
    "error",
}
ENVELOPE_KEYS = {"schema_version", "command", "status", "error"}


def test_full_workflow_up_run_logs_list_destroy(aido: Aido, project: Path) -> None:
    # sandbox up: the id alone on stdout, the human line on stderr.
    up = aido("sandbox", "up")
    assert up.code == 0, up.stderr
    sandbox_id = up.stdout.strip()
    assert re.fullmatch(r"[a-z0-9]{12}", sandbox_id)
    assert up.stdout == f"{sandbox_id}\n"
    assert f"✓ Sandbox created: {sandbox_id}" in up.stderr

    root = sandbox_root(project, sandbox_id)
    for sub in ("inputs", "work", "outputs", "runs"):
        assert (root / sub).is_dir(), sub
    assert (root / "sandbox.json").is_file()
    assert (root / "events.log").is_file()
    assert (project / ".aido" / "active").read_text().strip() == sandbox_id
    assert "*" in (project / ".aido" / ".gitignore").read_text().splitlines()

    meta = record(project, sandbox_id)
    assert meta["schema_version"] == 2
    assert meta["id"] == sandbox_id
    assert meta["status"] == "created"
    assert meta["runs"] == []
    assert isinstance(meta["config"], dict)
    assert meta["config"]["ttl"] == "15m"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created_at"])
    assert meta["expires_at"] > meta["created_at"]
    assert [e["event"] for e in events(root / "events.log")] == ["sandbox_created"]

    # run
    write(project / "hello.py", HELLO)
    ran = aido("run", "hello.py")
    assert ran.code == 0, ran.stderr
    assert ran.stdout == "hello from the sandbox\n"
    evidence = run_dir(project, sandbox_id)
    assert sorted(p.name for p in evidence.iterdir()) == [
        "attestation.intoto.json",  # the run's seal
        "stderr.log",
        "stdout.log",
        "summary.json",
        "task",
    ]
    assert (evidence / "task" / "hello.py").read_text() == HELLO
    assert (evidence / "stdout.log").read_text() == "hello from the sandbox\n"
    assert (evidence / "stderr.log").read_text() == ""
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "success"
    assert run_summary["exit_code"] == 0
    assert (run_summary["oom_killed"], run_summary["pids_limit_reached"]) == (False, False)
    assert run_summary["sandbox_id"] == sandbox_id
    assert run_summary["run_id"] == "run-001"
    assert run_summary["task"] == "hello.py"
    assert run_summary["task_sha256"] == sha256(HELLO)
    assert run_summary["command"] == ["python", "/work/hello.py"]
    assert run_summary["runtime"] == "python:3.11"
    assert run_summary["image"] == "python:3.11-slim"
    assert run_summary["image_id"].startswith("sha256:")
    assert run_summary["output"]["stdout"]["bytes_captured"] == len("hello from the sandbox\n")
    assert run_summary["artifacts"] == [
        "runs/run-001/task/hello.py",
        "runs/run-001/stdout.log",
        "runs/run-001/stderr.log",
        "runs/run-001/summary.json",
        "runs/run-001/attestation.intoto.json",  # written last, listed here so nothing is saved twice
    ]
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["run_id"] == "run-001"
    assert ref["status"] == "success"
    assert ref["exit_code"] == 0
    assert ref["evidence"] == "runs/run-001"
    run_events = [e for e in events(root / "events.log") if e.get("run_id") == "run-001"]
    assert [e["event"] for e in run_events] == ["run_started", "run_completed", "run_sealed"]
    assert run_events[1]["status"] == "success"

    # logs
    logs = aido("logs")
    assert logs.code == 0, logs.stderr
    assert logs.stdout == "hello from the sandbox\n"

    # list
    listed = aido("sandbox", "list")
    assert listed.code == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if sandbox_id in line]
    assert row.lstrip().startswith(f"* {sandbox_id}")
    assert row.split()[-1] == "1"  # RUNS column

    # destroy
    destroyed = aido("sandbox", "destroy")
    assert destroyed.code == 0, destroyed.stderr
    assert f"✓ Sandbox destroyed: {sandbox_id}" in destroyed.stderr
    assert not root.exists()
    assert not (project / ".aido" / "active").exists()
    last = events(project / ".aido" / "events.log")[-1]
    assert last["event"] == "sandbox_destroyed"
    assert last["sandbox_id"] == sandbox_id
    assert last["containers_removed"] == 0

    after = aido("sandbox", "list")
    assert after.code == 0
    assert sandbox_id not in after.stdout
    assert "No sandboxes" in after.stderr
    assert_no_containers(sandbox_id)


def test_run_puts_task_stdout_on_stdout_and_aido_lines_on_stderr(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "both.py", 'import sys\nprint("OUT-LINE")\nprint("ERR-LINE", file=sys.stderr)\n')
    result = aido("run", "both.py")
    assert result.code == 0, result.stderr
    assert result.stdout == "OUT-LINE\n"
    err = result.stderr
    expected_order = [
        f"⚡ Running task: both.py (run-001 in sandbox {sandbox_id}, python:3.11-slim)",
        "━━━━━━━━━━",
        "ERR-LINE",
        "━━━━━━━━━━",
        "✓ Task completed (exit code: 0)",
        f"📦 Artifacts: .aido/sandboxes/{sandbox_id}/outputs/",
        f"🧾 Evidence: .aido/sandboxes/{sandbox_id}/runs/run-001/",
    ]
    position = 0
    for needle in expected_order:
        found = err.find(needle, position)
        assert found >= 0, f"{needle!r} missing (or out of order) in:\n{err}"
        position = found + len(needle)
    assert "OUT-LINE" not in err
    assert "\x1b[" not in err  # NO_COLOR is honoured
    assert_no_containers(sandbox_id)


def test_failed_run_reports_failure_on_stderr_only(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "fail.py", 'import sys\nprint("partial")\nsys.exit(4)\n')
    result = aido("run", "fail.py")
    assert result.code == 4
    assert result.stdout == "partial\n"
    assert "✗ Task failed (exit code: 4)" in result.stderr
    assert "✓" not in result.stderr
    assert_no_containers(sandbox_id)


def test_three_runs_in_one_sandbox_keep_separate_unchanged_evidence(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(
        project / "count.py",
        "import sys\n"
        "n = sys.argv[1]\n"
        'print(f"run {n} out")\n'
        'print(f"run {n} err", file=sys.stderr)\n'
        'open("/outputs/result.txt", "w").write(n)\n',
    )
    frozen: dict[str, dict[str, bytes]] = {}
    for n in ("1", "2", "3"):
        result = aido("run", "count.py", "--", n)
        assert result.code == 0, result.stderr
        assert result.stdout == f"run {n} out\n"
        rid = f"run-00{n}"
        directory = run_dir(project, sandbox_id, rid)
        frozen[rid] = {
            str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
        }
        assert set(frozen[rid]) >= {"stdout.log", "stderr.log", "summary.json", "task/count.py"}
        # Evidence of every earlier run is byte-for-byte what it was.
        for earlier, files in frozen.items():
            current = run_dir(project, sandbox_id, earlier)
            assert {
                str(p.relative_to(current)): p.read_bytes() for p in sorted(current.rglob("*")) if p.is_file()
            } == files, earlier

    for n in ("1", "2", "3"):
        rid = f"run-00{n}"
        directory = run_dir(project, sandbox_id, rid)
        assert (directory / "stdout.log").read_text() == f"run {n} out\n"
        assert (directory / "stderr.log").read_text() == f"run {n} err\n"
        run_summary = summary(project, sandbox_id, rid)
        assert run_summary["run_id"] == rid
        assert run_summary["args"] == [n]
        assert run_summary["command"] == ["python", "/work/count.py", n]
        assert run_summary["env"]["AIDO_RUN_ID"] == rid

    refs = record(project, sandbox_id)["runs"]
    assert [r["run_id"] for r in refs] == ["run-001", "run-002", "run-003"]
    assert {r["status"] for r in refs} == {"success"}
    assert [r["evidence"] for r in refs] == ["runs/run-001", "runs/run-002", "runs/run-003"]
    completed = [
        e["run_id"]
        for e in events(sandbox_root(project, sandbox_id) / "events.log")
        if e["event"] == "run_completed"
    ]
    assert completed == ["run-001", "run-002", "run-003"]
    # The outputs tree is shared across runs: the last one wins.
    assert (sandbox_root(project, sandbox_id) / "outputs" / "result.txt").read_text() == "3"
    assert_no_containers(sandbox_id)


def _document(stdout: str) -> dict[str, object]:
    """stdout must be exactly one JSON document."""
    document = json.loads(stdout)
    assert isinstance(document, dict)
    assert set(document) >= ENVELOPE_KEYS
    assert document["schema_version"] == 1
    return document


def test_json_on_every_command_prints_one_envelope(aido: Aido, project: Path) -> None:
    up = aido("sandbox", "up", "--json")
    assert up.code == 0, up.stderr
    doc = _document(up.stdout)
    assert doc["command"] == "sandbox up"
    assert doc["status"] == "success"
    assert doc["error"] is None
    sandbox_id = doc["sandbox_id"]
    assert isinstance(sandbox_id, str)
    assert doc["sandbox"]["id"] == sandbox_id  # type: ignore[index]
    assert doc["sandbox"]["runs"] == []  # type: ignore[index]
    assert "✓" not in up.stderr

    write(project / "hello.py", 'import sys\nprint("hi")\nprint("oops", file=sys.stderr)\n')
    ran = aido("run", "hello.py", "--json")
    assert ran.code == 0, ran.stderr
    doc = _document(ran.stdout)
    assert set(doc) == RUN_ENVELOPE_KEYS
    assert doc["command"] == "run"
    assert doc["status"] == "success"
    assert doc["sandbox_id"] == sandbox_id
    assert doc["run_id"] == "run-001"
    assert doc["network"] == {"mode": "none", "allowed": 0, "denied": 0}
    assert doc["task"] == "hello.py"
    assert doc["exit_code"] == 0
    assert doc["timed_out"] is False
    assert doc["oom_killed"] is False
    assert doc["pids_limit_reached"] is False
    assert doc["error"] is None
    assert doc["changes"] == []
    assert isinstance(doc["duration_ms"], int)
    assert doc["outputs_dir"] == f".aido/sandboxes/{sandbox_id}/outputs"
    assert doc["evidence_dir"] == f".aido/sandboxes/{sandbox_id}/runs/run-001"
    assert doc["artifacts"] == [
        f".aido/sandboxes/{sandbox_id}/runs/run-001/{name}"
        for name in ("task/hello.py", "stdout.log", "stderr.log", "summary.json", "attestation.intoto.json")
    ]
    for artifact in doc["artifacts"]:  # type: ignore[attr-defined]
        assert (project / artifact).is_file()
    assert doc["output"]["stdout"]["bytes_total"] == 3  # type: ignore[index]
    assert doc["output"]["stderr"]["bytes_total"] == 5  # type: ignore[index]
    assert "⚡" not in ran.stderr

    failed_task = write(project / "fail.py", "raise SystemExit(3)\n")
    failed = aido("run", failed_task.name, "--json")
    assert failed.code == 3
    doc = _document(failed.stdout)
    assert set(doc) == RUN_ENVELOPE_KEYS
    assert doc["status"] == "failed"
    assert doc["exit_code"] == 3
    assert doc["run_id"] == "run-002"

    logs = aido("logs", "--json", "--run", "1")
    assert logs.code == 0, logs.stderr
    doc = _document(logs.stdout)
    assert doc["command"] == "logs"
    assert doc["status"] == "success"
    assert doc["sandbox_id"] == sandbox_id
    assert doc["stdout"] == "hi\n"
    assert doc["stderr"] == "oops\n"
    assert doc["run"]["run_id"] == "run-001"  # type: ignore[index]
    assert doc["run"]["status"] == "success"  # type: ignore[index]

    listed = aido("sandbox", "list", "--json")
    assert listed.code == 0, listed.stderr
    doc = _document(listed.stdout)
    assert doc["command"] == "sandbox list"
    (item,) = doc["sandboxes"]  # type: ignore[misc]
    assert item["id"] == sandbox_id
    assert item["active"] is True
    assert item["runs"] == 2

    # --json before the command name works the same.
    early = aido("--json", "sandbox", "list")
    assert early.code == 0
    assert _document(early.stdout)["command"] == "sandbox list"

    missing = aido("run", "missing.py", "--json")
    assert missing.code == 127
    doc = _document(missing.stdout)
    assert doc["command"] == "run"
    assert doc["status"] == "error"
    assert doc["exit_code"] == 127
    assert doc["error"]["code"] == "task_not_found"  # type: ignore[index]
    assert "missing.py" in doc["error"]["message"]  # type: ignore[index]

    destroyed = aido("sandbox", "destroy", "--json")
    assert destroyed.code == 0, destroyed.stderr
    doc = _document(destroyed.stdout)
    assert doc["command"] == "sandbox destroy"
    assert doc["status"] == "success"
    archived = project / ".aido" / "archive" / sandbox_id
    assert doc["destroyed"] == [
        {
            "sandbox_id": sandbox_id,
            "containers_removed": 0,
            "runs_stopped": [],
            "warning": None,
            "runs": 2,
            "evidence_dir": str(archived),  # the runs' evidence is kept there
            "purged": False,
            "already_destroyed": False,
        }
    ]
    assert not sandbox_root(project, sandbox_id).exists()
    assert_no_containers(sandbox_id)


def test_json_error_for_a_usage_mistake(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "task.py", "print(1)\n")
    result = aido("run", "task.py", "--timeout", "soon", "--json")
    assert result.code == 2
    doc = _document(result.stdout)
    assert doc["status"] == "error"
    assert doc["error"]["code"] == "usage"  # type: ignore[index]
    assert "--timeout" in doc["error"]["message"]  # type: ignore[index]
    assert record(project, sandbox_id)["runs"] == []


def test_summary_and_sandbox_json_agree(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", HELLO)
    assert aido("run", "hello.py").code == 0
    run_summary = summary(project, sandbox_id)
    (ref,) = record(project, sandbox_id)["runs"]
    for key in ("run_id", "task", "status", "exit_code", "duration_ms", "artifacts"):
        assert ref[key] == run_summary[key], key
    assert ref["started_at"] == run_summary["started_at"]
    assert ref["completed_at"] == run_summary["completed_at"]
    assert load(run_dir(project, sandbox_id) / "summary.json")["schema_version"] == 1


# The JSON contract of every command, pinned: scripts and agents parse these.
PINNED_KEYS = {
    ("sandbox", "up"): {
        "schema_version",
        "command",
        "status",
        "sandbox_id",
        "sandbox",
        "inputs",
        "notes",
        "error",
    },
    ("sandbox", "list"): {"schema_version", "command", "status", "sandboxes", "error"},
    ("logs",): {"schema_version", "command", "status", "sandbox_id", "run", "stdout", "stderr", "error"},
    ("sandbox", "destroy"): {
        "schema_version",
        "command",
        "status",
        "destroyed",
        "already_gone",
        "failed",
        "error",
    },
}


def test_json_envelopes_are_pinned(aido: Aido, project: Path) -> None:
    documents = {}
    documents[("sandbox", "up")] = aido("sandbox", "up", "--json").json
    write(project / "hi.py", "print('hi')\n")
    assert aido("run", "hi.py").code == 0
    for args in (("sandbox", "list"), ("logs",), ("sandbox", "destroy")):
        result = aido(*args, "--json")
        assert result.code == 0, result.stderr
        documents[args] = result.json
    for args, keys in PINNED_KEYS.items():
        assert set(documents[args]) == keys | {"exit_code"}, args  # every envelope has one
        assert documents[args]["exit_code"] == 0
        assert documents[args]["command"] == " ".join(args)
        assert documents[args]["status"] == "success"
    (listed,) = documents[("sandbox", "list")]["sandboxes"]
    assert set(listed) == {
        "id",
        "name",
        "status",
        "created_at",
        "expires_at",
        "runs",
        "active",
        "archived",
        "destroyed_at",
        "destroy_reason",
        "warm",
    }
    assert set(documents[("logs",)]["run"]) == {
        "run_id",
        "task",
        "status",
        "started_at",
        "completed_at",
        "duration_ms",
        "exit_code",
        "evidence",
        "artifacts",
    }
    (destroyed,) = documents[("sandbox", "destroy")]["destroyed"]
    assert set(destroyed) == {
        "sandbox_id",
        "containers_removed",
        "runs_stopped",
        "warning",
        "runs",
        "evidence_dir",
        "purged",
        "already_destroyed",
    }


def test_sandbox_up_json_hides_secret_looking_env_values(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "env:\n  API_TOKEN: tok-123\n  MODE: fast\n")
    result = aido("sandbox", "up", "--json")
    assert result.code == 0, result.stderr
    assert "tok-123" not in result.stdout
    assert result.json["sandbox"]["config"]["env"] == {"API_TOKEN": "***REDACTED***", "MODE": "fast"}
