"""Plugins: pluggy hooks found through the ``aido.plugins`` entry-point group.

A plugin marks its hook functions with ``aido.plugins.hookimpl``::

    from aido.plugins import hookimpl

    @hookimpl
    def aido_post_run(run):
        return {"note.txt": f"{run.run_id} ended {run.status}"}

A plugin adding runtime families returns ``aido.plugins.Runtime`` values from
``aido_register_runtimes``. The hooks are in hookspecs.py, what they are shown in
views.py. ``hookimpl`` is imported on first use: pluggy is loaded only when a plugin is
installed.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aido.config.runtimes import Runtime
    from aido.plugins.hookspecs import hookimpl
    from aido.plugins.views import FinishedRun, PlannedRun

__all__ = ["FinishedRun", "PlannedRun", "Runtime", "hookimpl"]


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        from aido.plugins.hookspecs import hookimpl

        return hookimpl
    if name == "Runtime":
        from aido.config.runtimes import Runtime

        return Runtime
    if name in ("FinishedRun", "PlannedRun"):
        from aido.plugins import views

        return getattr(views, name)
    raise AttributeError(f"module 'aido.plugins' has no attribute {name!r}")
