"""``aido``: the command-line front end.

Each command parses its flags, calls one SandboxManager method and renders the
result. Errors are mapped to exit codes in exactly one place, ``main()``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from aido import __version__
from aido.cli.render import Renderer
from aido.config.limits import ISOLATION_LEVELS
from aido.errors import AidoError, ConfigError, Interrupted, NoActiveSandbox
from aido.exit_codes import ExitCode

if TYPE_CHECKING:
    from aido.run.result import RunResult

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
log = logging.getLogger("aido")


class State:
    """Global options; they may be given before or after the command name."""

    def __init__(self) -> None:
        self.json = False
        self.verbose = False
        self.config: Path | None = None
        self.command = ""
        self.signal_exit: int | None = None
        self.after_dashdash = 0  # how many trailing arguments came after `--` (task arguments)
        self.argv_json = False  # --json among the arguments (seen before click parses them)
        # What the command knew when it failed (sandbox_id, run_id): kept in error envelopes.
        self.context: dict[str, str] = {}

    @property
    def renderer(self) -> Renderer:
        return Renderer(json_mode=self.json)


STATE = State()


def _set_flag(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value:
            setattr(STATE, name, value)
        if name == "verbose" and value:
            logging.getLogger("aido").setLevel(logging.DEBUG)

    return callback


def global_options(func: F) -> F:
    func = click.option(
        "--json",
        "json_",
        is_flag=True,
        expose_value=False,
        callback=_set_flag("json"),
        help="Print one JSON document on stdout instead of human output.",
    )(func)
    func = click.option(
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_set_flag("verbose"),
        help="Show debug logs on stderr.",
    )(func)
    func = click.option(
        "--config",
        type=click.Path(path_type=Path, dir_okay=False),
        expose_value=False,
        callback=_set_flag("config"),
        metavar="PATH",
        help="aido settings file (default: .aido/config.json if present).",
    )(func)
    return func


def _manager() -> Any:
    """The manager for this directory's workspace. A missing workspace is reported by the
    manager when a command needs one, after the command has checked its own arguments."""
    from aido.sandbox.manager import SandboxManager
    from aido.store.workspace import Workspace

    workspace = Workspace.find()
    settings = _settings(workspace)
    manager = SandboxManager(
        workspace, output_limit=settings.output_limit, evidence_retention=settings.evidence_retention
    )
    _sweep(manager)
    return manager


def _settings(workspace: Any) -> Any:
    """aido's settings: --config, else the workspace's .aido/config.json, else the defaults."""
    from aido.config.settings import load_settings

    config = STATE.config
    if config is None and workspace is not None and workspace.config_file.is_file():
        config = workspace.config_file
    return load_settings(config)


def _sweep(manager: Any) -> None:
    """Every command sweeps on its way: expired sandboxes go, orphaned runs are closed."""
    try:
        for action in manager.sweep():
            if action["action"] == "recovered_run":
                log.warning(
                    "recovered %s of sandbox %s: the aido process that ran it had stopped; "
                    "it is recorded as interrupted",
                    action["run_id"],
                    action["sandbox_id"],
                )
        # After a reboot (or a killed reaper) the next command brings the reaper back, so
        # TTLs keep applying even if nobody runs `sandbox up` again.
        from aido.lifecycle.reaper import ensure_running

        workspace = manager.workspace_if_any
        if workspace is not None and manager.reaper_needed:
            ensure_running(workspace)  # does nothing while one runs
    except (AidoError, OSError) as exc:  # cleanup must never stop the command the user asked for
        log.debug("sweep failed: %s", exc)


def _confirmer(yes: bool, action: str) -> Callable[[list[str]], bool]:
    """Widened permissions (a sandbox.yaml's at `sandbox up`, escape hatches at `run`): one
    warning each, then the same y/N question on a terminal; without one, only --yes confirms."""

    def confirm(warnings: list[str]) -> bool:
        out = STATE.renderer
        for warning in warnings:
            out.warn(warning)
        if yes:
            return True
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return False
        return click.confirm(f"aido: {action} with the permissions above?", default=False, err=True)

    return confirm


def yes_option(func: F) -> F:
    return click.option(
        "-y",
        "--yes",
        is_flag=True,
        help="Confirm widened permissions without asking (needed without a terminal).",
    )(func)


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


# -- the root group ------------------------------------------------------------------------


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    # --version is eager (it runs before --json is parsed), so --json is read from argv.
    if STATE.json or STATE.argv_json:
        Renderer(json_mode=True).envelope("version", "success", {"version": __version__})
    else:
        click.echo(f"aido {__version__}")
    ctx.exit()


@click.group(context_settings=CONTEXT)
@click.option(
    "-v",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit (with --json: as a JSON envelope).",
)
@global_options
def cli() -> None:
    """Run untrusted or AI-generated tasks in hardened container sandboxes, and keep
    evidence of exactly what ran.

    \b
    Quick start:
      aido sandbox up              create a sandbox (reads ./sandbox.yaml if present)
      aido run task.py -- ARGS     run a task in it; its exit code is aido's
      aido logs                    show the last run's output
      aido show                    how the last run went: status, limits hit, changes
      aido runs --all              list runs, those of destroyed sandboxes too
      aido sandbox use ID          make another sandbox the active one
      aido sandbox destroy         remove the sandbox and its containers (its evidence is kept)

    Tasks run with no network, as an unprivileged user, with all capabilities
    dropped, a read-only root filesystem and CPU, memory and process limits.
    Evidence of each run is kept in .aido/sandboxes/ID/runs/RUN/, and once the
    sandbox is destroyed in .aido/archive/ID/runs/RUN/ (for 30 days by default:
    the evidence_retention setting).
    """


# -- sandbox ------------------------------------------------------------------------------


@cli.group(context_settings=CONTEXT)
@global_options
def sandbox() -> None:
    """Create, list, select, extend, clean and destroy sandboxes."""


@sandbox.command("up", context_settings=CONTEXT)
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Sandbox spec to read (default: ./sandbox.yaml if it exists).",
)
@click.option("--name", help="Human-readable name (overrides the spec).")
@click.option("--runtime", help="python:3.11, node:18, sh or docker://IMAGE (overrides the spec).")
@click.option("--ttl", help="Time to live, e.g. 90s, 15m, 2h (overrides the spec; default 15m).")
@click.option(
    "--no-auto-cleanup",
    is_flag=True,
    help="Keep the sandbox after it expires (the reaper skips it; `aido run` still refuses it).",
)
@click.option(
    "--isolation",
    type=click.Choice(ISOLATION_LEVELS),
    help="gvisor runs tasks under gVisor's runsc, a user-space kernel (overrides the spec).",
)
@yes_option
@global_options
def sandbox_up(
    spec_file: Path | None,
    name: str | None,
    runtime: str | None,
    ttl: str | None,
    no_auto_cleanup: bool,
    isolation: str | None,
    yes: bool,
) -> None:
    """Create a sandbox and make it the active one.

    The workspace is the .aido/ folder in this directory or the nearest parent that
    has one; it is created here if there is none. A background reaper destroys the
    sandbox when its ttl has passed (unless --no-auto-cleanup).

    Files listed under `inputs:` in sandbox.yaml are copied in once, keeping their
    folders (data/a.csv is /inputs/data/a.csv); up says how many and how large.

    A sandbox.yaml that widens permissions (network: true, filesystem: readwrite)
    must be confirmed: at the y/N prompt, or with --yes when there is no terminal.

    A runtime (--runtime or runtime: in sandbox.yaml) has its image checked now, and
    pulled with progress on stderr if it is not here; if it cannot be had, nothing is
    created and aido exits 125.

    permissions.aws is recorded but not enforced, so it is noted, not asked about.

    An invalid sandbox.yaml (an unknown or repeated key, a bad value) is refused with
    one line per problem (file:line: key: expected ..., got ...), exit 2, and nothing
    created; with --json, error.problems lists them as {file, line, key, message}.
    """
    STATE.command = "sandbox up"
    from aido.sandbox.manager import SandboxManager
    from aido.store.workspace import Workspace

    if spec_file is None and Path("sandbox.yaml").is_file():
        spec_file = Path("sandbox.yaml")
    existing = Workspace.find()
    manager = SandboxManager(existing, evidence_retention=_settings(existing).evidence_retention)
    if existing is not None:
        _sweep(manager)
    out = STATE.renderer
    try:
        record = manager.create(
            spec_file=spec_file,
            name=name,
            runtime=runtime,
            ttl=ttl,
            auto_cleanup=not no_auto_cleanup,
            isolation=isolation,
            confirm=_confirmer(yes, "create the sandbox"),
            on_pull=None if out.json_mode else lambda line: out.progress(f"⬇ pulling {line}"),
        )
    finally:
        out.progress_done()
    if record.auto_cleanup:
        from aido.lifecycle.reaper import ensure_running

        try:
            ensure_running(manager.workspace)
        except OSError as exc:
            log.warning("could not start the TTL reaper (%s); expired sandboxes go at the next command", exc)
    from aido.sandbox.manager import unenforced_permissions

    inputs = _inputs_summary(record.config, manager.copied_inputs(record.id))
    notes = unenforced_permissions(record.config)
    if out.json_mode:
        from aido.evidence.redact import redact_env

        shown = record.to_json()
        # Output may end up in an agent's transcript or a CI log: secret-looking values stay hidden.
        shown["config"] = {**shown["config"], "env": redact_env(shown["config"].get("env") or {})}
        out.envelope(
            "sandbox up",
            "success",
            {"sandbox": shown, "sandbox_id": record.id, "inputs": inputs, "notes": notes},
        )
        return
    out.success(f"Sandbox created: {record.id}")
    out.say(f"  expires {record.expires_at} (ttl {record.config['ttl']}); run a task with `aido run TASK`")
    if record.config.get("inputs"):
        out.say(f"  inputs: {_inputs_line(inputs)}")
    for note in notes:
        out.note(note)
    print(record.id)  # the id alone on stdout, for scripts: ID=$(aido sandbox up)


def _inputs_summary(config: dict[str, Any], copied: list[dict[str, Any]]) -> dict[str, Any]:
    """What `sandbox up` copied, for --json: how many files, how many bytes, and where (and
    whether) tasks see them."""
    filesystem = (config.get("permissions") or {}).get("filesystem", "readonly")
    return {
        "files": len(copied),
        "bytes": sum(int(item.get("size") or 0) for item in copied),
        "mounted_at": None if filesystem == "none" else "/inputs",
        "writable": filesystem == "readwrite",
    }


def _inputs_line(inputs: dict[str, Any]) -> str:
    """`12 files, 3.4 MiB copied to /inputs`."""
    from aido.config.units import format_size

    count, size = inputs["files"], inputs["bytes"]
    shown = f"{size} bytes" if size < 1024 else f"{format_size(size)[:-1]} {format_size(size)[-1]}iB"
    line = f"{count} file{'s' if count != 1 else ''}, {shown} copied"
    if inputs["mounted_at"] is None:
        return line + ", not mounted (permissions.filesystem: none)"
    return line + f" to {inputs['mounted_at']}" + (" (writable)" if inputs["writable"] else " (read-only)")


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
def sandbox_list(quiet: bool, all_: bool) -> None:
    """List the sandboxes of this workspace (* marks the active one).

    With -q, only their ids, one per line, oldest first: e.g.
    `aido sandbox list -q | xargs aido sandbox destroy`. No workspace lists nothing.
    """
    STATE.command = "sandbox list"
    if quiet and STATE.json:
        raise click.UsageError("give -q or --json, not both")
    manager = _manager()
    summaries = manager.list_sandboxes(include_archived=all_)
    out = STATE.renderer
    if quiet:
        for summary in summaries:
            print(summary.id)
        return
    if out.json_mode:
        from dataclasses import asdict

        out.envelope("sandbox list", "success", {"sandboxes": [asdict(s) for s in summaries]})
        return
    archived = 0 if all_ or manager.workspace_if_any is None else len(manager.workspace.archived_ids())
    if not summaries:
        out.say("No sandboxes. Create one with `aido sandbox up`.")
    else:
        columns = ["ID", "NAME", "STATUS", "CREATED", "EXPIRES", "RUNS"]
        out.table(
            [*columns, "DESTROYED"] if all_ else columns,
            [
                [
                    ("* " if s.active else "  ") + s.id,
                    s.name or "-",
                    s.status,
                    s.created_at.replace("T", " ").removesuffix("Z"),
                    "-" if s.archived else _relative_time(s.expires_at),
                    str(s.runs),
                    *([_destroyed(s)] if all_ else []),
                ]
                for s in summaries
            ],
        )
    if archived:
        out.say(f"({archived} destroyed sandbox(es) with archived evidence: `aido sandbox list --all`)")


def _destroyed(summary: Any) -> str:
    """When and why a sandbox was destroyed, for `sandbox list --all`."""
    if not summary.archived:
        return "-"
    if not summary.destroyed_at:
        return "yes"
    why = "ttl" if summary.destroy_reason == "expired" else "destroy"
    return f"{_relative_time(summary.destroyed_at)} ({why})"


def _relative_time(moment: str) -> str:
    """'in 14m' / '3m ago': when a sandbox expires, at a glance."""
    if not moment:
        return "-"
    from aido.config.units import format_duration
    from aido.store.records import parse_time, utcnow

    delta = (parse_time(moment) - utcnow()).total_seconds()
    shown = format_duration(max(1, abs(int(delta))))
    return f"in {shown}" if delta > 0 else f"{shown} ago"


@sandbox.command("destroy", context_settings=CONTEXT)
@click.argument("ids", nargs=-1, metavar="[ID]...")
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
def sandbox_destroy(ids: tuple[str, ...], all_: bool, purge: bool, yes: bool) -> None:
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
    STATE.command = "sandbox destroy"
    from aido.sandbox.manager import DestroyFailed

    if all_ and ids:
        raise click.UsageError("give sandbox IDs or --all, not both")
    manager = _manager()
    failure: DestroyFailed | None = None
    try:
        result = manager.destroy(list(ids), all_sandboxes=all_, purge=purge, confirm=_purge_confirmer(yes))
    except DestroyFailed as exc:
        result, failure = exc.result, exc
    out = STATE.renderer
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
            kept = "for good" if manager.evidence_retention is None else f"for {_duration(manager)}"
            out.say(
                f"  evidence of {item['runs']} run(s) kept {kept} in {_relative(Path(item['evidence_dir']))}/"
            )
    for sandbox_id in result.already_gone:
        out.success(f"Sandbox {sandbox_id} was already destroyed (by another aido command)")
    for sandbox_id, err in result.failed:
        out.failure(f"Sandbox {sandbox_id} not destroyed: {err.message}")
    if failure is not None:
        raise failure  # the one error line (and hint) and exit code, from main()


@sandbox.command("use", context_settings=CONTEXT)
@click.argument("sandbox_id", metavar="ID")
@global_options
def sandbox_use(sandbox_id: str) -> None:
    """Make sandbox ID the active one.

    The active sandbox is the one `run`, `logs`, `extend` and `destroy` use when
    not given an ID.

    `sandbox up` makes each new sandbox active; destroying the active sandbox
    leaves none active, and aido never picks another by itself. ID must exist,
    not have expired and not be being destroyed (exit 3).
    """
    STATE.command = "sandbox use"
    record, previous = _manager().use(sandbox_id)
    out = STATE.renderer
    if out.json_mode:
        out.envelope(
            "sandbox use",
            "success",
            {"sandbox_id": record.id, "name": record.name, "previous_sandbox_id": previous},
        )
        return
    named = f" ({record.name})" if record.name else ""
    out.success(f"Active sandbox: {record.id}{named}, expires {_relative_time(record.expires_at)}")


@sandbox.command("extend", context_settings=CONTEXT)
@click.argument("sandbox_id", metavar="[ID]", required=False)
@click.option(
    "--ttl",
    required=True,
    metavar="DURATION",
    help="New time to live from now, e.g. 30m, 2h (at most 30d, as in sandbox.yaml).",
)
@global_options
def sandbox_extend(sandbox_id: str | None, ttl: str) -> None:
    """Set when a sandbox expires: DURATION from now (default: the active sandbox).

    This replaces the expiry, so it can also shorten it. Runs in progress keep
    going until the new expiry. An expired sandbox, or one being destroyed, is
    refused (exit 3): create a new one. Recorded as `sandbox_extended` in the
    sandbox's events.log.
    """
    STATE.command = "sandbox extend"
    record, previous = _manager().extend(sandbox_id, ttl)
    out = STATE.renderer
    if out.json_mode:
        out.envelope(
            "sandbox extend",
            "success",
            {"sandbox_id": record.id, "expires_at": record.expires_at, "previous_expires_at": previous},
        )
        return
    out.success(f"Sandbox {record.id} now expires {record.expires_at} ({_relative_time(record.expires_at)})")


@sandbox.command("clean", context_settings=CONTEXT)
@click.argument("sandbox_id", required=False, metavar="[ID]")
@click.option("--work", "work", is_flag=True, help="Clear work/ (the default is work/ and outputs/).")
@click.option("--outputs", "outputs", is_flag=True, help="Clear outputs/ (the default is both).")
@global_options
def sandbox_clean(sandbox_id: str | None, work: bool, outputs: bool) -> None:
    """Delete everything tasks left in a sandbox's work/ and outputs/.

    Without an ID, cleans the active sandbox. Use it when a run left them over the
    sandbox's disk or file limit: until then every run is refused (exit 3). Refused
    while a run is in progress. Links the task planted are removed, never followed.
    Recorded as a sandbox_cleaned event in the sandbox's events.log.
    """
    STATE.command = "sandbox clean"
    trees = [name for name, wanted in (("work", work), ("outputs", outputs)) if wanted] or None
    result = _manager().clean(sandbox_id, trees=trees)
    out = STATE.renderer
    if out.json_mode:
        out.envelope("sandbox clean", "success", result)
        return
    from aido.config.units import format_size

    for name, held in result["cleared"].items():
        out.success(
            f"Cleaned {name}/ of sandbox {result['sandbox_id']}: "
            f"removed {held['files']} files and directories ({format_size(held['bytes'])})"
        )


def _duration(manager: Any) -> str:
    from aido.config.units import format_duration

    return str(format_duration(manager.evidence_retention))


def _purge_confirmer(yes: bool) -> Callable[[list[str]], bool]:
    """--purge: say what goes, then ask y/N on a terminal; without one, only --yes confirms."""

    def confirm(warnings: list[str]) -> bool:
        out = STATE.renderer
        for warning in warnings:
            out.warn(warning)
        if yes:
            return True
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return False
        return click.confirm("aido: delete this evidence for good?", default=False, err=True)

    return confirm


# -- run ------------------------------------------------------------------------------------


@cli.command("run", context_settings=CONTEXT)
# Plain strings: click.Path would normalise the task's own arguments ("" -> ".", "a/" -> "a").
@click.argument("tasks", nargs=-1, required=True, metavar="TASK...")
@click.option("--sandbox", "sandbox_id", metavar="ID", help="Sandbox to run in (default: the active one).")
@click.option(
    "--timeout", metavar="DURATION", help="Kill the task after this long, e.g. 30s (default: the spec's)."
)
@click.option(
    "-e",
    "--env",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a variable for the task; -e KEY passes that one host variable. Repeatable. Values of "
    "secret-looking names (*TOKEN*, *PASSWORD*, *KEY*, ...) are masked in the output; one shorter than "
    "4 characters cannot be, and is warned about.",
)
@click.option(
    "-p",
    "--parallel",
    type=click.IntRange(1, 64),
    metavar="N",
    help="Run up to N tasks at once; with a single TASK, run N copies of it.",
)
@click.option("--network", is_flag=True, help="ESCAPE HATCH: give the task network access.")
@click.option(
    "--host-filesystem",
    is_flag=True,
    help="ESCAPE HATCH: show the project directory read-only at /project (.aido/ stays hidden).",
)
@click.option(
    "--dangerous-allow-mutations",
    is_flag=True,
    help="ESCAPE HATCH: make /inputs (and /project with --host-filesystem) writable.",
)
@click.option(
    "-i",
    "--interactive",
    is_flag=True,
    help="Forward this terminal's or pipe's stdin to the task (one task only); without it "
    "the task's stdin is closed.",
)
@yes_option
@click.option(
    "--raw-output", is_flag=True, help="Echo the task's output unfiltered, escape sequences included."
)
@global_options
def run(
    tasks: tuple[str, ...],
    sandbox_id: str | None,
    timeout: str | None,
    env: tuple[str, ...],
    parallel: int | None,
    network: bool,
    host_filesystem: bool,
    dangerous_allow_mutations: bool,
    interactive: bool,
    yes: bool,
    raw_output: bool,
) -> None:
    """Run TASK in a fresh container of the sandbox; arguments after -- go to the task
    (aido run a.py -- 5). The task's stdin is closed unless -i forwards aido's own.

    It runs in the active sandbox (see `aido sandbox use`) or --sandbox ID. With
    none active, aido never picks one: it lists the sandboxes and exits 3.

    \b
    The task's exit code is aido's exit code. aido's own failures use:
      2 usage, config error or unconfirmed escape hatch
      3 sandbox missing, expired or over its disk or file limit
        (also: it expired or was destroyed mid-run)
      124 timed out   125 engine or image error   126 task not runnable
      127 task not found   137 killed at the disk or file limit, or exited 0
      although a limit was reached (out of memory, processes, disk, files)
      130 interrupted (Ctrl-C)   143 SIGTERM   129 SIGHUP

    A run that a limit stopped or refused something is never a success: the
    outcome line names every limit reached (--json: limits_exceeded). When a run
    leaves work/ and outputs/ over the sandbox's disk or file limit, later runs
    are refused (exit 3) until `aido sandbox clean`.

    \b
    Several tasks run concurrently, each in its own container with its own run
    record (ids in the order given), their output shown live with each line prefixed
    by the task's path ("a.py | ..."), and a combined summary; every task is checked
    before any starts; aido then exits 0 only if every run succeeded:
      aido run a.py b.py c.py            all three at once
      aido run --parallel 2 *.py         at most two at a time
      aido run --parallel 8 task.py      eight copies of task.py

    Escape hatches (--network, --host-filesystem, --dangerous-allow-mutations) print
    a warning and ask y/N; without a terminal they need --yes. They are recorded in
    the run's evidence and in events.log, and so is every change the task made where
    they let it write (/inputs, /project).

    The interpreter comes from the sandbox's runtime, else from the extension:
    .py python, .js/.mjs/.cjs node, .sh sh. A task whose extension names another
    interpreter than the sandbox's runtime gets a warning (kept in its evidence).
    """
    STATE.command = "run"
    from aido.errors import TaskNotFound
    from aido.sandbox.manager import Widening

    task_args = list(tasks[len(tasks) - STATE.after_dashdash :]) if STATE.after_dashdash else []
    given = tasks[: len(tasks) - STATE.after_dashdash] if STATE.after_dashdash else tasks
    task_list = [Path(t) for t in given]
    if not task_list:
        raise click.UsageError("missing TASK before --")
    if interactive and (len(task_list) > 1 or (parallel or 1) > 1):
        raise click.UsageError("-i/--interactive forwards stdin to one task; give a single TASK")
    args = [str(a) for a in task_args]
    widen = Widening(network, host_filesystem, dangerous_allow_mutations)
    out = Renderer(json_mode=STATE.json, raw_output=raw_output)
    manager = _manager()
    try:
        sandbox_id = STATE.context["sandbox_id"] = manager.resolve_id(sandbox_id)
        if len(task_list) > 1 or (parallel or 1) > 1:
            labels = _labels(list(given) if len(given) > 1 else list(given) * (parallel or 1))
            batch = task_list if len(task_list) > 1 else task_list * (parallel or 1)
            _run_batch(
                manager,
                out,
                batch,
                labels,
                args,
                parallel or len(batch),
                sandbox_id,
                timeout,
                env,
                widen,
                yes,
            )
            return
        stdin = None
        if interactive:
            if sys.stdin is None:  # started with stdin closed (`aido run -i x.py <&-`)
                raise click.UsageError("-i/--interactive: aido has no stdin to forward")
            stdin = sys.stdin.fileno()
        _run_one(manager, out, task_list[0], args, sandbox_id, timeout, env, widen, yes, stdin)
    except TaskNotFound as exc:
        hint = _arguments_hint(list(given))
        if hint:
            exc.hint = hint
        raise


def _labels(tasks: list[str]) -> list[str]:
    """Each run of a batch by its path as given; a path given more than once (or the copies
    of --parallel N) numbered apart: a.py#1, a.py#2."""
    seen: dict[str, int] = {}
    labels = []
    for task in tasks:
        seen[task] = seen.get(task, 0) + 1
        labels.append(f"{task}#{seen[task]}" if tasks.count(task) > 1 else task)
    return labels


def _arguments_hint(given: list[str]) -> str | None:
    """`aido run a.py 5`: 5 was meant as an argument. Say so when a missing "task" after an
    existing one does not look like a task file."""
    from aido.config.runtimes import interpreter_for_task

    if STATE.after_dashdash or len(given) < 2 or not os.path.isfile(given[0]):
        return None
    for i, name in enumerate(given[1:], start=1):
        if not os.path.lexists(name):
            if interpreter_for_task(name) is not None:
                return None  # a task file that is really missing
            import shlex

            tasks, rest = given[:i], given[i:]
            shown = " ".join(shlex.quote(t) for t in tasks)
            return f"arguments for the task go after `--`: aido run {shown} -- " + " ".join(
                shlex.quote(a) for a in rest
            )
    return None


def _run_one(
    manager: Any,
    out: Renderer,
    task: Path,
    args: list[str],
    sandbox_id: str,
    timeout: str | None,
    env: tuple[str, ...],
    widen: Any,
    yes: bool,
    stdin: int | None,
) -> None:
    from aido.sandbox.manager import RunHooks

    def on_start(run_id: str, name: str, image: str) -> None:
        STATE.context["run_id"] = run_id
        out.progress_done()
        out.say(f"⚡ Running task: {name} ({run_id} in sandbox {sandbox_id}, {image})")
        out.separator()

    def on_pull(line: str) -> None:
        out.progress(f"⬇ pulling {line}")

    hooks = RunHooks(
        on_pull=None if out.json_mode else on_pull,
        on_start=on_start,
        on_output=None if out.json_mode else out.task_output,
        on_warning=out.warn,  # printed like the escape hatches' warnings
        signal_exit=lambda: STATE.signal_exit,
    )
    result = manager.run(
        task,
        args,
        sandbox_id=sandbox_id,
        timeout=timeout,
        env=list(env),
        hooks=hooks,
        widen=widen,
        confirm=_confirmer(yes, "run the task"),
        stdin=stdin,
    )
    out.progress_done()
    code = result.process_exit_code
    if out.json_mode:
        out.envelope(
            "run",
            result.status,
            _run_payload(result),
            None
            if result.error is None
            else {"code": "runtime_error", "message": result.error, "hint": None},
        )
    else:
        out.separator()
        out.say_result(_outcome_line(result), ok=result.status == "success")
        for stats in result.output:
            if stats.truncated:
                out.warn(f"{stats.name} was truncated at {stats.limit} bytes ({stats.bytes_total} written)")
        for declared in result.declared_outputs:
            if not declared.present:
                out.warn(f"declared output {declared.path!r} was not produced")
        out.say(f"📦 Artifacts: {_relative(result.outputs_dir)}/")
        out.say(f"🧾 Evidence: {_relative(result.evidence_dir)}/")
    if code:
        sys.exit(code)


def _run_payload(result: RunResult) -> dict[str, Any]:
    return {
        "sandbox_id": result.sandbox_id,
        "run_id": result.run_id,
        "task": result.task,
        "exit_code": result.exit_code,
        "duration_ms": result.duration_ms,
        "timed_out": result.timed_out,
        "oom_killed": result.oom_killed,
        "pids_limit_reached": result.pids_limit_reached,
        "stop_reason": result.stop_reason,
        "message": result.message,
        # Every limit the task reached (kind, limit, measured, unit, message), and what
        # aido exits with for this run: one verdict with status and message.
        "limits_exceeded": list(result.limits_exceeded),
        "exit_code_of_run": result.process_exit_code,
        "artifacts": list(result.artifacts),
        "outputs_dir": _relative(result.outputs_dir),
        "evidence_dir": _relative(result.evidence_dir),
        "output": result.output_json(),
        "changes": list(result.changes),
    }


def _outcome_line(result: RunResult) -> str:
    """One line on how a run ended, in words: the run's verdict (run/verdict.py)."""
    if result.outcome:
        return result.outcome
    from aido.run.verdict import outcome_of_summary

    return outcome_of_summary(dict(result.summary))[0]


def _run_batch(
    manager: Any,
    out: Renderer,
    tasks: list[Path],
    labels: list[str],
    args: list[str],
    parallel: int,
    sandbox_id: str | None,
    timeout: str | None,
    env: tuple[str, ...],
    widen: Any,
    yes: bool,
) -> None:
    """Each task's output is shown live, its lines prefixed with its label (the path as
    given), and each run ends with its outcome line."""
    from aido.cli.render import PrefixedOutput
    from aido.run.batch import BatchItem
    from aido.sandbox.manager import RunHooks

    width = max(len(label) for label in labels)
    sinks: dict[int, PrefixedOutput] = {}

    def hooks_for(item: BatchItem) -> RunHooks:
        signal_exit = lambda: STATE.signal_exit  # noqa: E731  # read when the run ends
        if out.json_mode:
            return RunHooks(signal_exit=signal_exit)
        sink = sinks[item.index] = out.prefixed(labels[item.index], width, item.index)
        return RunHooks(on_output=sink, signal_exit=signal_exit)

    def on_result(item: BatchItem) -> None:
        if item.index in sinks:
            sinks.pop(item.index).close()
        if out.json_mode:
            return
        label = labels[item.index]
        if item.result is None:
            out.failure(f"{label}: {item.error}")
            return
        result = item.result
        out.say_result(f"{result.run_id} {label}: {_outcome_line(result)}", ok=result.status == "success")

    def on_ready() -> None:
        # Only once every task has been checked: a bad task stops the batch before this line.
        out.say(f"⚡ Running {len(tasks)} tasks, up to {min(parallel, len(tasks))} at a time")

    batch = manager.run_batch(
        tasks,
        args,
        parallel=parallel,
        sandbox_id=sandbox_id,
        timeout=timeout,
        env=list(env),
        widen=widen,
        confirm=_confirmer(yes, "run the tasks"),
        on_result=on_result,
        on_ready=on_ready,
        hooks_for=hooks_for,
    )
    for sink in sinks.values():
        sink.close()
    batch.signal_exit = STATE.signal_exit
    code = batch.process_exit_code
    if out.json_mode:
        out.envelope(
            "run",
            batch.status,
            {
                "exit_code": int(code),
                "parallel": batch.parallel,
                "duration_ms": batch.duration_ms,
                "counts": batch.counts,
                "runs": [
                    {
                        "task": str(item.task),
                        "label": labels[item.index],
                        "status": item.status,
                        "exit_code_of_run": item.exit_code,
                    }
                    | (_run_payload(item.result) if item.result is not None else {})
                    | (
                        {"error": {"code": item.error.code, "message": item.error.message}}
                        if item.error is not None
                        else {}
                    )
                    for item in batch.items
                ],
            },
        )
    else:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(batch.counts.items()))
        out.say_result(
            f"{len(batch.items)} runs in {batch.duration_ms / 1000:.2f}s: {counts}",
            ok=batch.status == "success",
        )
        if batch.items and batch.items[0].result is not None:
            out.say(
                f"🧾 Evidence: {_relative(batch.items[0].result.evidence_dir.parent)}/ (one folder per run)"
            )
    if code:
        sys.exit(int(code))


