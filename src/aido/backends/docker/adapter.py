"""Docker runtime adapter: one fresh, hardened container per task run."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from aido.backends.base import (
    ISOLATION_DEFAULT,
    Backend,
    ExecOutcome,
    ExecRequest,
    Guard,
    OutputSink,
    ProgressSink,
    RuntimeInfo,
)
from aido.backends.docker.engine import AttachStream, Engine, EngineError
from aido.backends.docker.hostconfig import SECCOMP_FLAGS, host_config
from aido.backends.docker.images import pull, unavailable
from aido.errors import ImageUnavailable, RuntimeFailure, RuntimeUnavailable, TaskNotFound, TaskNotRunnable

ENGINE_HINT = (
    "start the Docker engine (`sudo systemctl start docker`, or `sudo dockerd &`) "
    "or point DOCKER_HOST at a running one; `scripts/bootstrap.sh` installs and starts it"
)


# Isolation level -> the OCI runtime the engine must have registered under that name.
OCI_RUNTIMES = {"gvisor": "runsc"}
GVISOR_HINT = (
    "install gVisor (`sudo apt-get install runsc`) and register it in /etc/docker/daemon.json as "
    '{"runtimes": {"runsc": {"path": "/usr/bin/runsc", '
    '"runtimeArgs": ["--network=none", "--oci-seccomp"]}}}, '
    "then reload dockerd (`sudo kill -HUP $(pidof dockerd)`); scripts/bootstrap.sh does all of this"
)


def _label_filter(labels: dict[str, str]) -> str:
    """The engine's list filter for objects carrying all these labels."""
    return json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})


