"""A scripted, in-process ``Backend``: the run pipeline without a container engine.

``FakeBackend`` implements every method of ``aido.backends.base.Backend``. Its ``run``
plays a ``Step``: it streams the step's stdout/stderr through the output sink, writes
the step's files where a task would (through the request's mounts, to their host
sources), polls the guard if asked to (so the manager's disk, destroy, expiry and
cancel policies stop it as they stop a real task), and returns the ExecOutcome the
Docker adapter would build for that ending (exit code, timeout, OOM, interrupted,
engine error). Every request is recorded.

Steps are looked up by the task's file name in the command (``Script.by_task``), else taken in order
from ``Script.queue``, else ``Script.default``. The manager gives each batch thread a
backend of its own with ``type(backend)()``; a ``FakeBackend`` built with a script
therefore makes itself an instance of a subclass bound to that script, so those copies
share the script and the record of requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from aido.backends.base import (
    INTERRUPTED,
    ISOLATION_DEFAULT,
    TIMEOUT,
    Backend,
    ExecOutcome,
    ExecRequest,
    Guard,
    OutputSink,
    ProgressSink,
    RuntimeInfo,
)
from aido.errors import ImageUnavailable, RuntimeUnavailable

APPLIED = {"runtime": "runc", "seccomp": "default", "read_only_rootfs": True}


@dataclass(frozen=True)
class Step:
    """How one scripted run goes. The defaults: exit 0, no output, nothing written."""

    exit_code: int | None = 0
    stdout: bytes = b""
    stderr: bytes = b""
    # Container path -> content, written under the mount that holds the path (e.g.
    # "/outputs/report.txt" lands in the sandbox's outputs/ on the host).
    files: Mapping[str, bytes] = field(default_factory=dict)
    timed_out: bool = False
    oom_killed: bool = False
    interrupted: bool = False  # as the adapter reports Ctrl-C: no exit code, stop_reason "interrupted"
    error: str | None = None  # an engine-side failure the adapter reports (never a success)
    raises: BaseException | None = None  # raised from run() after the output and files
    # Poll the guard (every 10 ms) for up to this long; a reason it returns kills the
    # "task" as the adapter would (no exit code, stop_reason = the reason).
    wait_for_guard: float = 0.0
    during: Callable[[ExecRequest], None] | None = None  # called after the files, before the guard
    pids_limit_hit: bool | None = False
    container_left: bool = False
    duration_ms: int = 7


@dataclass
class Script:
    default: Step = field(default_factory=Step)
    by_task: dict[str, Step] = field(default_factory=dict)
    queue: list[Step] = field(default_factory=list)
    requests: list[ExecRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next_step(self, request: ExecRequest) -> Step:
        with self.lock:
            self.requests.append(request)
            names = {PurePosixPath(arg).name for arg in request.argv}
            for name, step in self.by_task.items():
                if name in names:
                    return step
            if self.queue:
                return self.queue.pop(0)
            return self.default


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def host_path(request: ExecRequest, container_path: str) -> Path:
    """Where ``container_path`` is on the host: under the deepest mount holding it."""
    target = PurePosixPath(container_path)
    best = None
    for mount in request.mounts:
        root = PurePosixPath(mount.target)
        if (target == root or root in target.parents) and (
            best is None or len(root.parts) > len(PurePosixPath(best.target).parts)
        ):
            best = mount
    if best is None:
        raise AssertionError(f"{container_path} is in no mount of the request")
    if best.read_only:
        raise AssertionError(f"{container_path} is on a read-only mount: a task could not write it")
    return Path(best.source, *target.relative_to(best.target).parts)


class FakeBackend(Backend):
    name = "fake"
    _bound: ClassVar[tuple[Script, dict[str, Any]] | None] = None

    def __init__(
        self,
        script: Script | None = None,
        *,
        images: set[str] | None = None,
        isolation: tuple[str, ...] = (ISOLATION_DEFAULT,),
        reachable: bool = True,
        labelled: list[dict[str, Any]] | None = None,
    ) -> None:
        bound = type(self)._bound
        if script is None and bound is not None:
            script, options = bound
        else:
            script = script or Script()
            options = {"images": images, "isolation": isolation, "reachable": reachable, "labelled": labelled}
            # type(self)() (the manager's fork for a batch thread) must share this script.
            self.__class__ = type("BoundFakeBackend", (type(self),), {"_bound": (script, options)})
        self.script = script
        self.images: set[str] | None = options["images"]  # None: every image exists
        self.isolation: tuple[str, ...] = options["isolation"]
        self.reachable: bool = options["reachable"]
        self.labelled: list[dict[str, Any]] = options["labelled"] if options["labelled"] is not None else []
        self.removed: list[dict[str, str]] = []
        self.pulled: list[str] = []

    @property
    def requests(self) -> list[ExecRequest]:
        return self.script.requests

    def _reachable(self) -> None:
        if not self.reachable:
            raise RuntimeUnavailable("the fake engine is unreachable", hint="it is a test")

    # -- Backend ---------------------------------------------------------------------------

    def info(self) -> RuntimeInfo:
        self._reachable()
        return RuntimeInfo(name="fake", engine="fake", version="1.0", api_version="1.45")

    def diagnose(self) -> dict[str, Any]:
        return {"oci_runtimes": ["runc"], "memory_limit": True, "pids_limit": True, "cpu_limit": True}

    def isolation_levels(self) -> list[str]:
        return list(self.isolation)

    def ensure_image(self, image: str, progress: ProgressSink | None = None) -> str:
        self._reachable()
        if self.images is not None and image not in self.images:
            raise ImageUnavailable(f"image {image} is not available", hint="build it")
        self.pulled.append(image)
        return "sha256:" + "fa" * 32

    def list_labelled(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        self._reachable()
        return [c for c in self.labelled if all(c.get("labels", {}).get(k) == v for k, v in labels.items())]

    def remove_labelled(self, labels: dict[str, str]) -> list[str]:
        self._reachable()
        gone = self.list_labelled(labels)
        self.labelled = [c for c in self.labelled if c not in gone]
        self.removed.append(dict(labels))
        return [str(c.get("id", "")) for c in gone]

    def run(self, request: ExecRequest, on_output: OutputSink, guard: Guard | None = None) -> ExecOutcome:
        self._reachable()
        step = self.script.next_step(request)
        started_at = _now()
        if step.stdout:
            on_output(1, step.stdout)
        if step.stderr:
            on_output(2, step.stderr)
        for container_path, data in step.files.items():
            path = host_path(request, container_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if step.during is not None:
            step.during(request)
        if step.raises is not None:
            raise step.raises
        reason = INTERRUPTED if step.interrupted else TIMEOUT if step.timed_out else None
        if reason is None and guard is not None:
            deadline = time.monotonic() + step.wait_for_guard
            while True:
                reason = guard()
                if reason or time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        started = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
        stopped = reason is not None or step.error is not None
        return ExecOutcome(
            exit_code=None if stopped else step.exit_code,
            started_at=started_at,
            finished_at=(started + timedelta(milliseconds=step.duration_ms))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            duration_ms=step.duration_ms,
            timed_out=reason == TIMEOUT,
            oom_killed=step.oom_killed,
            interrupted=reason == INTERRUPTED,
            container_id="fake" + request.name,
            image_id="sha256:" + "fa" * 32,
            error=step.error,
            stop_reason=reason,
            container_left=step.container_left,
            pids_limit_hit=step.pids_limit_hit,
            applied=dict(APPLIED),
        )