# -- logs -----------------------------------------------------------------------------------


@cli.command("logs", context_settings=CONTEXT)
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
@global_options
def logs(
    follow: bool, show_stderr: bool, run_id: str | None, sandbox_id: str | None, raw_output: bool
) -> None:
    """Show a run's captured output: stdout, and stderr when asked or when the run failed.

    With --follow, stream a run in progress until it ends, then print its outcome line
    (the one `aido run` printed) and exit with the run's exit code, as `aido run` did;
    also for a run that had already ended.

    From the active sandbox, or --sandbox ID; with none active, aido lists the
    sandboxes and exits 3.

    Works on runs of destroyed sandboxes too (their evidence is archived): give
    --sandbox ID (`aido runs --all` lists them).
    """
    STATE.command = "logs"
    manager = _manager()
    out = Renderer(json_mode=STATE.json, raw_output=raw_output)
    record, ref = manager.run_ref(sandbox_id, run_id)
    if out.json_mode:
        if follow:
            for _ in manager.stream_logs(record.id, ref.run_id, streams=(), follow=True):
                pass
            record, ref = _ended_ref(manager, record.id, ref.run_id)
        run_dir = manager.run_dir(record.id, ref.run_id)
        texts = {}
        for name in ("stdout", "stderr"):
            try:
                texts[name] = (run_dir / f"{name}.log").read_bytes().decode("utf-8", "replace")
            except FileNotFoundError:
                texts[name] = ""
        from dataclasses import asdict

        data: dict[str, Any] = {"sandbox_id": record.id, "run": asdict(ref), **texts}
        ending = _run_ending(manager, record.id, ref) if follow else None
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
    ending = _run_ending(manager, record.id, ref) if follow else None
    if ending is not None:
        line, code, ok = ending
        out.say_result(line, ok=ok)
        if code:
            sys.exit(code)


