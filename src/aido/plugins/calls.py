"""Calling the hooks, one plugin at a time, and judging what each returned: a failure is
charged to the plugin that failed, as one line naming it. Nothing here writes or records:
the run stages (aido.run.plugged) write the files and the events from these values.

Decisions (README "Plugins"):
- pre-run fails closed: a hook that raises or returns junk, or any broken plugin, refuses
  the run, as a refusal would (the plugin may be a security policy).
- post-run fails open: a failing hook adds nothing; the run's evidence is still complete
  and sealed, the failure is recorded, and the run's exit code is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aido.plugins.manager import Plugin, describe, load, one_line
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.plugins.views import FinishedRun, PlannedRun

MAX_FILES = 64  # per plugin and run
MAX_BYTES = 16 << 20  # per plugin and run, all its files together
MAX_NAME = 128


@dataclass(frozen=True)
class Refusal:
    plugin: str
    label: str  # the plugin as messages name it (with its distribution)
    reason: str
    failed: bool  # the plugin broke (rather than refused): fail closed


@dataclass(frozen=True)
class Evidence:
    """What one plugin's post-run hook gave: files to write, or why it gave nothing."""

    plugin: str
    label: str
    files: tuple[tuple[str, bytes], ...] = ()
    error: str | None = None


def call(impl: Any, **kwargs: Any) -> Any:
    """Call one hookimpl with the arguments it declares (pluggy's rule: any subset)."""
    return impl.function(*[kwargs[name] for name in impl.argnames])


def pre_run(run: PlannedRun) -> Refusal | None:
    """The first refusal among the plugins, or None: the run may start."""
    loaded = load()
    if loaded.broken:
        plugin = loaded.broken[0]
        return Refusal(plugin.name, plugin.label, f"the plugin is broken: it {plugin.error}", failed=True)
    for plugin, impl in loaded.impls("aido_pre_run"):
        try:
            answer = call(impl, run=run)
        except Exception as exc:
            return Refusal(plugin.name, plugin.label, f"its aido_pre_run failed: {describe(exc)}", True)
        if answer is None:
            continue
        if isinstance(answer, str):
            return Refusal(plugin.name, plugin.label, one_line(answer, 500) or "no reason given", False)
        return Refusal(
            plugin.name,
            plugin.label,
            f"its aido_pre_run returned {type(answer).__name__}, not None or a reason (str)",
            True,
        )
    return None


def post_run(run: FinishedRun) -> list[Evidence]:
    """Each post-run hook's files (checked), or its error."""
    results = []
    for plugin, impl in load().impls("aido_post_run"):
        try:
            answer = call(impl, run=run)
            files = _files(answer)
        except Exception as exc:
            results.append(Evidence(plugin.name, plugin.label, error=describe(exc)))
            continue
        if files:
            results.append(Evidence(plugin.name, plugin.label, files=files))
    return results


class BadReturn(ValueError):
    pass


def _files(answer: Any) -> tuple[tuple[str, bytes], ...]:
    if answer is None:
        return ()
    if isinstance(answer, Mapping):
        pairs: Iterable[Any] = answer.items()
    elif isinstance(answer, list | tuple):
        pairs = answer
    else:
        raise BadReturn(
            f"aido_post_run returned {type(answer).__name__}, not a dict or (name, content) pairs"
        )
    files: list[tuple[str, bytes]] = []
    total = 0
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise BadReturn(
                f"aido_post_run returned {type(pair).__name__} where a (name, content) pair was due"
            )
        name, content = pair
        check_name(name)
        if isinstance(content, str):
            content = content.encode("utf-8")
        if not isinstance(content, bytes | bytearray):
            raise BadReturn(f"file {name!r}: content is {type(content).__name__}, not bytes or str")
        if any(name == seen for seen, _ in files):
            raise BadReturn(f"file {name!r} is given twice")
        total += len(content)
        files.append((name, bytes(content)))
    if len(files) > MAX_FILES:
        raise BadReturn(f"{len(files)} files: at most {MAX_FILES} per run")
    if total > MAX_BYTES:
        raise BadReturn(f"{total} bytes of files: at most {MAX_BYTES >> 20} MiB per run")
    return tuple(files)


def check_name(name: Any) -> None:
    """A plain file name: it lands in runs/<run>/plugins/<plugin>/ and nowhere else."""
    if not isinstance(name, str):
        raise BadReturn(f"a file name is {type(name).__name__}, not str")
    shown = one_line(repr(name), 80)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise BadReturn(f"file name {shown} is not a plain file name (no '/', not '..')")
    if name.startswith("."):
        raise BadReturn(f"file name {shown} starts with '.'")
    if len(name.encode("utf-8", "replace")) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadReturn(f"file name {shown} is too long or has control characters")


def backends() -> tuple[dict[str, tuple[Plugin, Any]], dict[str, str]]:
    """Backend name -> (plugin, "module:Class" or class), from aido_register_backends, and
    plugin name -> what went wrong for those whose hook failed (they add nothing)."""
    found: dict[str, tuple[Plugin, Any]] = {}
    problems: dict[str, str] = {}
    for plugin, impl in load().impls("aido_register_backends"):
        try:
            answer = call(impl)
            if answer is None:
                continue
            if not isinstance(answer, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str | type) for k, v in answer.items()
            ):
                raise BadReturn("it must return {name: 'module:Class' or class}")
        except Exception as exc:
            problems[plugin.name] = f"aido_register_backends failed: {describe(exc)}"
            continue
        for name, target in answer.items():
            if name in found:
                problems[plugin.name] = f"backend {name!r} is provided by plugin {found[name][0].name!r} too"
                continue
            found[name] = (plugin, target)
    return found, problems


def commands() -> tuple[list[tuple[Plugin, Any]], dict[str, str]]:
    """(plugin, click command) pairs from aido_add_commands, and plugin name -> what went
    wrong for those whose hook failed or returned something else than click commands."""
    import click

    found: list[tuple[Plugin, Any]] = []
    problems: dict[str, str] = {}
    for plugin, impl in load().impls("aido_add_commands"):
        try:
            answer = call(impl)
            if answer is None:
                continue
            if isinstance(answer, click.Command):
                answer = [answer]
            if not isinstance(answer, list | tuple) or not all(
                isinstance(c, click.Command) and c.name for c in answer
            ):
                raise BadReturn("it must return click commands (a list of them, or one)")
        except Exception as exc:
            problems[plugin.name] = f"aido_add_commands failed: {describe(exc)}"
            continue
        found.extend((plugin, command) for command in answer)
    return found, problems
