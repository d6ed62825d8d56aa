"""The entry point pyproject's ``aido`` script and ``python -m aido`` name; the CLI is in app.py.

``aido --version`` (and ``-v``) alone is answered here, before click, Rich and the rest of the
CLI are imported (about 50 ms of a 60 ms start): scripts and tools ask for it often, and it
needs nothing but the version string. Everything else, ``--version --json`` included, goes
through the CLI (app.py), which gives the same answer.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from aido import __version__

if TYPE_CHECKING:
    from aido.cli.app import cli

__all__ = ["cli", "main"]

_VERSION_ONLY = (["--version"], ["-v"])


def main(argv: list[str] | None = None, *, delegate: bool = True) -> None:
    args = sys.argv[1:] if argv is None else argv
    if delegate and args and args[0] == "run":
        from aido.cli.client import delegate as to_server

        code = to_server(args)  # a workspace with a warm pool runs it already started
        if code is not None:
            sys.exit(code)
    if args in _VERSION_ONLY:
        try:
            sys.stdout.write(f"aido {__version__}\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `aido --version | true`: nothing to say, nothing wrong
            pass
        return
    from aido.cli.app import main as run_cli

    run_cli(argv)


def __getattr__(name: str) -> Any:
    if name == "cli":  # the click group, for callers that import it from here
        from aido.cli.app import cli

        return cli
    raise AttributeError(f"module 'aido.cli.main' has no attribute {name!r}")