def _ended_ref(manager: Any, sandbox_id: str, run: str) -> Any:
    """The run's record once following it has ended. One still marked running has lost
    its aido process (following stops then): a sweep closes its record first."""
    record, ref = manager.run_ref(sandbox_id, run)
    if ref.status == "running":
        _sweep(manager)
        record, ref = manager.run_ref(sandbox_id, run)
    return record, ref


def _run_ending(manager: Any, sandbox_id: str, ref: Any) -> tuple[str, int, bool] | None:
    """(outcome line, exit code, ok) of an ended run, from its summary.json; None while
    it has none (still running in another process)."""
    from aido import fs
    from aido.run.verdict import outcome_of_summary

    if ref.status == "running":
        log.warning("%s is still marked running; it has no outcome yet", ref.run_id)
        return None
    try:
        summary = fs.read_json(manager.run_dir(sandbox_id, ref.run_id) / "summary.json")
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict):
        # No summary (lost or unreadable): the record's status is all there is to go on.
        summary = {"status": ref.status, "exit_code": ref.exit_code, "duration_ms": ref.duration_ms}
    return outcome_of_summary(summary)


@cli.command("show", context_settings=CONTEXT)
@click.argument("run_id", required=False, metavar="[RUN]")
@click.option("--sandbox", "sandbox_id", metavar="ID", help="Sandbox (default: the active one).")
@global_options
def show(run_id: str | None, sandbox_id: str | None) -> None:
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
    STATE.command = "show"
    from aido.cli.show import build_view, render

    manager = _manager()
    record, ref = manager.run_ref(sandbox_id, run_id)
    view = build_view(record.id, ref, manager.run_dir(record.id, ref.run_id))
    out = STATE.renderer
    if out.json_mode:
        out.envelope("show", "success", {"sandbox_id": record.id, "run_id": ref.run_id, "run": view})
    else:
        render(view)


