"""The driver's link to a cluster for one command (or one program's connection): where
runs go (``Cluster``), what is shipped once (the remote function, a sandbox's inputs, the
trusted keys), and what a cluster run cannot do, refused before a run id exists.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading
import time
from typing import TYPE_CHECKING, Any

from aido.cluster.connect import RESOURCE, connect, token_required
from aido.cluster.spec import DEFAULT_RETURN_LIMIT, MAX_INPUTS, RemoteSpec
from aido.cluster.stream import GeneratorStream, Mailbox, QueueStream
from aido.errors import ClusterUnavailable, UsageError
from aido.values import dataclass

if TYPE_CHECKING:
    from pathlib import Path

    from aido.run.plan import RunPlan
    from aido.store.workspace import SandboxPaths

KEYS_TTL = 5.0  # how long a driver reuses the trusted keys it read


@dataclass(frozen=True)
class Cluster:
    """Where runs go and how: ``retries`` re-runs a run lost with its node (opt-in)."""

    address: str
    retries: int = 0
    return_limit: int = DEFAULT_RETURN_LIMIT


class Dispatcher:
    """A connection to the cluster for one command: a sandbox's inputs are shipped once
    (``ray.put``) however many runs use them."""

    def __init__(self, cluster: Cluster, session: int) -> None:
        self.cluster = cluster
        self.session = session
        self._inputs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._function: Any = None
        self._mailbox: Mailbox | None = None
        self._fits: dict[tuple[float, int], tuple[float, bool]] = {}
        self._keys: tuple[float, dict[str, Any]] | None = None

    def stream(self, options: dict[str, Any], spec: RemoteSpec, inputs: Any, tag: str) -> Any:
        """Start the run on the cluster; its items come through the returned stream."""
        import ray

        from aido.cluster import node as on_node

        with self._lock:
            if self.cluster.address.startswith("ray://"):  # Ray Client: no streaming generators
                self._mailbox = self._mailbox or Mailbox()
                return QueueStream(self._mailbox, options, spec, inputs, tag)
            if self._function is None:
                self._function = ray.remote(on_node.execute)
            return GeneratorStream(self._function, options, spec, inputs)

    def trusted_keys(self) -> dict[str, Any]:
        """The keys a node's seal must be made with, read again every few seconds (a key
        trusted meanwhile counts; a batch does not read them once per run)."""
        from aido.evidence.keys import trusted_keys

        with self._lock:
            if self._keys is None or time.monotonic() - self._keys[0] > KEYS_TTL:
                self._keys = (time.monotonic(), dict(trusted_keys()))
            return self._keys[1]

    def inputs(self, paths: SandboxPaths, sandbox_id: str) -> Any:
        import ray

        with self._lock:
            if sandbox_id not in self._inputs:
                self._inputs[sandbox_id] = ray.put(pack_inputs(paths.inputs))
            return self._inputs[sandbox_id]

    def check(self, plan: RunPlan) -> None:
        """Refuse what a cluster run cannot do (before a run id exists)."""
        check_plan(plan)
        size = (plan.settings.cpus, plan.settings.memory_bytes)
        with self._lock:
            known = self._fits.get(size)
            if known is None or time.monotonic() - known[0] > 5:  # a batch asks once
                known = self._fits[size] = (time.monotonic(), bool(fitting_nodes(*size)))
        if not known[1]:
            raise ClusterUnavailable(
                f"no aido node of the cluster has {plan.settings.cpus:g} CPUs and "
                f"{plan.settings.memory_bytes >> 20} MiB of memory for sandbox {plan.record.id}",
                hint="lower resources.cpu / resources.memory in sandbox.yaml, or add a bigger node",
            )


_dispatchers: dict[Cluster, Dispatcher] = {}
_made = threading.Lock()


def dispatcher_for(cluster: Cluster) -> Dispatcher:
    """The dispatcher of this connection to the cluster: a program calling ``run`` again
    and again ships the remote function and a sandbox's inputs once."""
    if cluster.retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {cluster.retries}")
    session = connect(cluster.address)
    with _made:
        found = _dispatchers.get(cluster)
        if found is None or found.session != session:
            found = _dispatchers[cluster] = Dispatcher(cluster, session)
        return found


def check_plan(plan: RunPlan) -> None:
    settings, widen = plan.settings, plan.widen
    if widen.host_filesystem or widen.mutations:
        raise UsageError(
            "--host-filesystem and --dangerous-allow-mutations are not available with --cluster: "
            "a node has neither your project directory nor the sandbox's own inputs/",
            hint="run without --cluster to use them",
        )
    if settings.filesystem == "readwrite":
        raise UsageError(
            "permissions.filesystem: readwrite is not available with --cluster (a node's changes "
            "to /inputs would not come back)",
            hint="use a sandbox with the default read-only inputs, or run without --cluster",
        )
    if plan.stdin is not None:
        raise UsageError("-i/--interactive is not available with --cluster")
    if settings.egress or widen.allow_hosts:
        raise UsageError(
            "an egress allowlist (permissions.network.allow, --allow-host) is not available with "
            "--cluster: a node has no egress proxy for the run",
            hint="run without --cluster",
        )
    if (settings.network or widen.network) and not token_required():
        raise UsageError(
            "network access is refused on a cluster that does not require a token: the task "
            "could reach the cluster's own ports and run code on every node",
            hint="start the cluster and this driver with RAY_AUTH_MODE=token (README: cluster security)",
        )


def fitting_nodes(cpus: float, memory: int) -> list[str]:
    """Alive aido nodes whose total CPUs and memory can hold one run of this size."""
    import ray

    found = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        res = node.get("Resources") or {}
        big = res.get("CPU", 0) >= cpus and res.get("memory", 0) >= memory
        if node.get("Alive") and res.get(RESOURCE, 0) >= 1 and big:
            found.append(str(node.get("NodeID")))
    return found


def pack_inputs(root: Path) -> bytes:
    """The sandbox's inputs/ as an uncompressed tar: regular files and directories only."""
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                total += st.st_size
                if total > MAX_INPUTS:
                    raise UsageError(
                        f"the sandbox's inputs are larger than {MAX_INPUTS >> 20} MiB: too large to send "
                        "to cluster nodes",
                        hint="put large data where the nodes can read it, or run without --cluster",
                    )
                tar.add(path, arcname=os.path.relpath(path, root), recursive=False)
    return buffer.getvalue()
