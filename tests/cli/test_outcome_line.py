"""The one-line outcome of a run and its JSON payload (cli/outcome.py), from a run's result.

The line itself is decided with the rest of the verdict (tests/sandbox/test_verdict.py);
these check that the CLI shows that line, also for a summary written without one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aido.cli.outcome import outcome_line, run_payload
from aido.run.result import RunResult


def result(status: str, **fields: Any) -> RunResult:
    exit_code = fields.pop("exit_code", 0 if status == "success" else 1)
    pids = fields.pop("pids_limit_reached", False)
    summary = {
        "status": status,
        "exit_code": exit_code,
        "duration_ms": 1234,
        "timed_out": status == "timed_out",
        "oom_killed": fields.get("oom_killed", False),
        "stop_reason": "timeout" if status == "timed_out" else None,
        "limits": {"memory_bytes": 512 << 20, "pids": 256, "timeout_seconds": 5.0},
        "pids_limit_reached": pids,
        "output": {},
        "changes": [],
    }
    base: dict[str, Any] = {
        "sandbox_id": "abcdefghijkl",
        "run_id": "run-001",
        "task": "t.py",
        "status": status,
        "exit_code": exit_code,
        "duration_ms": 1234,
        "timed_out": status == "timed_out",
        "oom_killed": summary["oom_killed"],
        "stop_reason": summary["stop_reason"],
        "message": None,
        "error": None,
        "artifacts": (),
        "outputs_dir": Path("outputs"),
        "evidence_dir": Path("runs/run-001"),
        "summary": summary,
        "pids_limit_reached": pids,
    }
    base.update(fields)
    return RunResult(**base)


@pytest.mark.parametrize(
    ("run", "line"),
    [
        (result("success"), "Task completed (exit code: 0) in 1.23s"),
        (result("failed", exit_code=3), "Task failed (exit code: 3) in 1.23s"),
        (
            result("failed", exit_code=137, oom_killed=True),
            "Task killed (exit code: 137) in 1.23s: out of memory (limit 512M)",
        ),
        (result("timed_out", exit_code=None), "Task timed out after 5s and was killed"),
        (
            result("timed_out", exit_code=None, pids_limit_reached=True),
            "Task timed out after 5s and was killed (it reached its limit of 256 processes and threads)",
        ),
        (
            result("failed", exit_code=2, pids_limit_reached=True),
            "Task failed (exit code: 2) in 1.23s: it reached its limit of 256 processes and threads",
        ),
        (
            result("failed", exit_code=0, oom_killed=True),
            "Task failed in 1.23s, although it exited 0: out of memory (limit 512M)",
        ),
    ],
)
def test_outcome_line_of_a_summary_without_one_is_decided_from_its_facts(run: RunResult, line: str) -> None:
    assert outcome_line(run) == line


def test_outcome_line_is_the_one_the_run_recorded() -> None:
    run = result("success", outcome="Task completed (exit code: 0) in 9.99s")
    assert outcome_line(run) == "Task completed (exit code: 0) in 9.99s"


def test_run_payload_carries_the_pids_flag_from_the_summary() -> None:
    assert run_payload(result("failed", pids_limit_reached=True))["pids_limit_reached"] is True
    assert run_payload(result("success"))["pids_limit_reached"] is False


def test_run_payload_lists_the_limits_exceeded_and_the_exit_code_of_the_run() -> None:
    breach = {"kind": "memory", "limit": 1, "measured": None}
    run = result("failed", exit_code=0, oom_killed=True, limits_exceeded=(breach,))
    payload = run_payload(run)
    assert payload["limits_exceeded"] == [breach]
    assert payload["exit_code_of_run"] == 137
    assert run_payload(result("success"))["limits_exceeded"] == []
