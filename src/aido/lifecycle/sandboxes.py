"""Sandboxes as the commands see them: which one a command means (``resolve_id``), the
lists (``sandbox list``, ``runs``; live and archived), ``sandbox use``, ``sandbox extend``
and ``sandbox clean``. Creating is in create.py, destroying in destroy.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import fs
from aido.errors import AidoError, NoActiveSandbox, SandboxBusy, SandboxExpired, SandboxNotFound, UsageError
from aido.evidence.events import record_event
from aido.log import log
from aido.store.ids import run_number
from aido.store.records import RunSettings, SandboxRecord, isoformat, utcnow
from aido.store.store import live_runs, refuse_going
from aido.store.workspace import METADATA, SandboxPaths
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.run.context import Context


CHOICES_SHOWN = 10  # sandboxes named in a "no active sandbox" error; JSON lists them all


@dataclass
class SandboxSummary:
    id: str
    name: str | None
    status: str
    created_at: str
    expires_at: str
    runs: int
    active: bool
    archived: bool = False  # destroyed; its evidence is in .aido/archive/<id>/
    destroyed_at: str | None = None
    destroy_reason: str | None = None  # "destroyed" (by a command) or "expired" (its ttl)
    # The warm pool (``warm: N``): size, ready, starting, in_use and the keeper's last error.
    warm: dict[str, Any] | None = None


@dataclass
class RunSummary:
    """One run, as `aido runs` lists it (its sandbox live or destroyed)."""

    sandbox_id: str
    archived: bool
    run_id: str
    task: str
    status: str
    exit_code: int | None
    started_at: str
    completed_at: str | None
    duration_ms: int | None
    evidence_dir: Path


def resolve_id(ctx: Context, sandbox_id: str | None, *, choose: str = "give --sandbox ID") -> str:
    """The given sandbox, or the active one; never another. With no active sandbox (it
    was destroyed, or expired and was removed) the user chooses: the error lists the
    sandboxes there are. ``choose`` says how the calling command takes an id."""
    if sandbox_id:
        from aido.store.ids import check_sandbox_id

        return check_sandbox_id(sandbox_id)
    active = ctx.workspace.active_id(strict=True)
    if active and (ctx.workspace.sandboxes / active / METADATA).is_file():
        return active
    problem = (
        f"the active sandbox {active} no longer exists (it expired and was removed, or was deleted)"
        if active
        else "no active sandbox"
    )
    # Never fall back silently to another sandbox: it has other inputs, env and limits.
    choices = list_sandboxes(ctx)
    if not choices:
        if active:
            raise SandboxNotFound(problem, hint="create a new one with `aido sandbox up`")
        raise SandboxNotFound("no sandbox in this workspace", hint="create one with `aido sandbox up`")
    shown = [_choice(s) for s in choices[-CHOICES_SHOWN:]]
    more = len(choices) - len(shown)
    listing = ", ".join(shown) + (f" and {more} older (`aido sandbox list`)" if more else "")
    raise NoActiveSandbox(
        f"{problem}; this workspace has {len(choices)}: {listing}",
        hint=f"choose one with `aido sandbox use ID`, or {choose}",
        sandboxes=[{"id": s.id, "name": s.name, "status": s.status} for s in choices],
    )


# -- sandbox list / aido runs -----------------------------------------------------------


def list_sandboxes(ctx: Context, *, include_archived: bool = False) -> list[SandboxSummary]:
    """The live sandboxes; with ``include_archived``, destroyed ones whose evidence is kept too."""
    workspace = ctx.find_workspace()
    if workspace is None:
        return []
    active = workspace.active_id()
    now = utcnow()
    out = []
    for sandbox_id in workspace.sandbox_ids():
        try:
            record = ctx.store.load(sandbox_id)
            runs = record.runs
        except AidoError:
            out.append(SandboxSummary(sandbox_id, None, "invalid", "", "", 0, sandbox_id == active))
            continue
        status = record.status
        if record.expired(now):
            status = "expired"
        elif any(r.status == "running" for r in runs):
            status = "running"
        out.append(
            SandboxSummary(
                id=record.id,
                name=record.name,
                status=status,
                created_at=record.created_at,
                expires_at=record.expires_at,
                runs=len(runs),
                active=record.id == active,
                warm=_pool(ctx, record.id, int(record.config.get("warm") or 0)),
            )
        )
    if include_archived:
        out.extend(_archived_summary(ctx, i) for i in workspace.archived_ids())
    return sorted(out, key=lambda s: s.created_at)


def _pool(ctx: Context, sandbox_id: str, size: int) -> dict[str, Any] | None:
    """What the sandbox's warm pool holds now, from its bookkeeping (no engine call)."""
    from aido.store.pool import WarmPool

    if not size:
        return None
    pool = WarmPool(ctx.store.paths(sandbox_id).warm)
    return {
        "size": size,
        "ready": len(pool.ready()),
        "starting": len(pool.starting()),
        "in_use": len(pool.claims()),
        "error": pool.error(),
    }


