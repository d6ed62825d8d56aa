"""The sweep every aido command runs on its way (and the TTL reaper every interval):
destroy expired auto-cleanup sandboxes, close the records of runs whose aido process died
(through run/close.py, the one path that closes a run without an outcome), finish
archives a crash left halfway, prune archived evidence past its retention, and remove
containers that no live run owns.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from aido import fs
from aido.errors import AidoError
from aido.evidence.events import record_event
from aido.lifecycle.destroy import destroy_one
from aido.log import log
from aido.run.close import recover_run
from aido.run.seal import pending as seal_pending
from aido.run.seal import seal_run
from aido.store.ids import check_run_id
from aido.store.records import SandboxRecord, utcnow
from aido.store.store import marked_running, peek, subdirs, wants_reaper
from aido.store.workspace import SUMMARY

if TYPE_CHECKING:
    from pathlib import Path

    from aido.run.context import Context
    from aido.store.workspace import SandboxPaths


def sweep(ctx: Context, *, containers: bool = False) -> list[dict[str, Any]]:
    """Destroy expired auto-cleanup sandboxes and close the records of orphaned runs
    (marked running, but the aido process that ran them is gone: killed, crashed, or
    the machine restarted). With ``containers`` (the reaper), or when an aido process
    marked the workspace because the engine failed to remove a container, also remove
    containers of this workspace that no live run owns. Every aido command calls this
    on its way, and the reaper every interval. Returns what it did; never raises for one
    bad sandbox. Also sets ``reaper_needed``."""
    ctx.reaper_needed = False
    workspace = ctx.find_workspace()
    if workspace is None:
        return []
    actions: list[dict[str, Any]] = []
    now = utcnow()
    for sandbox_id in workspace.sandbox_ids():
        try:
            paths = workspace.sandbox(sandbox_id)
            if paths.destroying.exists():
                if _finish_abandoned_destroy(ctx, sandbox_id, paths):
                    actions.append({"action": "finished_destroy", "sandbox_id": sandbox_id})
                continue
            for run_id in seal_pending(paths):
                if _seal_left_behind(ctx, sandbox_id, paths, run_id):
                    actions.append({"action": "sealed_run", "sandbox_id": sandbox_id, "run_id": run_id})
            data = peek(paths)
            marked = marked_running(paths)
            if data is not None and not _may_need_sweeping(data, now, paths, marked):
                ctx.reaper_needed = ctx.reaper_needed or wants_reaper(data, marked)
                continue
            if data is None:
                record = ctx.store.load(sandbox_id)  # raises the error that says what is wrong
            else:
                record = SandboxRecord.from_json(data, source=str(paths.metadata), run_index=paths.run_index)
            # Only now the index is read: a run to recover, a stale marker, or an expiry.
            running = [r for r in record.runs if r.status == "running"]
            for rid in set(marked) - {r.run_id for r in running}:
                recover_run(ctx, sandbox_id, rid)  # a stale marker: dropped under the lock
            live = [r for r in running if fs.is_locked(paths.run_dir(r.run_id))]
            for ref in running:
                if ref not in live and recover_run(ctx, sandbox_id, ref.run_id):
                    actions.append(
                        {"action": "recovered_run", "sandbox_id": sandbox_id, "run_id": ref.run_id}
                    )
            # A live run stops itself at expiry; destroy only once it has closed its record.
            if (
                record.auto_cleanup
                and record.expired(now)
                and not live
                and destroy_one(ctx, sandbox_id, reason="expired", wait=False, expired_at=record.expires_at)
            ):
                log.info(
                    "removed expired sandbox %s (expired at %s); its runs are kept in .aido/archive/%s/",
                    sandbox_id,
                    record.expires_at,
                    sandbox_id,
                )
                actions.append({"action": "destroyed_expired", "sandbox_id": sandbox_id})
            else:
                # It stays, perhaps with runs recovered just now: its metadata as it is now.
                after = peek(paths)
                ctx.reaper_needed = ctx.reaper_needed or (
                    after is not None and wants_reaper(after, marked_running(paths))
                )
        except (AidoError, OSError) as exc:
            log.debug("sweep skipped %s: %s", sandbox_id, exc)
    actions.extend(_sweep_archive(ctx, now))
    if containers or workspace.containers_left.exists():
        actions.extend(reap_containers(ctx))
    return actions


def _seal_left_behind(ctx: Context, sandbox_id: str, paths: SandboxPaths, run_id: str) -> bool:
    """Seal a run whose aido died after closing its record but before sealing it. A run
    still marked running is left to recover_run, which seals it as it closes it."""
    run_dir = paths.run_dir(run_id)
    if not run_dir.is_dir() or fs.is_locked(run_dir):
        return False  # its aido is still at work (or the run never got a directory)
    record = ctx.store.load(sandbox_id)
    ref = record.run(run_id)
    if ref is not None and ref.status == "running":
        return False
    try:
        summary = fs.read_json(run_dir / SUMMARY)
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict):
        return False
    warning = seal_run(paths, run_id, summary=summary, config=record.config, sealed_by="recovery")
    if warning is None:
        log.info("sealed %s of sandbox %s, which its aido left unsealed", run_id, sandbox_id)
    return warning is None


def _finish_abandoned_destroy(ctx: Context, sandbox_id: str, paths: SandboxPaths) -> bool:
    """A sandbox marked ``.destroying`` whose destroyer died (nobody holds its directory):
    destroy it again, once its runs have closed their records (they stop at the marker)."""
    from aido.store import archive

    if fs.is_locked(paths.root) or any(fs.is_locked(p) for p in subdirs(paths.runs)):
        return False
    reason = archive.read_marker(paths.destroying).get("reason")
    return (
        destroy_one(ctx, sandbox_id, reason=reason if isinstance(reason, str) else "destroyed", wait=False)
        is not None
    )


def _sweep_archive(ctx: Context, now: Any) -> list[dict[str, Any]]:
    """Finish archives (and purges) a crash left halfway, and delete archives whose
    sandbox was destroyed longer than ``evidence_retention`` ago."""
    from aido.config.units import format_duration
    from aido.host import volume
    from aido.store import archive

    workspace = ctx.workspace
    actions: list[dict[str, Any]] = []
    finished, left = archive.scan(workspace)
    for staging in left:
        sandbox_id = staging.name.split(".")[0]
        try:
            with archive.holding(staging, wait=False) as held:
                if not held:
                    continue  # its destroyer is at work
                kept = archive.finish(workspace, staging, release=volume.release_mounted)
            record_event(
                workspace.events,
                "sandbox_destroyed" if kept is not None else "evidence_purged",
                sandbox_id=sandbox_id,
                reason="destroyed" if kept is not None else "purge",
                evidence=None if kept is None else str(kept.relative_to(workspace.dir)),
                recovered=True,
            )
            actions.append({"action": "finished_archive", "sandbox_id": sandbox_id})
        except (AidoError, OSError) as exc:
            log.debug("sweep could not finish %s: %s", staging, exc)
    if ctx.evidence_retention is None:
        return actions
    for sandbox_id in finished:
        try:
            destroyed_at = archive.older_than(workspace, sandbox_id, ctx.evidence_retention, now)
            if destroyed_at is None:
                continue
            runs = archive.run_count(workspace.archived(sandbox_id))
            if archive.purge(workspace, sandbox_id, wait=False):
                record_event(
                    workspace.events,
                    "evidence_purged",
                    sandbox_id=sandbox_id,
                    reason="retention",
                    destroyed_at=destroyed_at,
                    retention=format_duration(ctx.evidence_retention),
                    runs=runs,
                )
                actions.append({"action": "pruned_evidence", "sandbox_id": sandbox_id})
        except (AidoError, OSError) as exc:
            log.debug("sweep could not prune %s: %s", sandbox_id, exc)
    return actions


def reap_containers(ctx: Context) -> list[dict[str, Any]]:
    """Remove this workspace's containers that no live aido run owns."""
    workspace = ctx.workspace
    actions: list[dict[str, Any]] = []
    # Cleared before looking, so that a container left while this sweep runs re-marks it.
    workspace.containers_left.unlink(missing_ok=True)
    try:
        found = ctx.backend.list_labelled(
            {"aido.managed": "true", "aido.workspace": ctx.store.workspace_label()}
        )
    except AidoError as exc:
        log.debug("container sweep skipped: %s", exc)
        ctx.store.mark_containers_left()
        return actions
    for container in found:
        labels = container.get("labels") or {}
        sandbox_id, rid = labels.get("aido.sandbox", ""), labels.get("aido.run", "")
        if "aido.warm" in labels and not rid:
            if not _warm_owned(ctx, sandbox_id, container):
                from aido.store.pool import WarmPool

                if not ctx.backend.discard(str(container["id"])):
                    ctx.store.mark_containers_left()
                    continue
                with contextlib.suppress(AidoError):
                    WarmPool(workspace.sandbox(sandbox_id).warm).forget(str(container["id"]))
                actions.append({"action": "removed_warm", "sandbox_id": sandbox_id})
            continue
        run_dir = _owning_run(ctx, sandbox_id, rid)
        if run_dir is not None and fs.is_locked(run_dir):
            continue  # its aido process is alive and will remove it
        if run_dir is not None and run_dir.is_dir():
            recover_run(ctx, sandbox_id, rid)
        try:
            ctx.remove_containers({"aido.sandbox": sandbox_id, "aido.run": rid})
        except AidoError as exc:
            log.debug("container of %s/%s not removed: %s", sandbox_id, rid, exc)
            continue
        actions.append({"action": "removed_container", "sandbox_id": sandbox_id, "run_id": rid})
    actions.extend(_reap_networks(ctx))
    return actions


