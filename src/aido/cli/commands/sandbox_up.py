"""`aido sandbox up`: create a sandbox from sandbox.yaml and flags (the biggest command of
the `sandbox` group, so it has its own module; the group adds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aido.cli.observer import TerminalObserver
from aido.cli.options import CONTEXT, global_options, yes_option
from aido.cli.state import AppState, command_state
from aido.cli.workspace import manager_for_up
from aido.config.limits import ISOLATION_LEVELS


@click.command("up", context_settings=CONTEXT)
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Sandbox spec to read (default: ./sandbox.yaml if it exists).",
)
@click.option("--name", help="Human-readable name (overrides the spec).")
@click.option(
    "--runtime",
    help="python:3.11, node:18, sh, docker://IMAGE or a plugin's runtime (overrides the spec).",
)
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
@click.option(
    "--warm",
    type=int,
    metavar="N",
    help="Keep N containers started in advance, each used by one run (overrides the spec; needs a runtime).",
)
@yes_option
@global_options
@command_state
def sandbox_up(
    state: AppState,
    spec_file: Path | None,
    name: str | None,
    runtime: str | None,
    ttl: str | None,
    no_auto_cleanup: bool,
    isolation: str | None,
    warm: int | None,
    yes: bool,
) -> None:
    """Create a sandbox and make it the active one.

    The workspace is the .aido/ folder in this directory or the nearest parent that
    has one; it is created here if there is none. A background reaper destroys the
    sandbox when its ttl has passed (unless --no-auto-cleanup).

    Files listed under `inputs:` in sandbox.yaml are copied in once, keeping their
    folders (data/a.csv is /inputs/data/a.csv); up says how many and how large.

    A sandbox.yaml that widens permissions (network: true, an allowlist such as
    network: {allow: [pypi.org]}, filesystem: readwrite) must be confirmed: at the
    y/N prompt, or with --yes when there is no terminal.

    A runtime (--runtime or runtime: in sandbox.yaml) has its image checked now, and
    pulled with progress on stderr if it is not here; if it cannot be had, nothing is
    created and aido exits 125.

    permissions.aws is recorded but not enforced, so it is noted, not asked about.

    --warm N (warm: N) keeps N containers created and started in advance with exactly
    the sandbox's settings; each takes one run and is then removed, and aido's
    background process starts the next. up starts the first N before it returns.

    An invalid sandbox.yaml (an unknown or repeated key, a bad value) is refused with
    one line per problem (file:line: key: expected ..., got ...), exit 2, and nothing
    created; with --json, error.problems lists them as {file, line, key, message}.
    """
    if spec_file is None and Path("sandbox.yaml").is_file():
        spec_file = Path("sandbox.yaml")
    manager = manager_for_up(state)
    out = state.renderer
    observer = TerminalObserver(out, state, yes=yes)
    try:
        record = manager.create(
            spec_file=spec_file,
            name=name,
            runtime=runtime,
            ttl=ttl,
            auto_cleanup=not no_auto_cleanup,
            isolation=isolation,
            warm=warm,
            confirm=observer.confirmer("create the sandbox with the permissions above?"),
            on_pull=observer.on_pull,
        )
    finally:
        observer.pulled()
    if record.config.get("warm"):
        out.progress(f"starting {record.config['warm']} warm container(s)")
    manager.start_background(record)
    out.progress_done()
    from aido.run.request import unenforced_permissions

    inputs = _inputs_summary(record.config, manager.copied_inputs(record.id))
    notes = unenforced_permissions(record.config)
    if out.json_mode:
        from aido.evidence.redact import redact_env

        shown = record.to_json()
        shown["runs"] = []  # sandbox.json no longer lists runs (runs.jsonl does); the envelope still does
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
