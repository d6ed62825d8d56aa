"""The runtime families plugins add (``aido_register_runtimes``), checked one by one: a bad
entry, a built-in name or a name or extension another plugin took first is left out and
charged to its plugin, never to the built-ins or the other entries. ``install`` hands
what passed to aido.config.runtimes, which parses ``runtime:`` values; the layers above
(sandbox creation, run planning, the MCP checks) call it before parsing a runtime.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aido.config.runtimes import Family, check_family, set_plugin_families
from aido.log import log
from aido.plugins.manager import describe, load, one_line

if TYPE_CHECKING:
    from aido.plugins.manager import Loaded

MAX_FAMILIES = 32  # per plugin

_installed: Loaded | None = None
_lock = threading.Lock()


def collect() -> tuple[list[Family], dict[str, list[str]]]:
    """The families that passed, in plugin name order, and plugin name -> its problems."""
    from aido.plugins.calls import BadReturn, call

    families: dict[str, Family] = {}
    owners: dict[str, str] = {}  # extension -> family
    problems: dict[str, list[str]] = {}
    for plugin, impl in load().impls("aido_register_runtimes"):
        found = problems.setdefault(plugin.name, [])
        try:
            answer = call(impl)
            if answer is None:
                continue
            if not isinstance(answer, Mapping):
                raise BadReturn(f"it returned {type(answer).__name__}, not {{name: Runtime or dict}}")
            if len(answer) > MAX_FAMILIES:
                raise BadReturn(f"{len(answer)} runtimes: at most {MAX_FAMILIES} per plugin")
            entries = list(answer.items())
        except Exception as exc:
            found.append(f"aido_register_runtimes failed: {describe(exc)}")
            continue
        for name, value in entries:
            try:
                family = check_family(name, value, plugin.name)
            except Exception as exc:  # ValueError, or a TypeError from a strange value
                text = str(exc) if isinstance(exc, ValueError) else describe(exc)
                found.append(one_line(text if text.startswith("runtime") else f"runtime {name!r}: {text}"))
                continue
            other = families.get(family.name)
            if other is not None:
                found.append(f"runtime {family.name!r} is provided by plugin {other.plugin!r} too: not added")
                continue
            taken = next((e for e in family.extensions if e in owners), None)
            if taken is not None:
                found.append(
                    f"runtime {family.name!r}: extension {taken!r} belongs to runtime "
                    f"{owners[taken]!r} (plugin {families[owners[taken]].plugin!r}): not added"
                )
                continue
            families[family.name] = family
            owners.update(dict.fromkeys(family.extensions, family.name))
    return list(families.values()), {name: p for name, p in problems.items() if p}


def install() -> None:
    """Make the plugins' runtimes known to aido.config.runtimes, once per loaded set of
    plugins, warning about each refused entry. Without plugins this costs the listing of
    sys.path that load() pays once per process (shared with the pre-run hooks)."""
    global _installed
    with _lock:
        loaded = load()
        if _installed is loaded:
            return
        _installed = loaded
        if not loaded.plugins:
            set_plugin_families(())
            return
        families, problems = collect()
        set_plugin_families(families)
    for name, found in problems.items():
        plugin = loaded.get(name)
        for problem in found:
            log.warning("%s: %s", plugin.label if plugin else f"plugin {name!r}", problem)
