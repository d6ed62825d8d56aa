"""Backends by name: what runs a task's container (Docker today). Built-ins and
plugins register the same way, through the ``aido.backends`` entry-point group (the
pre-0.2 group ``aido.runtimes`` is still read) or a plugin's ``aido_register_backends``
hook (aido.plugins), with the built-ins also known here so that resolving ``docker``
needs no metadata scan (which costs start-up time). A built-in name is never replaced.

"Backend" is the engine adapter; "runtime" keeps the spec's meaning: the interpreter
and image a task runs with (``runtime: python:3.11``, see ``aido.config.runtimes``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def _from_plugins() -> dict[str, Any]:
    from aido.log import log
    from aido.plugins.calls import backends
    from aido.plugins.manager import load

    found, problems = backends()
    for name, problem in problems.items():
        plugin = load().get(name)
        log.warning("%s: %s", plugin.label if plugin else name, problem)
    return {name: target for name, (_, target) in found.items() if name not in BUILTIN}


def available() -> list[str]:
    return sorted(set(BUILTIN) | {ep.name for ep in _entry_points()} | set(_from_plugins()))


def get_backend(name: str = DEFAULT) -> Backend:
    target: Any = BUILTIN.get(name)
    if target is None:
        found = [ep for ep in _entry_points() if ep.name == name]
        target = found[0].value if found else _from_plugins().get(name)
        if target is None:
            raise RuntimeUnavailable(
                f"unknown backend {name!r}",
                hint=f"available: {', '.join(available())}",
            )
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    backend: Backend = target()
    return backend
