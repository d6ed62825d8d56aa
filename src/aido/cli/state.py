"""What one ``aido`` invocation knows besides a command's own arguments: the global
options, which command is running, what it learnt before failing, and the signal that
stopped it. One ``AppState`` lives on the root click context (``ctx.obj``); ``main()``
creates it, the commands fill it in, and the error funnel reads it back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import click

from aido.cli.render import Renderer
from aido.log import log
from aido.values import dataclass, field

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class AppState:
    """Mutable on purpose: click fills the options in as it parses them, which may be
    before or after the command name (`aido --json run` and `aido run --json`)."""

    json: bool = False
    verbose: bool = False
    config: Path | None = None
    command: str = ""  # "sandbox up", "run", ...: the envelope's command; "" before one runs
    signal_exit: int | None = None  # 143 (SIGTERM) or 129 (SIGHUP) once one arrived
    after_dashdash: int = 0  # how many trailing arguments came after `--` (task arguments)
    argv_json: bool = False  # --json among the arguments (seen before click parses them)
    # What the command knew when it failed (sandbox_id, run_id): kept in error envelopes.
    context: dict[str, str] = field(default_factory=dict)

    @property
    def renderer(self) -> Renderer:
        return Renderer(json_mode=self.json)


def get_state(ctx: click.Context) -> AppState:
    """The invocation's state, kept on the root context so that every subcommand's
    context (which copies ``obj`` from its parent) shares the same one."""
    return ctx.find_root().ensure_object(AppState)


def set_option(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Callback of the global options: records a given option on the state."""
    if not value or param.name is None:
        return
    state = get_state(ctx)
    if param.name == "json_":
        state.json = True
    elif param.name == "verbose":
        state.verbose = True
        log.setLevel("DEBUG")
    elif param.name == "config" and isinstance(value, Path):
        state.config = value


def command_state(func: Callable[Concatenate[AppState, P], R]) -> Callable[P, R]:
    """Passes the state to a command as its first argument, and records the command's
    name ("sandbox up") for envelopes and errors before the command does anything."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        state = get_state(ctx)
        state.command = ctx.command_path.partition(" ")[2]
        return func(state, *args, **kwargs)

    return wrapper
