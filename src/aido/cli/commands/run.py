"""`aido run`: one task, or several at once (a batch), in fresh containers of a sandbox.

The command turns its flags into a call of the manager, with a ``TerminalObserver``
to show the run as it happens, and renders the result: the outcome line or the
``--json`` envelope, and the run's exit code as aido's."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aido.cli.commands.completion import complete_sandbox_ids
from aido.cli.observer import TerminalObserver
from aido.cli.options import CONTEXT, global_options, yes_option
from aido.cli.outcome import outcome_line, run_payload
from aido.cli.render import Renderer
from aido.cli.state import AppState, command_state
from aido.cli.text import relative
from aido.cli.workspace import open_manager
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.manager import SandboxManager
    from aido.run.request import Widening


@dataclass(frozen=True)
class RunOptions:
    """What `aido run` was asked besides its tasks, once its arguments are parsed: the
    same for one task and for a batch."""

    args: tuple[str, ...]  # the task's arguments (after `--`)
    sandbox_id: str
    timeout: str | None
    env: tuple[str, ...]  # -e KEY=VALUE / -e KEY, as given
    widen: Widening
    cluster: str | None = None  # a Ray address: the runs go to that cluster's aido nodes
    retries: int = 0  # re-run a run lost with its node, as a new run (cluster only)


@click.command("run", context_settings=CONTEXT)
# Plain strings: click.Path would normalise the task's own arguments ("" -> ".", "a/" -> "a").
@click.argument("tasks", nargs=-1, metavar="TASK...")
@click.option(
    "-c",
    "--code",
    metavar="CODE",
    help="Run this code string instead of a task file (arguments after --); it is stored in "
    "the run's evidence as the task snippet-<sha256>.py|.js|.sh.",
)
@click.option(
    "--runtime",
    metavar="RUNTIME",
    help="With -c in a sandbox that has no runtime: python[:VERSION], node[:VERSION], sh or a plugin's. "
    "A sandbox's own runtime always wins; naming another one is an error.",
)
@click.option(
    "--sandbox",
    "sandbox_id",
    metavar="ID",
    help="Sandbox to run in (default: the active one).",
    shell_complete=complete_sandbox_ids,
)
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
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="HOST[:PORT]",
    help="ESCAPE HATCH: let the task reach this host (pypi.org, *.pythonhosted.org, "
    "api.example.com:443) through aido's egress proxy, on top of the sandbox's allowlist. Repeatable.",
)
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
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Run on the aido nodes of this Ray cluster (HOST:PORT, ray://HOST:10001 or auto; "
    "default: AIDO_CLUSTER, else `cluster:` in aido's settings). Needs `pip install 'aido[ray]'`.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=0,
    metavar="N",
    help="With --cluster: run a task whose node was lost again elsewhere, up to N times, each "
    "as a new run that names the lost one (retry_of). Never done without this flag.",
)
@yes_option
@click.option(
    "--raw-output", is_flag=True, help="Echo the task's output unfiltered, escape sequences included."
)
@global_options
@command_state
def run(
    state: AppState,
    tasks: tuple[str, ...],
    code: str | None,
    runtime: str | None,
    sandbox_id: str | None,
    timeout: str | None,
    env: tuple[str, ...],
    parallel: int | None,
    network: bool,
    allow_hosts: tuple[str, ...],
    host_filesystem: bool,
    dangerous_allow_mutations: bool,
    interactive: bool,
    cluster: str | None,
    retries: int,
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
      124 timed out   125 engine or image error   126 task not runnable,
      or refused by a plugin (see `aido plugins`)
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

    Escape hatches (--network, --allow-host, --host-filesystem,
    --dangerous-allow-mutations) print a warning and ask y/N; without a terminal they
    need --yes. They are recorded in the run's evidence and in events.log, and so is
    every change the task made where they let it write (/inputs, /project).
    --allow-host HOST[:PORT] adds to the sandbox's allowlist (permissions.network.allow)
    for this run only; the task reaches those hosts through aido's egress proxy and
    nothing else (IP addresses only in sandbox.yaml, with allow_ip_ranges: true).

    The interpreter comes from the sandbox's runtime, else from the extension:
    .py python, .js/.mjs/.cjs node, .sh sh, and the extensions of plugins' runtimes
    (`aido plugins` lists them). A task whose extension names another
    interpreter than the sandbox's runtime gets a warning (kept in its evidence).

    \b
    On a Ray cluster (--cluster, AIDO_CLUSTER or `cluster:` in the settings), each
    task runs on a node advertising the `aido` resource, with the same hardening;
    its output streams back live and its sealed evidence is verified here, then
    stored as an ordinary run (summary.json names the node; outputs land in
    outputs/<run>/). A lost node: the run is recorded interrupted (node_lost, exit
    125); --retries N runs it again as a new run. See `aido cluster status`.

    \b
    A code string instead of a file (one run, not a batch):
      aido run -c 'print(6*7)'                    the sandbox's runtime runs it
      aido run -c 'echo "$1"' --runtime sh -- hi  in a sandbox without a runtime
    It becomes the task snippet-<first 12 hex of its SHA-256>.py (.js, .sh),
    stored in the run's evidence like a task file.
    """
    from aido.errors import TaskNotFound
    from aido.run.request import Widening

    split = len(tasks) - state.after_dashdash
    task_args = list(tasks[split:]) if state.after_dashdash else []
    given = tasks[:split] if state.after_dashdash else tasks
    task_list = [Path(t) for t in given]
    if code is not None:
        if task_list:
            raise click.UsageError(
                "give either a task file or -c CODE, not both (arguments for the code go after --)"
            )
        if (parallel or 1) > 1:
            raise click.UsageError("-c runs one code string once; --parallel needs task files")
    elif runtime is not None:
        raise click.UsageError("--runtime picks the interpreter of a code string: use it with -c CODE")
    elif not task_list:
        raise click.UsageError(
            "missing TASK before --" if state.after_dashdash else "missing TASK (or -c CODE)"
        )
    if interactive and (len(task_list) > 1 or (parallel or 1) > 1):
        raise click.UsageError("-i/--interactive forwards stdin to one task; give a single TASK")
    out = Renderer(json_mode=state.json, raw_output=raw_output)
    observer = TerminalObserver(out, state, yes=yes)
    manager = open_manager(state)
    try:
        resolved = state.context["sandbox_id"] = manager.resolve_id(sandbox_id)
        address = _cluster_address(state, manager, cluster)
        if retries and address is None:
            raise click.UsageError("--retries needs --cluster (a local run is never re-run)")
        options = RunOptions(
            args=tuple(task_args),
            sandbox_id=resolved,
            timeout=timeout,
            env=env,
            widen=Widening(network, host_filesystem, dangerous_allow_mutations, allow_hosts),
            cluster=address,
            retries=retries,
        )
        if len(task_list) > 1 or (parallel or 1) > 1:
            from aido.cli.commands.run_batch import labels_for, run_batch

            labels = labels_for(list(given) if len(given) > 1 else list(given) * (parallel or 1))
            batch = task_list if len(task_list) > 1 else task_list * (parallel or 1)
            run_batch(manager, out, observer, options, batch, labels, parallel or len(batch))
            return
        stdin = None
        if interactive:
            try:
                if sys.stdin is None:  # started with stdin closed (`aido run -i x.py <&-`)
                    raise ValueError("closed")
                stdin = sys.stdin.fileno()
            except (ValueError, OSError):  # io.UnsupportedOperation too: a stdin with no descriptor
                raise click.UsageError("-i/--interactive: aido has no stdin to forward") from None
        if code is not None:
            _run_one(manager, out, observer, options, (code, runtime), stdin)
        else:
            _run_one(manager, out, observer, options, task_list[0], stdin)
    except TaskNotFound as exc:
        hint = _arguments_hint(list(given), state.after_dashdash)
        if hint:
            exc.hint = hint
        raise


