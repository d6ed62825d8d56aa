"""``aido``: the root command group and ``main()``, the one place errors become exit
codes and error envelopes.

Each command lives in ``aido.cli.commands.<group>``: it parses its flags, calls the
manager and renders the result. The invocation's state (global options, the command
running, the signal that stopped it) is an ``AppState`` on the click context.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from aido import __version__
from aido import log as aido_log
from aido.cli.options import CONTEXT, global_options
from aido.cli.plugged import AidoGroup
from aido.cli.render import Renderer
from aido.cli.state import AppState, get_state
from aido.errors import AidoError, ConfigError, Interrupted, NoActiveSandbox
from aido.exit_codes import ExitCode


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    # --version is eager (it runs before --json is parsed), so --json is read from argv.
    state = get_state(ctx)
    if state.json or state.argv_json:
        Renderer(json_mode=True).envelope("version", "success", {"version": __version__})
    else:
        click.echo(f"aido {__version__}")
    ctx.exit()


@click.group(cls=AidoGroup, context_settings=CONTEXT)
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
      aido verify                  check the sandbox's sealed evidence (exit 0 verified, 1 tampered)
      aido export 3 -o r.tar.gz    a run as a bundle anyone can verify offline
      aido sandbox destroy         remove the sandbox and its containers (its evidence is kept)
      aido mcp                     serve all this to an AI agent over MCP, within your limits

    Tasks run with no network, as an unprivileged user, with all capabilities
    dropped, a read-only root filesystem and CPU, memory and process limits.
    Evidence of each run is kept in .aido/sandboxes/ID/runs/RUN/, and once the
    sandbox is destroyed in .aido/archive/ID/runs/RUN/ (for 30 days by default:
    the evidence_retention setting).
    """


# Each command's module is imported only when the command is used (see plugged.py): the
# names here must be the commands' own (a test checks).
COMMANDS = {
    "sandbox": "aido.cli.commands.sandbox:sandbox",
    "run": "aido.cli.commands.run:run",
    "logs": "aido.cli.commands.logs:logs",
    "show": "aido.cli.commands.logs:show",
    "runs": "aido.cli.commands.logs:runs",
    "verify": "aido.cli.commands.verify:verify",
    "export": "aido.cli.commands.export:export",
    "doctor": "aido.cli.commands.doctor:doctor",
    "key": "aido.cli.commands.key:key",
    "cluster": "aido.cli.commands.cluster:cluster",
    "mcp": "aido.cli.commands.mcp:mcp",
    "plugins": "aido.cli.commands.plugins:plugins",
    "completion": "aido.cli.commands.completion:completion",
}
for name, target in COMMANDS.items():
    cli.add_lazy_command(name, target)


def _configure_logging() -> None:
    import logging

    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(format="aido: %(levelname)s: %(message)s", stream=sys.stderr, level=logging.INFO)


def _handle_signals(state: AppState) -> None:
    def on_signal(signum: int, frame: object) -> None:
        # Unwind like Ctrl-C so the running container is stopped and evidence written;
        # exit with the shell's code for the signal (143 for SIGTERM, 129 for SIGHUP).
        state.signal_exit = 128 + signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # the terminal closed under a running task
    # Even when started with SIGINT ignored (e.g. `aido run ... &` from a script), Ctrl-C or
    # `kill -INT` must stop the task cleanly rather than be silently dropped.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _scan_argv(state: AppState, args: list[str]) -> None:
    """What must be known before click parses: whether an error (a usage error among
    them) is to be a JSON envelope, and which trailing arguments are the task's."""
    state.argv_json = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    # Everything after `--` is positional, so its count tells task arguments from tasks.
    state.after_dashdash = len(args) - args.index("--") - 1 if "--" in args else 0


def main(argv: list[str] | None = None) -> None:
    """Runs the command; every error ends here, as one exit code and one error line (or
    envelope)."""
    aido_log.configure(_configure_logging)  # applied when aido first logs (aido/log.py)
    state = AppState()
    _handle_signals(state)
    args = sys.argv[1:] if argv is None else argv
    _scan_argv(state, args)
    json_mode = state.argv_json
    out = Renderer(json_mode=json_mode)
    try:
        cli.main(args=args, prog_name="aido", standalone_mode=False, obj=state)
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
                state.command or "aido",
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
            out.envelope(state.command or "aido", "error", {"exit_code": int(code), **state.context}, error)
        else:
            out.error(exc.message, exc.hint)
        sys.exit(code)
    except KeyboardInterrupt:
        code = state.signal_exit or ExitCode.INTERRUPTED
        if json_mode:
            out.envelope(
                state.command or "aido",
                "error",
                {"exit_code": int(code), **state.context},
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
                state.command or "aido",
                "error",
                {"exit_code": int(ExitCode.INTERNAL), **state.context},
                {"code": "internal", "message": message, "hint": hint},
            )
        else:
            out.error(message, hint)
        sys.exit(ExitCode.INTERNAL)
