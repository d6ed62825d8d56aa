"""Limits reached by real tasks, end to end (issue 7, bugs 3 and 4): one verdict per run
that names every limit reached and is never `success` for a run the engine or a limit
stopped; a sandbox left over its limits refuses the next run before any container starts,
with the fix; `aido sandbox clean` clears work/ and outputs/."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido, spawn, wait_for
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import write
from tests.helpers.sandbox import events, record, sandbox_root, sandbox_up, summary

pytestmark = pytest.mark.docker

OOM_CHILD = """\
import os, sys
pid = os.fork()
if pid == 0:
    hog = []
    while True:
        hog.append(bytearray(16 << 20))
_, status = os.waitpid(pid, 0)
print("child killed by signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, flush=True)
sys.exit(0)
"""
FORK_BOMB = "b() { b | b & }\nb\nsleep 3\n"
MANY_FILES = "cd /work && touch $(seq 1 500)\n"


def assert_one_verdict(doc: dict[str, Any], run_summary: dict[str, Any], code: int, stderr: str) -> None:
    """`run --json`, summary.json, the exit code and the human line tell one story."""
    for key in ("status", "message", "limits_exceeded", "exit_code_of_run", "stop_reason"):
        assert doc.get(key) == run_summary.get(key), key
    assert run_summary["exit_code_of_run"] == code
    assert (run_summary["status"] == "success") is (code == 0)
    kinds = [b["kind"] for b in run_summary["limits_exceeded"]]
    assert ("memory" in kinds) is run_summary["oom_killed"]
    assert ("pids" in kinds) is bool(run_summary["pids_limit_reached"])
    assert ("timeout" in kinds) is run_summary["timed_out"]
    for breach in run_summary["limits_exceeded"]:
        assert breach["message"] in run_summary["message"]
        if breach["kind"] != "timeout":
            assert breach["message"] in run_summary["outcome"]
    if stderr:
        mark = "✓" if code == 0 else "✗"
        assert f"{mark} {run_summary['outcome']}\n" in stderr


def test_a_child_oom_killed_under_a_parent_that_exits_0_is_not_a_success(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  memory: 64M\n")
    sandbox_id = sandbox_up(aido)
    write(project / "oom.py", OOM_CHILD)
    result = aido("run", "oom.py", "--timeout", "60s", timeout=90)
    assert result.code == 137, result.stderr
    assert result.stdout == "child killed by signal 9\n"  # the parent itself exited 0
    run_summary = summary(project, sandbox_id)
    assert run_summary["exit_code"] == 0
    assert run_summary["oom_killed"] is True
    assert run_summary["status"] == "failed"
    assert "✓" not in result.stderr
    assert "✗ Task failed in" in result.stderr
    assert "although it exited 0: out of memory (limit 64M)" in result.stderr
    assert run_summary["limits_exceeded"][0]["kind"] == "memory"
    assert run_summary["limits_exceeded"][0]["limit"] == 64 << 20

    again = aido("run", "oom.py", "--timeout", "60s", "--json", timeout=90)
    assert again.code == 137, again.stderr
    assert_one_verdict(again.json, summary(project, sandbox_id, "run-002"), again.code, "")
    assert [r["status"] for r in record(project, sandbox_id)["runs"]] == ["failed", "failed"]
    log = events(sandbox_root(project, sandbox_id) / "events.log")
    done = [e for e in log if e["event"] == "run_completed"]
    assert [(e["status"], e["limits_exceeded"]) for e in done] == [("failed", ["memory"])] * 2
    assert_no_containers(sandbox_id)


def test_a_fork_bomb_with_little_memory_is_never_a_success(aido: Aido, project: Path) -> None:
    """The report's case: however the bomb ends (pids limit, OOM or timeout), the run's
    status, flags, message, exit code and line agree, and none says success."""
    write(project / "sandbox.yaml", "resources:\n  memory: 64M\n")
    sandbox_id = sandbox_up(aido)
    write(project / "bomb.sh", FORK_BOMB)
    result = aido("run", "bomb.sh", "--timeout", "20s", timeout=90)
    run_summary = summary(project, sandbox_id)
    assert result.code != 0, result.stderr
    assert run_summary["status"] != "success"
    assert run_summary["limits_exceeded"], run_summary
    assert_one_verdict(run_summary, run_summary, result.code, result.stderr)
    assert_no_containers(sandbox_id)


def test_a_file_limit_breach_is_reported_and_the_next_run_is_refused_until_cleaned(
    aido: Aido, project: Path
) -> None:
    write(project / "sandbox.yaml", "resources:\n  files: 100\n")
    sandbox_id = sandbox_up(aido)
    write(project / "many.sh", MANY_FILES)
    write(project / "hello.py", "print('hello')\n")
    # Whether the meter kills the task first or it exits 0 before, the run is a breach.
    breach = aido("run", "many.sh", "--json")
    assert breach.code == 137, breach.stderr
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "disk_limit"
    assert [b["kind"] for b in run_summary["limits_exceeded"]] == ["files"]
    assert run_summary["limits_exceeded"][0]["limit"] == 100
    assert "file limit exceeded" in run_summary["outcome"]
    assert_one_verdict(breach.json, run_summary, breach.code, "")

    # The next, unrelated run is refused before it starts: no run, no container.
    refused = aido("run", "hello.py")
    assert refused.code == 3, refused.stderr
    assert refused.stdout == ""
    assert "Running task" not in refused.stderr
    assert f"error: sandbox {sandbox_id} is over its limits: file limit exceeded: " in refused.stderr
    assert "files of 100 in work/ and outputs/ (left by earlier runs: " in refused.stderr
    assert f"hint: clear them with `aido sandbox clean {sandbox_id}`" in refused.stderr
    as_json = aido("run", "hello.py", "--json")
    assert as_json.code == 3
    assert as_json.json["error"]["code"] == "sandbox_over_limit"
    assert len(record(project, sandbox_id)["runs"]) == 1
    assert_no_containers(sandbox_id)

    # Clearing outputs/ alone does not help: the files are in work/.
    assert aido("sandbox", "clean", "--outputs").code == 0
    assert aido("run", "hello.py").code == 3
    cleaned = aido("sandbox", "clean", "--json")
    assert cleaned.code == 0, cleaned.stderr
    assert cleaned.json["sandbox_id"] == sandbox_id
    assert cleaned.json["cleared"]["work"]["files"] >= 100
    assert list((sandbox_root(project, sandbox_id) / "work").iterdir()) == []
    ran = aido("run", "hello.py")
    assert ran.code == 0, ran.stderr
    assert ran.stdout == "hello\n"
    log = events(sandbox_root(project, sandbox_id) / "events.log")
    cleans = [e for e in log if e["event"] == "sandbox_cleaned"]
    assert [sorted(e["cleared"]) for e in cleans] == [["outputs"], ["outputs", "work"]]


@pytest.mark.skipif(os.getuid() != 0, reason="a hard disk quota mounts a filesystem: root only")
def test_a_task_that_exits_0_at_its_hard_file_quota_is_not_a_success(aido: Aido, project: Path) -> None:
    """With a hard quota the filesystem refuses the 101st-or-so file (ENOSPC); a task that
    takes that in its stride and exits 0 was `✓ Task completed`, and the next run crashed
    aido (exit 70) copying its task into the full work/."""
    write(project / "sandbox.yaml", "resources:\n  files: 100\n  disk_quota: hard\n")
    sandbox_id = sandbox_up(aido)
    write(
        project / "many.py",
        "made = 0\nfor i in range(5000):\n    try:\n        open(f'/work/f{i}', 'w').close()\n"
        "        made += 1\n    except OSError:\n        break\nprint('made', made)\n",
    )
    write(project / "hello.py", "print('hello')\n")
    result = aido("run", "many.py")
    assert result.code == 137, result.stderr
    assert result.stdout.startswith("made ")
    run_summary = summary(project, sandbox_id)
    assert (run_summary["exit_code"], run_summary["status"]) == (0, "disk_limit")
    assert "although it exited 0: file quota reached" in result.stderr
    assert_one_verdict(run_summary, run_summary, result.code, result.stderr)

    refused = aido("run", "hello.py")
    assert refused.code == 3, refused.stderr
    assert "file quota reached" in refused.stderr
    assert "aido sandbox clean" in refused.stderr
    assert aido("sandbox", "clean").code == 0
    ran = aido("run", "hello.py")
    assert (ran.code, ran.stdout) == (0, "hello\n"), ran.stderr


PLANT = """\
import os, sys
keep = sys.argv[1]
os.symlink(keep, "/work/escape")
os.symlink(keep + "/precious.txt", "/outputs/precious-link")
os.makedirs("/work/locked/deeper")
open("/work/locked/deeper/f", "w").close()
os.symlink(keep, "/work/locked/deeper/escape")
os.chmod("/work/locked/deeper", 0)
os.chmod("/work/locked", 0)
os.mkfifo("/outputs/fifo")
with open("/outputs/result.txt", "w") as f:
    f.write("result")
"""


def test_clean_never_follows_links_the_task_planted(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    keep = project / "keep"
    write(keep / "precious.txt", "mine")
    write(project / "plant.py", PLANT)
    assert aido("run", "plant.py", "--", str(keep)).code == 0
    root = sandbox_root(project, sandbox_id)
    assert (root / "work" / "escape").is_symlink()

    only_outputs = aido("sandbox", "clean", sandbox_id, "--outputs")
    assert only_outputs.code == 0, only_outputs.stderr
    assert f"Cleaned outputs/ of sandbox {sandbox_id}" in only_outputs.stderr
    assert list((root / "outputs").iterdir()) == []
    assert (root / "work" / "escape").is_symlink()  # --outputs leaves work/ alone

    started = time.monotonic()
    both = aido("sandbox", "clean", "--json", timeout=60)
    assert both.code == 0, both.stderr
    assert time.monotonic() - started < 30
    assert list((root / "work").iterdir()) == []
    assert stat.S_ISDIR((root / "work").lstat().st_mode)
    assert (keep / "precious.txt").read_text() == "mine"  # nothing followed out of the sandbox
    assert both.json["command"] == "sandbox clean"


def test_clean_is_refused_while_a_run_is_in_progress(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "slow.py", "import time\nopen('/work/kept', 'w').close()\ntime.sleep(30)\n")
    runner = spawn(project, "run", "slow.py", "--timeout", "60s")
    try:
        wait_for(
            lambda: (sandbox_root(project, sandbox_id) / "work" / "kept").exists(),
            timeout=30,
            what="the run to start",
        )
        refused = aido("sandbox", "clean", "--json")
    finally:
        runner.terminate()  # aido stops its container and records the run as interrupted
        runner.wait(timeout=30)
    assert refused.code == 3, refused.stdout
    assert refused.json["error"]["code"] == "sandbox_busy"
    assert "run in progress (run-001)" in refused.json["error"]["message"]
    assert (sandbox_root(project, sandbox_id) / "work" / "kept").exists()


def test_clean_of_an_unknown_sandbox_exits_3(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    result = aido("sandbox", "clean", "zzzzzzzzzzzz")
    assert result.code == 3
    assert "no sandbox zzzzzzzzzzzz" in result.stderr
    assert json.loads(aido("sandbox", "clean", "zzzzzzzzzzzz", "--json").stdout)["status"] == "error"
