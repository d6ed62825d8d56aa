"""aido's records as the tools show them: a sandbox's record, a run's result and its
captured streams, read from the files aido wrote (never through a link)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido.mcp import files
from aido.mcp.models import RunOutcome, SandboxInfo, StreamText
from aido.store.workspace import STDERR, STDOUT, SUMMARY

if TYPE_CHECKING:
    from aido.run.result import RunResult, StreamStats
    from aido.store.records import SandboxRecord

OUTPUT_SHOWN = 16 << 10  # bytes of each stream a run's result carries; read_output has the rest
CHANGES_SHOWN = 100


def sandbox_info(record: SandboxRecord) -> SandboxInfo:
    from aido.store.records import utcnow

    config = record.config
    resources = config.get("resources") or {}
    permissions = config.get("permissions") or {}
    status = record.status
    if record.expired(utcnow()):
        status = "expired"
    elif any(r.status == "running" for r in record.runs):
        status = "running"  # as `aido sandbox list` shows it
    return SandboxInfo(
        sandbox_id=record.id,
        name=record.name,
        status=status,
        runtime=config.get("runtime"),
        created_at=record.created_at,
        expires_at=record.expires_at,
        runs=len(record.runs),
        ttl=str(config.get("ttl")),
        memory=str(resources.get("memory")),
        cpus=float(resources.get("cpu") or 0),
        timeout=str(resources.get("timeout")),
        network=permissions.get("network") is True,
        writable_inputs=permissions.get("filesystem") == "readwrite",
    )


def run_outcome(result: RunResult, sandbox_root: Path) -> RunOutcome:
    changes = list(result.changes)
    outputs, _ = files.list_tree(sandbox_root, "outputs", limit=200)
    streams = {stats.name: stats for stats in result.output}
    return RunOutcome(
        sandbox_id=result.sandbox_id,
        run_id=result.run_id,
        task=result.task,
        status=result.status,
        exit_code=result.exit_code,
        duration_ms=result.duration_ms,
        timed_out=result.timed_out,
        oom_killed=result.oom_killed,
        interrupted=result.status == "interrupted",
        outcome=result.outcome,
        message=result.message,
        limits_exceeded=[dict(x) for x in result.limits_exceeded],
        stdout=_head(result.evidence_dir / STDOUT, streams.get("stdout")),
        stderr=_head(result.evidence_dir / STDERR, streams.get("stderr")),
        changes=[dict(c) for c in changes[:CHANGES_SHOWN]],
        changes_total=len(changes),
        outputs=[e.path for e in outputs if e.kind == "file"],
    )


def read_at(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes at ``offset`` of a file aido wrote (a captured stream), and its size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return b"", 0
    try:
        size = os.fstat(fd).st_size
        return (os.pread(fd, limit, offset) if offset < size else b""), size
    finally:
        os.close(fd)


def _head(path: Path, stats: StreamStats | None) -> StreamText:
    data, size = read_at(path, 0, OUTPUT_SHOWN)
    total = stats.bytes_total if stats is not None else size
    return StreamText(text=data.decode("utf-8", "replace"), bytes_total=total, truncated=len(data) < total)


def run_summary(run_dir: Path) -> dict[str, Any]:
    from aido import fs

    try:
        value = fs.read_json(run_dir / SUMMARY)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
