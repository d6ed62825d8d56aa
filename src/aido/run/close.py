"""The one way a run is closed without an outcome from the backend: a stage failed (the
run's own process closes it, as ``error`` or ``interrupted``), or its aido process died
(a sweep closes it as ``interrupted``, stop reason ``aido_lost``). Either way, under the
sandbox's lock: the run must still be marked running, its summary is written from what is
known (unless it has one), its record entry is closed and one event says so.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import fs
from aido.backends.base import StopReason
from aido.errors import AidoError
from aido.evidence.events import record_event
from aido.evidence.summary import SUMMARY_VERSION
from aido.evidence.writer import write_closing_summary
from aido.log import log
from aido.run.seal import enabled as sealing
from aido.run.seal import seal_run
from aido.run.verdict import decide, facts_from_summary
from aido.store.records import RUN_STATUSES, RunRef, configured_allowlist, isoformat, utcnow
from aido.store.workspace import ATTESTATION, STDERR, STDOUT, SUMMARY, run_evidence
from aido.values import dataclass, field

if TYPE_CHECKING:
    from aido.run.context import Context
    from aido.run.plan import RunPlan
    from aido.store.store import SandboxStore


@dataclass(frozen=True)
class Ending:
    """How a run without an outcome ended, as its summary, record and event say it."""

    status: str
    completed_at: str  # in the record
    summary_completed_at: str | None  # in summary.json: None when the true end is unknown
    details: dict[str, Any]  # the summary's fields after the common ones, in order
    event: str
    event_fields: dict[str, Any] = field(default_factory=dict)
    list_artifacts: bool = False  # record every file of the run directory (else only the summary)


def closing_summary(
    *,
    sandbox_id: str,
    run_id: str,
    task: str,
    status: str,
    started_at: str | None,
    completed_at: str | None,
    **details: Any,
) -> dict[str, Any]:
    """The summary of a run that ended without an outcome from the runtime (it failed to
    start, or its aido process died and a sweep closed it): what is known, nothing guessed.
    Its outcome line and exit code come from the same verdict as every other run's."""
    summary = {
        "schema_version": SUMMARY_VERSION,
        "sandbox_id": sandbox_id,
        "run_id": run_id,
        "task": task,
        "status": status,
        "exit_code": None,
        "started_at": started_at,
        "completed_at": completed_at,
        **details,
    }
    verdict = decide(facts_from_summary(summary))
    summary["exit_code_of_run"] = verdict.exit_code
    summary["outcome"] = verdict.line
    return summary


def close_run(
    store: SandboxStore, sandbox_id: str, rid: str, ending: Callable[[RunRef], Ending], *, owned: bool
) -> Ending | None:
    """Close a run still marked running; None if it was not (already closed), or, unless
    ``owned`` (this process holds the run's lock), if its aido process is alive after all."""
    paths = store.paths(sandbox_id)
    run_dir = paths.run_dir(rid)
    written = False
    finished: dict[str, Any] | None = None
    with store.transaction(sandbox_id) as record:
        ref = record.run(rid)
        if ref is None or ref.status != "running":
            store.drop_stale_mark(paths, rid)  # under the lock: a crash left it, if it is there
            return None
        lock_fd = -1
        if not owned:
            held = fs.hold_lock(run_dir, wait=False) if run_dir.is_dir() else -1
            if held is None:
                return None  # alive after all
            lock_fd = held
        try:
            end = ending(ref)
            if "network" not in end.details:  # every summary says what the network was
                end = dataclasses.replace(
                    end, details={**end.details, "network": configured_network(record.config)}
                )
            summary = closing_summary(
                sandbox_id=sandbox_id,
                run_id=rid,
                task=ref.task,
                status=end.status,
                started_at=ref.started_at,
                completed_at=end.summary_completed_at,
                **end.details,
            )
            written = run_dir.is_dir() and write_closing_summary(run_dir / SUMMARY, summary)
            finished = None if written else _finished_summary(run_dir, rid)
            event_fields = end.event_fields
            if finished is not None:
                # The run got as far as its own summary (its outcome was decided) before a
                # later step failed or its aido died: that summary closes the record, so the
                # record, the summary and the seal say the same thing.
                summary = finished
                close_from(ref, finished, end.completed_at)
                event_fields = {**end.event_fields, "status": ref.status, "message": FINISHED_MESSAGE}
            else:
                ref.status = end.status
                ref.completed_at = end.completed_at
                if end.list_artifacts:
                    ref.artifacts = (
                        [
                            run_evidence(rid, p.name)
                            for p in sorted(run_dir.iterdir())
                            if not p.name.startswith(".") and p.name != ATTESTATION
                        ]
                        if run_dir.is_dir()
                        else []
                    )
                elif written:
                    ref.artifacts = [run_evidence(rid, SUMMARY)]
                if written and sealing():
                    ref.artifacts.append(run_evidence(rid, ATTESTATION))
            store.put_run(paths, ref)  # after the artifacts are complete: the line is final
        finally:
            if lock_fd >= 0:
                os.close(lock_fd)
    record_event(paths.events, end.event, sandbox_id=sandbox_id, run_id=rid, **event_fields)
    if written or finished is not None:
        sealed_by = "recovery" if end.event == "run_recovered" else "close"
        seal_run(paths, rid, summary=summary, config=record.config, sealed_by=sealed_by)
    return end


