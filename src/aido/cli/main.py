"""The entry point pyproject's ``aido`` script and ``python -m aido`` name; the CLI is in app.py."""

from aido.cli.app import cli, main

__all__ = ["cli", "main"]
