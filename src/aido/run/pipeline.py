"""A run, stage by stage: plan -> begin/prepare -> execute -> collect, each stage handing
the next an immutable value. Planning leaves no trace; once a run id exists, a failure in
any later stage closes the run through run/close.py, so no record stays "running".
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from aido.errors import SandboxNotFound
from aido.run.execute import execute
from aido.run.prepare import begin, prepare
from aido.run.request import RunHooks

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from aido.run.context import Context
    from aido.run.plan import RunPlan
    from aido.run.result import RunResult


def run_one(
    ctx: Context,
    plan: RunPlan,
    hooks: RunHooks | None = None,
    *,
    cancel: threading.Event | None = None,
    turn: AbstractContextManager[object] | None = None,
) -> RunResult:
    """Run a planned task: take the run id, run the task, write the evidence. ``turn`` is
    held while the run id is taken (a batch numbers runs in the order the tasks were given);
    setting ``cancel`` (from another thread) stops the task as interrupted."""
    start = begin(ctx, plan, turn)
    try:
        hooks = hooks or RunHooks()
        executed = execute(ctx, prepare(ctx, plan, start), hooks, cancel)
        from aido.run.collect import collect  # loaded while the task ran (execute's prewarm)

        return collect(ctx, executed, hooks)
    except BaseException as exc:
        from aido.run.close import abandon_run

        # Whatever failed, the run's record must not stay "running".
        abandon_run(ctx.store, plan, start.run_id, exc)
        if not plan.paths.metadata.exists() and isinstance(exc, OSError):
            rid, sid = start.run_id, plan.record.id
            raise SandboxNotFound(
                f"sandbox {sid} was destroyed while {rid} ran",
                hint=f"its output so far is archived unless purged (`aido logs --sandbox "
                f"{sid} --run {rid}`); create a new sandbox with `aido sandbox up`",
            ) from None
        raise
    finally:
        os.close(start.lock_fd)
