"""The hooks a plugin may implement (pluggy project name ``aido``). A plugin is a module
or object named by an entry point of the ``aido.plugins`` group; each function marked
``@aido.plugins.hookimpl`` and named after one of these hooks implements it, taking any
subset of the hook's arguments by name.

aido calls each plugin's implementation itself, one plugin at a time in name order, so
that a failure is charged to the plugin that failed (hook wrappers are not supported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from aido.config.runtimes import Runtime
    from aido.plugins.views import FinishedRun, PlannedRun

PROJECT = "aido"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def aido_pre_run(run: PlannedRun) -> str | None:
    """Before a run starts (after all of aido's own checks, before a run id exists).
    Return None to let it start, or a reason (a string) to refuse it: the run does not
    start, ``aido run`` exits 126 naming the plugin and the reason, and the sandbox's
    events.log records a ``run_refused`` event. A hook that raises, returns anything
    else, or a plugin that cannot be loaded, refuses every run too (fails closed)."""


@hookspec
def aido_post_run(run: FinishedRun) -> Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]] | None:
    """After a run's outcome is decided, before its evidence is sealed: return files to
    add to the run's evidence, as {name: content} or (name, content) pairs (str content
    is written as UTF-8). aido writes them to ``runs/<run>/plugins/<plugin>/<name>`` and
    the seal covers them; a ``plugin_evidence`` event lists them. Names are plain file
    names (no ``/``, not ``.``-prefixed); at most 64 files and 16 MiB per plugin and run.
    A failing hook adds nothing, is recorded (``plugin_failed``) and warned about; the
    run's outcome and exit code are unchanged. This is the evidence-generator hook."""


@hookspec
def aido_register_backends() -> Mapping[str, Any] | None:
    """Engine backends this plugin provides: {name: "module:Class" or the class}, found by
    ``aido.backends.registry.get_backend(name)`` like those of the ``aido.backends``
    entry-point group. A built-in name (``docker``) cannot be replaced."""


@hookspec
def aido_register_runtimes() -> Mapping[str, Runtime | Mapping[str, Any]] | None:
    """Runtime families this plugin adds: {name: aido.plugins.Runtime(...) or a dict of its
    fields}, e.g. ``{"ruby": Runtime(image="ruby:{version}-slim", interpreter="ruby",
    extensions=(".rb",), default_version="3.3")}``. Then ``runtime: ruby:3.3`` (or
    ``ruby``), ``--runtime ruby``, a ``.rb`` task in a sandbox without a runtime and a code
    string run with ``--runtime ruby`` work like the built-in runtimes: argv is
    ``[interpreter, task, *args]``. The interpreter is a plain command name (no path, no
    spaces); the image, with ``{version}`` filled in, a valid image reference. A built-in
    family (python, node, sh, docker) or extension is never replaced; an entry that fails a
    check is left out with a warning naming the plugin, and ``aido plugins`` shows why."""


@hookspec
def aido_add_commands() -> Iterable[Any] | None:
    """click commands (or groups) to add to ``aido``, e.g. ``[hello]``. A command named
    like a built-in one is refused with an error naming the plugin."""
