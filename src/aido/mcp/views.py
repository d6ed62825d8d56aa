"""aido's records as the tools show them: a sandbox's record, a run's result and its
captured streams, read from the files aido wrote (never through a link)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import api
from aido.host import sandboxfiles as files
from aido.mcp.models import RunOutcome, SandboxInfo, StreamText
from aido.store.records import configured_allowlist
from aido.store.workspace import STDERR, STDOUT, SUMMARY

if TYPE_CHECKING:
    from aido.run.result import StreamStats
    from aido.store.records import SandboxRecord

OUTPUT_SHOWN = 16 << 10  # bytes of each stream a run's result carries; read_output has the rest
CHANGES_SHOWN = 100
# What the API's RunOutcome and the tool's mean alike, under the same names.
SAME_FIELDS = (
    "sandbox_id",
    "run_id",
    "task",
    "status",
    "exit_code",
    "timed_out",
    "oom_killed",
    "interrupted",
    "outcome",
    "message",
    "network",
    "requests_allowed",
    "requests_denied",
)


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
        allowed_hosts=configured_allowlist(permissions),
        writable_inputs=permissions.get("filesystem") == "readwrite",
    )


def run_outcome(outcome: api.RunOutcome, sandbox_root: Path) -> RunOutcome:
    """The tool's view of a run the typed API ran: its result, the first bytes of each
    stream, and the limits reached as the sealed summary.json records them."""
    from aido.run.result import streams_from_summary

    outputs, _ = files.list_tree(sandbox_root, "outputs", limit=200)
    summary = run_summary(outcome.evidence_path)
    streams = {stats.name: stats for stats in streams_from_summary(summary.get("output"))}
    limits = summary.get("limits_exceeded")
    return RunOutcome(
        **{name: getattr(outcome, name) for name in SAME_FIELDS},
        duration_ms=round(outcome.duration * 1000),
        limits_exceeded=[dict(x) for x in limits if isinstance(x, dict)] if isinstance(limits, list) else [],
        stdout=_head(outcome.evidence_path / STDOUT, streams.get("stdout")),
        stderr=_head(outcome.evidence_path / STDERR, streams.get("stderr")),
        changes=[_change(c) for c in outcome.changes[:CHANGES_SHOWN]],
        changes_total=len(outcome.changes),
        outputs=[e.path for e in outputs if e.kind == "file"],
    )


def _change(change: api.Change) -> dict[str, Any]:
    """A change as the evidence records it (aido.evidence.snapshot): the keys agents see."""
    item: dict[str, Any] = {"path": change.path, "change": change.kind, "type": change.file_type}
    if change.file_type == "file":
        item.update(size=change.size, sha256=change.sha256)
    elif change.file_type == "symlink":
        item["target"] = change.target
    return item


def _head(path: Path, stats: StreamStats | None) -> StreamText:
    data, size = files.read_own(path, 0, OUTPUT_SHOWN)
    total = stats.bytes_total if stats is not None else size
    return StreamText(text=data.decode("utf-8", "replace"), bytes_total=total, truncated=len(data) < total)


def run_summary(run_dir: Path) -> dict[str, Any]:
    from aido import fs

    try:
        value = fs.read_json(run_dir / SUMMARY)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
