"""Reading runs back: `aido logs` (a run's output), `aido show` (how it went) and
`aido runs` (which runs there are), for live and destroyed sandboxes alike."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from aido.cli.evidence import captured_output, run_ending
from aido.cli.options import CONTEXT, global_options
from aido.cli.render import Renderer
from aido.cli.state import AppState, command_state
from aido.cli.text import relative
from aido.cli.workspace import open_manager, sweep
from aido.errors import UsageError

if TYPE_CHECKING:
    from aido.manager import SandboxManager
    from aido.store.records import RunRef, SandboxRecord


@click.command("logs", context_settings=CONTEXT)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Stream the run until it ends, then print its outcome line and exit with its exit code.",
)
@click.option("--stderr", "show_stderr", is_flag=True, help="Show stderr too (always shown for failed runs).")
@click.option("--run", "run_id", metavar="RUN", help="Run to show, e.g. run-002 or 2 (default: the latest).")
@click.option(
    "--sandbox",
    "sandbox_id",
    metavar="ID",
    help="Sandbox (default: the active one); a destroyed one's archived runs need its ID here.",
)
@click.option("--raw-output", is_flag=True, help="Print the output unfiltered, escape sequences included.")
@click.option(
    "--network",
    "network",
    is_flag=True,
    help="Show the run's network log instead: every request its egress allowlist's proxy "
    "allowed or denied, with the counts.",
)
@global_options
@command_state
def logs(
    state: AppState,
    follow: bool,
    show_stderr: bool,
    run_id: str | None,
    sandbox_id: str | None,
    raw_output: bool,
    network: bool,
) -> None:
    """Show a run's captured output: stdout, and stderr when asked or when the run failed.

    With --follow, stream a run in progress until it ends, then print its outcome line
    (the one `aido run` printed) and exit with the run's exit code, as `aido run` did;
    also for a run that had already ended.

    From the active sandbox, or --sandbox ID; with none active, aido lists the
    sandboxes and exits 3.

    Works on runs of destroyed sandboxes too (their evidence is archived): give
    --sandbox ID (`aido runs --all` lists them).

    With --network, show the run's network log: one row per request the egress proxy
    saw (time, ALLOW or DENY, method, host:port, status, bytes sent and received, why),
    then the counts. A run without an egress allowlist has none: one line says so
    (exit 0), as for a run that printed nothing.
    """
    if network and (follow or show_stderr or raw_output):
        raise UsageError(
            "--network cannot be combined with --follow, --stderr or --raw-output",
            hint="the network log is written when the run ends: `aido logs --network` after it",
        )
    manager = open_manager(state)
    out = Renderer(json_mode=state.json, raw_output=raw_output)
    record, ref = _find_run(state, manager, sandbox_id, run_id)
    if network:
        _network(manager, out, record, ref)
        return
    if out.json_mode:
        if follow:
            for _ in manager.stream_logs(record.id, ref.run_id, streams=(), follow=True):
                pass
            record, ref = _ended_ref(manager, record.id, ref.run_id)
        from dataclasses import asdict

        texts = captured_output(manager, record.id, ref.run_id)
        data: dict[str, Any] = {"sandbox_id": record.id, "run": asdict(ref), **texts}
        ending = run_ending(manager, record.id, ref) if follow else None
        if ending is not None:
            data.update(outcome=ending[0], exit_code_of_run=ending[1])
        out.envelope("logs", "success", data)
        if ending is not None and ending[1]:
            sys.exit(ending[1])
        return
    streams = (1, 2) if show_stderr or ref.status not in ("success", "running") else (1,)
    printed = 0
    for kind, chunk in manager.stream_logs(record.id, ref.run_id, streams=streams, follow=follow):
        printed += len(chunk)
        out.task_output(kind, chunk)
    if follow:
        record, ref = _ended_ref(manager, record.id, ref.run_id)
    if not printed:
        shown = "stdout or stderr" if len(streams) == 2 else "stdout"
        out.say(f"({ref.run_id} of sandbox {record.id} printed nothing on {shown}; status: {ref.status})")
    ending = run_ending(manager, record.id, ref) if follow else None
    if ending is not None:
        line, code, ok = ending
        out.say_result(line, ok=ok)
        if code:
            sys.exit(code)


def _network(manager: SandboxManager, out: Renderer, record: SandboxRecord, ref: RunRef) -> None:
    """`aido logs --network`: the run's network log as a table, or as JSON."""
    from aido.cli.network import COLUMNS, rows, totals

    found = manager.network_log(record.id, ref.run_id)
    if out.json_mode:
        from dataclasses import asdict

        data = {
            "sandbox_id": record.id,
            "run": asdict(ref),
            "network": found.section,
            "entries": found.entries,
            "missing": found.missing,
        }
        out.envelope("logs", "success", data)
        return
    if found.missing is not None:
        out.say(f"({ref.run_id} of sandbox {record.id} has no network log: {found.missing})")
        return
    if found.entries:
        out.table(COLUMNS, rows(found.entries))
    else:
        print("(the proxy logged no request)")
    print("\n".join(totals(found.section, found.entries)), flush=True)


