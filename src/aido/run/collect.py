"""The last stage of a run: the second snapshot and the diff, the disk report, the one
verdict (run/verdict.py), the plugins' files (run/plugged.py), the evidence
(summary.json, changes.diff, an egress allowlist's network log and proxy configuration:
evidence/network.py), the record closed in
the store, the ``run_completed`` event and the seal (run/seal.py): a ``RunResult``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import __version__
from aido.evidence.events import record_event
from aido.evidence.writer import write_changes, write_summary
from aido.run.plugged import add_plugin_evidence
from aido.run.request import unenforced_permissions
from aido.run.result import RunResult, declared_from_summary, network_from_summary, streams_from_summary
from aido.run.seal import enabled as sealing
from aido.run.seal import seal_run
from aido.store.records import RunRef
from aido.store.store import read_inputs_manifest
from aido.store.workspace import (
    ATTESTATION,
    CHANGES,
    EGRESS_CONFIG,
    NETWORK_LOG,
    STDERR,
    STDOUT,
    SUMMARY,
    TASK_DIR,
    run_evidence,
)

if TYPE_CHECKING:
    from aido.backends.base import ExecOutcome, ExecRequest
    from aido.run.context import Context
    from aido.run.execute import ExecutedRun
    from aido.run.request import RunHooks


def collect(ctx: Context, executed: ExecutedRun, hooks: RunHooks) -> RunResult:
    from aido.evidence.redact import mask_text
    from aido.evidence.snapshot import compare, snapshot
    from aido.evidence.summary import build_summary

    prepared, outcome, streams, guard = executed.prepared, executed.outcome, executed.streams, executed.guard
    plan, rid, run_dir = prepared.plan, prepared.run_id, prepared.run_dir
    record, paths, task, settings = plan.record, plan.paths, plan.task, plan.settings
    watched, before, request, secrets = prepared.watched, prepared.before, prepared.request, prepared.secrets
    after = {name: snapshot(root, exclude=skip) for name, (root, skip) in watched.items()}
    changes: list[dict[str, object]] = []
    diffs = []
    for name in watched:
        found, diff = compare(before[name], after[name], prefix=name)
        changes.extend(found)
        diffs.append(diff)
    # A task may write a secret it was given into a text file: the diff masks it too.
    diff_text = mask_text("".join(diffs), secrets)
    artifacts = [f"{TASK_DIR}/{task.name}", STDOUT, STDERR, SUMMARY]  # in the run directory
    if diff_text:
        write_changes(run_dir / CHANGES, diff_text)
        artifacts.insert(3, CHANGES)
    if sealing():
        artifacts.append(ATTESTATION)  # listed now, written last: the record is saved once
    disk = guard.disk_report()
    signal_exit = hooks.signal_exit() if hooks.signal_exit else None
    verdict = guard.verdict(outcome, signal_exit)
    status, message = verdict.status, verdict.message
    # Plugins' evidence: written now, so the summary lists it and the seal covers it.
    added = add_plugin_evidence(plan, rid, run_dir, outcome, verdict, changes)
    artifacts[artifacts.index(SUMMARY) : artifacts.index(SUMMARY)] = added.artifacts
    network = _network(request, outcome, run_dir, secrets)
    if network.get("log"):  # the proxy's log and config: written now, so the seal covers them
        artifacts[artifacts.index(SUMMARY) : artifacts.index(SUMMARY)] = [NETWORK_LOG, EGRESS_CONFIG]
    summary = build_summary(
        record=record,
        run_id=rid,
        task=task.name,
        task_source=plan.source,
        from_code=plan.from_code,
        args=plan.args,
        runtime=plan.choice.runtime,
        request=request,
        outcome=outcome,
        status=status,
        image_id=plan.image_id,
        streams=streams,
        changes=changes,
        snapshot_notes=[f"{name}: {n}" for name, taken in after.items() for n in taken.notes],
        # From the snapshot, which never follows a link the task planted.
        declared_outputs=[{"path": p, "present": p in after["outputs"].entries} for p in settings.outputs],
        git=prepared.git,
        inputs=read_inputs_manifest(paths),
        aido_version=__version__,
        artifacts=[run_evidence(rid, a) for a in artifacts],
        escape_hatches=plan.widen.as_dict(),
        warnings=plan.warnings + plan.notes,
        stop_reason=outcome.stop_reason,
        message=message,
        disk=disk,
        limits_exceeded=verdict.limits_exceeded,
        outcome_line=verdict.line,
        exit_code_of_run=verdict.exit_code,
    )
    # How the container started: "warm" (pre-started, run/warm.py) or "cold", and why cold
    # when the sandbox keeps a pool.
    summary["start"] = executed.start["mode"]
    if len(executed.start) > 1:
        summary["start_detail"] = {k: v for k, v in executed.start.items() if k != "mode"}
    if plan.choice.plugin is not None:
        summary["runtime_plugin"] = plan.choice.plugin  # the plugin that added the runtime's family
    summary["network"] = network  # what the task's network was, and what it did with it
    summary["notes"] = unenforced_permissions(record.config)  # not enforced, so not in `warnings`
    if added.plugins:
        summary["plugins"] = added.plugins
    if plan.placement is not None:  # run on a cluster node for a driver (aido.cluster)
        summary["node"] = plan.placement.node
        summary["retry_of"] = plan.placement.retry_of
    write_summary(run_dir / SUMMARY, summary)
    ref = RunRef(
        run_id=rid,
        task=task.name,
        status=status,
        started_at=summary["started_at"],
        completed_at=summary["completed_at"],
        duration_ms=outcome.duration_ms,
        exit_code=outcome.exit_code,
        evidence=run_evidence(rid),
        artifacts=[run_evidence(rid, a) for a in artifacts],
    )
    ctx.store.close_run(record.id, ref)
    record_event(
        paths.events,
        "run_completed",
        sandbox_id=record.id,
        run_id=rid,
        exit_code=outcome.exit_code,
        status=status,
        duration_ms=outcome.duration_ms,
        timed_out=outcome.timed_out or None,
        oom_killed=outcome.oom_killed or None,
        stop_reason=outcome.stop_reason,
        limits_exceeded=[b["kind"] for b in verdict.limits_exceeded] or None,
    )
    seal_run(
        paths,
        rid,
        summary=summary,
        config=record.config,
        sealed_by="run",
        outputs=after.get("outputs"),
        changed=frozenset(str(c["path"]) for c in changes if c.get("change") != "removed"),
    )
    return RunResult(
        sandbox_id=record.id,
        run_id=rid,
        task=task.name,
        status=status,
        exit_code=outcome.exit_code,
        duration_ms=outcome.duration_ms,
        timed_out=outcome.timed_out,
        oom_killed=outcome.oom_killed,
        evidence_dir=run_dir,
        outputs_dir=paths.outputs,
        artifacts=tuple(str(run_dir.relative_to(ctx.workspace.root) / a) for a in artifacts),
        summary=summary,
        error=outcome.error,
        signal_exit=signal_exit,
        stop_reason=outcome.stop_reason,
        message=message,
        outcome=verdict.line,
        pids_limit_reached=outcome.pids_limit_hit,
        limits_exceeded=tuple(verdict.limits_exceeded),
        output=streams_from_summary(summary.get("output")),
        changes=tuple(summary.get("changes") or ()),
        declared_outputs=declared_from_summary(summary.get("declared_outputs")),
        network=network_from_summary(summary.get("network")),
    )


def _network(request: ExecRequest, outcome: ExecOutcome, run_dir: Path, secrets: list[str]) -> dict[str, Any]:
    """The summary's ``network`` section; with an egress allowlist, the proxy's log and
    configuration written into the run's evidence first."""
    from aido.evidence.network import network_mode, planned_section, record_network

    mode = network_mode(request)
    if mode != "allowlist" or outcome.egress is None:
        # An allowlisted run without the proxy's record: the backend failed before or while
        # starting the proxy (its error is the run's), so there is no log to keep.
        return planned_section(mode, request.egress)
    return record_network(
        outcome.egress,
        request.egress,
        log_path=run_dir / NETWORK_LOG,
        config_path=run_dir / EGRESS_CONFIG,
        secrets=secrets,
    )