def _archived_summary(ctx: Context, sandbox_id: str) -> SandboxSummary:
    from aido.store import archive

    paths = ctx.workspace.archived(sandbox_id)
    try:
        record = ctx.store.load_at(paths, sandbox_id)
        runs = record.runs
    except AidoError:
        return SandboxSummary(sandbox_id, None, "invalid", "", "", archive.run_count(paths), False, True)
    return SandboxSummary(
        id=record.id,
        name=record.name,
        status=record.status,
        created_at=record.created_at,
        expires_at=record.expires_at,
        runs=len(runs),
        active=False,
        archived=True,
        destroyed_at=record.destroyed_at,
        destroy_reason=record.destroy_reason,
    )


def list_runs(
    ctx: Context, sandbox_id: str | None = None, *, include_archived: bool = False
) -> list[RunSummary]:
    """Runs of one sandbox (live or archived), or of every live sandbox (and, with
    ``include_archived``, of every destroyed one whose evidence is kept)."""
    from aido.store.ids import check_sandbox_id

    found: list[tuple[SandboxRecord, SandboxPaths, bool]] = []
    if sandbox_id is not None:
        record, paths = ctx.store.load_evidence(check_sandbox_id(sandbox_id))
        found.append((record, paths, paths.root.parent == ctx.workspace.archive))
    else:
        workspace = ctx.find_workspace()
        if workspace is None:
            return []
        ids = [(i, False) for i in workspace.sandbox_ids()]
        if include_archived:
            ids += [(i, True) for i in workspace.archived_ids()]
        for sid, archived in ids:
            paths = workspace.archived(sid) if archived else workspace.sandbox(sid)
            try:
                loaded = ctx.store.load_at(paths, sid)
                loaded.runs  # noqa: B018 -- read now: a damaged index skips this sandbox, as a bad record does
                found.append((loaded, paths, archived))
            except AidoError as exc:
                log.debug("runs of %s not listed: %s", sid, exc)
    out = []
    for record, paths, archived in sorted(found, key=lambda f: f[0].created_at):
        for ref in sorted(record.runs, key=lambda r: run_number(r.run_id) or 0):
            out.append(
                RunSummary(
                    sandbox_id=record.id,
                    archived=archived,
                    run_id=ref.run_id,
                    task=ref.task,
                    status=ref.status,
                    exit_code=ref.exit_code,
                    started_at=ref.started_at,
                    completed_at=ref.completed_at,
                    duration_ms=ref.duration_ms,
                    evidence_dir=paths.run_dir(ref.run_id),
                )
            )
    return out


def use(ctx: Context, sandbox_id: str) -> tuple[SandboxRecord, str | None]:
    """Make a sandbox the active one (what `run`, `logs` and `destroy` use without an
    id). Returns its record and the id that was active before, if any."""
    from aido.store.ids import check_sandbox_id

    check_sandbox_id(sandbox_id)
    workspace = ctx.workspace
    previous = workspace.active_id()
    # Under the sandbox's lock: a destroy cannot slip in between the check and the pointer
    # (one that starts afterwards clears the pointer again).
    with live(ctx, sandbox_id) as record:
        workspace.set_active(sandbox_id)
    return record, previous


