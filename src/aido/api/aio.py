"""``aido.AsyncSandbox``: aido.Sandbox for asyncio agent frameworks.

    async with aido.AsyncSandbox(ttl="30m", runtime="python:3.11") as sb:
        a, b = await asyncio.gather(sb.run_code("print(1)"), sb.run_code("print(2)"))

Every call runs the sync API in a worker thread (asyncio.to_thread), so runs of one
sandbox proceed concurrently. Output callbacks are called on the event loop's thread
(a coroutine function's coroutines are scheduled as tasks). Cancelling an awaiting run
stops its container: the run is recorded as interrupted, then CancelledError propagates.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypedDict, TypeVar, Unpack

from aido.api.results import Code, FileInfo, RunInfo, RunLogs, RunOutcome, Verification
from aido.api.sandbox import Sandbox, TextSink

if TYPE_CHECKING:
    from aido.run.request import Confirm

T = TypeVar("T")
AsyncTextSink = Callable[[str], object]  # a plain function, or a coroutine function


class SandboxOptions(TypedDict, total=False):
    """The keywords of aido.Sandbox (see there)."""

    ttl: str
    runtime: str
    name: str
    memory: str
    cpus: float
    timeout: str
    disk: str
    isolation: str
    warm: int
    inputs: Sequence[str]
    outputs: Sequence[str]
    env: Mapping[str, str]
    network: bool | Sequence[str] | Mapping[str, object]
    filesystem: str
    workspace: str | os.PathLike[str]
    keep: bool
    auto_cleanup: bool
    confirm: Confirm
    on_pull: Callable[[str], None]


class AsyncSandbox:
    """A sandbox created on entering ``async with`` (or ``await sb.start()``) and destroyed
    on leaving it unless kept; ``await AsyncSandbox.open(id)`` attaches to an existing one."""

    def __init__(self, **options: Unpack[SandboxOptions]) -> None:
        self._options = options
        self._sandbox: Sandbox | None = None

    @classmethod
    async def open(cls, sandbox_id: str, *, workspace: str | os.PathLike[str] | None = None) -> Self:
        opened = await asyncio.to_thread(Sandbox.open, sandbox_id, workspace=workspace)
        sandbox = cls()
        sandbox._sandbox = opened
        return sandbox

    async def start(self) -> Self:
        """Create the sandbox (what entering ``async with`` does); a no-op once created.
        Cancelled meanwhile, the sandbox being made is destroyed again."""
        if self._sandbox is None:
            options = self._options
            task = asyncio.ensure_future(asyncio.to_thread(lambda: Sandbox(**options)))
            try:
                self._sandbox = await asyncio.shield(task)
            except asyncio.CancelledError:
                made = await _settled(task)
                if made is not None:
                    await asyncio.to_thread(made.destroy)
                raise
        return self

    @property
    def sync(self) -> Sandbox:
        """The underlying aido.Sandbox (for its properties, or calls from a thread)."""
        if self._sandbox is None:
            from aido.errors import UsageError

            raise UsageError(
                "the AsyncSandbox is not started", hint="use `async with AsyncSandbox(...)` or await start()"
            )
        return self._sandbox

    @property
    def id(self) -> str:
        return self.sync.id

    async def run_code(
        self,
        code: str,
        args: Sequence[str] | None = None,
        *,
        timeout: str | None = None,
        env: Mapping[str, str] | None = None,
        on_stdout: AsyncTextSink | None = None,
        on_stderr: AsyncTextSink | None = None,
        runtime: str | None = None,
    ) -> RunOutcome:
        """As Sandbox.run_code; cancelling the awaiting task stops the run (interrupted)."""
        return await self._streamed(
            lambda sb, out, err, cancel: sb.run_code(
                code,
                args,
                timeout=timeout,
                env=env,
                on_stdout=out,
                on_stderr=err,
                runtime=runtime,
                cancel=cancel,
            ),
            on_stdout,
            on_stderr,
        )

    async def run(
        self,
        path: str | os.PathLike[str],
        args: Sequence[str] | None = None,
        *,
        timeout: str | None = None,
        env: Mapping[str, str] | None = None,
        on_stdout: AsyncTextSink | None = None,
        on_stderr: AsyncTextSink | None = None,
    ) -> RunOutcome:
        """As Sandbox.run; cancelling the awaiting task stops the run (interrupted)."""
        return await self._streamed(
            lambda sb, out, err, cancel: sb.run(
                path, args, timeout=timeout, env=env, on_stdout=out, on_stderr=err, cancel=cancel
            ),
            on_stdout,
            on_stderr,
        )

    async def _streamed(
        self,
        start: Callable[[Sandbox, TextSink | None, TextSink | None, threading.Event], RunOutcome],
        on_stdout: AsyncTextSink | None,
        on_stderr: AsyncTextSink | None,
    ) -> RunOutcome:
        """A run in a worker thread, its output callbacks called on this loop, stopped
        (recorded as interrupted) when the awaiting task is cancelled."""
        sandbox, loop, cancel = self.sync, asyncio.get_running_loop(), threading.Event()
        out, err = _on_loop(loop, on_stdout), _on_loop(loop, on_stderr)
        return await _cancellable(lambda: start(sandbox, out, err, cancel), cancel)

    async def run_many(
        self,
        tasks: Sequence[str | os.PathLike[str] | Code],
        args: Sequence[str] | None = None,
        *,
        parallel: int = 4,
        timeout: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> list[RunOutcome]:
        sandbox = self.sync
        return await asyncio.to_thread(
            lambda: sandbox.run_many(tasks, args, parallel=parallel, timeout=timeout, env=env)
        )

    async def get_run(self, run: str) -> RunOutcome:
        return await asyncio.to_thread(self.sync.get_run, run)

    async def logs(self, run: str | RunOutcome | None = None) -> RunLogs:
        return await asyncio.to_thread(self.sync.logs, run)

    async def runs(self) -> list[RunInfo]:
        return await asyncio.to_thread(self.sync.runs)

    async def verify(self, run: str | RunOutcome | None = None) -> Verification:
        return await asyncio.to_thread(self.sync.verify, run)

    async def put_file(self, path: str, data: bytes | str | os.PathLike[str]) -> FileInfo:
        return await asyncio.to_thread(self.sync.put_file, path, data)

    async def get_file(self, path: str, *, max_bytes: int = 64 << 20) -> bytes:
        sandbox = self.sync
        return await asyncio.to_thread(lambda: sandbox.get_file(path, max_bytes=max_bytes))

    async def list_outputs(self) -> list[FileInfo]:
        return await asyncio.to_thread(self.sync.list_outputs)

    async def extend(self, ttl: str) -> str:
        return await asyncio.to_thread(self.sync.extend, ttl)

    def keep(self, keep: bool = True) -> None:
        self.sync.keep(keep)

    async def destroy(self, *, purge: bool = False) -> None:
        sandbox = self.sync
        await asyncio.to_thread(lambda: sandbox.destroy(purge=purge))

    async def close(self) -> None:
        if self._sandbox is not None:
            await asyncio.to_thread(self._sandbox.close)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncSandbox({self._sandbox.id if self._sandbox else None!r})"


async def _cancellable(work: Callable[[], T], cancel: threading.Event) -> T:
    """``work`` in a thread. Cancelled meanwhile: ``cancel`` is set (the run stops and is
    recorded), the thread is waited for, then the cancellation goes on."""
    task = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set()
        await _settled(task)
        raise


async def _settled(task: asyncio.Future[T]) -> T | None:
    """The task's result once it ends, or None if it failed (its failure is not ours to raise)."""
    try:
        return await task
    except Exception:
        return None


def _on_loop(loop: asyncio.AbstractEventLoop, sink: AsyncTextSink | None) -> Callable[[str], None] | None:
    """A callback for the run's thread that calls ``sink`` on the event loop's thread."""
    if sink is None:
        return None

    pending: set[asyncio.Future[None]] = set()  # a task must be referenced until it ends

    def deliver(text: str) -> None:
        result = sink(text)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(_awaited(result))
            pending.add(task)
            task.add_done_callback(pending.discard)

    def from_thread(text: str) -> None:
        loop.call_soon_threadsafe(deliver, text)

    return from_thread


async def _awaited(awaitable: Awaitable[object]) -> None:
    await awaitable


__all__ = ["AsyncSandbox", "SandboxOptions"]
