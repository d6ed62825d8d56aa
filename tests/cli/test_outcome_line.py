"""The one-line outcome of a run and its JSON payload (cli/main.py), from a run's result."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from aido.cli.main import _outcome_line, _run_payload


def result(status: str, **fields: Any) -> SimpleNamespace:
    summary = {
        "limits": {"memory_bytes": 512 << 20, "pids": 256, "timeout_seconds": 5.0},
        "pids_limit_reached": fields.pop("pids_limit_reached", False),
        "output": {},
        "changes": [],
    }
    base: dict[str, Any] = {
        "sandbox_id": "abcdefghijkl",
        "run_id": "run-001",
        "task": "t.py",
        "status": status,
        "exit_code": 0 if status == "success" else 1,
        "duration_ms": 1234,
        "timed_out": status == "timed_out",
        "oom_killed": False,
        "stop_reason": None,
        "message": None,
        "error": None,
        "artifacts": [],
        "outputs_dir": "outputs",
        "evidence_dir": "runs/run-001",
        "summary": summary,
    }
    base.update(fields)
    return SimpleNamespace(**base)


@pytest.mark.parametrize(
    ("run", "line"),
    [
        (result("success"), "Task completed (exit code: 0) in 1.23s"),
        (result("failed", exit_code=3), "Task failed (exit code: 3) in 1.23s"),
        (
            result("failed", exit_code=137, oom_killed=True),
            "Task killed: out of memory (limit 512M; exit code 137)",
        ),
        (result("timed_out", exit_code=None), "Task timed out after 5s and was killed"),
        (
            result("timed_out", exit_code=None, pids_limit_reached=True),
            "Task timed out after 5s and was killed (it reached its limit of 256 processes)",
        ),
        (
            result("failed", exit_code=2, pids_limit_reached=True),
            "Task failed (exit code: 2) in 1.23s (it reached its limit of 256 processes)",
        ),
    ],
)
def test_outcome_line_says_how_the_run_ended(run: SimpleNamespace, line: str) -> None:
    assert _outcome_line(run) == line


def test_run_payload_carries_the_pids_flag_from_the_summary() -> None:
    assert _run_payload(result("failed", pids_limit_reached=True))["pids_limit_reached"] is True
    assert _run_payload(result("success"))["pids_limit_reached"] is False
