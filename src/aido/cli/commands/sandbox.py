"""`aido sandbox ...`: create (up), list, select (use), extend, clean and destroy
sandboxes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aido.cli.commands.completion import complete_sandbox_ids
from aido.cli.commands.sandbox_up import sandbox_up
from aido.cli.evidence import archived_count
from aido.cli.observer import TerminalObserver
from aido.cli.options import CONTEXT, global_options
from aido.cli.state import AppState, command_state
from aido.cli.text import relative, relative_time
from aido.cli.workspace import open_manager

if TYPE_CHECKING:
    from aido.lifecycle.sandboxes import SandboxSummary


@click.group(context_settings=CONTEXT)
@global_options
def sandbox() -> None:
    """Create, list, select, extend, clean and destroy sandboxes."""


sandbox.add_command(sandbox_up)


@sandbox.command("list", context_settings=CONTEXT)
@click.option("-q", "--quiet", is_flag=True, help="Print only the ids, one per line (for scripts).")
@click.option(
    "-a",
    "--all",
    "all_",
    is_flag=True,
    help="Also list destroyed sandboxes whose evidence is archived (.aido/archive/), and when they went.",
)
@global_options
@command_state
def sandbox_list(state: AppState, quiet: bool, all_: bool) -> None:
    """List the sandboxes of this workspace (* marks the active one).

    With -q, only their ids, one per line, oldest first: e.g.
    `aido sandbox list -q | xargs aido sandbox destroy`. No workspace lists nothing.
    """
    if quiet and state.json:
        raise click.UsageError("give -q or --json, not both")
    manager = open_manager(state)
    summaries = manager.list_sandboxes(include_archived=all_)
    out = state.renderer
    if quiet:
        for summary in summaries:
            print(summary.id)
        return
    if out.json_mode:
        from dataclasses import asdict

        out.envelope("sandbox list", "success", {"sandboxes": [asdict(s) for s in summaries]})
        return
    archived = 0 if all_ else archived_count(manager)
    if not summaries:
        out.say("No sandboxes. Create one with `aido sandbox up`.")
    else:
        columns = ["ID", "NAME", "STATUS", "CREATED", "EXPIRES", "RUNS"]
        pools = any(s.warm for s in summaries)
        out.table(
            [*columns, *(["WARM"] if pools else []), *(["DESTROYED"] if all_ else [])],
            [
                [
                    ("* " if s.active else "  ") + s.id,
                    s.name or "-",
                    s.status,
                    s.created_at.replace("T", " ").removesuffix("Z"),
                    "-" if s.archived else relative_time(s.expires_at),
                    str(s.runs),
                    *([_warm(s.warm)] if pools else []),
                    *([_destroyed(s)] if all_ else []),
                ]
                for s in summaries
            ],
        )
    if archived:
        out.say(f"({archived} destroyed sandbox(es) with archived evidence: `aido sandbox list --all`)")


def _warm(pool: dict[str, Any] | None) -> str:
    """The pool as `2/2 ready`, `1/2 ready, 1 starting`, or why it cannot be filled."""
    if not pool:
        return "-"
    text = f"{pool['ready']}/{pool['size']} ready"
    if pool["starting"]:
        text += f", {pool['starting']} starting"
    if pool["error"]:
        text += " (cannot start: see .aido/reaper.log)"
    return text


def _destroyed(summary: SandboxSummary) -> str:
    """When and why a sandbox was destroyed, for `sandbox list --all`."""
    if not summary.archived:
        return "-"
    if not summary.destroyed_at:
        return "yes"
    why = "ttl" if summary.destroy_reason == "expired" else "destroy"
    return f"{relative_time(summary.destroyed_at)} ({why})"


@sandbox.command("destroy", context_settings=CONTEXT)
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=complete_sandbox_ids)
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Destroy every sandbox in this workspace (with --purge: every archive too).",
)
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the evidence (of a live or an already destroyed sandbox). Irreversible; asks y/N.",
)
@click.option("-y", "--yes", is_flag=True, help="Confirm --purge without asking (needed without a terminal).")
@global_options
@command_state
def sandbox_destroy(state: AppState, ids: tuple[str, ...], all_: bool, purge: bool, yes: bool) -> None:
    """Stop a sandbox's containers and delete its files; keep its runs' evidence.

    Without an ID, destroys the active sandbox (with none active, it destroys
    nothing and lists the sandboxes to choose from, exit 3). Its containers, inputs/, work/,
    outputs/ and secrets go; sandbox.json (marked destroyed), events.log and every
    runs/RUN/ move to .aido/archive/ID/, kept for the evidence_retention setting
    (30d by default). Read them with `aido runs --sandbox ID` and `aido logs
    --sandbox ID --run RUN`.

    --purge deletes the evidence too, irreversibly, also of a sandbox destroyed
    earlier; it asks y/N (without a terminal it needs --yes).

    Every ID is checked first: if one is malformed (exit 2) or unknown (exit 3),
    none is destroyed. Each sandbox's outcome is reported; if one fails midway, the
    others are still destroyed and aido exits non-zero. --all with no workspace has
    nothing to do.
    """
    from aido.lifecycle.destroy import DestroyFailed

    if all_ and ids:
        raise click.UsageError("give sandbox IDs or --all, not both")
    manager = open_manager(state)
    # --purge: say what goes, then ask y/N on a terminal; without one, only --yes confirms.
    purge_confirm = TerminalObserver(state.renderer, state, yes=yes).confirmer(
        "delete this evidence for good?"
    )
    failure: DestroyFailed | None = None
    try:
        result = manager.destroy(list(ids), all_sandboxes=all_, purge=purge, confirm=purge_confirm)
    except DestroyFailed as exc:
        result, failure = exc.result, exc
    out = state.renderer
    if out.json_mode:
        payload: dict[str, Any] = {
            "destroyed": result.destroyed,
            "already_gone": result.already_gone,
            "failed": [
                {"sandbox_id": sid, "error": {"code": err.code, "message": err.message, "hint": err.hint}}
                for sid, err in result.failed
            ],
        }
        if failure is None:
            out.envelope("sandbox destroy", "success", payload)
            return
        out.envelope(
            "sandbox destroy",
            "error",
            {"exit_code": int(failure.exit_code), **payload},
            {"code": failure.code, "message": failure.message, "hint": failure.hint},
        )
        sys.exit(int(failure.exit_code))
    if not (result.destroyed or result.already_gone or result.failed):
        out.say("No sandboxes to destroy.")
    for item in result.destroyed:
        if item["warning"]:
            out.warn(item["warning"])
        if item["already_destroyed"] and item["purged"]:
            out.success(f"Evidence purged: {item['sandbox_id']} ({item['runs']} run(s) deleted)")
            continue
        removed = item["containers_removed"]
        extra = f" ({removed} container{'s' if removed != 1 else ''} removed)" if removed else ""
        out.success(f"Sandbox destroyed: {item['sandbox_id']}{extra}")
        if item["purged"]:
            out.say(f"  its evidence was purged ({item['runs']} run(s) deleted)")
        elif item["evidence_dir"]:
            retention = manager.evidence_retention
            kept = "for good" if retention is None else f"for {_duration(retention)}"
            out.say(
                f"  evidence of {item['runs']} run(s) kept {kept} in {relative(Path(item['evidence_dir']))}/"
            )
    for sandbox_id in result.already_gone:
        out.success(f"Sandbox {sandbox_id} was already destroyed (by another aido command)")
    for sandbox_id, err in result.failed:
        out.failure(f"Sandbox {sandbox_id} not destroyed: {err.message}")
    if failure is not None:
        raise failure  # the one error line (and hint) and exit code, from main()


@sandbox.command("use", context_settings=CONTEXT)
@click.argument("sandbox_id", metavar="ID", shell_complete=complete_sandbox_ids)
@global_options
@command_state
def sandbox_use(state: AppState, sandbox_id: str) -> None:
    """Make sandbox ID the active one.

    The active sandbox is the one `run`, `logs`, `extend` and `destroy` use when
    not given an ID.

    `sandbox up` makes each new sandbox active; destroying the active sandbox
    leaves none active, and aido never picks another by itself. ID must exist,
    not have expired and not be being destroyed (exit 3).
    """
    record, previous = open_manager(state).use(sandbox_id)
    out = state.renderer
    if out.json_mode:
        out.envelope(
            "sandbox use",
            "success",
            {"sandbox_id": record.id, "name": record.name, "previous_sandbox_id": previous},
        )
        return
    named = f" ({record.name})" if record.name else ""
    out.success(f"Active sandbox: {record.id}{named}, expires {relative_time(record.expires_at)}")


@sandbox.command("extend", context_settings=CONTEXT)
@click.argument("sandbox_id", metavar="[ID]", required=False, shell_complete=complete_sandbox_ids)
@click.option(
    "--ttl",
    required=True,
    metavar="DURATION",
    help="New time to live from now, e.g. 30m, 2h (at most 30d, as in sandbox.yaml).",
)
@global_options
@command_state
def sandbox_extend(state: AppState, sandbox_id: str | None, ttl: str) -> None:
    """Set when a sandbox expires: DURATION from now (default: the active sandbox).

    This replaces the expiry, so it can also shorten it. Runs in progress keep
    going until the new expiry. An expired sandbox, or one being destroyed, is
    refused (exit 3): create a new one. Recorded as `sandbox_extended` in the
    sandbox's events.log.
    """
    record, previous = open_manager(state).extend(sandbox_id, ttl)
    out = state.renderer
    if out.json_mode:
        out.envelope(
            "sandbox extend",
            "success",
            {"sandbox_id": record.id, "expires_at": record.expires_at, "previous_expires_at": previous},
        )
        return
    out.success(f"Sandbox {record.id} now expires {record.expires_at} ({relative_time(record.expires_at)})")


@sandbox.command("clean", context_settings=CONTEXT)
@click.argument("sandbox_id", required=False, metavar="[ID]", shell_complete=complete_sandbox_ids)
@click.option("--work", "work", is_flag=True, help="Clear work/ (the default is work/ and outputs/).")
@click.option("--outputs", "outputs", is_flag=True, help="Clear outputs/ (the default is both).")
@global_options
@command_state
def sandbox_clean(state: AppState, sandbox_id: str | None, work: bool, outputs: bool) -> None:
    """Delete everything tasks left in a sandbox's work/ and outputs/.

    Without an ID, cleans the active sandbox. Use it when a run left them over the
    sandbox's disk or file limit: until then every run is refused (exit 3). Refused
    while a run is in progress. Links the task planted are removed, never followed.
    Recorded as a sandbox_cleaned event in the sandbox's events.log.
    """
    trees = [name for name, wanted in (("work", work), ("outputs", outputs)) if wanted] or None
    result = open_manager(state).clean(sandbox_id, trees=trees)
    out = state.renderer
    if out.json_mode:
        out.envelope("sandbox clean", "success", result)
        return
    from aido.config.units import format_size

    for name, held in result["cleared"].items():
        out.success(
            f"Cleaned {name}/ of sandbox {result['sandbox_id']}: "
            f"removed {held['files']} files and directories ({format_size(held['bytes'])})"
        )


def _duration(seconds: float) -> str:
    from aido.config.units import format_duration

    return str(format_duration(seconds))
