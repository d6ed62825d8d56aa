"""The ``aido`` group: built-in commands imported only when used, plus the plugins'
commands (aido_add_commands).

A built-in command's module is imported only when that command is looked up: ``aido run``
does not pay for importing ``cluster``, ``mcp``, ``plugins`` and the rest (``aido --help``
and shell completion, which list every command, import them all).

Built-in commands are found first and without loading any plugin: ``aido run`` and
``aido --version`` never import pluggy for the CLI's sake. Plugin commands are looked up
only for a name that is not built-in, or when every command is listed (``aido --help``,
shell completion). A plugin command named like a built-in one is never added: the
error names the plugin. A plugin command that crashes is reported as the plugin's bug,
not aido's.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import click

from aido.errors import PluginError
from aido.log import log

if TYPE_CHECKING:
    from aido.plugins.manager import Plugin


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands by name, each imported from its "module:attr" on first access.

    A mapping rather than a get_command override so that everything reading
    ``group.commands`` (click itself, callers walking the tree) sees every command; only
    iterating names and ``in`` stay free of imports.
    """

    def __init__(self, loaded: MutableMapping[str, click.Command]) -> None:
        self._loaded = dict(loaded)
        self._lazy: dict[str, str] = {}  # name -> "module:attr", not imported yet

    def add_lazy(self, name: str, target: str) -> None:
        self._lazy[name] = target
        self._loaded.pop(name, None)

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded and name in self._lazy:
            module, attr = self._lazy.pop(name).split(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command):  # a wrong map entry is aido's bug
                raise TypeError(f"{module}:{attr} is not a click command")
            self._loaded[name] = command
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._lazy.pop(name, None)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if self._lazy.pop(name, None) is None:
            del self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter([*self._loaded, *self._lazy])

    def __len__(self) -> int:
        return len(self._loaded) + len(self._lazy)


class AidoGroup(click.Group):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: LazyCommands = LazyCommands(self.commands)
        self._plugin_commands: dict[str, click.Command] | None = None
        self.plugin_problems: dict[str, list[str]] = {}  # plugin name -> what went wrong

    def add_lazy_command(self, name: str, target: str) -> None:
        """Adds the command ``name`` as the click command at ``target`` ("module:attr"),
        imported when the command is first looked up."""
        self.commands.add_lazy(name, target)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self.plugin_commands().get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.plugin_commands()})

    def plugin_commands(self, *, warn: bool = True) -> dict[str, click.Command]:
        """The plugins' commands by name (loaded once); problems are warned about, unless
        the caller shows them itself (`aido plugins`)."""
        if self._plugin_commands is None:
            self._plugin_commands = self._load_plugin_commands()
            for plugin, problems in self.plugin_problems.items() if warn else ():
                for problem in problems:
                    log.warning("plugin %r: %s", plugin, problem)
        return self._plugin_commands

    def _load_plugin_commands(self) -> dict[str, click.Command]:
        from aido.plugins.calls import commands

        found, problems = commands()
        for name, problem in problems.items():
            self.plugin_problems.setdefault(name, []).append(problem)
        added: dict[str, click.Command] = {}
        owner: dict[str, str] = {}
        for plugin, command in found:
            name = str(command.name)
            clash = None
            if name in self.commands:
                clash = f"its command {name!r} is a built-in aido command: not added"
            elif name in added:
                clash = f"its command {name!r} is added by plugin {owner[name]!r} too: not added"
            if clash:
                self.plugin_problems.setdefault(plugin.name, []).append(clash)
                continue
            added[name] = _guarded(plugin, command)
            owner[name] = plugin.name
        return added


def _guarded(plugin: Plugin, command: click.Command) -> click.Command:
    """The command, with its callback (and its subcommands') reporting a crash as the
    plugin's error (exit 70, naming the plugin) rather than as a bug in aido."""
    callback = command.callback
    if callback is not None and not getattr(callback, "_aido_plugin", None):

        @functools.wraps(callback)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except Exception as exc:
                from aido.errors import AidoError
                from aido.plugins.manager import describe

                if isinstance(exc, AidoError):
                    raise
                raise PluginError(
                    f"{plugin.label}: its command {command.name!r} failed: {describe(exc)}",
                    hint=f"this is a bug in the plugin, not in aido: report it to its authors or "
                    f"uninstall {plugin.distribution or 'it'}",
                ) from exc

        guarded._aido_plugin = plugin.name  # type: ignore[attr-defined]
        command.callback = guarded
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _guarded(plugin, sub)
    return command
