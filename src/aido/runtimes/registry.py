"""Runtime adapters by name. Built-ins and plugins register the same way: through
the ``aido.runtimes`` entry-point group, with the built-ins also known here so
that resolving ``docker`` needs no metadata scan (which costs start-up time)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from aido.errors import RuntimeUnavailable

if TYPE_CHECKING:
    from aido.runtimes.base import RuntimeAdapter

BUILTIN = {"docker": "aido.runtimes.docker.adapter:DockerRuntime"}
DEFAULT = "docker"


def available() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(set(BUILTIN) | {ep.name for ep in entry_points(group="aido.runtimes")})


def get_runtime(name: str = DEFAULT) -> RuntimeAdapter:
    target = BUILTIN.get(name)
    if target is None:
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group="aido.runtimes") if ep.name == name]
        if not found:
            raise RuntimeUnavailable(
                f"unknown runtime backend {name!r}",
                hint=f"available: {', '.join(available())}",
            )
        target = found[0].value
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    adapter: RuntimeAdapter = cls()
    return adapter
