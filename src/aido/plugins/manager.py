"""Loading the plugins once per process: the ``aido.plugins`` entry points, each imported
and registered on its own, so that one broken plugin is reported by name (and never stops
the others from loading). Nothing is imported unless a distribution declares the group
(see discover.py): without plugins, this costs ``aido run`` a directory listing.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from aido.plugins.discover import GROUP, declared
from aido.values import dataclass, field

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    import pluggy

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a plugin's name is a directory name too
HOOKS = (
    "aido_pre_run",
    "aido_post_run",
    "aido_register_backends",
    "aido_register_runtimes",
    "aido_add_commands",
)


@dataclass
class Plugin:
    name: str  # the entry point's name: how aido names the plugin everywhere
    value: str  # what the entry point names ("aido_census", "pkg.mod:obj")
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # why it is broken: not importable, or not a valid plugin

    @property
    def status(self) -> str:
        return "broken" if self.error else "ok"

    @property
    def label(self) -> str:
        """How messages name it: ``census`` (aido-census 0.1.0)."""
        if self.distribution:
            return f"plugin {self.name!r} ({self.distribution} {self.version or ''})".replace(" )", ")")
        return f"plugin {self.name!r}"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "status": self.status,
            "error": self.error,
        }


@dataclass
class Loaded:
    plugins: list[Plugin]
    pm: pluggy.PluginManager | None  # None: no distribution declares a plugin

    def get(self, name: str) -> Plugin | None:
        return next((p for p in self.plugins if p.name == name), None)

    @property
    def broken(self) -> list[Plugin]:
        return [p for p in self.plugins if p.error]

    def impls(self, hook: str) -> list[tuple[Plugin, Any]]:
        """The working plugins implementing ``hook``, in name order, with their hookimpl."""
        if self.pm is None:
            return []
        caller = getattr(self.pm.hook, hook)
        by_name = {impl.plugin_name: impl for impl in caller.get_hookimpls()}
        return [(p, by_name[p.name]) for p in self.plugins if not p.error and p.name in by_name]


_loaded: Loaded | None = None
_lock = threading.Lock()


def load() -> Loaded:
    """The plugins of this process (loaded on first use; batch threads share them)."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load() if declared() else Loaded([], None)
        return _loaded


def reset() -> None:
    """Forget the loaded plugins (tests; a long-lived process after installing one)."""
    global _loaded
    with _lock:
        _loaded = None


def _load() -> Loaded:
    from importlib.metadata import entry_points

    import pluggy

    from aido.plugins import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins: list[Plugin] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist
        plugin = Plugin(
            ep.name,
            ep.value,
            dist.metadata["Name"] if dist is not None else None,
            dist.version if dist is not None else None,
        )
        plugins.append(plugin)
        if not NAME.fullmatch(ep.name):
            plugin.error = "its entry point name is not usable (letters, digits, '.', '_', '-')"
        elif any(p.name == ep.name for p in plugins[:-1]):
            plugin.error = "another distribution declares a plugin of the same name"
        else:
            plugin.error = _register(pm, ep, plugin)
    return Loaded(plugins, pm)


def _register(pm: pluggy.PluginManager, ep: EntryPoint, plugin: Plugin) -> str | None:
    """Import and register one plugin; why it is broken, or None."""
    import pluggy

    try:
        obj = ep.load()
    except BaseException as exc:  # SystemExit and the like too: a plugin must not end aido
        if isinstance(exc, KeyboardInterrupt):
            raise
        return f"cannot be imported: {describe(exc)}"
    try:
        pm.register(obj, name=ep.name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        return f"is not a valid plugin: {one_line(str(exc))}"
    callers = pm.get_hookcallers(obj) or []
    problem = None
    for caller in callers:
        for impl in caller.get_hookimpls():
            if impl.plugin_name != ep.name:
                continue
            if not caller.has_spec():
                problem = f"implements an unknown hook {caller.name!r} (aido's: {', '.join(HOOKS)})"
            elif impl.wrapper or impl.hookwrapper:
                problem = f"{caller.name} is a hook wrapper: aido does not support those"
            else:
                plugin.hooks.append(caller.name)
    plugin.hooks.sort(key=HOOKS.index)
    if problem is None and not plugin.hooks:
        problem = "implements no aido hook (mark its functions with @aido.plugins.hookimpl)"
    if problem is not None:
        pm.unregister(name=ep.name)
        plugin.hooks = []
    return problem


def describe(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def one_line(text: str, limit: int = 300) -> str:
    """Text for a one-line message: control characters (a newline, an escape sequence)
    shown as spaces, cut at ``limit``."""
    flat = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text).strip()
    flat = re.sub(r" {2,}", " ", flat)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