@cli.command("runs", context_settings=CONTEXT)
@click.option("--sandbox", "sandbox_id", metavar="ID", help="Only this sandbox's runs (live or destroyed).")
@click.option("-a", "--all", "all_", is_flag=True, help="Also list the archived runs of destroyed sandboxes.")
@global_options
def runs(sandbox_id: str | None, all_: bool) -> None:
    """List runs: of every live sandbox in this workspace, or of one with --sandbox.

    Runs of destroyed sandboxes are kept in .aido/archive/ID/runs/ (see the
    evidence_retention setting); --all lists them too. Read one with
    `aido logs --sandbox ID --run RUN`.
    """
    STATE.command = "runs"
    manager = _manager()
    listed = manager.list_runs(sandbox_id, include_archived=all_)
    out = STATE.renderer
    if out.json_mode:
        from dataclasses import asdict

        out.envelope(
            "runs",
            "success",
            {"runs": [asdict(r) | {"evidence_dir": _relative(r.evidence_dir)} for r in listed]},
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


# -- doctor ---------------------------------------------------------------------------------


@cli.command("doctor", context_settings=CONTEXT)
@click.option("--no-smoke", is_flag=True, help="Do not start test containers (faster, proves less).")
@global_options
def doctor(no_smoke: bool) -> None:
    """Check this machine can run sandboxes, and say how to fix what cannot.

    \b
    Checks: the engine answers (and its version); the runtimes (runc, and gVisor's
    runsc for --isolation gvisor), each proven with a tiny hardened container; that
    memory, CPU and process limits are enforceable; the default images; that the
    workspace is writable. Checks that need an engine that cannot be reached are
    skipped, and counted as skipped, not as passed. Exits 1 if any check failed
    (warnings and skipped checks do not count).
    """
    STATE.command = "doctor"
    from aido.doctor import as_json, counts, exit_code, render_rows, run_checks, summary_line

    checks = run_checks(smoke=not no_smoke)
    code = exit_code(checks)
    out = STATE.renderer
    if out.json_mode:
        payload = {"checks": as_json(checks), "counts": counts(checks)}
        out.envelope("doctor", "success" if code == 0 else "failed", payload, exit_code=code)
    else:
        out.table(["", "CHECK", "DETAIL"], render_rows(checks))
        for check in checks:
            if check.fix and check.status not in ("ok", "skipped"):  # skipped: see what failed
                out.say(f"  {check.name}: fix: {check.fix}")
        if code:
            out.failure(summary_line(checks))
        else:
            out.success(summary_line(checks))
    if code:
        sys.exit(code)


# -- entry point ----------------------------------------------------------------------------


def _on_signal(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so the running container is stopped and evidence written;
    # exit with the shell's code for the signal (143 for SIGTERM, 129 for SIGHUP).
    STATE.signal_exit = 128 + signum
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(format="aido: %(levelname)s: %(message)s", stream=sys.stderr, level=logging.INFO)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)  # the terminal closed under a running task
    # Even when started with SIGINT ignored (e.g. `aido run ... &` from a script), Ctrl-C or
    # `kill -INT` must stop the task cleanly rather than be silently dropped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = sys.argv[1:] if argv is None else argv
    json_mode = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    # Everything after `--` is positional, so its count tells task arguments from tasks.
    STATE.after_dashdash = len(args) - args.index("--") - 1 if "--" in args else 0
    STATE.argv_json = json_mode
    out = Renderer(json_mode=json_mode)
    try:
        cli.main(args=args, prog_name="aido", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        message = exc.format_message()
        if type(exc).__name__ == "NoArgsIsHelpError" and not json_mode:
            # `aido` or `aido sandbox` alone: the help is the answer, not an error.
            print(message)
            sys.exit(ExitCode.OK)
        if json_mode:
            out.envelope(
                STATE.command or "aido",
                "error",
                {"exit_code": ExitCode.USAGE},
                {"code": "usage", "message": message, "hint": "see --help"},
            )
        else:
            out.error(
                message,
                "see `aido --help`"
                if not isinstance(exc, click.UsageError) or not exc.ctx
                else f"see `{exc.ctx.command_path} --help`",
            )
        sys.exit(ExitCode.USAGE)
    except click.exceptions.Abort:
        sys.exit(ExitCode.INTERRUPTED)
    except AidoError as exc:
        code = int(exc.exit_code)
        if json_mode:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message, "hint": exc.hint}
            if isinstance(exc, ConfigError):
                # Objects, so a program need not parse "file:line: key: message" (the human
                # form, one line each, is in `message`).
                error["problems"] = [problem.as_json() for problem in exc.details]
            if isinstance(exc, NoActiveSandbox):
                error["sandboxes"] = exc.sandboxes  # the ones to choose from
            out.envelope(STATE.command or "aido", "error", {"exit_code": int(code), **STATE.context}, error)
        else:
            out.error(exc.message, exc.hint)
        sys.exit(code)
    except KeyboardInterrupt:
        code = STATE.signal_exit or ExitCode.INTERRUPTED
        if json_mode:
            out.envelope(
                STATE.command or "aido",
                "error",
                {"exit_code": int(code), **STATE.context},
                {"code": Interrupted.code, "message": "interrupted", "hint": None},
            )
        else:
            out.error("interrupted")
        sys.exit(code)
    except BrokenPipeError:
        # `aido logs | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(ExitCode.OK)
    except Exception as exc:
        import tempfile
        import traceback

        fd, crash = tempfile.mkstemp(prefix="aido-crash-", suffix=".log")
        with os.fdopen(fd, "w") as handle:
            traceback.print_exc(file=handle)
        message = f"internal error: {type(exc).__name__}: {exc}"
        hint = f"this is a bug in aido {__version__}; the traceback is in {crash}"
        if json_mode:
            out.envelope(
                STATE.command or "aido",
                "error",
                {"exit_code": int(ExitCode.INTERNAL), **STATE.context},
                {"code": "internal", "message": message, "hint": hint},
            )
        else:
            out.error(message, hint)
        sys.exit(ExitCode.INTERNAL)
