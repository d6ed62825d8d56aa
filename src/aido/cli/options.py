"""Options several commands share: the global ones (accepted before or after the command
name) and --yes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from aido.cli.state import set_option

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def global_options(func: F) -> F:
    func = click.option(
        "--json",
        "json_",
        is_flag=True,
        expose_value=False,
        callback=set_option,
        help="Print one JSON document on stdout instead of human output.",
    )(func)
    func = click.option(
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=set_option,
        help="Show debug logs on stderr.",
    )(func)
    func = click.option(
        "--config",
        type=click.Path(path_type=Path, dir_okay=False),
        expose_value=False,
        callback=set_option,
        metavar="PATH",
        help="aido settings file (default: .aido/config.json if present).",
    )(func)
    return func


def yes_option(func: F) -> F:
    return click.option(
        "-y",
        "--yes",
        is_flag=True,
        help="Confirm widened permissions without asking (needed without a terminal).",
    )(func)
