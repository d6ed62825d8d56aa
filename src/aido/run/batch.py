"""Several tasks (or several copies of one) run concurrently, each in its own fresh
container with its own run record, reported together.

Every task is checked before any runs (a typo in the fifth task name must not leave
four runs behind), escape hatches are confirmed once for the whole batch, and each
worker thread gets its own context and engine connection (the engine client is not
thread-safe). It drives the run pipeline directly (run/pipeline.py), never the facade.
Run ids follow the order the tasks were given, whichever worker gets to
its task first. Ctrl-C stops every running task; each is recorded as interrupted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aido.errors import AidoError
from aido.exit_codes import ExitCode
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.run.context import Context
    from aido.run.plan import CodeTask, RunPlan
    from aido.run.request import Confirm, RunHooks, Widening
    from aido.run.result import RunResult

MAX_PARALLEL = 64


class Runner(Protocol):
    """What runs one planned task (run_one, or a cluster's)."""

    def __call__(
        self,
        ctx: Context,
        plan: RunPlan,
        hooks: RunHooks | None,
        *,
        cancel: threading.Event | None,
        turn: AbstractContextManager[object] | None,
    ) -> RunResult: ...


@dataclass
class BatchItem:
    index: int
    task: Path
    result: RunResult | None = None
    error: AidoError | None = None

    @property
    def status(self) -> str:
        if self.result is not None:
            return self.result.status
        return "error" if self.error is not None else "not_started"

    @property
    def exit_code(self) -> int:
        if self.result is not None:
            return self.result.process_exit_code
        if self.error is not None:
            return int(self.error.exit_code)
        return int(ExitCode.INTERRUPTED)


@dataclass
class BatchResult:
    items: list[BatchItem]
    parallel: int
    duration_ms: int = 0
    interrupted: bool = False
    signal_exit: int | None = None  # set by the CLI when a signal (not Ctrl-C) interrupted it

    @property
    def counts(self) -> dict[str, int]:
        """How many runs ended in each status, in the order the statuses first occur."""
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.status] = counts.get(item.status, 0) + 1
        return counts

    @property
    def status(self) -> str:
        if self.interrupted:
            return "interrupted"
        return "success" if all(i.status == "success" for i in self.items) else "failed"

    @property
    def process_exit_code(self) -> int:
        """0 when every run succeeded, else the exit code of the first run (in the order the
        tasks were given) that did not: the same code that run alone would have given. An
        interrupted batch exits as an interrupted run does."""
        if self.interrupted:
            return self.signal_exit or ExitCode.INTERRUPTED
        for item in self.items:
            if item.status != "success":
                return item.exit_code
        return int(ExitCode.OK)


class _Turnstile:
    """Lets run ids be allocated in argument order: task i takes its id only after task
    i-1 has taken (or skipped) its own. Workers take tasks from a FIFO queue, so task i-1
    is always already with a worker when task i waits: the wait is short and cannot
    deadlock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0

    @contextmanager
    def turn(self, index: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._next >= index)
        try:
            yield
        finally:
            self.skip(index)

    def skip(self, index: int) -> None:
        with self._cond:
            self._next = max(self._next, index + 1)
            self._cond.notify_all()


def run_batch(
    ctx: Context,
    tasks: Sequence[Path | CodeTask],
    args: list[str],
    *,
    resolve: Callable[[str | None], str],
    parallel: int,
    sandbox_id: str | None = None,
    timeout: str | None = None,
    env: list[str] | None = None,
    widen: Widening | None = None,
    confirm: Confirm | None = None,
    on_result: Callable[[BatchItem], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    hooks_for: Callable[[BatchItem], RunHooks] | None = None,
    runner: Runner | None = None,
    check: Callable[[RunPlan], None] | None = None,
) -> BatchResult:
    """``resolve`` names the sandbox (the given id or the active one, see
    lifecycle.sandboxes.resolve_id); ``on_ready`` is called once every task has been
    checked, just before the first starts; ``hooks_for`` gives each task its own hooks
    (e.g. to show its output). ``runner`` runs each planned task instead of run_one (a
    cluster's, which also plans without asking the local engine), after ``check``. A
    task may be a code string (CodeTask); its item's ``task`` is then its snippet name."""
    import time

    from aido.errors import UsageError
    from aido.run.pipeline import run_one
    from aido.run.plan import plan_run

    if not tasks:
        raise UsageError("no task given", hint="aido run TASK [TASK...]")
    if not 1 <= parallel <= MAX_PARALLEL:
        raise UsageError(f"--parallel must be between 1 and {MAX_PARALLEL}, got {parallel}")
    answers: dict[tuple[str, ...], bool] = {}

    def confirm_once(warnings: list[str]) -> bool:
        key = tuple(warnings)
        if key not in answers:
            answers[key] = confirm(warnings) if confirm is not None else False
        return answers[key]

    sid = resolve(sandbox_id)
    plans: list[RunPlan] = [
        plan_run(
            ctx,
            sid,
            task if isinstance(task, Path) else None,
            args,
            timeout=timeout,
            env=env,
            widen=widen,
            confirm=confirm_once,
            remote=bool(runner),
            code=None if isinstance(task, Path) else task.code,
            runtime=None if isinstance(task, Path) else task.runtime,
        )
        for task in tasks
    ]
    for plan in plans:
        if check is not None:
            check(plan)
    run = runner or run_one
    items = [
        BatchItem(index, task if isinstance(task, Path) else plan.task)
        for index, (task, plan) in enumerate(zip(tasks, plans, strict=True))
    ]
    cancel = threading.Event()
    turnstile = _Turnstile()
    if on_ready is not None:
        on_ready()

    def work(item: BatchItem, plan: RunPlan) -> BatchItem:
        if cancel.is_set():
            turnstile.skip(item.index)
            return item
        try:
            hooks = hooks_for(item) if hooks_for is not None else None
            item.result = run(ctx.fork(), plan, hooks, cancel=cancel, turn=turnstile.turn(item.index))
        except AidoError as exc:
            item.error = exc
        finally:
            turnstile.skip(item.index)  # whatever happened, the next task must not wait forever
        return item

    started = time.monotonic()
    batch = BatchResult(items, parallel)
    pool = ThreadPoolExecutor(max_workers=min(parallel, len(items)), thread_name_prefix="aido-run")
    try:
        pending: set[Future[BatchItem]] = {
            pool.submit(work, item, plan) for item, plan in zip(items, plans, strict=True)
        }
        try:
            while pending:
                # A short wait keeps the main thread able to take Ctrl-C.
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    item = future.result()
                    if on_result is not None and (item.result is not None or item.error is not None):
                        on_result(item)
        except KeyboardInterrupt:
            batch.interrupted = True
            cancel.set()
            for future in pending:
                item = future.result()  # each stops its task and writes its evidence
                if on_result is not None and item.result is not None:
                    on_result(item)
    finally:
        pool.shutdown(wait=True)
    batch.duration_ms = int((time.monotonic() - started) * 1000)
    return batch


__all__ = ["BatchItem", "BatchResult", "run_batch"]