def start_error(message: str) -> Exception:
    """Map an OCI start failure to docker's 126/127 convention."""
    lowered = message.lower()
    if "no such file or directory" in lowered or "executable file not found" in lowered:
        return TaskNotFound(
            f"cannot start the task: {message}", hint="check the runtime's interpreter exists in the image"
        )
    if "permission denied" in lowered:
        return TaskNotRunnable(f"cannot start the task: {message}")
    return RuntimeFailure(f"the engine could not start the container: {message}")


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, host: str | None = None) -> None:
        self._host = host
        self._engine: Engine | None = None
        self._runtimes: list[str] | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            try:
                self._engine = Engine(self._host)
                self._engine.negotiate()
            except EngineError as exc:
                self._engine = None
                raise RuntimeUnavailable(
                    f"Docker engine unreachable: {exc.message}", hint=ENGINE_HINT
                ) from None
        return self._engine

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self.engine.call(method, path, **kwargs)
        except EngineError as exc:
            if exc.status == 0:
                raise RuntimeUnavailable(
                    f"Docker engine unreachable: {exc.message}", hint=ENGINE_HINT
                ) from None
            raise

    # -- Backend -------------------------------------------------------------

    def info(self) -> RuntimeInfo:
        version = self.call("GET", "/version")
        return RuntimeInfo(
            name=self.name,
            engine="docker",
            version=str(version.get("Version", "")),
            api_version=self.engine.api_version,
            details={"os": version.get("Os"), "kernel": version.get("KernelVersion")},
        )

    def diagnose(self) -> dict[str, Any]:
        """What `aido doctor` reports about the engine: runtimes, cgroup support, security."""
        info = self.engine_info()
        registered = info.get("Runtimes") or {}
        runtimes = sorted(registered.keys())
        self._runtimes = runtimes
        return {
            "server_version": info.get("ServerVersion"),
            "oci_runtimes": runtimes,
            "oci_runtime_args": {
                name: [str(a) for a in (spec or {}).get("runtimeArgs") or []]
                for name, spec in registered.items()
            },
            "default_oci_runtime": info.get("DefaultRuntime"),
            "isolation_levels": self.isolation_levels(),
            "runc_version": (info.get("RuncCommit") or {}).get("ID"),
            "cgroup_driver": info.get("CgroupDriver"),
            "cgroup_version": info.get("CgroupVersion"),
            "memory_limit": bool(info.get("MemoryLimit")),
            "swap_limit": bool(info.get("SwapLimit")),
            "pids_limit": bool(info.get("PidsLimit")),
            "cpu_limit": bool(info.get("CpuCfsQuota")),
            "security_options": info.get("SecurityOptions") or [],
            "warnings": info.get("Warnings") or [],
            "rootless": any("rootless" in str(o) for o in info.get("SecurityOptions") or []),
        }

    def engine_info(self) -> dict[str, Any]:
        """The engine's `docker info`: OCI runtimes, cgroup support, security options."""
        return dict(self.call("GET", "/info") or {})

    def isolation_levels(self) -> list[str]:
        if self._runtimes is None:
            self._runtimes = sorted((self.engine_info().get("Runtimes") or {}).keys())
        return [ISOLATION_DEFAULT] + [level for level, oci in OCI_RUNTIMES.items() if oci in self._runtimes]

    def check_isolation(self, isolation: str) -> None:
        self._oci_runtime(isolation)

    def _oci_runtime(self, isolation: str) -> str | None:
        if isolation == ISOLATION_DEFAULT:
            return None
        oci = OCI_RUNTIMES.get(isolation)
        if oci is None:
            raise RuntimeUnavailable(
                f"isolation {isolation!r} is not supported by the docker runtime",
                hint=f"use one of: {', '.join([ISOLATION_DEFAULT, *OCI_RUNTIMES])}",
            )
        if isolation not in self.isolation_levels():
            raise RuntimeUnavailable(
                f"isolation {isolation!r} needs the {oci!r} runtime, which this Docker engine does not have",
                hint=GVISOR_HINT if isolation == "gvisor" else None,
            )
        return oci

    def image_id(self, image: str) -> str | None:
        found = self.image_inspect(image)
        return None if found is None else str(found["Id"])

    def image_inspect(self, image: str) -> dict[str, Any] | None:
        """``docker image inspect``: the image's id, labels and the rest; None if absent."""
        try:
            found = self.call("GET", f"/images/{quote(image, safe='/:@')}/json")
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise RuntimeFailure(f"cannot inspect image {image}: {exc.message}") from None
        return dict(found or {})

    def ensure_image(self, image: str, progress: ProgressSink | None = None) -> str:
        existing = self.image_id(image)
        if existing:
            return existing
        pull(self.engine, image, progress)
        pulled = self.image_id(image)
        if not pulled:
            raise unavailable(image, "the pull finished but the image is missing")
        return pulled

    def create(self, request: ExecRequest, attach: str | None = None) -> tuple[str, list[str] | None]:
        """Create the container; returns its id and, for a runtime that needs a flag to apply the
        seccomp profile, the arguments that runtime is registered with (read now: they are the
        ones the container starts with, even if the engine is reloaded during the run).
        ``attach``: the run's internal egress network (egress.py), its only network."""
        hc = host_config(request, attach)
        oci = self._oci_runtime(request.isolation)
        oci_args = self.oci_args(oci) if oci in SECCOMP_FLAGS else None
        if oci:
            hc["Runtime"] = oci
        body = {
            "Image": request.image,
            "Cmd": request.argv,
            "Entrypoint": [],  # the image's entrypoint must not wrap the task
            "Env": [f"{k}={v}" for k, v in request.env.items()],
            "User": request.user,
            "WorkingDir": request.workdir,
            "Labels": request.labels,
            # stdin is open only for `aido run -i`; StdinOnce closes it at the host's EOF.
            "AttachStdin": request.stdin is not None,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "OpenStdin": request.stdin is not None,
            "StdinOnce": request.stdin is not None,
            "NetworkDisabled": not (request.network or attach),
            "HostConfig": hc,
        }
        try:
            created = self.call("POST", "/containers/create", query={"name": request.name}, body=body)
        except EngineError as exc:
            if exc.status == 404:
                raise ImageUnavailable(f"image {request.image} is not available: {exc.message}") from None
            raise RuntimeFailure(f"the engine refused the container: {exc.message}") from None
        return str(created["Id"]), oci_args

    def oci_args(self, oci: str) -> list[str] | None:
        """The arguments the engine passes to the OCI runtime ``oci``; None if they cannot be read."""
        try:
            runtimes = self.engine_info().get("Runtimes") or {}
        except (EngineError, RuntimeUnavailable):
            return None
        args = (runtimes.get(oci) or {}).get("runtimeArgs") or []
        return [str(a) for a in args]

    def kill(self, container_id: str, engine: Engine | None = None) -> None:
        # Runs on the monitor thread: its own connection, since http.client is not thread-safe.
        try:
            (engine or self.engine.clone(timeout=10)).call(
                "POST", f"/containers/{container_id}/kill", query={"signal": "KILL"}, ok=(204, 404, 409)
            )
        except EngineError:
            pass

    def remove(self, container_id: str) -> bool:
        """Force-remove a container; False if it may still exist (the engine is gone or
        failed). 409 means the engine is already removing it. Never raises: callers mark
        the workspace so that the next sweep finds it again by its labels."""
        try:
            self.call("DELETE", f"/containers/{container_id}", query={"force": 1, "v": 1}, ok=(204, 404, 409))
        except (EngineError, RuntimeUnavailable):
            return False
        return True

    def run(self, request: ExecRequest, on_output: OutputSink, guard: Guard | None = None) -> ExecOutcome:
        if request.egress:
            from aido.backends.docker import egress

            return egress.run(self, request, on_output, guard)
        return self.run_cold(request, on_output, guard)

    def run_cold(
        self,
        request: ExecRequest,
        on_output: OutputSink,
        guard: Guard | None = None,
        attach: str | None = None,
    ) -> ExecOutcome:
        """A fresh container for the task; ``attach``: its egress network (egress.py)."""
        container_id, oci_args = self.create(request, attach)

        def begin() -> AttachStream:
            try:
                stream = self.engine.attach(container_id, stdin=request.stdin is not None)
                self.call("POST", f"/containers/{container_id}/start")
            except EngineError as exc:
                raise start_error(exc.message) from None
            return stream

        def finish(stopped: list[str]) -> tuple[int, dict[str, Any], bool]:
            result = self.call(
                "POST", f"/containers/{container_id}/wait", timeout=max(request.timeout_seconds, 60) + 60
            )
            exit_code = int(result.get("StatusCode", -1))
            inspect = self.call("GET", f"/containers/{container_id}/json") or {}
            for _ in range(10):
                # The engine sets OOMKilled from a kernel event that can arrive just after
                # the exit; a SIGKILLed task (137) that nobody else killed deserves a recheck.
                if exit_code != 137 or stopped or (inspect.get("State") or {}).get("OOMKilled"):
                    break
                time.sleep(0.05)
                inspect = self.call("GET", f"/containers/{container_id}/json") or {}
            return exit_code, inspect, False

        from aido.backends.docker.follow import follow

        return follow(self, container_id, request, on_output, guard, begin, finish, oci_args)

    # -- warm start (warm.py) ---------------------------------------------------------------

    def discard(self, container_id: str) -> bool:
        return self.remove(container_id)

    def warm_key(self, request: ExecRequest) -> str | None:
        from aido.backends.docker import warm

        if OCI_RUNTIMES.get(request.isolation) in SECCOMP_FLAGS:
            # runsc applies the container's seccomp profile to its first process only, never
            # to an exec: a task in a waiting gVisor container would run without it.
            return None
        return warm.key(request)

    def start_idle(self, request: ExecRequest) -> str:
        from aido.backends.docker import warm

        return warm.start_idle(self, request)

    def run_warm(
        self, container_id: str, request: ExecRequest, on_output: OutputSink, guard: Guard | None = None
    ) -> ExecOutcome:
        from aido.backends.docker import warm

        return warm.run_warm(self, container_id, request, on_output, guard)

    def _labelled(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        found = self.call("GET", "/containers/json", query={"all": 1, "filters": _label_filter(labels)})
        return list(found or [])

    def list_labelled(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {
                "id": c["Id"],
                "name": (c.get("Names") or [""])[0].lstrip("/"),
                "state": c.get("State"),
                "status": c.get("Status"),
                "labels": c.get("Labels") or {},
            }
            for c in self._labelled(labels)
        ]

    def list_networks(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {"id": str(n["Id"]), "name": str(n.get("Name") or ""), "labels": n.get("Labels") or {}}
            for n in self.call("GET", "/networks", query={"filters": _label_filter(labels)}) or []
        ]

    def remove_networks(self, labels: dict[str, str]) -> list[str]:
        """Remove the networks carrying these labels (a run's egress network); raises
        RuntimeUnavailable if one could not be removed, so a sweep tries again."""
        from aido.backends.docker.egress import remove_network

        removed, left = [], 0
        for network in self.list_networks(labels):
            if remove_network(self, network["id"]):
                removed.append(network["id"])
            else:
                left += 1
        if left:
            raise RuntimeUnavailable(f"{left} network(s) could not be removed", hint=ENGINE_HINT)
        return removed

    def remove_labelled(self, labels: dict[str, str]) -> list[str]:
        removed, left = [], 0
        for container in self._labelled(labels):
            if self.remove(container["Id"]):
                removed.append(str(container["Id"]))
            else:
                left += 1
        if left:
            raise RuntimeUnavailable(
                f"{left} container(s) could not be removed: the engine failed or went away",
                hint=ENGINE_HINT,
            )
        return removed