FINISHED_MESSAGE = "the run ended and its summary was written, but aido stopped before closing its record"


def _finished_summary(run_dir: Path, rid: str) -> dict[str, Any] | None:
    """The summary collect wrote for this run, if it did: complete, closed, this run's."""
    try:
        data = fs.read_json(run_dir / SUMMARY)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("run_id") != rid:
        return None
    status = data.get("status")
    return data if status in RUN_STATUSES and status != "running" else None


def close_from(ref: RunRef, summary: dict[str, Any], fallback_end: str) -> None:
    """Close a run's record from its summary (the run decided its outcome there): status,
    end, exit code, duration and artifacts, each taken only when it has the right type."""
    ref.status = str(summary["status"])
    completed = summary.get("completed_at")
    ref.completed_at = completed if isinstance(completed, str) else fallback_end
    for name in ("exit_code", "duration_ms"):
        value = summary.get(name)
        setattr(ref, name, value if isinstance(value, int) and not isinstance(value, bool) else None)
    artifacts = summary.get("artifacts")
    if isinstance(artifacts, list):
        ref.artifacts = [a for a in artifacts if isinstance(a, str)]


NETWORK_LOST = "the run ended without aido; the proxy's log was not collected"
NETWORK_FAILED = "the run failed before aido collected the proxy's log"


def configured_network(config: dict[str, Any], note: str = NETWORK_LOST) -> dict[str, Any]:
    """The ``network`` section of a run known only by its sandbox's stored config (a sweep
    recovering it): ``permissions.network`` is true (full), an allowlist, or absent."""
    from aido.evidence.network import planned_section

    permissions = config.get("permissions")
    if isinstance(permissions, dict) and permissions.get("network") is True:
        return planned_section("full")
    allow = configured_allowlist(permissions)
    return planned_section("allowlist", allow, note) if allow else planned_section("none")


def planned_network(plan: RunPlan) -> dict[str, Any]:
    """The ``network`` section of a run that failed before its outcome: as planned."""
    from aido.evidence.network import planned_section
    from aido.run.prepare import egress_entries

    # The allowlist the run was planned with (the sandbox's and the run's --allow-host).
    egress = egress_entries(plan)
    if egress:
        return planned_section("allowlist", [str(e) for e in egress], NETWORK_FAILED)
    return planned_section("full" if plan.settings.network or plan.widen.network else "none")


def abandon_run(
    store: SandboxStore,
    plan: RunPlan,
    rid: str,
    exc: BaseException,
    *,
    status: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Close the record of a run that failed before it produced an outcome (this process
    holds its lock). Every run directory gets a summary, even one that never started a task.
    ``status`` and ``details`` (summary fields, also in the event) say more when the caller
    knows more (a cluster run whose node was lost)."""
    status = status or ("interrupted" if isinstance(exc, KeyboardInterrupt) else "error")
    message = str(exc)[:500] or type(exc).__name__
    extra = details or {}

    def ending(ref: RunRef) -> Ending:
        completed = isoformat(utcnow())
        return Ending(
            status=status,
            completed_at=completed,
            summary_completed_at=completed,
            details={"error": message, "image": plan.choice.image, "network": planned_network(plan), **extra},
            event="run_completed",
            event_fields={"status": status, "error": message, **extra},
        )

    try:
        close_run(store, plan.record.id, rid, ending, owned=True)
    except (AidoError, OSError):
        pass


def recover_run(ctx: Context, sandbox_id: str, rid: str) -> bool:
    """Close the record of a run whose aido process died: stop its container, write a
    summary from what was captured, mark it interrupted. False if it was not orphaned."""
    store = ctx.store
    run_dir = store.paths(sandbox_id).run_dir(rid)

    def ending(ref: RunRef) -> Ending:
        containers: list[dict[str, Any]] = []
        try:
            labels = {"aido.sandbox": sandbox_id, "aido.run": rid}
            containers = ctx.backend.list_labelled(labels)
            ctx.remove_containers(labels)
        except AidoError as exc:
            log.warning("could not check %s's container: %s", rid, exc.message)
        recovered_at = isoformat(utcnow())
        output = {}
        for name, file in (("stdout", STDOUT), ("stderr", STDERR)):
            try:
                size = (run_dir / file).lstat().st_size
            except OSError:
                size = 0
            output[name] = {"path": file, "bytes_captured": size, "complete": False}
        message = (
            "aido stopped while the task ran (killed, crashed, or the machine restarted); "
            f"the run was recovered at {recovered_at}: output after that point was not captured"
        )
        return Ending(
            status="interrupted",
            completed_at=recovered_at,
            summary_completed_at=None,
            details={
                "stop_reason": StopReason.AIDO_LOST,
                "recovered_at": recovered_at,
                "message": message,
                "containers": [
                    {"name": c.get("name"), "state": c.get("state"), "status": c.get("status")}
                    for c in containers
                ],
                "output": output,
            },
            event="run_recovered",
            event_fields={"status": "interrupted", "message": message},
            list_artifacts=True,
        )

    return close_run(store, sandbox_id, rid, ending, owned=False) is not None
