"""How a finished run is reported: its one outcome line and its ``--json`` payload (the
same for `aido run` alone and for each run of a batch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aido.cli.text import relative

if TYPE_CHECKING:
    from aido.run.result import RunResult


def outcome_line(result: RunResult) -> str:
    """One line on how a run ended, in words: the run's verdict (run/verdict.py)."""
    if result.outcome:
        return result.outcome
    from aido.run.verdict import outcome_of_summary

    # A result made from a summary written without the line: decided from the record.
    return outcome_of_summary(dict(result.summary))[0]


def run_payload(result: RunResult) -> dict[str, Any]:
    payload = _payload(result)
    node = result.summary.get("node")
    if node is not None:  # a run on a cluster node: which one, and the lost run it retried
        payload["node"] = node
        payload["retry_of"] = result.summary.get("retry_of")
    return payload


def _payload(result: RunResult) -> dict[str, Any]:
    return {
        "sandbox_id": result.sandbox_id,
        "run_id": result.run_id,
        "task": result.task,
        "task_source": result.summary.get("task_source", "file"),  # "code" for `run -c`
        "exit_code": result.exit_code,
        "duration_ms": result.duration_ms,
        "timed_out": result.timed_out,
        "oom_killed": result.oom_killed,
        "pids_limit_reached": result.pids_limit_reached,
        "stop_reason": result.stop_reason,
        "message": result.message,
        # Every limit the task reached (kind, limit, measured, unit, message), and what
        # aido exits with for this run: one verdict with status and message.
        "limits_exceeded": list(result.limits_exceeded),
        "exit_code_of_run": result.process_exit_code,
        "artifacts": list(result.artifacts),
        "outputs_dir": relative(result.outputs_dir),
        "evidence_dir": relative(result.evidence_dir),
        "output": result.output_json(),
        "changes": list(result.changes),
        # none | full | allowlist, with the egress proxy's counts (the log: `aido logs --network`).
        "network": {
            "mode": result.network.mode,
            "allowed": result.network.allowed,
            "denied": result.network.denied,
        },
    }
