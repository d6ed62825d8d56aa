"""What the engine does not say in a container's final state: whether the pids limit
refused the task a fork, and why a task that aido did not stop died (OOM, or a kill
from outside aido)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from aido.backends.docker.engine import Engine, EngineError

SIGKILL_EVENT_WAITS = (0.1, 0.2, 0.4)  # seconds between looks at the engine's events; 0.7 s at most

# Where a local engine keeps a container's pids cgroup (v1 and v2, cgroupfs and systemd
# drivers). Its pids.events counts the forks the limit refused; read while the task runs,
# because the cgroup goes with the container.
PIDS_EVENTS = (
    "/sys/fs/cgroup/pids/docker/{id}/pids.events",
    "/sys/fs/cgroup/pids/system.slice/docker-{id}.scope/pids.events",
    "/sys/fs/cgroup/docker/{id}/pids.events",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/pids.events",
)


class PidsProbe:
    """Whether the task ran into its pids limit: None while the cgroup cannot be found
    (a remote engine, say), then whether its pids.events ever counted a refused fork."""

    def __init__(self, container_id: str) -> None:
        self._container_id = container_id
        self._path: Path | None = None
        self._looked = False
        self.hit: bool | None = None

    def check(self) -> None:
        if self.hit:
            return
        if not self._looked:
            # The container is running by the first check: a cgroup not found then never
            # appears later (a remote engine), so it is looked for once.
            self._looked = True
            candidates = (Path(t.format(id=self._container_id)) for t in PIDS_EVENTS)
            self._path = next((c for c in candidates if c.exists()), None)
        if self._path is None:
            return
        try:
            text = self._path.read_text()
        except OSError:
            return  # gone with the container: keep what was seen
        counts = dict(line.split(None, 1) for line in text.splitlines() if " " in line)
        self.hit = counts.get("max", "0").strip() not in ("", "0")

    def current(self) -> int | None:
        """How many processes and threads the container's cgroup holds now (None: unknown)."""
        if self._path is None:
            return None
        try:
            return int(self._path.with_name("pids.current").read_text())
        except (OSError, ValueError):
            return None


def why_it_died(engine: Engine, container_id: str, since: float, exit_code: int) -> tuple[bool, str | None]:
    """(out of memory, engine-side error) for a container that failed and that aido did
    not stop, from the engine's events. An OOM kill may not show in the state: under
    gVisor the kernel kills the sandbox's own process and the container exits 2 without
    OOMKilled, but the engine still emits an `oom` event. The engine also records a
    kill/stop for `docker stop`, `docker kill` and its own shutdown (which SIGTERMs every
    container), never for a task that signals itself."""
    filters = json.dumps({"container": [container_id], "event": ["oom", "kill", "stop"]})
    # A SIGKILL nobody owns up to is most likely the kernel's OOM killer, whose `oom` event
    # can reach the engine's log a moment after the exit does on a busy machine: look again
    # for a short while before calling it a plain failure (only on this path, never on success).
    for wait in (0.0, *(SIGKILL_EVENT_WAITS if exit_code == 137 else ())):
        time.sleep(wait)
        query = {"since": f"{since:.6f}", "until": f"{time.time():.6f}", "filters": filters}
        try:
            events = [e for e in engine.stream_json("GET", "/events", query=query) if isinstance(e, dict)]
        except EngineError as exc:
            return False, f"lost the Docker engine while the task ran: {exc.message}"
        if events:
            break
    actions = [e.get("Action") for e in events]
    if "oom" in actions:
        return True, None
    if exit_code > 128:
        for event in events:
            if event.get("Action") in ("kill", "stop"):
                signal = (event.get("Actor") or {}).get("Attributes", {}).get("signal", "")
                return False, (
                    "the container was stopped from outside aido"
                    + (f" (signal {signal})" if signal else "")
                    + ": `docker stop`/`docker kill`, or the engine shutting down"
                )
    return False, None
