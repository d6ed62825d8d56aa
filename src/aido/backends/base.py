"""The contract every runtime adapter fulfils (tests/backends/contract.py checks it).

The run pipeline (aido.run.prepare) builds an ExecRequest; the adapter runs it in a fresh,
isolated container and returns an ExecOutcome; the evidence layer reads only
that outcome. Adapters never decide policy: the request states every limit and
the adapter applies it or refuses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from aido.values import dataclass, field

OutputSink = Callable[[int, bytes], None]  # (1 stdout | 2 stderr, bytes)
ProgressSink = Callable[[str], None]
# Polled by the adapter while the task runs (a few times a second). Returning a reason
# (a StopReason: DISK_LIMIT, EXPIRED, DESTROYED, CANCELLED) kills the task; the reason is
# reported back as ExecOutcome.stop_reason. This keeps policy in aido.run and the
# enforcement (killing the container) in the adapter.
Guard = Callable[[], str | None]


class StopReason(StrEnum):
    """Why aido stopped a task (ExecOutcome.stop_reason), or closed a run whose aido
    process died. run/verdict.py maps each to a status, message and exit code: a new
    reason is one member here and one entry there."""

    TIMEOUT = "timeout"  # the backend, at the run's timeout
    INTERRUPTED = "interrupted"  # the backend, on Ctrl-C
    CANCELLED = "cancelled"  # the guard: the caller set the run's cancel event (a batch, on Ctrl-C)
    DESTROYED = "destroyed"  # the guard: the sandbox is being destroyed
    EXPIRED = "expired"  # the guard: the sandbox's ttl ran out
    DISK_LIMIT = "disk_limit"  # the guard: the trees reached the disk or file-count limit
    AIDO_LOST = "aido_lost"  # a sweep: the aido process that ran the task died
    NODE_LOST = "node_lost"  # a cluster driver: the Ray node (or its worker) running the task died


# The names the backends use (typed str: a guard's reason passes through them as is).
TIMEOUT: str = StopReason.TIMEOUT
INTERRUPTED: str = StopReason.INTERRUPTED
ISOLATION_DEFAULT = "default"


@dataclass(frozen=True)
class Mount:
    source: str  # absolute host path
    target: str  # absolute container path
    read_only: bool = True


@dataclass(frozen=True)
class Limits:
    cpus: float
    memory_bytes: int
    pids: int = 256
    nofile: int = 1024
    tmpfs_bytes: int = 64 << 20
    fsize_bytes: int | None = None  # largest file the task may write (RLIMIT_FSIZE)


@dataclass(frozen=True)
class ExecRequest:
    image: str
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    limits: Limits
    timeout_seconds: float
    labels: dict[str, str]
    name: str
    user: str  # "uid:gid", never root
    workdir: str = "/work"
    network: bool = False
    isolation: str = ISOLATION_DEFAULT  # or e.g. "gvisor"; see Backend.isolation_levels
    # Paths inside the container that get an empty read-only tmpfs over them (e.g. the
    # workspace's .aido/ inside a --host-filesystem mount, so evidence is not readable).
    masked_paths: list[str] = field(default_factory=list)
    # A host file descriptor whose bytes become the task's stdin (`aido run -i`); None: the
    # task's stdin is closed, it reads end-of-file at once.
    stdin: int | None = None
    # The image's id as the run planned it (recorded in its evidence): a pre-started
    # container of an older build of the same tag must not take the run. Empty: unchecked.
    image_id: str = ""
    # An egress allowlist (aido.egress.allowlist's canonical entries: "pypi.org",
    # "*.pythonhosted.org", "api.example.com:443"): the task reaches the network only through
    # an egress proxy that lets exactly these through. Empty: no proxy. Never with ``network``.
    egress: tuple[str, ...] = ()


@dataclass
class ExecOutcome:
    exit_code: int | None  # None when the task never produced one (killed by aido)
    started_at: str
    finished_at: str
    duration_ms: int
    timed_out: bool = False
    oom_killed: bool = False
    interrupted: bool = False
    container_id: str = ""
    image_id: str = ""
    error: str | None = None  # set when the engine failed: never a success
    stop_reason: str | None = None  # why aido killed the task: TIMEOUT, INTERRUPTED or a guard's reason
    container_left: bool = False  # the engine could not remove the container: a sweep must
    # Whether the pids limit refused the task a process or thread; None if it cannot tell.
    pids_limit_hit: bool | None = None
    # The isolation settings read back from the engine after the run, not what we asked for.
    applied: dict[str, Any] = field(default_factory=dict)
    # The egress proxy's own record of the run (ExecRequest.egress); None without one.
    egress: EgressRecord | None = None


@dataclass(frozen=True)
class EgressRecord:
    """What the egress proxy of one run was given and what it logged, as the backend read it
    from the proxy (never from the task): evidence/network.py turns it into the run's network
    log and summary counts."""

    config: str  # the proxy's configuration exactly as the proxy read it (squid.conf)
    log: str  # the proxy's access log, one request per line (aido.egress.squid.LOGFORMAT)
    # The proxy's facts: image, image_id, network, subnet, proxy (address:port), and problems
    # met: "log_truncated" (bytes dropped past the cap), "error" (the proxy failed or died).
    facts: dict[str, Any] = field(default_factory=dict)


class WarmUnusable(Exception):
    """A pre-started container cannot take the run (it stopped, was OOM-killed while idle,
    or no longer matches the sandbox's settings); nothing of the task ran in it. The run
    starts cold instead and records ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    engine: str
    version: str
    api_version: str
    details: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """One isolation backend. Implementations are registered by name in registry.py."""

    name: str = ""

    @abstractmethod
    def info(self) -> RuntimeInfo:
        """Check the backend answers; raise RuntimeUnavailable (with the fix) if not."""

    @abstractmethod
    def ensure_image(self, image: str, progress: ProgressSink | None = None) -> str:
        """Make the image available (pull if needed) and return its id; ImageUnavailable if impossible."""

    def diagnose(self) -> dict[str, Any]:
        """Facts for `aido doctor` (limits enforceable, runtimes present); may be empty."""
        return {}

    def isolation_levels(self) -> list[str]:
        """The isolation levels this backend can run now ("default" always)."""
        return [ISOLATION_DEFAULT]

    def check_isolation(self, isolation: str) -> None:
        """Raise RuntimeUnavailable, with the fix, unless this backend can run ``isolation``
        now; the run plan asks before a run id exists, so a refusal leaves no trace."""
        if isolation not in self.isolation_levels():
            from aido.errors import RuntimeUnavailable

            raise RuntimeUnavailable(
                f"isolation {isolation!r} is not available with the {self.name} runtime",
                hint=f"use one of: {', '.join(self.isolation_levels())}",
            )

    @abstractmethod
    def run(self, request: ExecRequest, on_output: OutputSink, guard: Guard | None = None) -> ExecOutcome:
        """Run to completion in a fresh container, streaming output; always remove the container.

        Ctrl-C (KeyboardInterrupt) while the task runs stops the container and returns an
        outcome with ``interrupted=True`` instead of raising, so the caller can still
        write the evidence captured so far. ``guard`` is polled while the task runs; a
        reason it returns kills the task and becomes ``stop_reason``.
        """

    # -- warm start: a container created and started in advance, used by one run ----------

    def warm_key(self, request: ExecRequest) -> str | None:
        """What a pre-started container for ``request`` must have been created with (image,
        limits, isolation, mounts, security), as one string; None: no warm start here."""
        return None

    def start_idle(self, request: ExecRequest) -> str:
        """Create and start a container exactly as a cold run of ``request`` would, except
        that it waits, idle, for a task; return its id."""
        raise NotImplementedError(f"the {self.name} runtime has no warm start")

    def run_warm(
        self, container_id: str, request: ExecRequest, on_output: OutputSink, guard: Guard | None = None
    ) -> ExecOutcome:
        """Run ``request``'s task in the pre-started container, as ``run`` would in a fresh
        one; WarmUnusable (before the task starts) if the container cannot take it."""
        raise WarmUnusable(f"the {self.name} runtime has no warm start")

    def discard(self, container_id: str) -> bool:
        """Stop and remove one container; False if it may remain (a sweep finds it again)."""
        return False

    def remove_networks(self, labels: dict[str, str]) -> list[str]:
        """Remove every network carrying all these labels (a run's egress network); return
        their ids. Raise RuntimeUnavailable if any may remain. A backend without per-run
        networks has none to remove."""
        return []

    def list_networks(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Networks carrying all these labels: each with id, name and labels."""
        return []

    @abstractmethod
    def remove_labelled(self, labels: dict[str, str]) -> list[str]:
        """Stop and remove every container carrying all these labels; return their ids.
        Raise RuntimeUnavailable if the engine is unreachable or any of them may remain."""

    @abstractmethod
    def list_labelled(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Containers (running or not) that carry all these labels."""
