"""Backends by name: what runs a task's container (Docker today). Built-ins and
plugins register the same way, through the ``aido.backends`` entry-point group (the
pre-0.2 group ``aido.runtimes`` is still read), with the built-ins also known here so
that resolving ``docker`` needs no metadata scan (which costs start-up time).

"Backend" is the engine adapter; "runtime" keeps the spec's meaning: the interpreter
and image a task runs with (``runtime: python:3.11``, see ``aido.config.runtimes``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from aido.errors import RuntimeUnavailable

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from aido.backends.base import Backend

BUILTIN = {"docker": "aido.backends.docker.adapter:DockerBackend"}
DEFAULT = "docker"
GROUPS = ("aido.backends", "aido.runtimes")  # the second: plugins written before the rename


def _entry_points() -> list[EntryPoint]:
    from importlib.metadata import entry_points

    return [ep for group in GROUPS for ep in entry_points(group=group)]


def available() -> list[str]:
    return sorted(set(BUILTIN) | {ep.name for ep in _entry_points()})


def get_backend(name: str = DEFAULT) -> Backend:
    target = BUILTIN.get(name)
    if target is None:
        found = [ep for ep in _entry_points() if ep.name == name]
        if not found:
            raise RuntimeUnavailable(
                f"unknown backend {name!r}",
                hint=f"available: {', '.join(available())}",
            )
        target = found[0].value
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    backend: Backend = cls()
    return backend