def extend(ctx: Context, sandbox_id: str | None, ttl: str) -> tuple[SandboxRecord, str]:
    """Set a sandbox's expiry to ``ttl`` from now (longer or shorter than it was),
    within sandbox.yaml's bounds. Returns the record and the previous expiry."""
    from aido.config.limits import MAX_TTL_SECONDS
    from aido.config.units import format_duration, parse_duration

    if sandbox_id:
        from aido.store.ids import check_sandbox_id

        check_sandbox_id(sandbox_id)
    try:
        seconds = parse_duration(ttl, maximum=MAX_TTL_SECONDS)
    except ValueError as exc:
        raise UsageError(
            f"--ttl: {exc}",
            hint=f"give a duration like 30m or 2h, at most {format_duration(MAX_TTL_SECONDS)}",
        ) from None
    sid = resolve_id(ctx, sandbox_id, choose="give its id: `aido sandbox extend ID --ttl D`")
    paths = ctx.workspace.sandbox(sid)
    with live(ctx, sid) as record:
        previous = record.expires_at
        record.expires_at = isoformat(utcnow() + timedelta(seconds=seconds))
    record_event(
        paths.events,
        "sandbox_extended",
        sandbox_id=sid,
        ttl=format_duration(seconds),
        previous_expires_at=previous,
        expires_at=record.expires_at,
    )
    return record, previous


@contextlib.contextmanager
def live(ctx: Context, sandbox_id: str) -> Iterator[SandboxRecord]:
    """The record of a sandbox that exists, is not being destroyed and has not expired,
    in a store transaction (its lock held, saved if the block changes it);
    SandboxNotFound or SandboxExpired otherwise."""
    workspace = ctx.workspace
    paths = workspace.sandbox(sandbox_id)
    missing = SandboxNotFound(
        f"no sandbox {sandbox_id} in {workspace.dir}", hint="list sandboxes with `aido sandbox list`"
    )
    if not paths.root.is_dir():
        raise missing

    try:
        with ctx.store.transaction(sandbox_id, check=lambda p: refuse_going(p, sandbox_id)) as record:
            if record.expired():
                raise SandboxExpired(
                    f"sandbox {sandbox_id} expired at {record.expires_at}",
                    hint="create a new sandbox with `aido sandbox up`",
                )
            yield record
    except FileNotFoundError:
        raise missing from None  # destroyed meanwhile


def clean(ctx: Context, sandbox_id: str | None = None, *, trees: list[str] | None = None) -> dict[str, Any]:
    """Empty a sandbox's work/ and outputs/ (or the ``trees`` named), e.g. after a run
    left them over the sandbox's limits. Refused (exit 3) while a run is in progress;
    never follows a link the task planted; recorded as a ``sandbox_cleaned`` event."""
    from aido.host import trees as task_trees

    names = list(trees or task_trees.TREES)
    sid = resolve_id(ctx, sandbox_id)
    record = ctx.store.load(sid)
    paths = ctx.workspace.sandbox(sid)
    try:
        with fs.locked(paths.lock):  # no run can start meanwhile: it allocates under this lock
            refuse_going(paths, sid)
            busy = live_runs(paths)
            if busy:
                raise SandboxBusy(
                    f"sandbox {sid} has a run in progress ({', '.join(busy)}): "
                    "its task may be writing to the trees being cleaned",
                    hint=f"wait for it to end (`aido logs --follow --sandbox {sid}`), then clean again",
                )
            settings = RunSettings.from_config(record.config)
            if settings.disk_quota == "hard":
                from aido.host import volume

                uid, _, gid = record.task_user.partition(":")
                volume.ensure_mounted(paths, uid=int(uid), gid=int(gid))  # the trees live there
            cleared = task_trees.clear(paths, names)
    except FileNotFoundError:
        raise SandboxNotFound(
            f"sandbox {sid} was destroyed", hint="create a new sandbox with `aido sandbox up`"
        ) from None
    record_event(paths.events, "sandbox_cleaned", sandbox_id=sid, cleared=cleared)
    return {"sandbox_id": sid, "cleared": cleared}


def _choice(summary: SandboxSummary) -> str:
    """A sandbox as named in a "choose one" error: its id, name and status if not plain."""
    notes = [n for n in (summary.name, summary.status if summary.status != "created" else None) if n]
    return f"{summary.id} ({', '.join(notes)})" if notes else summary.id