def _reap_networks(ctx: Context) -> list[dict[str, Any]]:
    """Remove the egress networks of runs no live aido owns whose containers are gone (one
    left alone: an aido killed between creating a run's network and its proxy)."""
    actions: list[dict[str, Any]] = []
    try:
        found = ctx.backend.list_networks(
            {"aido.managed": "true", "aido.workspace": ctx.store.workspace_label()}
        )
    except AidoError as exc:
        log.debug("network sweep skipped: %s", exc)
        return actions
    for network in found:
        labels = network.get("labels") or {}
        sandbox_id, rid = labels.get("aido.sandbox", ""), labels.get("aido.run", "")
        run_dir = _owning_run(ctx, sandbox_id, rid)
        if run_dir is not None and fs.is_locked(run_dir):
            continue  # its run is alive and removes it
        try:
            ctx.remove_containers({"aido.sandbox": sandbox_id, "aido.run": rid})
        except AidoError as exc:
            log.debug("egress network of %s/%s not removed: %s", sandbox_id, rid, exc)
            continue
        actions.append({"action": "removed_network", "sandbox_id": sandbox_id, "run_id": rid})
    return actions


def _owning_run(ctx: Context, sandbox_id: str, rid: str) -> Path | None:
    """The run directory a container's or network's labels name; None if they name none."""
    try:
        return ctx.workspace.sandbox(sandbox_id).run_dir(check_run_id(rid))
    except AidoError:
        return None


