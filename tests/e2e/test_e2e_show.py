"""``aido show [RUN]``: one run, read back from its evidence, safe to print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, spawn, wait_for
from tests.helpers.files import write
from tests.helpers.sandbox import record, run_dir, sandbox_root, sandbox_up, summary

pytestmark = pytest.mark.docker

# The --json object is a contract: add keys, never rename or drop them.
ENVELOPE_KEYS = {"schema_version", "command", "status", "exit_code", "sandbox_id", "run_id", "run", "error"}
RUN_KEYS = {
    "sandbox_id",
    "run_id",
    "status",
    "message",
    "error",
    "stop_reason",
    "exit_code",
    "started_at",
    "completed_at",
    "duration_ms",
    "task",
    "args",
    "task_sha256",
    "task_source",
    "runtime",
    "start",
    "start_detail",
    "image",
    "image_id",
    "limits",
    "limits_hit",
    "disk",
    "output",
    "security",
    "network",
    "escape_hatches",
    "allow_hosts",
    "permissions",
    "warnings",
    "changes",
    "declared_outputs",
    "evidence",
    "summary_problem",
}
CHANGES_KEYS = {"added", "modified", "removed", "total", "first", "notes"}
EVIDENCE_KEYS = {"run_dir", "summary", "stdout", "stderr", "changes_diff", "network_log", "task"}


def field(stdout: str, name: str) -> list[str]:
    """The values of one field of the human view (its first line and continuation lines)."""
    values: list[str] = []
    inside = False
    for line in stdout.splitlines():
        label, value = line[2:12].strip(), line[13:]
        if label:
            inside = label == name
        if inside and line.startswith("  ") and not line.startswith("  note:"):
            values.append(value)
    return values


def test_show_a_successful_run_latest_by_default(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", 'print("hello")\n')
    assert aido("run", "hello.py", "--", "a b", "c").code == 0
    result = aido("show")
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"✓ run-001 of sandbox {sandbox_id}: success"
    assert field(result.stdout, "status") == ["success (exit code 0)"]
    assert field(result.stdout, "task") == ["hello.py -- 'a b' c"]
    assert field(result.stdout, "image")[0].startswith("python:3.11-slim (sha256:")
    assert field(result.stdout, "hit") == ["none"]
    assert field(result.stdout, "escapes") == ["none"]
    assert field(result.stdout, "output") == ["stdout 6B, stderr 0B"]
    assert field(result.stdout, "limits")[0].startswith("memory 512M, cpus 1, pids 256, timeout 10m, disk 1G")
    security = field(result.stdout, "security")
    assert security[0] == "runtime runc, isolation default, network none, user " + str(
        summary(project, sandbox_id)["security"]["applied"]["user"]
    )
    assert "cap_drop ALL" in security[1] and "no-new-privileges" in security[1]
    assert "read-only root" in security[1]
    evidence = f".aido/sandboxes/{sandbox_id}/runs/run-001/"
    assert field(result.stdout, "evidence") == [f"{evidence} (summary.json, stdout.log, stderr.log)"]
    # The same run by id, by number and by sandbox.
    for args in (["run-001"], ["1"], ["--sandbox", sandbox_id, "1"]):
        assert aido("show", *args).stdout == result.stdout


def test_show_a_failed_run_says_why(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    write(project / "bad.py", 'import sys\nprint("broken", file=sys.stderr)\nsys.exit(3)\n')
    assert aido("run", "bad.py").code == 3
    result = aido("show")
    assert result.code == 0, result.stderr  # showing a failed run is not a failure of show
    assert result.stdout.startswith("✗ run-001 of sandbox ")
    assert field(result.stdout, "status") == ["failed (exit code 3)"]
    assert field(result.stdout, "why") == ["the task exited with code 3"]
    assert field(result.stdout, "output") == ["stdout 0B, stderr 7B"]


def test_show_a_timed_out_run_names_the_limit_it_hit(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    write(project / "slow.py", "import time\ntime.sleep(60)\n")
    assert aido("run", "--timeout", "1s", "slow.py").code == 124
    result = aido("show", "--json")
    run = result.json["run"]
    assert run["status"] == "timed_out"
    recorded = summary(project, run["sandbox_id"], run["run_id"])
    assert run["limits_hit"] == recorded["limits_exceeded"]  # the run's own verdict, not decided again
    assert [h["kind"] for h in run["limits_hit"]] == ["timeout"]
    human = aido("show").stdout
    assert field(human, "status")[0].startswith("timed_out (")
    assert field(human, "why") == [run["message"]]
    assert field(human, "hit") == [run["limits_hit"][0]["message"]]


def test_show_memory_and_file_limits_hit(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  memory: 32M\n  files: 20\n")
    sandbox_up(aido)
    write(project / "hog.py", "blocks = []\nwhile True:\n    blocks.append(bytearray(8 << 20))\n")
    write(project / "many.py", 'for i in range(50):\n    open(f"/outputs/f{i}", "w").close()\n')
    assert aido("run", "hog.py").code != 0
    hits = aido("show", "--json").json["run"]["limits_hit"]
    assert ("memory", "out of memory (limit 32M)") in [(h["kind"], h["message"]) for h in hits]
    aido("run", "many.py")
    hits = aido("show", "--json").json["run"]["limits_hit"]
    assert [h["kind"] for h in hits] == ["files"]
    assert hits[0]["message"].startswith("file limit exceeded")
    assert field(aido("show").stdout, "hit") == [hits[0]["message"]]


def test_show_lists_changes_counts_and_first_paths(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "make.py", 'for n in "abcdefg":\n    open(f"/outputs/{n}.txt", "w").write(n)\n')
    write(
        project / "edit.py",
        'import os\nopen("/outputs/a.txt", "w").write("changed")\nos.remove("/outputs/b.txt")\n'
        'open("/outputs/new.txt", "w").write("new")\n',
    )
    assert aido("run", "make.py").code == 0
    first = aido("show", "1")
    changes = field(first.stdout, "changes")
    assert changes[0] == "7 added, 0 modified, 0 removed"
    assert changes[1:] == [f"+ outputs/{n}.txt" for n in "abcde"] + ["... and 2 more (see summary.json)"]
    assert aido("run", "edit.py").code == 0
    second = aido("show", "--json").json["run"]
    assert {k: second["changes"][k] for k in ("added", "modified", "removed", "total")} == {
        "added": 1,
        "modified": 1,
        "removed": 1,
        "total": 3,
    }
    shown = field(aido("show").stdout, "changes")
    assert shown[0] == "1 added, 1 modified, 1 removed"
    assert sorted(shown[1:]) == ["+ outputs/new.txt", "- outputs/b.txt", "~ outputs/a.txt"]
    evidence = second["evidence"]
    assert evidence["changes_diff"] == f".aido/sandboxes/{sandbox_id}/runs/run-002/changes.diff"
    assert (project / evidence["changes_diff"]).is_file()


def test_show_an_escape_hatch_and_the_network_the_engine_applied(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    write(project / "hello.py", 'print("hello")\n')  # it reaches nothing: the flag is what is shown
    assert aido("run", "--network", "--yes", "hello.py").code == 0
    result = aido("show")
    assert field(result.stdout, "escapes") == ["--network"]
    assert "network none" not in field(result.stdout, "security")[0]
    assert any("--network" in w for w in field(result.stdout, "warnings"))
    run = aido("show", "--json").json["run"]
    assert run["escape_hatches"] == ["network"]
    assert run["security"]["applied"]["network_mode"] != "none"


def test_show_json_keys_are_pinned(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", 'open("/outputs/x", "w").write("x")\n')
    assert aido("run", "hello.py").code == 0
    result = aido("show", "--json")
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    document = result.json
    assert set(document) == ENVELOPE_KEYS
    assert (document["command"], document["status"], document["error"]) == ("show", "success", None)
    assert (document["sandbox_id"], document["run_id"]) == (sandbox_id, "run-001")
    run = document["run"]
    assert set(run) == RUN_KEYS
    assert set(run["changes"]) == CHANGES_KEYS
    assert set(run["evidence"]) == EVIDENCE_KEYS
    assert set(run["security"]) == {"requested", "applied"}
    assert run["changes"]["first"] == [{"path": "outputs/x", "change": "added", "type": "file"}]
    assert run["status"] == "success" and run["exit_code"] == 0 and run["summary_problem"] is None
    # Straight from the evidence: what summary.json says, not what show recomputed.
    recorded = summary(project, sandbox_id)
    for key in ("task_sha256", "image_id", "limits", "disk", "output", "started_at", "duration_ms"):
        assert run[key] == recorded[key], key
    assert run["evidence"]["summary"] == f".aido/sandboxes/{sandbox_id}/runs/run-001/summary.json"


def test_show_unknown_run_is_one_clear_line_and_exit_3(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    result = aido("show")
    assert result.code == 3
    assert result.stderr.splitlines()[0] == f"error: sandbox {sandbox_id} has no runs yet"
    write(project / "hello.py", 'print("hello")\n')
    assert aido("run", "hello.py").code == 0
    result = aido("show", "7")
    assert (result.code, result.stdout) == (3, "")
    assert result.stderr.splitlines() == [
        f"error: sandbox {sandbox_id} has no run run-007",
        "hint: its runs: run-001",
    ]
    document = aido("show", "run-007", "--json")
    assert document.code == 3
    assert document.json["error"]["code"] == "run_not_found"
    assert document.json["sandbox_id"] == sandbox_id  # the error keeps the context it knows
    assert aido("logs", "--run", "7", "--json").json["sandbox_id"] == sandbox_id
    bad = aido("show", "seven")
    assert bad.code == 2
    assert "invalid run id 'seven'" in bad.stderr


def test_show_a_run_in_progress_from_sandbox_json(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    # Runs until the test is done with it (a file the host puts in its /work), not a fixed 8 s.
    write(
        project / "slow.py",
        "import os, time\ndeadline = time.monotonic() + 60\n"
        "while not os.path.exists('/work/release') and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n",
    )
    process = spawn(project, "run", "slow.py")
    try:
        wait_for(
            lambda: any(r["status"] == "running" for r in record(project, sandbox_id)["runs"]),
            timeout=30,
            what="the run to start",
        )
        result = aido("show")
        assert result.code == 0, result.stderr
        assert result.stdout.startswith(f"… run-001 of sandbox {sandbox_id}: running")
        assert "note: summary.json is not written yet" in result.stdout
        assert aido("show", "--json").json["run"]["summary_problem"].startswith("summary.json is not")
    finally:
        write(sandbox_root(project, sandbox_id) / "work" / "release", "")
        assert process.wait(timeout=60) == 0


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"  # title, clear screen, C1 CSI, right-to-left override


def test_show_escapes_terminal_sequences_from_the_evidence(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "odd.py", f'open("/outputs/" + {HOSTILE!r} + "x", "w").write("x")\n')
    assert aido("run", "odd.py", "--", f"arg{HOSTILE}").code == 0
    # The message and a warning, as a newer or damaged summary might carry them.
    path = run_dir(project, sandbox_id) / "summary.json"
    data = json.loads(path.read_text())
    data["message"] = f"killed {HOSTILE}\nforged: line"
    data["warnings"] = [f"warn {HOSTILE}"]
    path.write_text(json.dumps(data))
    result = aido("show")
    assert result.code == 0, result.stderr
    for text in (result.stdout, result.stderr):
        for char in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert char not in text
    escaped = r"\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"
    assert field(result.stdout, "why") == [rf"killed {escaped}\x0aforged: line"]
    assert field(result.stdout, "changes")[1] == rf"+ outputs/{escaped}x"
    assert field(result.stdout, "task") == [rf"odd.py -- 'arg{escaped}'"]
    assert field(result.stdout, "warnings") == [rf"warn {escaped}"]
    # --json keeps the recorded values exactly (JSON escapes them itself).
    run = aido("show", "--json").json["run"]
    assert run["message"] == data["message"]
    assert run["changes"]["first"][0]["path"] == data["changes"][0]["path"]
    assert run["args"] == [f"arg{HOSTILE}"]


def test_show_survives_a_damaged_summary(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", 'print("hello")\n')
    assert aido("run", "hello.py").code == 0
    path = run_dir(project, sandbox_id) / "summary.json"
    path.write_text(json.dumps({"status": "some_new_status", "limits": "garbage", "changes": [1, "x"]}))
    result = aido("show")
    assert result.code == 0, result.stderr
    assert field(result.stdout, "status") == ["some_new_status (no exit code)"]
    path.write_text("{not json")
    result = aido("show")
    assert result.code == 0, result.stderr
    assert "note: summary.json is unreadable" in result.stdout
    assert field(result.stdout, "status") == ["success (exit code 0)"]  # from sandbox.json
