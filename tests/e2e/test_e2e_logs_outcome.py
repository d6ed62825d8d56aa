"""`aido logs --follow` ends as `aido run` did: with the run's outcome line on stderr and
the run's exit code, whether it followed the run to its end or the run had ended."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, spawn, wait_for
from tests.helpers.files import write
from tests.helpers.sandbox import record, sandbox_up, summary

pytestmark = pytest.mark.docker

SLOW_FAIL = "import sys, time\nprint('working', flush=True)\ntime.sleep(2)\nsys.exit(4)\n"


def last_line(stderr: str) -> str:
    return stderr.rstrip("\n").splitlines()[-1]


def test_follow_of_a_run_in_progress_ends_with_its_outcome_and_exit_code(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "slow.py", SLOW_FAIL)
    runner = spawn(project, "run", "slow.py", text=True)
    try:
        wait_for(
            lambda: any(r["status"] == "running" for r in record(project, sandbox_id)["runs"]),
            timeout=30,
            what="the run to start",
        )
        followed = aido("logs", "--follow", timeout=60)
        _, runner_stderr = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 4
    assert followed.code == 4, followed.stderr
    assert followed.stdout == "working\n"
    # The same line `aido run` printed, last on stderr.
    outcome = summary(project, sandbox_id)["outcome"]
    assert outcome.startswith("Task failed (exit code: 4) in ")
    assert last_line(followed.stderr) == f"✗ {outcome}"
    assert f"✗ {outcome}\n" in runner_stderr


@pytest.mark.parametrize(
    ("task", "code", "mark"),
    [("print('done')\n", 0, "✓"), ("import sys\nsys.exit(3)\n", 3, "✗")],
    ids=["success", "failed"],
)
def test_follow_of_a_finished_run_prints_its_outcome_and_exits_with_its_code(
    aido: Aido, project: Path, task: str, code: int, mark: str
) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "task.py", task)
    ran = aido("run", "task.py")
    assert ran.code == code
    followed = aido("logs", "--follow", timeout=30)
    assert followed.code == code, followed.stderr
    outcome = summary(project, sandbox_id)["outcome"]
    assert last_line(followed.stderr) == f"{mark} {outcome}"
    assert f"{mark} {outcome}\n" in ran.stderr  # what `aido run` printed
    # Without --follow, logs shows the output only, and succeeds.
    plain = aido("logs")
    assert plain.code == 0
    assert outcome not in plain.stderr


def test_follow_json_carries_the_outcome_and_exits_with_the_runs_code(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  memory: 64M\n")
    sandbox_id = sandbox_up(aido)
    write(
        project / "oom.py",
        "import os, sys\npid = os.fork()\nif pid == 0:\n    hog = []\n    while True:\n"
        "        hog.append(bytearray(16 << 20))\nos.waitpid(pid, 0)\nsys.exit(0)\n",
    )
    assert aido("run", "oom.py", "--timeout", "60s", timeout=90).code == 137
    followed = aido("logs", "--follow", "--json", timeout=30)
    assert followed.code == 137, followed.stderr
    doc = json.loads(followed.stdout)
    run_summary = summary(project, sandbox_id)
    assert doc["outcome"] == run_summary["outcome"]
    assert "although it exited 0: out of memory (limit 64M)" in doc["outcome"]
    assert doc["exit_code_of_run"] == 137
    assert doc["run"]["status"] == "failed"