def _warm_owned(ctx: Context, sandbox_id: str, container: dict[str, Any]) -> bool:
    """Whether a warm container is still its pool's: starting (while the keeper runs),
    ready, or claimed by a run that is alive. Anything else (its sandbox gone or going, a
    run that ended or died, a keeper that crashed while starting it) is left over."""
    from aido.lifecycle.reaper import is_running
    from aido.store.pool import WarmPool

    try:
        paths = ctx.workspace.sandbox(sandbox_id)
    except AidoError:
        return False
    if paths.going():
        return False
    pool = WarmPool(paths.warm)
    container_id, name = str(container["id"]), str(container.get("name") or "")
    if container_id in pool.ready():
        return True
    if name in pool.starting():
        return is_running(ctx.workspace)
    for claim in pool.claims():
        if claim.container_id == container_id:
            try:
                return fs.is_locked(paths.run_dir(check_run_id(claim.run_id)))
            except AidoError:
                return False
    return False


def _may_need_sweeping(data: Any, now: Any, paths: SandboxPaths, marked: list[str]) -> bool:
    """A cheap look (sweeps happen on every command), never reading the run index: whether
    a run is marked running whose aido process is gone (its directory's lock is free; a
    live run is left alone), a schema-1 sandbox.json lists a running run, or the sandbox is
    an expired auto-cleanup one. Anything unexpected means yes, and the full load decides."""
    from aido.store.records import parse_time

    try:
        if any(not fs.is_locked(paths.run_dir(rid)) for rid in marked):
            return True
        if any(run.get("status") == "running" for run in data.get("runs") or ()):
            return True
        return bool(data.get("auto_cleanup", True)) and now >= parse_time(data["expires_at"])
    except Exception:
        return True