def _ended_ref(manager: SandboxManager, sandbox_id: str, run: str) -> tuple[SandboxRecord, RunRef]:
    """The run's record once following it has ended. One still marked running has lost
    its aido process (following stops then): a sweep closes its record first."""
    record, ref = manager.run_ref(sandbox_id, run)
    if ref.status == "running":
        sweep(manager)
        record, ref = manager.run_ref(sandbox_id, run)
    return record, ref


@click.command("show", context_settings=CONTEXT)
@click.argument("run_id", required=False, metavar="[RUN]")
@click.option("--sandbox", "sandbox_id", metavar="ID", help="Sandbox (default: the active one).")
@global_options
@command_state
def show(state: AppState, run_id: str | None, sandbox_id: str | None) -> None:
    """Show one run, read from its evidence: status and why, exit code, duration, task,
    image, limits and which were hit, the security settings the engine applied, escape
    hatches, changes, warnings and the evidence files.

    \b
    RUN is run-002 or 2 (default: the latest run of the sandbox):
      aido show                    the latest run of the active sandbox
      aido show 2 --json           run-002 as one JSON document

    Values the task could influence (file names, arguments, messages) are shown with
    control characters escaped, so they cannot act on the terminal. An unknown run
    exits 3 and lists the runs there are.
    """
    from aido.cli.show import build_view, render

    manager = open_manager(state)
    record, ref = _find_run(state, manager, sandbox_id, run_id)
    view = build_view(record.id, ref, manager.run_dir(record.id, ref.run_id))
    out = state.renderer
    if out.json_mode:
        out.envelope("show", "success", {"sandbox_id": record.id, "run_id": ref.run_id, "run": view})
    else:
        render(view)


def _find_run(
    state: AppState, manager: SandboxManager, sandbox_id: str | None, run_id: str | None
) -> tuple[SandboxRecord, RunRef]:
    """The run to read, with what is known of it kept for an error envelope: the sandbox
    (once chosen), then the run found."""
    sid = state.context["sandbox_id"] = manager.resolve_id(sandbox_id)
    record, ref = manager.run_ref(sid, run_id)
    state.context.update(sandbox_id=record.id, run_id=ref.run_id)
    return record, ref


@click.command("runs", context_settings=CONTEXT)
@click.option("--sandbox", "sandbox_id", metavar="ID", help="Only this sandbox's runs (live or destroyed).")
@click.option("-a", "--all", "all_", is_flag=True, help="Also list the archived runs of destroyed sandboxes.")
@global_options
@command_state
def runs(state: AppState, sandbox_id: str | None, all_: bool) -> None:
    """List runs: of every live sandbox in this workspace, or of one with --sandbox.

    Runs of destroyed sandboxes are kept in .aido/archive/ID/runs/ (see the
    evidence_retention setting); --all lists them too. Read one with
    `aido logs --sandbox ID --run RUN`.
    """
    manager = open_manager(state)
    listed = manager.list_runs(sandbox_id, include_archived=all_)
    out = state.renderer
    if out.json_mode:
        from dataclasses import asdict

        out.envelope(
            "runs",
            "success",
            {"runs": [asdict(r) | {"evidence_dir": relative(r.evidence_dir)} for r in listed]},
        )
        return
    if not listed:
        out.say(
            "No runs." + ("" if all_ or sandbox_id else " (`aido runs --all` lists destroyed sandboxes' too)")
        )
        return
    out.table(
        ["RUN", "SANDBOX", "STATUS", "EXIT", "STARTED", "TASK"],
        [
            [
                r.run_id,
                r.sandbox_id + (" (destroyed)" if r.archived else ""),
                r.status,
                "-" if r.exit_code is None else str(r.exit_code),
                r.started_at.replace("T", " ").removesuffix("Z"),
                r.task,
            ]
            for r in listed
        ],
    )
