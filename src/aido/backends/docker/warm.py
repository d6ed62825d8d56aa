"""Warm start on Docker: a container created and started in advance with exactly the
HostConfig a cold run gets, idle under docker-init, and used by one run only.

The idle process (``sleep``) runs as ``nobody``, not as the task's user: the task can
neither signal it nor ptrace it, so nothing of the task can hide in it. The task runs
through an exec with its own argv, environment, user and working directory (a fresh
process tree beside the idle one); the run's limits, timeout, guard, output and OOM
handling are the cold run's (follow.py). When the task's last process is
gone the container holds only the idle pair and is left to the pool's keeper to remove;
if anything of the task is still alive (a daemonised child), the container is killed
at once, as a cold container stops when its task ends.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aido.backends.base import ExecOutcome, ExecRequest, Guard, OutputSink, WarmUnusable
from aido.backends.docker.engine import AttachStream, EngineError
from aido.backends.docker.hostconfig import SECCOMP_FLAGS, host_config
from aido.backends.docker.probes import PidsProbe

if TYPE_CHECKING:
    from aido.backends.docker.adapter import DockerBackend

IDLE_ARGV = ["sleep", "infinity"]
IDLE_USER = "65534:65534"  # nobody: not the task's user, so the task cannot touch it
IDLE_PIDS = 2  # docker-init and sleep
KEY_LABEL = "aido.warm"
EXIT_POLLS = 200  # looks at an exec that just ended, 1 ms apart, before giving up


def key(request: ExecRequest) -> str:
    """The settings a container is created with that a run must find identical."""
    settings = {
        "image": request.image,
        "host_config": host_config(request),
        "network": request.network,
        "isolation": request.isolation,
        "workdir": request.workdir,
        "user": request.user,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def idle_request(request: ExecRequest) -> ExecRequest:
    return replace(
        request,
        argv=list(IDLE_ARGV),
        env={},  # the task's environment goes with the exec: the idle process holds none
        user=IDLE_USER,
        stdin=None,
        labels={**request.labels, KEY_LABEL: key(request)},
    )


def start_idle(backend: DockerBackend, request: ExecRequest) -> str:
    container_id, _ = backend.create(idle_request(request))
    try:
        backend.call("POST", f"/containers/{container_id}/start")
    except BaseException:
        backend.remove(container_id)
        raise
    return container_id


def _usable(backend: DockerBackend, container_id: str, request: ExecRequest) -> dict[str, Any]:
    """The container's inspect, if it can take ``request``; WarmUnusable if not."""
    try:
        inspect = backend.call("GET", f"/containers/{container_id}/json") or {}
    except EngineError as exc:
        gone = exc.status == 404
        raise WarmUnusable("it is gone" if gone else f"the engine failed: {exc.message}") from None
    state = inspect.get("State") or {}
    if state.get("OOMKilled"):
        raise WarmUnusable("it was killed for lack of memory while it waited")
    if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
        raise WarmUnusable(f"it had stopped ({state.get('Status')}, exit code {state.get('ExitCode')})")
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    if labels.get(KEY_LABEL) != key(request):
        raise WarmUnusable("it was created with other settings than this run's")
    if (inspect.get("Config") or {}).get("Image") != request.image:
        raise WarmUnusable("it runs another image")
    if request.image_id and inspect.get("Image") != request.image_id:
        raise WarmUnusable(f"it runs an older build of {request.image}")
    return dict(inspect)


def run_warm(
    backend: DockerBackend,
    container_id: str,
    request: ExecRequest,
    on_output: OutputSink,
    guard: Guard | None,
) -> ExecOutcome:
    inspect = _usable(backend, container_id, request)
    oci = (inspect.get("HostConfig") or {}).get("Runtime")
    oci_args = backend.oci_args(oci) if oci in SECCOMP_FLAGS else None
    exec_id = ""
    try:
        created = backend.call(
            "POST",
            f"/containers/{container_id}/exec",
            body={
                "Cmd": request.argv,
                "Env": [f"{k}={v}" for k, v in request.env.items()],
                "User": request.user,
                "WorkingDir": request.workdir,
                "AttachStdin": request.stdin is not None,
                "AttachStdout": True,
                "AttachStderr": True,
                "Tty": False,
            },
        )
        exec_id = str(created["Id"])
    except EngineError as exc:
        raise WarmUnusable(f"the engine refused the exec: {exc.message}") from None

    def begin() -> AttachStream:
        from aido.backends.docker.adapter import start_error

        try:
            return backend.engine.exec_stream(exec_id)
        except EngineError as exc:
            raise start_error(exc.message) from None

    def finish(stopped: list[str]) -> tuple[int, dict[str, Any], bool]:
        state: dict[str, Any] | None = None
        for _ in range(EXIT_POLLS):
            # The stream ends with the task's output; its exit code follows within a moment.
            try:
                state = backend.call("GET", f"/exec/{exec_id}/json") or {}
            except EngineError as exc:
                if exc.status != 404:
                    raise
                state = None  # the engine forgets an exec when its container dies
            if state is None or not state.get("Running"):
                break
            time.sleep(0.001)
        # The task's user is the exec's, not the idle process's (the container's Config.User);
        # when the engine forgot the exec, the one aido created it with.
        user = ((state or {}).get("ProcessConfig") or {}).get("user") or request.user
        applied = {**inspect, "Config": {**(inspect.get("Config") or {}), "User": user}}
        if state is None or state.get("Running") or state.get("ExitCode") is None:
            if stopped:  # aido killed the container: its reason is the outcome
                return -1, applied, False
            # The container died under the task (killed for memory under gVisor, stopped
            # from outside): how it ended is the container's.
            died = backend.call("GET", f"/containers/{container_id}/json") or {}
            if (died.get("State") or {}).get("Running", True):
                raise EngineError(0, "the engine did not report how the task's exec ended")
            return int(died["State"].get("ExitCode", -1)), {**applied, "State": died["State"]}, False
        probe = PidsProbe(container_id)
        probe.check()
        left = probe.current()
        # Anything of the task still alive (or no way to tell: gVisor keeps its processes in
        # its own kernel) means the container is killed now, as a cold one would stop.
        return int(state["ExitCode"]), applied, not stopped and left is not None and left <= IDLE_PIDS

    from aido.backends.docker.follow import follow

    return follow(backend, container_id, request, on_output, guard, begin, finish, oci_args, exec_id=exec_id)