def _cluster_address(state: AppState, manager: SandboxManager, flag: str | None) -> str | None:
    """--cluster, else AIDO_CLUSTER, else the settings' `cluster:`; None: run locally."""
    from aido.cli.workspace import load_settings

    settings = load_settings(state, manager.workspace_if_any)
    if flag is None and not os.environ.get("AIDO_CLUSTER") and settings.cluster is None:
        return None  # the common case: nothing about clusters is imported
    from aido.cluster.connect import resolve_address

    return resolve_address(flag, settings)


def _arguments_hint(given: list[str], after_dashdash: int) -> str | None:
    """`aido run a.py 5`: 5 was meant as an argument. Say so when a missing "task" after an
    existing one does not look like a task file."""
    from aido.config.runtimes import interpreter_for_task

    if after_dashdash or len(given) < 2 or not os.path.isfile(given[0]):
        return None
    from aido.plugins.runtimes import install

    install()  # a plugin's extension names a task file too
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
    manager: SandboxManager,
    out: Renderer,
    observer: TerminalObserver,
    options: RunOptions,
    task: Path | tuple[str, str | None],
    stdin: int | None,
) -> None:
    """One run: of a task file, or of a code string given as (code, --runtime)."""
    import functools

    if isinstance(task, Path):
        start = functools.partial(manager.run, task)
    else:
        start = functools.partial(manager.run_code, task[0], runtime=task[1])
    result = start(
        list(options.args),
        sandbox_id=options.sandbox_id,
        timeout=options.timeout,
        env=list(options.env),
        hooks=observer.run_hooks(options.sandbox_id),
        widen=options.widen,
        confirm=observer.confirmer("run the task with the permissions above?"),
        stdin=stdin,
        cluster=options.cluster,
        retries=options.retries,
    )
    observer.pulled()
    code = result.process_exit_code
    if out.json_mode:
        out.envelope(
            "run",
            result.status,
            run_payload(result),
            None
            if result.error is None
            else {"code": "runtime_error", "message": result.error, "hint": None},
        )
    else:
        out.separator()
        out.say_result(outcome_line(result), ok=result.status == "success")
        for stats in result.output:
            if stats.truncated:
                out.warn(f"{stats.name} was truncated at {stats.limit} bytes ({stats.bytes_total} written)")
        for declared in result.declared_outputs:
            if not declared.present:
                out.warn(f"declared output {declared.path!r} was not produced")
        if result.network.mode == "allowlist":
            out.say(
                f"🌐 Network: {result.network.allowed} allowed, {result.network.denied} denied by the "
                f"egress proxy (aido logs --network --run {result.run_id})"
            )
        out.say(f"📦 Artifacts: {relative(result.outputs_dir)}/")
        out.say(f"🧾 Evidence: {relative(result.evidence_dir)}/")
    if code:
        sys.exit(code)
