"""Watching a task to its end, shared by a cold run (adapter.py) and a warm one (warm.py):
the deadline, the guard, the pids probe, stdin, the output stream, how it ended (an OOM,
a kill from outside), and the container's removal. Both stop, time out and report alike
because this is the one place that does it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aido.backends.base import INTERRUPTED, TIMEOUT, ExecOutcome, ExecRequest, Guard, OutputSink
from aido.backends.docker.engine import AttachStream, Engine, EngineError
from aido.backends.docker.hostconfig import applied_settings
from aido.backends.docker.probes import PidsProbe, why_it_died
from aido.backends.docker.stdin import forward_stdin
from aido.errors import RuntimeUnavailable

if TYPE_CHECKING:
    from aido.backends.docker.adapter import DockerBackend

GUARD_INTERVAL = 0.05  # seconds between guard and deadline checks while a task runs
LINGER_GRACE = 0.5  # after killing a warm container whose task ended, before ending its stream


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exec_ended(engine: Engine, exec_id: str) -> bool:
    """Whether a warm task's exec has ended (the engine forgets it when its container dies)."""
    try:
        return not (engine.call("GET", f"/exec/{exec_id}/json") or {}).get("Running", True)
    except EngineError as exc:
        return exc.status == 404


def follow(
    backend: DockerBackend,
    container_id: str,
    request: ExecRequest,
    on_output: OutputSink,
    guard: Guard | None,
    begin: Callable[[], AttachStream],
    finish: Callable[[list[str]], tuple[int, dict[str, Any], bool]],
    oci_args: list[str] | None,
    exec_id: str = "",
) -> ExecOutcome:
    """Start the task (``begin``: its output stream), watch it (timeout, guard, pids),
    stream its output, then read how it ended (``finish``: exit code, the container's
    inspect, and whether the container holds nothing of the task any more, so that it
    may be left to the warm pool's keeper to remove) and remove the container. Shared by
    a cold run and a warm one (``exec_id``: the task is that exec; warm.py), so both
    stop, time out and report alike."""
    stop_reason: list[str] = []  # set once, by the monitor thread or on Ctrl-C
    pids: PidsProbe | None = None
    done = threading.Event()
    monitor: threading.Thread | None = None
    stream: AttachStream | None = None
    started_at = now()
    start = time.monotonic()
    error: str | None = None
    exit_code: int | None = None
    oom = False
    inspect: dict[str, Any] = {}
    stop_stdin: Callable[[], None] | None = None
    removed = keep = False
    # The task's output ended; a child of a warm task outlived it (and was killed).
    drained, lingered = threading.Event(), threading.Event()
    try:
        stream = begin()
        # Find the pids cgroup at once: it goes when the task exits, and a short task
        # can be gone before the monitor thread's first look (then nothing is known).
        pids = PidsProbe(container_id)
        pids.check()
        if request.stdin is not None:
            stop_stdin = forward_stdin(request.stdin, stream, request.name)
        started_at = now()
        start = time.monotonic()
        wall_start = time.time() - 1
        deadline = start + request.timeout_seconds

        killer = backend.engine.clone(timeout=10)  # ready before it is needed: kills are urgent
        probe = pids

        def abort() -> None:
            # A warm task's exec stream may outlive its killed container (gVisor, or
            # killed for memory): what it still carries has a moment to arrive, then the
            # stream is ended here.
            if exec_id and stream is not None and not drained.wait(LINGER_GRACE):
                stream.abort()

        def watch() -> None:
            # The deadline and the guard are checked here, off the thread that reads
            # the output, so a task that prints nothing is still stopped on time.
            probe.check()
            while not done.wait(min(GUARD_INTERVAL, max(0.0, deadline - time.monotonic()))):
                probe.check()
                reason = TIMEOUT if time.monotonic() >= deadline else None
                if reason is None and guard is not None:
                    try:
                        reason = guard()
                    except Exception as exc:  # a broken guard must not leave the task unwatched
                        reason = f"guard_failed: {exc}"
                if reason:
                    stop_reason.append(reason)
                    backend.kill(container_id, killer)
                    abort()
                    return
                # A warm task's exec ended but a child of it still holds the output open:
                # a cold container would have stopped with the task.
                ended = exec_id and not drained.is_set() and exec_ended(killer, exec_id)
                if ended and not drained.wait(GUARD_INTERVAL):
                    lingered.set()
                    backend.kill(container_id, killer)
                    abort()
                    return

        monitor = threading.Thread(target=watch, name=f"aido-watch-{request.name}", daemon=True)
        monitor.start()
        try:
            for kind, data in stream.frames():
                on_output(kind, data)
            drained.set()
            exit_code, inspect, keep = finish(stop_reason)
            # A warm container outlives its task: its pids.events still counts a fork
            # refused in the last moments, which the monitor's 50 ms look can miss.
            pids.check()
            oom = bool((inspect.get("State") or {}).get("OOMKilled"))
            if exit_code != 0 and not stop_reason and not oom:
                oom, error = why_it_died(backend.engine, container_id, wall_start, exit_code)
        except KeyboardInterrupt:
            stop_reason.insert(0, INTERRUPTED)
            backend.kill(container_id)
        except (EngineError, RuntimeUnavailable, OSError) as exc:
            error = f"lost the container while the task ran: {getattr(exc, 'message', exc)}"
    finally:
        done.set()
        if stop_stdin is not None:
            stop_stdin()
        if monitor is not None:
            monitor.join(timeout=5)
        if stream is not None:
            stream.close()
        # A warm container that holds nothing of the task (only its idle process) is
        # left to the pool's keeper: removing it is off the run's path.
        keep = keep and not stop_reason and not error and not lingered.is_set()
        removed = True if keep else backend.remove(container_id)
    duration_ms = int((time.monotonic() - start) * 1000)
    reason = stop_reason[0] if stop_reason else None
    if reason or error:
        exit_code = None
    return ExecOutcome(
        exit_code=exit_code,
        started_at=started_at,
        finished_at=now(),
        duration_ms=duration_ms,
        timed_out=reason == TIMEOUT,
        oom_killed=oom,
        interrupted=reason == INTERRUPTED,
        container_id=container_id,
        image_id=str(inspect.get("Image", "")),
        error=error,
        applied=applied_settings(inspect, oci_args) if inspect else {},
        stop_reason=reason,
        container_left=not removed,
        pids_limit_hit=pids.hit if pids is not None else None,
    )
