"""``summary.json``: the full record of one run, written by aido where the task cannot write.

Its facts come from the host and the engine (exit code, timing, OOM and timeout
flags, the isolation settings read back from the engine after the run, file
hashes computed host-side); nothing the task printed or wrote about itself is
taken as evidence.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aido.evidence.redact import redact_env

if TYPE_CHECKING:
    from aido.backends.base import ExecOutcome, ExecRequest
    from aido.store.records import SandboxRecord

SUMMARY_VERSION = 1


def build_summary(
    *,
    record: SandboxRecord,
    run_id: str,
    task: str,
    task_source: bytes,
    from_code: bool = False,
    args: list[str],
    runtime: str,
    request: ExecRequest,
    outcome: ExecOutcome,
    status: str,
    image_id: str,
    streams: dict[str, dict[str, object]],
    changes: list[dict[str, object]],
    snapshot_notes: list[str],
    declared_outputs: list[dict[str, object]],
    git: dict[str, Any] | None,
    inputs: list[dict[str, Any]],
    aido_version: str,
    artifacts: list[str],
    escape_hatches: dict[str, bool],
    warnings: list[str],
    stop_reason: str | None,
    message: str | None,
    disk: dict[str, Any],
    limits_exceeded: list[dict[str, Any]],
    outcome_line: str,
    exit_code_of_run: int,
) -> dict[str, Any]:
    limits = asdict(request.limits)
    return {
        "schema_version": SUMMARY_VERSION,
        "sandbox_id": record.id,
        "run_id": run_id,
        "task": task,
        "task_sha256": hashlib.sha256(task_source).hexdigest(),
        # "code": the task was given as a code string (`run -c`, run_code), not a file.
        "task_source": "code" if from_code else "file",
        "args": args,
        "command": request.argv,
        "status": status,
        # The task's own exit code (null: it never gave one); exit_code_of_run is what aido
        # exited with for it, and outcome the line it printed (one verdict: sandbox/verdict.py).
        "exit_code": outcome.exit_code,
        "exit_code_of_run": exit_code_of_run,
        "outcome": outcome_line,
        "started_at": outcome.started_at,
        "completed_at": outcome.finished_at,
        "duration_ms": outcome.duration_ms,
        "timed_out": outcome.timed_out,
        "oom_killed": outcome.oom_killed,
        # The pids limit refused the task a process or thread (a fork bomb); null: unknown.
        "pids_limit_reached": outcome.pids_limit_hit,
        "interrupted": outcome.interrupted,
        # Why aido stopped the task (timeout, interrupted, expired, destroyed, disk_limit, ...).
        "stop_reason": stop_reason,
        "disk_limit_exceeded": any(b["kind"] in ("disk", "files") for b in limits_exceeded),
        # Every limit the task reached (kind, limit, measured, unit, message), whichever
        # decided the status: timeout, memory, pids, disk, files.
        "limits_exceeded": limits_exceeded,
        "message": message,
        "error": outcome.error,
        "runtime": runtime,
        "image": request.image,
        "image_id": outcome.image_id or image_id,
        "limits": {**limits, "timeout_seconds": request.timeout_seconds},
        "disk": disk,
        "security": {
            "requested": {
                "network": request.network,
                "user": request.user,
                "isolation": request.isolation,
                "mounts": [asdict(m) for m in request.mounts],
                "masked_paths": request.masked_paths,
                "stdin": "forwarded" if request.stdin is not None else "closed",
            },
            "applied": outcome.applied,
        },
        "permissions": record.config.get("permissions", {}),
        # Escape hatches given on this run, and every warning about widened permissions
        # (from them or from the sandbox's spec); each was confirmed before the run.
        "escape_hatches": escape_hatches,
        "warnings": warnings,
        "env": redact_env(request.env),
        "output": streams,
        "changes": changes,
        "changes_notes": snapshot_notes,
        "inputs": inputs,
        "declared_outputs": declared_outputs,
        "git": git,
        "host": {
            "aido_version": aido_version,
            "python": platform.python_version(),
            "platform": platform.system(),
        },
        "artifacts": artifacts,
    }
