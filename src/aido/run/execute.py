"""The third stage of a run: the task runs in its container, its output captured (and
masked) as it comes, the guard polled; the backend's outcome comes back as a new value,
never changed in place.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aido.backends.base import StopReason
from aido.errors import RuntimeUnavailable
from aido.run.guard import RunGuard
from aido.run.prepare import PreparedRun
from aido.run.seal import prewarm
from aido.store.workspace import STDERR, STDOUT
from aido.values import dataclass, field

if TYPE_CHECKING:
    from aido.backends.base import ExecOutcome
    from aido.run.context import Context
    from aido.run.request import RunHooks


@dataclass(frozen=True)
class ExecutedRun:
    prepared: PreparedRun
    outcome: ExecOutcome
    streams: dict[str, dict[str, object]]  # what the capture kept of each stream
    guard: RunGuard  # its disk meter gives the final report
    start: dict[str, Any] = field(default_factory=lambda: {"mode": "cold"})  # warm or cold (run/warm.py)


def execute(
    ctx: Context, prepared: PreparedRun, hooks: RunHooks, cancel: threading.Event | None
) -> ExecutedRun:
    from aido.evidence.capture import DEFAULT_LIMIT, OutputCapture

    plan, request = prepared.plan, prepared.request
    capture = OutputCapture(
        {1: prepared.run_dir / STDOUT, 2: prepared.run_dir / STDERR},
        limit=ctx.output_limit or DEFAULT_LIMIT,
        echo=hooks.on_output,
        secrets=prepared.secrets,
    )
    guard = RunGuard(plan, cancel)
    if hooks.on_start:
        hooks.on_start(prepared.run_id, plan.task.name, request.image)
    # The signing key (and cryptography, whose native library takes 5-25 ms to load while
    # holding the GIL) loads now, while this thread mostly waits on the engine; so do the
    # modules that write the run's record, needed only once the task has ended (about as
    # long to import as a warm run's whole task takes).
    prewarm()
    threading.Thread(target=_load_collect, name="aido-collect-prewarm", daemon=True).start()
    start: dict[str, Any] = {"mode": "cold"}
    try:
        outcome = None
        if plan.settings.warm and plan.placement is None:
            from aido.run import warm

            outcome, start = warm.run(ctx, prepared, capture.write, guard)
        if outcome is None:
            outcome = ctx.backend.run(request, capture.write, guard)
    except RuntimeUnavailable:
        ctx.store.mark_containers_left()  # it may have created the container before failing
        raise
    finally:
        streams = capture.close()
    if outcome.container_left:
        ctx.store.mark_containers_left()
    if outcome.stop_reason is None and outcome.exit_code != 0 and plan.paths.destroying.exists():
        # Destroyed under us before the guard noticed: that, not an engine error, is why.
        outcome = replace(outcome, stop_reason=StopReason.DESTROYED, error=None, exit_code=None)
    return ExecutedRun(prepared, outcome, streams, guard, start)


def _load_collect() -> None:
    import aido.run.collect  # noqa: F401
