"""`aido mcp` over stdio, driven by the MCP SDK's own client: one server for the module
(the tests share it, in order), with tight operator limits so that refusals are cheap to
reach. Real engine, real sandboxes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.sandbox import events
from tests.mcp.client import Session, mcp_session

pytestmark = pytest.mark.docker

LIMITS = ("--max-ttl", "30m", "--max-memory", "512M", "--max-sandboxes", "2", "--max-code-bytes", "8K")
TOOLS = {
    "create_sandbox",
    "run_code",
    "run_file",
    "read_output",
    "list_outputs",
    "read_file",
    "get_evidence",
    "list_sandboxes",
    "destroy_sandbox",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("mcp") / "project"
    directory.mkdir()
    # A host file a hostile task would like to read through a link planted in outputs/.
    (directory / "host-secret.txt").write_text("HOST-SECRET-VALUE\n")
    return directory


@pytest.fixture(scope="module")
def s(engine: None, project: Path) -> Iterator[Session]:
    with mcp_session(project, *LIMITS) as session:
        yield session
    # Closing the session destroyed the server's sandboxes, their evidence kept.
    sandboxes = project / ".aido" / "sandboxes"
    assert not sandboxes.is_dir() or [p.name for p in sandboxes.iterdir()] == []


@pytest.fixture(scope="module")
def sid(s: Session) -> str:
    created = s.ok("create_sandbox", {"ttl": "10m", "memory": "256M", "timeout": "1m"})
    assert created["memory"] == "256M" and created["network"] is False and created["runtime"] == "python:3.11"
    return str(created["sandbox_id"])


def live(project: Path) -> list[str]:
    sandboxes = project / ".aido" / "sandboxes"
    return sorted(p.name for p in sandboxes.iterdir()) if sandboxes.is_dir() else []


def test_tools_are_listed_with_schemas(s: Session) -> None:
    tools = s.tools()
    assert set(tools) == TOOLS
    run_code = tools["run_code"].input_schema
    assert set(run_code["required"]) == {"sandbox_id", "code"}
    assert run_code["properties"]["code"]["maxLength"] == 8192  # --max-code-bytes
    assert run_code["properties"]["sandbox_id"]["pattern"]
    for name in TOOLS:
        assert tools[name].description, name
        assert tools[name].output_schema is not None, name
    assert "sandbox_id" in tools["read_file"].input_schema["required"]
    assert tools["list_sandboxes"].annotations.read_only_hint is True
    assert tools["destroy_sandbox"].annotations.destructive_hint is True


def test_run_code_then_read_what_it_left(s: Session, sid: str, project: Path) -> None:
    code = (
        "import sys, pathlib\n"
        "print('hello from', sys.argv[1])\n"
        "print('oops', file=sys.stderr)\n"
        "pathlib.Path('/outputs/report.txt').write_text('42\\n')\n"
        "pathlib.Path('/outputs/next.py').write_text('print(6 * 7)')\n"
    )
    run = s.ok("run_code", {"sandbox_id": sid, "code": code, "args": ["mcp"], "env": {"MODE": "x"}})
    assert (run["status"], run["exit_code"], run["run_id"]) == ("success", 0, "run-001")
    assert run["stdout"]["text"] == "hello from mcp\n" and run["stdout"]["truncated"] is False
    assert run["stderr"]["text"] == "oops\n"
    assert run["task"].startswith("snippet-") and set(run["outputs"]) == {
        "outputs/report.txt",
        "outputs/next.py",
    }

    out = s.ok("read_output", {"sandbox_id": sid, "run_id": "run-001", "offset": 6, "max_bytes": 4})
    assert (out["text"], out["bytes_total"], out["eof"]) == ("from", 15, False)
    err = s.ok("read_output", {"sandbox_id": sid, "run_id": "run-001", "stream": "stderr"})
    assert err["text"] == "oops\n" and err["eof"] is True

    listed = s.ok("list_outputs", {"sandbox_id": sid})
    assert {(e["path"], e["kind"], e["size"]) for e in listed["entries"]} == {
        ("outputs/report.txt", "file", 3),
        ("outputs/next.py", "file", 12),
    }
    read = s.ok("read_file", {"sandbox_id": sid, "path": "outputs/report.txt"})
    assert (read["content"], read["encoding"], read["eof"]) == ("42\n", "utf-8", True)

    again = s.ok("run_file", {"sandbox_id": sid, "path": "outputs/next.py"})
    assert (again["status"], again["stdout"]["text"], again["task"]) == ("success", "42\n", "next.py")

    evidence = s.ok("get_evidence", {"sandbox_id": sid, "run_id": "run-001"})
    assert evidence["summary"]["status"] == "success" and evidence["summary"]["run_id"] == "run-001"
    assert evidence["verified"] is True, evidence["verify_message"]
    assert Path(evidence["evidence_dir"]).is_relative_to(project)


def test_a_failing_run_is_a_result_not_an_error(s: Session, sid: str) -> None:
    run = s.ok("run_code", {"sandbox_id": sid, "code": "raise SystemExit(3)"})
    assert (run["status"], run["exit_code"]) == ("failed", 3)
    assert (run["network"], run["requests_allowed"], run["requests_denied"]) == ("none", 0, 0)


def test_a_runs_result_is_its_sealed_record_in_short(s: Session, sid: str) -> None:
    # The tool's result is made from the typed API's RunOutcome and the run's summary.json.
    code = (
        "import os, sys, time\nsys.stdout.write('x' * 20000)\nsys.stdout.flush()\n"
        "open('/outputs/made.txt', 'w').write('y')\nos.symlink('/etc/passwd', '/outputs/pw')\n"
        "time.sleep(30)\n"
    )
    run = s.ok("run_code", {"sandbox_id": sid, "code": code, "timeout": "2s"})
    assert run["timed_out"] is True and [x["kind"] for x in run["limits_exceeded"]] == ["timeout"]
    assert (run["stdout"]["bytes_total"], len(run["stdout"]["text"]), run["stdout"]["truncated"]) == (
        20000,
        16 << 10,
        True,
    )
    summary = s.ok("get_evidence", {"sandbox_id": sid, "run_id": run["run_id"]})["summary"]
    assert run["changes"] == summary["changes"] and run["changes_total"] == len(summary["changes"])
    assert run["limits_exceeded"] == summary["limits_exceeded"]
    assert {"path": "outputs/pw", "change": "added", "type": "symlink", "target": "/etc/passwd"} in run[
        "changes"
    ]
    assert "outputs/made.txt" in run["outputs"] and "outputs/pw" not in run["outputs"]


@pytest.mark.parametrize(
    ("tool", "arguments", "flag"),
    [
        ("create_sandbox", {"network": True}, "--allow-network"),
        ("create_sandbox", {"writable_inputs": True}, "--allow-mutations"),
        ("run_code", {"code": "print(1)", "network": True}, "--allow-network"),
        ("run_code", {"code": "print(1)", "host_filesystem": True}, "--allow-host-filesystem"),
        ("run_code", {"code": "print(1)", "mutations": True}, "--allow-mutations"),
    ],
)
def test_widening_is_refused_without_the_operator(
    s: Session, sid: str, project: Path, tool: str, arguments: dict[str, Any], flag: str
) -> None:
    before = (live(project), s.ok("list_sandboxes")["sandboxes"][0]["runs"])
    if tool == "run_code":
        arguments = {"sandbox_id": sid, **arguments}
    text = s.error(tool, arguments)
    assert "not allowed by the operator" in text and flag in text
    assert (live(project), s.ok("list_sandboxes")["sandboxes"][0]["runs"]) == before  # nothing created or run


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"memory": "1G"}, "memory 1G is over the operator's limit of 512M"),
        ({"ttl": "2h"}, "ttl 2h is over the operator's limit of 30m"),
        ({"cpus": 4}, "cpus 4 is over the operator's limit of 2"),
        ({"timeout": "10m"}, "timeout 10m is over the operator's limit of 5m"),
        ({"memory": "lots"}, "memory: expected a size like 512M or 1G, got 'lots'"),
        ({"runtime": "cobol:85"}, "runtime: unknown runtime 'cobol:85'"),
    ],
)
def test_create_over_a_limit_is_refused(
    s: Session, sid: str, project: Path, arguments: dict[str, Any], expected: str
) -> None:
    before = live(project)
    text = s.error("create_sandbox", arguments)
    assert expected in text
    assert live(project) == before


def test_the_number_of_sandboxes_is_capped(s: Session, sid: str, project: Path) -> None:
    second = s.ok("create_sandbox", {"ttl": "5m"})["sandbox_id"]
    text = s.error("create_sandbox", {})
    assert "already has 2 sandboxes" in text and "--max-sandboxes 2" in text
    assert live(project) == sorted([sid, second])
    assert s.ok("destroy_sandbox", {"sandbox_id": second})["destroyed"] is True
    assert live(project) == [sid]
    assert "no sandbox" in s.error("run_code", {"sandbox_id": second, "code": "1"})


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("no_such_tool", {}, "Unknown tool: no_such_tool"),
        ("create_sandbox", {"cpus": "lots"}, "cpus"),
        ("create_sandbox", {"network": "yes"}, "network"),
        ("create_sandbox", {"netwrok": True}, "unknown argument netwrok"),
        ("read_output", {"run_id": "run-001", "max_bytes": "5"}, "max_bytes"),
        ("run_code", {"code": 5}, "code"),
        ("run_code", {"code": "x" * 9000}, "at most 8192 characters"),
        ("run_code", {"code": "x" * 700_000}, "over this server's limit"),
        ("run_code", {"sandbox_id": "../../etc", "code": "1"}, "sandbox_id"),
        ("run_code", {"sandbox_id": "abcdefabcdef", "code": "1"}, "no sandbox abcdefabcdef of this server"),
        ("read_file", {"path": "/etc/passwd"}, "is absolute"),
        ("read_file", {"path": "outputs/../../sandbox.json"}, "contains '..'"),
        ("read_file", {"path": "sandbox.json"}, "expected it to start with outputs/, work/ or inputs/"),
        ("read_file", {"path": "outputs/missing"}, "no such file in the sandbox"),
        ("read_file", {"path": "outputs"}, "is a directory"),
        ("run_file", {"path": "../host-secret.txt"}, "contains '..'"),
        ("read_output", {"run_id": "run-999"}, "has no run run-999"),
        ("read_output", {"run_id": "nope"}, "run"),
    ],
)
def test_bad_arguments_are_clear_error_results(
    s: Session, sid: str, project: Path, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    before = live(project)
    if tool in ("run_code", "read_file", "run_file", "read_output"):
        arguments = {"sandbox_id": sid, **arguments}
    text = s.error(tool, arguments)
    assert expected in text, text
    assert live(project) == before


def test_links_planted_by_a_task_are_never_followed(s: Session, sid: str, project: Path) -> None:
    secret = project / "host-secret.txt"
    code = (
        "import os\n"
        f"os.symlink({str(secret)!r}, '/outputs/leak')\n"
        "os.symlink('/', '/outputs/root')\n"
        "os.mkfifo('/outputs/fifo')\n"
    )
    assert s.ok("run_code", {"sandbox_id": sid, "code": code})["status"] == "success"
    entries = {e["path"]: e for e in s.ok("list_outputs", {"sandbox_id": sid})["entries"]}
    assert entries["outputs/leak"]["kind"] == "link" and entries["outputs/leak"]["link_target"] == str(secret)
    assert entries["outputs/root"]["kind"] == "link" and entries["outputs/fifo"]["kind"] == "other"
    for path in ("outputs/leak", "outputs/root/etc/passwd", f"outputs/root{secret}"):
        text = s.error("read_file", {"sandbox_id": sid, "path": path})
        assert "symbolic link" in text and "HOST-SECRET" not in text
    assert "not a regular file" in s.error("read_file", {"sandbox_id": sid, "path": "outputs/fifo"})
    text = s.error("run_file", {"sandbox_id": sid, "path": "outputs/leak"})
    assert "symbolic link" in text


def test_every_tool_call_is_in_the_event_log(s: Session, sid: str, project: Path) -> None:
    s.ok("list_sandboxes")
    s.ok(
        "run_code", {"sandbox_id": sid, "code": "print('secret-code-text')", "env": {"API_TOKEN": "tok-123"}}
    )
    log = project / ".aido" / "sandboxes" / sid / "events.log"
    calls = [e for e in events(log) if e["event"] == "mcp_tool_call"]
    tools = {e["tool"] for e in calls}
    assert {"run_code", "read_output", "list_outputs", "read_file", "run_file", "get_evidence"} <= tools
    last = calls[-1]
    assert last["tool"] == "run_code" and last["client"]["name"]
    assert last["arguments"]["code"]["bytes"] == len("print('secret-code-text')")
    assert last["arguments"]["code"]["sha256"].startswith("sha256:")
    assert last["arguments"]["env"] == {"names": ["API_TOKEN"]}
    text = log.read_text()
    assert "secret-code-text" not in text and "tok-123" not in text
    # The call precedes the run it asked for, so that run's seal covers it.
    every = events(log)
    asked = max(i for i, e in enumerate(every) if e["event"] == "mcp_tool_call" and e["tool"] == "run_code")
    assert every[asked + 1]["event"] == "run_started"
    created = [e for e in calls if e["tool"] == "create_sandbox"]
    assert created and created[0]["outcome"] == "ok"
    refused = [e for e in events(log) if e["event"] == "mcp_tool_failed"]
    assert any("--allow-network" in e["error"] for e in refused)

    workspace = events(project / ".aido" / "events.log")
    calls = [e for e in workspace if e["event"] == "mcp_tool_call"]
    assert any(e["tool"] == "list_sandboxes" and e["outcome"] == "ok" for e in calls)
    assert any(e["tool"] == "create_sandbox" and "--allow-network" in e["error"] for e in calls)
    assert any(e["tool"] == "no_such_tool" and e["outcome"] == "error" for e in calls)
    # Refused before the SDK parsed it (too large for this server), and still recorded.
    codes = [(e, (e.get("arguments") or {}).get("code")) for e in every]
    huge = [e for e, code in codes if isinstance(code, dict) and code["bytes"] == 700_000]
    assert [e["event"] for e in huge] == ["mcp_tool_call"]
    assert "over this server's limit" in every[every.index(huge[0]) + 1]["error"]


def test_a_cancelled_call_stops_its_run(s: Session, sid: str, project: Path) -> None:
    from mcp.shared.exceptions import MCPError

    with pytest.raises(MCPError):
        s.call(
            "run_code",
            {"sandbox_id": sid, "code": "import time; print('go', flush=True); time.sleep(60)"},
            timeout=3,
        )
    runs = project / ".aido" / "sandboxes" / sid / "runs.jsonl"

    def last_status() -> str:
        lines = [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]
        return str(lines[-1]["status"])

    from tests.helpers.cli import wait_for

    wait_for(lambda: last_status() == "interrupted", timeout=30, what="the run recorded as interrupted")
    listed = s.ok("list_sandboxes")["sandboxes"]
    assert [x["status"] for x in listed] == ["created"]


def test_destroy(s: Session, sid: str, project: Path) -> None:
    done = s.ok("destroy_sandbox", {"sandbox_id": sid})
    assert done["destroyed"] is True and os.path.isdir(done["evidence_kept"])
    assert s.ok("list_sandboxes")["sandboxes"] == []
    assert "no sandbox" in s.error("read_output", {"sandbox_id": sid, "run_id": "run-001"})
    assert live(project) == []
