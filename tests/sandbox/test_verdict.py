"""One verdict per run (aido.run.verdict): over every combination of how a run can
end (stopped at its timeout, interrupted, killed at the disk limit, or not stopped;
OOM-killed or not; the pids limit reached or not; the disk or file limit breached by
what it left; the task's own exit code 0, non-zero or none), the status, the flags, the
message, the exit code and the human line must agree."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from aido.exit_codes import ExitCode
from aido.run.result import RunResult
from aido.run.verdict import Breach, Facts, Verdict, decide, facts_from_summary, outcome_of_summary

MEMORY = 64 << 20
DISK_BREACHES = {
    None: (),
    "disk": (Breach("disk", 1 << 20, 2 << 20, "bytes", "disk limit exceeded: 2.0M used of 1M in work/"),),
    "files": (Breach("files", 100, 500, "files", "file limit exceeded: 500 files of 100 in work/"),),
}
# How aido stopped the task (None: it ended by itself). The adapter reports no exit code
# for a task it stopped; a task that ended by itself has one.
STOPS = [None, "timeout", "interrupted", "cancelled", "destroyed", "expired", "disk_limit"]
SIGNALS = [None, 143]


def cases() -> list[Facts]:
    found = []
    for stop, oom, pids, disk, signal in itertools.product(
        STOPS, (False, True), (False, True, None), DISK_BREACHES, SIGNALS
    ):
        if stop == "disk_limit" and disk is None:
            continue  # the guard kills only for a breach it measured
        for exit_code in [None] if stop else [0, 1, 137]:
            found.append(
                Facts(
                    exit_code=exit_code,
                    duration_ms=1500,
                    stop_reason=stop,
                    timed_out=stop == "timeout",
                    oom_killed=oom,
                    pids_limit_hit=pids,
                    interrupted=stop == "interrupted",
                    disk=DISK_BREACHES[disk],
                    memory_bytes=MEMORY,
                    pids_limit=256,
                    timeout_seconds=5.0,
                    sandbox_id="abcdefghijkl",
                    expires_at="2026-12-02T03:00:00Z",
                    signal_exit=signal,
                )
            )
    return found


CASES = cases()


def case_id(facts: Facts) -> str:
    disk = facts.disk[0].kind if facts.disk else "-"
    return (
        f"stop={facts.stop_reason}-oom={facts.oom_killed}-pids={facts.pids_limit_hit}-"
        f"disk={disk}-exit={facts.exit_code}-sig={facts.signal_exit}"
    )


def limits_reached(facts: Facts) -> set[str]:
    reached = {b.kind for b in facts.disk}
    if facts.timed_out:
        reached.add("timeout")
    if facts.oom_killed:
        reached.add("memory")
    if facts.pids_limit_hit:
        reached.add("pids")
    return reached


def summary_of(facts: Facts, verdict: Verdict, *, recorded: bool) -> dict[str, Any]:
    """summary.json as aido writes it (evidence/summary.py), with or without the recorded
    verdict (outcome, exit_code_of_run), as a run from before verdicts were recorded."""
    summary: dict[str, Any] = {
        "sandbox_id": facts.sandbox_id,
        "status": verdict.status,
        "exit_code": facts.exit_code,
        "duration_ms": facts.duration_ms,
        "timed_out": facts.timed_out,
        "oom_killed": facts.oom_killed,
        "pids_limit_reached": facts.pids_limit_hit,
        "interrupted": facts.interrupted,
        "stop_reason": facts.stop_reason,
        "limits_exceeded": verdict.limits_exceeded,
        "message": verdict.message,
        "error": facts.error,
        "limits": {"memory_bytes": facts.memory_bytes, "pids": facts.pids_limit, "timeout_seconds": 5.0},
        "security": {"requested": {"isolation": "default"}},
    }
    if recorded:
        summary["outcome"], summary["exit_code_of_run"] = verdict.line, verdict.exit_code
    return summary


def test_the_table_covers_every_combination() -> None:
    assert len(CASES) == 312
    assert len({case_id(f) for f in CASES}) == len(CASES)


@pytest.mark.parametrize("facts", CASES, ids=case_id)
def test_status_flags_message_exit_code_and_line_agree(facts: Facts) -> None:
    verdict = decide(facts)
    reached = limits_reached(facts)

    # Success only for a task that ended by itself with 0 and reached no limit; then exit 0.
    clean = facts.stop_reason is None and facts.exit_code == 0 and not reached
    assert (verdict.status == "success") is clean
    assert (verdict.exit_code == 0) is clean
    assert verdict.ok is clean
    assert verdict.line.startswith("Task completed") is clean

    # Every limit reached is listed, once, and named in the message and the line.
    assert [b["kind"] for b in verdict.limits_exceeded] == [
        k for k in ("timeout", "memory", "pids", "disk", "files") if k in reached
    ]
    for breach in verdict.breaches:
        assert verdict.message is not None and breach.text in verdict.message, verdict
        if breach.kind == "timeout":
            assert "timed out after 5s" in verdict.line
        else:
            assert breach.text in verdict.line, verdict
    # A message whenever the run was not a plain success or failure.
    assert (verdict.message is None) is (verdict.status in ("success", "failed") and not reached)

    # The status follows the first reason that applies, and the exit code the status.
    stop = facts.stop_reason
    expected_status = {
        "timeout": "timed_out",
        "interrupted": "interrupted",
        "cancelled": "interrupted",
        "destroyed": "interrupted",
        "expired": "expired",
        "disk_limit": "disk_limit",
    }.get(stop or "")
    if expected_status is None:
        if facts.oom_killed:
            expected_status = "failed"
        elif facts.disk:
            expected_status = "disk_limit"
        else:
            expected_status = "success" if clean else "failed"
    assert verdict.status == expected_status
    expected_code = {
        "timed_out": ExitCode.TIMED_OUT,
        "expired": ExitCode.SANDBOX_STATE,
        "interrupted": ExitCode.SANDBOX_STATE
        if stop == "destroyed"
        else (facts.signal_exit or ExitCode.INTERRUPTED),
        "success": 0,
    }.get(verdict.status, facts.exit_code or ExitCode.KILLED)
    assert verdict.exit_code == expected_code
    if verdict.status in ("failed", "disk_limit") and facts.exit_code:
        assert verdict.exit_code == facts.exit_code  # the task's own code, passed through

    # What the line says matches the status.
    words = {
        "timed_out": "timed out",
        "expired": "expired",
        "disk_limit": "limit",
        "failed": "exit",
        "interrupted": "stopped" if stop in ("destroyed", "cancelled") else "interrupted",
    }
    if verdict.status in words:
        assert words[verdict.status] in verdict.line, verdict
    if facts.exit_code == 0 and not clean and stop is None:
        assert "although it exited 0" in verdict.line
        assert "exited 0" in (verdict.message or "")


@pytest.mark.parametrize("facts", CASES, ids=case_id)
def test_a_summary_gives_the_same_outcome_as_the_run_did(facts: Facts) -> None:
    """`aido logs --follow` prints the outcome from summary.json: the one recorded, or for
    a summary without one, the verdict decided again from its facts; both as `aido run`."""
    verdict = decide(facts)
    recorded = summary_of(facts, verdict, recorded=True)
    assert outcome_of_summary(recorded) == (verdict.line, verdict.exit_code, verdict.ok)
    again = decide(facts_from_summary(summary_of(facts, verdict, recorded=False)))
    assert (again.status, again.line, again.limits_exceeded) == (
        verdict.status,
        verdict.line,
        verdict.limits_exceeded,
    )
    if facts.signal_exit is None or verdict.status != "interrupted":
        assert again.exit_code == verdict.exit_code  # which signal is in the recorded code only


@pytest.mark.parametrize("facts", CASES[::7], ids=case_id)
def test_a_run_result_exits_with_its_verdicts_code(facts: Facts) -> None:
    verdict = decide(facts)
    result = RunResult(
        sandbox_id="abcdefghijkl",
        run_id="run-001",
        task="t.py",
        status=verdict.status,
        exit_code=facts.exit_code,
        duration_ms=facts.duration_ms,
        timed_out=facts.timed_out,
        oom_killed=facts.oom_killed,
        evidence_dir=Path("e"),
        outputs_dir=Path("o"),
        artifacts=(),
        summary={},
        stop_reason=facts.stop_reason,
        message=verdict.message,
        signal_exit=facts.signal_exit,
    )
    assert result.process_exit_code == verdict.exit_code


def test_a_child_oom_killed_under_a_parent_that_exits_0_is_not_a_success() -> None:
    """The case of issue 7: a fork bomb (or a child allocating past the limit) under a
    parent that exits 0 was `success` with the message "killed: out of memory"."""
    verdict = decide(Facts(exit_code=0, duration_ms=220, oom_killed=True, memory_bytes=MEMORY))
    assert verdict.status == "failed"
    assert verdict.exit_code == ExitCode.KILLED
    assert verdict.line == "Task failed in 0.22s, although it exited 0: out of memory (limit 64M)"
    assert verdict.limits_exceeded == [
        {
            "kind": "memory",
            "limit": MEMORY,
            "measured": None,
            "unit": "bytes",
            "message": "out of memory (limit 64M)",
        }
    ]


def test_an_engine_error_and_a_failed_guard_are_errors() -> None:
    lost = decide(Facts(exit_code=None, error="lost the container"))
    assert (lost.status, lost.exit_code) == ("error", ExitCode.RUNTIME)
    assert lost.line == "Task did not complete: lost the container"
    guard = decide(Facts(exit_code=None, stop_reason="guard_failed: boom"))
    assert (guard.status, guard.exit_code) == ("error", ExitCode.RUNTIME)
    assert guard.message == "the task was stopped: guard_failed: boom"


def test_a_recovered_run_keeps_the_words_of_its_recovery() -> None:
    summary = {"status": "interrupted", "stop_reason": "aido_lost", "message": "aido stopped mid-run"}
    line, code, ok = outcome_of_summary(summary)
    assert (line, code, ok) == ("Aido stopped mid-run", ExitCode.INTERRUPTED, False)
