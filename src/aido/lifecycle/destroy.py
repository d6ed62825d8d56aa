"""``aido sandbox destroy``: stop a sandbox's runs and containers, delete its working
trees and keep its runs' evidence in the workspace's archive (see aido.store.archive);
``--purge`` deletes the evidence too, once confirmed. Each sandbox succeeds or fails on
its own; every id is checked before anything is destroyed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aido import fs
from aido.errors import AidoError, NotConfirmed, RuntimeUnavailable, SandboxNotFound, WorkspaceError
from aido.evidence.events import record_event
from aido.lifecycle.sandboxes import resolve_id
from aido.store.store import live_runs
from aido.store.workspace import PARTIAL
from aido.values import dataclass, field

if TYPE_CHECKING:
    from aido.run.context import Context
    from aido.run.request import Confirm

DESTROY_WAIT_SECONDS = 15.0  # how long destroy waits for a stopped run to write its evidence


@dataclass
class DestroyResult:
    """What `destroy` did, per sandbox: destroyed (the dicts `destroy_one` returns),
    already removed by another process meanwhile, or failed midway (with the error)."""

    destroyed: list[dict[str, Any]] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)
    failed: list[tuple[str, AidoError]] = field(default_factory=list)


class DestroyFailed(AidoError):
    """Some sandboxes could not be destroyed; ``result`` says what happened to each one
    (the others were destroyed). Exits like the first failure."""

    code = "destroy_failed"

    def __init__(self, result: DestroyResult) -> None:
        first = result.failed[0][1]
        count = len(result.failed)
        total = count + len(result.destroyed) + len(result.already_gone)
        super().__init__(
            f"{count} of {total} sandbox{'es' if total != 1 else ''} could not be destroyed: "
            + "; ".join(f"{sid}: {exc.message}" for sid, exc in result.failed),
            hint=first.hint or "fix the cause, then run `aido sandbox destroy` again for those",
        )
        self.exit_code = first.exit_code
        self.result = result


def destroy(
    ctx: Context,
    sandbox_ids: list[str] | None = None,
    *,
    all_sandboxes: bool = False,
    purge: bool = False,
    confirm: Confirm | None = None,
) -> DestroyResult:
    """Destroy the given sandboxes (or the active one, or with ``all_sandboxes`` every
    one), keeping each one's evidence in the workspace's archive. Every id is checked
    first: if any is malformed or unknown, nothing is destroyed. One that fails midway
    does not stop the others; each id's outcome is in the result. ``purge`` deletes the
    evidence too (of live or already destroyed sandboxes; with ``all_sandboxes``, every
    archive as well) once ``confirm`` returns True."""
    from aido.store.ids import check_sandbox_id

    given = list(dict.fromkeys(sandbox_ids or []))  # in order, each once
    for item in given:
        check_sandbox_id(item)  # a malformed id is a usage error, workspace or not
    if all_sandboxes and ctx.find_workspace() is None:
        return DestroyResult()  # no workspace, so nothing to destroy: as `list` shows
    workspace = ctx.workspace
    if all_sandboxes:
        targets = workspace.sandbox_ids()
        if purge:
            targets += [i for i in workspace.archived_ids() if i not in targets]
    elif given:
        targets = given
        unknown = [
            i
            for i in given
            if not workspace.sandbox(i).root.is_dir() and not _archive_destroyable(ctx, i, purge=purge)
        ]
        if len(unknown) == 1:
            raise _not_found(ctx, unknown[0], nothing_done=len(given) > 1)
        if unknown:
            raise SandboxNotFound(
                f"no sandboxes {', '.join(unknown)} in {workspace.dir}; nothing was destroyed",
                hint="list sandboxes with `aido sandbox list`",
            )
    else:
        targets = [
            resolve_id(ctx, None, choose="name it: `aido sandbox destroy ID` (or --all for every one)")
        ]
    if purge:
        _confirm_purge(ctx, targets, confirm)
    result = DestroyResult()
    for sandbox_id in targets:
        try:
            done = destroy_one(ctx, sandbox_id, reason="destroyed", purge=purge)
        except (AidoError, OSError) as exc:
            error = exc if isinstance(exc, AidoError) else WorkspaceError(str(exc))
            result.failed.append((sandbox_id, error))
            continue
        if done is None:
            result.already_gone.append(sandbox_id)  # another aido process destroyed it meanwhile
        else:
            result.destroyed.append(done)
    if result.failed:
        raise DestroyFailed(result)
    return result


# -- what destroy checks and reports ---------------------------------------------------


def _archive_destroyable(ctx: Context, sandbox_id: str, *, purge: bool) -> bool:
    """Whether destroy has work on a sandbox that is no longer live: an archive a crash
    left unfinished, or (with purge) a finished one."""
    archive = ctx.workspace.archive
    return (archive / f"{sandbox_id}{PARTIAL}").is_dir() or (purge and (archive / sandbox_id).is_dir())


def _not_found(ctx: Context, sandbox_id: str, *, nothing_done: bool = False) -> SandboxNotFound:
    """The error for an id that names no live sandbox (``nothing_done``: others were
    named too, and none of them was destroyed)."""
    archived = ctx.workspace.archived(sandbox_id).root
    tail = "; nothing was destroyed" if nothing_done else ""
    if archived.is_dir():
        return SandboxNotFound(
            f"sandbox {sandbox_id} was already destroyed; its evidence is kept in {archived}{tail}",
            hint=f"read it with `aido runs --sandbox {sandbox_id}` and "
            f"`aido logs --sandbox {sandbox_id}`; "
            f"delete it with `aido sandbox destroy --purge {sandbox_id}`",
        )
    return SandboxNotFound(
        f"no sandbox {sandbox_id} in {ctx.workspace.dir}{tail}",
        hint="list sandboxes with `aido sandbox list`",
    )


def _confirm_purge(ctx: Context, targets: list[str], confirm: Confirm | None) -> None:
    """--purge deletes evidence for good: every id must exist (else nothing is deleted),
    and the caller must say yes to the list of what goes."""
    from aido.store import archive

    warnings = []
    for sandbox_id in targets:
        live = ctx.workspace.sandbox(sandbox_id)
        archived = ctx.workspace.archived(sandbox_id)
        if live.root.is_dir():
            runs, state = archive.run_count(live), ""
        elif _archive_destroyable(ctx, sandbox_id, purge=True):
            runs, state = archive.run_count(archived), " (already destroyed)"
        else:
            raise _not_found(ctx, sandbox_id)
        warnings.append(
            f"--purge deletes the evidence of sandbox {sandbox_id}{state}: {runs} run(s), "
            "irreversibly (it is not kept in .aido/archive/)"
        )
    if warnings and (confirm is None or not confirm(warnings)):
        raise NotConfirmed(
            "refusing to delete evidence without confirmation",
            hint="answer y at the prompt, or pass --yes to confirm without a terminal",
        )


def destroy_one(
    ctx: Context, sandbox_id: str, *, reason: str, purge: bool = False, wait: bool = True, **event: Any
) -> dict[str, Any] | None:
    """Stop a sandbox's runs and containers, delete its working trees and keep its runs'
    evidence in the archive (with ``purge``, delete that too); see aido.store.archive.
    Runs in progress (in any process) see the marker, stop their task and write their
    evidence first. Returns None if another process destroyed the sandbox meanwhile, or,
    without ``wait``, is destroying it now."""
    from aido.host import volume
    from aido.store import archive

    workspace = ctx.workspace
    paths = workspace.sandbox(sandbox_id)
    if not paths.root.is_dir():
        return _destroy_archived(ctx, sandbox_id, purge=purge, wait=wait)
    # One destroyer at a time: this lock follows the directory into the archive, and is
    # held until the archive is finished (a sweep never finishes a destroy in progress).
    with archive.holding(paths.root, wait=wait) as held:
        if not held:
            return None
        try:
            with fs.locked(paths.lock):
                if not paths.root.is_dir():
                    return None  # destroyed by the process we waited for
                marker = archive.mark(paths, reason=reason, purge=purge)
                # From the run directories' locks, not sandbox.json: a sandbox whose metadata
                # is corrupt or from a newer aido must still be destroyable.
                live = live_runs(paths)
        except FileNotFoundError:
            return None  # removed by a concurrent destroy
        # The runs' own processes notice the marker within a fraction of a second, stop
        # their task and close their records; wait for them so that each ends cleanly and
        # nothing writes into a tree being moved. Containers go afterwards (and at once
        # for runs whose aido process is gone, or one that does not finish in time).
        deadline = time.monotonic() + DESTROY_WAIT_SECONDS
        while any(fs.is_locked(paths.run_dir(r)) for r in live) and time.monotonic() < deadline:
            time.sleep(0.05)
        warning = None
        removed: list[str] = []
        try:
            removed = ctx.remove_containers({"aido.sandbox": sandbox_id})
        except RuntimeUnavailable as exc:
            warning = f"containers not checked: {exc.message}"
        purging = bool(marker["purge"])
        runs = archive.run_count(paths)
        try:
            with fs.locked(paths.lock):
                if not paths.root.is_dir():
                    return None
                if not purging:
                    record_event(
                        paths.events,
                        "sandbox_destroyed",
                        sandbox_id=sandbox_id,
                        reason=marker["reason"],
                        containers_removed=len(removed),
                        runs_stopped=live or None,
                        **event,
                    )
                staging = archive.move_out(
                    workspace, paths, sandbox_id, purge=purging, release=volume.release_mounted
                )
        except FileNotFoundError:
            return None
        kept = archive.finish(workspace, staging, release=volume.release_mounted)
    record_event(
        workspace.events,
        "sandbox_destroyed",
        sandbox_id=sandbox_id,
        reason=marker["reason"],
        containers_removed=len(removed),
        runs_stopped=live or None,
        warning=warning,
        evidence=None if kept is None else str(kept.relative_to(workspace.dir)),
        **event,
    )
    if purging:
        record_event(workspace.events, "evidence_purged", sandbox_id=sandbox_id, reason="purge", runs=runs)
    if reason == "destroyed" and workspace.active_id() == sandbox_id:
        workspace.set_active(None)
    return {
        "sandbox_id": sandbox_id,
        "containers_removed": len(removed),
        "runs_stopped": live,
        "warning": warning,
        "runs": runs,
        "evidence_dir": None if kept is None else str(kept),
        "purged": purging,
        "already_destroyed": False,
    }


def _destroy_archived(ctx: Context, sandbox_id: str, *, purge: bool, wait: bool) -> dict[str, Any] | None:
    """A sandbox that is no longer live: finish an archive that a crash left unfinished,
    and with ``purge`` delete the archive."""
    from aido.host import volume
    from aido.store import archive

    workspace = ctx.workspace
    staging = workspace.archive / f"{sandbox_id}{PARTIAL}"
    kept = None
    with archive.holding(staging, wait=wait) as held:
        if held and staging.is_dir():
            kept = archive.finish(workspace, staging, release=volume.release_mounted)
            record_event(
                workspace.events,
                "sandbox_destroyed",
                sandbox_id=sandbox_id,
                reason="destroyed",
                evidence=str(kept.relative_to(workspace.dir)) if kept else None,
                recovered=True,
            )
    paths = workspace.archived(sandbox_id)
    runs = archive.run_count(paths)
    purged = purge and archive.purge(workspace, sandbox_id, wait=wait)
    if purged:
        record_event(workspace.events, "evidence_purged", sandbox_id=sandbox_id, reason="purge", runs=runs)
    if kept is None and not purged:
        return None
    return {
        "sandbox_id": sandbox_id,
        "containers_removed": 0,
        "runs_stopped": [],
        "warning": None,
        "runs": runs,
        "evidence_dir": None if purged or kept is None else str(kept),
        "purged": purged,
        "already_destroyed": True,
    }
