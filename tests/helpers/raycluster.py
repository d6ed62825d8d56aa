"""A real Ray cluster on this machine, for tests: a head and worker nodes started with ``ray start``.

Every node is a separate ``ray start`` (raylet, agents, workers), all on 127.0.0.1, with ports of
its own, so a test sees what a multi-machine cluster does: placement by resources, a node that dies,
per-node environment (each node can seal with its own signing key).

Why it is built this way (facts measured on this machine, see shared/research/ray-notes.md):

- ``ray stop`` kills every Ray process on the machine, other test sessions' clusters included, so it
  is never used: ``stop()`` signals exactly the processes whose command line holds this cluster's
  private ``--temp-dir`` (plus their descendants and the Ray Client server), read from ``/proc``.
- Every Ray port binds 0.0.0.0 even with ``--node-ip-address=127.0.0.1``, and two sessions may run
  at once, so each cluster takes a slot of ports, locked with ``flock`` for its lifetime (the lock
  dies with the process that held it) and checked free by binding every port before use.
- Nothing here imports ``ray``: the test process will itself ``ray.init`` as the driver, so node
  queries run in a subprocess.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

GIB = 1 << 30
# Ray's default object store would take 30% of the host's memory per node; 200 MiB is plenty for tests.
OBJECT_STORE_BYTES = 209_715_200
HEAD = "head"
# For the head's ``head_env``: the GCS declares a silent node dead after about 2 s instead of 14 s
# (health checks every 3 s, 5 misses allowed, by default). A driver learns of a lost task in ~2 s
# either way; this only speeds up what ``ray.nodes()`` says.
FAST_NODE_DEATH = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}

# Ports: the whole space is cut into slots of SLOT_SIZE ports, one cluster per slot. Ray Client
# starts one server per connection on a port in 23000-24000 (hard-coded), and the kernel hands out
# ephemeral ports from ip_local_port_range, so slots touching either are never used.
PORT_LOW, PORT_HIGH = 20000, 40000
RAY_CLIENT_RANGE = (23000, 24001)
SLOT_SIZE = 500
HEAD_PORTS = 10  # gcs, client server, dashboard, then per-node blocks
NODE_PORTS = 50  # 10 fixed ports + 40 worker ports: a burst of tasks needs one port per worker
WORKER_PORTS_OFFSET = 10
MAX_NODES = (SLOT_SIZE - HEAD_PORTS) // NODE_PORTS
LOCK_DIR = Path(tempfile.gettempdir(), ".aido-ray-ports")  # one lock file per slot, shared by all users

REPO = Path(__file__).resolve().parents[2]

# Run in a subprocess with the cluster's environment (auth included). argv: address, a JSON condition
# {"alive": {port: {resource: amount}}, "dead": [port]} on nodes named by their node manager port
# (known to us, and still reported for a dead node), a timeout. Polls ``ray.nodes()`` until the
# condition holds (exit 0) or the timeout passes (exit 3); prints the last table as one JSON line.
_QUERY = r"""
import json, sys, time
import ray
address, cond, timeout = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
ray.init(address=address, logging_level="ERROR", log_to_driver=False, namespace="raycluster-probe")
deadline = time.monotonic() + timeout

def table():
    return [{"port": n["NodeManagerPort"], "node_id": n["NodeID"], "alive": n["Alive"],
             "resources": n["Resources"]} for n in ray.nodes()]

def holds(rows):
    alive = {r["port"]: r for r in rows if r["alive"]}
    for port, res in cond.get("alive", {}).items():
        row = alive.get(int(port))
        if row is None or any(row["resources"].get(k, 0) < v for k, v in res.items()):
            return False
    return not any(port in alive for port in cond.get("dead", []))

rows = table()
while not holds(rows):
    if time.monotonic() > deadline:
        print(json.dumps(rows))
        sys.exit(3)
    time.sleep(0.2)
    rows = table()
print(json.dumps(rows))
"""


@dataclass(frozen=True)
class NodeSpec:
    """One worker node: its name (also the custom resource ``node:<name>`` = 1, to pin tasks), its
    CPUs, custom resources (e.g. ``{"aido": 2}``), memory for Ray's scheduler (Ray would otherwise
    report the whole host's memory on every node) and extra environment for its ``ray start`` (the
    raylet passes it to every worker on the node, e.g. ``AIDO_SIGNING_KEY`` or ``XDG_CONFIG_HOME``)."""

    name: str
    num_cpus: int = 2
    resources: Mapping[str, float] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    memory: int = 4 * GIB


@dataclass(frozen=True)
class Node:
    """A node as started: its spec and port block."""

    spec: NodeSpec
    first_port: int

    @property
    def node_manager_port(self) -> int:
        return self.first_port

    def port_args(self) -> list[str]:
        p = self.first_port
        return [
            f"--node-manager-port={p}",
            f"--object-manager-port={p + 1}",
            f"--metrics-export-port={p + 2}",
            f"--dashboard-agent-listen-port={p + 3}",
            f"--dashboard-agent-grpc-port={p + 4}",
            f"--runtime-env-agent-port={p + 5}",
            f"--min-worker-port={p + WORKER_PORTS_OFFSET}",
            f"--max-worker-port={p + NODE_PORTS - 1}",
        ]


class RayClusterError(RuntimeError):
    """The cluster did not start or answer; the message carries the tail of the relevant log."""


class RayCluster:
    """A head (1 CPU, no custom resources, so it never takes an ``aido`` task) and ``workers``.

    ``token``: start every node with ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (Ray >= 2.52); a
    driver then needs ``driver_env`` in its environment. Without it the nodes run with
    ``RAY_AUTH_MODE=disabled`` explicitly: Ray 2.60's ``ray start`` turns token auth on by itself
    when a ``~/.ray/auth_token`` exists, and a test must not depend on a developer's home.

    Use as a context manager, or ``start()`` / ``stop()``; ``stop()`` is idempotent and also runs at
    interpreter exit.
    """

    def __init__(
        self,
        workers: Sequence[NodeSpec],
        *,
        token: str | None = None,
        head_env: Mapping[str, str] | None = None,
        start_timeout: float = 90.0,
        start_attempts: int = 2,
    ) -> None:
        names = [w.name for w in workers]
        if len(set(names)) != len(names) or HEAD in names:
            raise ValueError(f"worker names must be distinct and not {HEAD!r}: {names}")
        # A name is a path component of the node's temp dir, whose unix sockets must stay under
        # ~107 bytes, and part of the resource name node:<name>.
        if not all(re.fullmatch(r"[A-Za-z][\w-]{0,15}", n) for n in names):
            raise ValueError(f"worker names are a letter then up to 15 letters, digits, _ or -: {names}")
        if len(workers) + 1 > MAX_NODES:
            raise ValueError(f"at most {MAX_NODES - 1} workers fit in a port slot")
        self.workers = list(workers)
        self.token = token
        self.head_env = dict(head_env or {})
        self.start_timeout = start_timeout
        self.start_attempts = start_attempts
        self.temp_dir: str | None = None
        self.base_port: int | None = None
        self.nodes: dict[str, Node] = {}
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._lock_fd: int | None = None
        self._stopped = False
        self._killed: set[str] = set()
        self._ids: dict[str, str] = {}
        self._orphan_roots: set[tuple[int, int]] = set()  # (pid, start time), see stop_orphaned_clusters
        # Measurements, for the report and for tests that want to know: seconds per start step, and
        # the processes that needed SIGKILL at stop.
        self.timings: dict[str, float] = {}
        self.sigkilled: list[str] = []
        self.start_failures: list[str] = []

    # -- the cluster's identity -------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The GCS address a driver on this machine passes to ``ray.init(address=...)``."""
        if self.base_port is None:
            raise RuntimeError("cluster not started")
        return f"127.0.0.1:{self.base_port}"

    @property
    def client_address(self) -> str:
        """The Ray Client address (``ray://``) of the head."""
        if self.base_port is None:
            raise RuntimeError("cluster not started")
        return f"ray://127.0.0.1:{self.base_port + 1}"

    @property
    def driver_env(self) -> dict[str, str]:
        """What a driver's environment needs to talk to this cluster (the auth settings)."""
        if self.token is None:
            return {"RAY_AUTH_MODE": "disabled"}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def as_driver(self) -> contextlib.AbstractContextManager[None]:
        """Within it, this process's environment carries ``driver_env``, seen by ``ray`` even if it
        was imported before (see ``driver_environment``)."""
        return driver_environment(self.driver_env)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every ``ray start`` and query subprocess: this process's, plus auth,
        plus ``extra``, with the aido under test and the repository importable on every node."""
        env = dict(os.environ)
        for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(key, None)  # an inherited address or token would silently point elsewhere
        env.update(self.driver_env)
        # Tasks are pickled by reference: workers must import the same aido (src/) and, for task
        # functions defined in tests, the repository root.
        paths = [str(REPO / "src"), str(REPO)]
        paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(extra or {})
        return env

    # -- start --------------------------------------------------------------------------------------

    def start(self) -> RayCluster:
        """Start the head, then the workers one by one, and wait until every worker is alive with
        its resources. On any failure everything started is stopped before the error is raised."""
        if self.temp_dir is not None:
            raise RuntimeError("a RayCluster starts once")
        t0 = time.monotonic()
        # Short on purpose: Ray's unix sockets live under it and a socket path is limited to ~107 bytes.
        stop_orphaned_clusters()
        self.temp_dir = tempfile.mkdtemp(prefix="aray-", dir="/tmp")
        atexit.register(self.stop)
        try:
            self.base_port = self._claim_ports(1 + len(self.workers))
            # Who owns this cluster, so that a later session can stop it if this process dies
            # without stopping it (SIGKILL, a CI timeout).
            self._write_owner()
            self.nodes[HEAD] = Node(NodeSpec(HEAD, num_cpus=1, memory=2 * GIB), self.base_port + HEAD_PORTS)
            for i, spec in enumerate(self.workers, start=1):
                self.nodes[spec.name] = Node(spec, self.base_port + HEAD_PORTS + i * NODE_PORTS)
            self._start_node(HEAD, self._head_argv(), self.head_env)
            # One at a time: on 2 busy cores, nodes started together failed more often (see
            # _start_node), and were not faster.
            for w in self.workers:
                self._start_node(w.name, self._worker_argv(self.nodes[w.name]), w.env)
            t1 = time.monotonic()
            self.wait_ready()
            self.timings["wait_ready"] = time.monotonic() - t1
            self._write_owner()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _write_owner(self) -> None:
        """Record who owns the cluster, so that a later session can stop it if this process dies
        without stopping it (SIGKILL, a CI timeout): this process, and the pids of the processes
        found by GCS port rather than temp dir (the Ray Client server; it outlives the cluster), as
        the port may belong to another cluster by then."""
        assert self.temp_dir is not None
        me = _stat(os.getpid())
        owner = {
            "pid": os.getpid(),
            "start": me[2] if me else 0,
            "by_port": [
                [p.pid, p.start]
                for p in _scan()
                if self._is_member(p.cmdline) and not self._is_member(p.cmdline, by_port=False)
            ],
        }
        Path(self.temp_dir, OWNER_FILE).write_text(json.dumps(owner))

    def _common_args(self, node: Node) -> list[str]:
        spec = node.spec
        resources = {**spec.resources, f"node:{spec.name}": 1}
        return [
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            # A temp dir per node, as on separate machines: nodes sharing one session dir raced for
            # socket names (two raylets started together took the same plasma socket and one died
            # with "bind: Address already in use"), and a node's processes are found by it.
            f"--temp-dir={self.node_dir(spec.name)}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--memory={spec.memory}",
            f"--num-cpus={spec.num_cpus}",
            f"--resources={json.dumps(resources)}",
            *node.port_args(),
        ]

    def _head_argv(self) -> list[str]:
        assert self.base_port is not None
        return [
            "start",
            "--head",
            f"--port={self.base_port}",
            f"--ray-client-server-port={self.base_port + 1}",
            "--include-dashboard=false",
            f"--dashboard-port={self.base_port + 2}",
            *self._common_args(self.nodes[HEAD]),
        ]

    def _worker_argv(self, node: Node) -> list[str]:
        # No log monitor on workers: it survives its raylet's death, and each one repeats task
        # output at the driver.
        return ["start", f"--address={self.address}", "--include-log-monitor=false", *self._common_args(node)]

    def node_dir(self, name: str) -> str:
        """The node's ``--temp-dir`` (its session dir and logs are under it)."""
        return f"{self.temp_dir}/{name}"

    def _start_node(self, name: str, argv: list[str], extra: Mapping[str, str]) -> None:
        """``ray start`` one node, retried once after a failure.

        On a loaded machine (load 27 on 2 cores, other sessions' tests) ``ray start`` failed: the
        raylet waits a hard-coded 15 s for its Python agents to write their port files, then aborts
        (ray-project/ray#65983). A retry after the machine has moved on usually succeeds; the failed
        attempt's processes are killed and its dir removed first, its error kept in
        ``start_failures``.
        """
        for attempt in range(1, self.start_attempts + 1):
            error = self._ray_start(name, argv, extra)
            if error is None:
                return
            self.start_failures.append(error)
            if attempt == self.start_attempts:
                raise RayClusterError(error)
            self._kill(self._members(name), name)
            shutil.rmtree(self.node_dir(name), ignore_errors=True)

    def _ray_start(self, name: str, argv: list[str], extra: Mapping[str, str]) -> str | None:
        """Run ``ray start`` (it returns once its node has registered with the GCS); the error, if
        it failed."""
        assert self.temp_dir is not None
        log = Path(self.temp_dir, f"start-{name}.log")
        t0 = time.monotonic()
        with log.open("wb") as out:
            try:
                code: int | None = subprocess.run(
                    # This interpreter's Ray, whatever PATH says: the nodes must run what the tests import.
                    [sys.executable, "-m", "ray.scripts.scripts", *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env(extra),
                    timeout=self.start_timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                code = None
        self.timings[f"ray start {name}"] = time.monotonic() - t0
        if code == 0:
            return None
        # The cause is often only in a daemon's own log (a raylet that died waiting for its agents).
        errs = sorted(Path(self.node_dir(name)).glob("session_2*/logs/*.err"))
        daemons = "".join(f"\n--- {e.name}:\n{_errors(e)}" for e in errs if e.stat().st_size)
        return f"ray start ({name}) -> {code} after {time.monotonic() - t0:.0f} s:\n{_tail(log)}{daemons}"

    def _claim_ports(self, node_count: int) -> int:
        """Lock a free slot of ports (see module docstring) and return its first port."""
        size = HEAD_PORTS + node_count * NODE_PORTS
        eph_low, eph_high = _ephemeral_range()
        slots = [
            base
            for base in range(PORT_LOW, PORT_HIGH, SLOT_SIZE)
            if not _overlaps(base, base + SLOT_SIZE, *RAY_CLIENT_RANGE)
            and not _overlaps(base, base + SLOT_SIZE, eph_low, eph_high + 1)
        ]
        random.shuffle(slots)  # two sessions starting together rarely try the same slot first
        LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
        for base in slots:
            fd = os.open(LOCK_DIR / f"{base}.lock", os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if all(port_free(p) for p in range(base, base + size)):
                self._lock_fd = fd
                return base
            os.close(fd)
        raise RayClusterError(f"no free slot of {size} ports in {PORT_LOW}-{PORT_HIGH}")

    # -- queries (in a subprocess: the test process stays free to be the driver) ------------------

    def _query(self, cond: Mapping[str, Any], timeout: float) -> list[dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-c", _QUERY, self.address, json.dumps(cond), str(timeout)],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout + 90,  # connecting alone took 2-3 s on a loaded machine; ray's own limit is 60 s
            check=False,
        )
        try:
            rows: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RayClusterError(f"node query failed ({done.returncode}):\n{done.stderr[-3000:]}") from None
        if done.returncode == 3:
            raise RayClusterError(f"after {timeout:.0f} s the nodes are not {dict(cond)}: {rows}")
        return rows

    def nodes_table(self) -> list[dict[str, Any]]:
        """``ray.nodes()`` of the cluster, one row per node ever registered (dead ones included):
        ``{"name", "node_id", "alive", "resources", "port"}``."""
        return self._named(self._query({}, 0))

    def _named(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = {n.node_manager_port: name for name, n in self.nodes.items()}
        return [{"name": names.get(r["port"]), **r} for r in rows]

    def wait_ready(self, timeout: float = 60.0) -> dict[str, str]:
        """Wait until every worker node (except killed ones) is alive with its resources; returns
        ``node_ids()``."""
        alive = {
            self.nodes[w.name].node_manager_port: {**w.resources, "CPU": w.num_cpus, f"node:{w.name}": 1}
            for w in self.workers
            if w.name not in self._killed
        }
        self._ids.update(_ids(self._named(self._query({"alive": alive}, timeout))))
        return self.node_ids()

    def node_ids(self) -> dict[str, str]:
        """``{name: Ray node id}`` of every node, the head included, as registered at start (a node
        keeps its id once killed: a test names the node a lost run was on). No query: for who is
        alive now, see ``nodes_table()``."""
        return dict(self._ids)

    def wait_dead(self, name: str, timeout: float = 30.0) -> float:
        """Wait until the GCS reports ``name`` dead; returns the seconds it took (from the call)."""
        t0 = time.monotonic()
        self._query({"dead": [self.nodes[name].node_manager_port]}, timeout)
        return time.monotonic() - t0

    def client_server_errors(self) -> str:
        """The error lines of the head's Ray Client servers (the proxy and one per driver): why a
        ``ray://`` connection failed is only there (a per-driver server that died starting)."""
        logs = sorted(Path(self.node_dir(HEAD)).glob("session_2*/logs/ray_client_server*.err"))
        return "".join(f"\n--- {e.name}:\n{_errors(e)}" for e in logs if e.stat().st_size) or "(none)"

    # -- failures and shutdown ----------------------------------------------------------------------

    def raylet_pid(self, name: str) -> int | None:
        """The pid of the node's raylet (``--node_manager_port=<its port>`` in its command line)."""
        node = self.nodes[name]
        for proc in _scan():
            if (
                proc.name == "raylet"
                and f"--node_manager_port={node.node_manager_port} " in proc.cmdline + " "
                and self._is_member(proc.cmdline)
            ):
                return proc.pid
        return None

    def node_processes(self, name: str) -> list[int]:
        """Pids of the node's raylet and its descendants (agents, workers running tasks)."""
        raylet = self.raylet_pid(name)
        return sorted(p.pid for p in _descendants(_scan(), {raylet})) if raylet else []

    def kill_node(self, name: str) -> None:
        """SIGKILL the node's raylet, as if its machine vanished: its agents and workers die with it,
        the GCS marks it dead after its health checks fail (about 14 s)."""
        if name == HEAD:
            raise ValueError("killing the head kills the cluster: use stop()")
        pid = self.raylet_pid(name)
        if pid is None:
            raise RayClusterError(f"no raylet for node {name}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._killed.add(name)

    def processes(self) -> list[int]:
        """Pids of every process of this cluster that is still running."""
        return sorted(p.pid for p in self._members())

    def memory_mb(self) -> tuple[float, float]:
        """(RSS, PSS) of all the cluster's processes, in MB: PSS counts shared pages once."""
        rss = pss = 0
        for pid in self.processes():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith(("Rss:", "Pss:")):
                        kib = int(line.split()[1])
                        rss, pss = (rss + kib, pss) if line.startswith("Rss:") else (rss, pss + kib)
        return rss / 1024, pss / 1024

    def _members(self, node: str | None = None) -> list[_Proc]:
        """The processes of the cluster (or of one node): command line naming its temp dir (the
        node's) or, for the head, its GCS address (the Ray Client server), and all their
        descendants (Ray workers retitle themselves ``ray::...``)."""
        if self.temp_dir is None:
            return []
        procs = _scan()
        roots = {p.pid for p in procs if self._is_member(p.cmdline, node)}
        if node in (None, HEAD):
            roots |= {p.pid for p in procs if (p.pid, p.start) in self._orphan_roots}
        return _descendants(procs, roots)

    def _is_member(self, cmdline: str, node: str | None = None, *, by_port: bool = True) -> bool:
        # The dir as a whole path component: other sessions' dirs share the /tmp/aray- prefix.
        where = self.temp_dir if node is None else self.node_dir(node)
        if where and re.search(re.escape(where) + r"(/|\s|$)", cmdline):
            return True
        # The Ray Client server names no temp dir, only the GCS, by the host's primary IP (Ray
        # rewrites 127.0.0.1), so match any host with this cluster's GCS port: ours while we hold
        # the port slot's lock.
        return bool(
            by_port
            and node in (None, HEAD)
            and self._lock_fd is not None
            and "ray.util.client.server" in cmdline
            and re.search(rf"--address=\S*:{self.base_port}(\s|$)", cmdline)
        )

    def stop(self, grace: float = 5.0) -> None:
        """Stop every process of the cluster, delete its temp dir and free its ports.

        ``ray stop``'s order, one group at a time: raylets, then everything else, then the GCS, each
        with SIGTERM and up to ``grace`` seconds to exit (signalled all at once, the GCS and a raylet
        each waited on the other and neither exited within 8 s); then SIGKILL whatever is left.
        """
        if self._stopped:
            return
        self._stopped = True
        t0 = time.monotonic()
        seen: dict[tuple[int, int], _Proc] = {}
        try:
            for group in ("raylet", "other", "gcs_server"):
                # Scanned again for each group: the raylet's fate-sharing children exit with it.
                seen.update({(p.pid, p.start): p for p in self._members()})
                members = [p for p in seen.values() if _group(p) == group and p.alive()]
                for p in members:
                    p.signal(signal.SIGTERM)
                _wait_gone(members, grace)
            # Kill what is left, and anything started meanwhile (a worker a raylet was spawning).
            left = [p for p in seen.values() if p.alive()] + self._members()
            self.sigkilled += sorted({f"{p.pid} {p.name}" for p in left})
            self._kill(left)
        finally:
            if self.temp_dir:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)
            self.stop_seconds = time.monotonic() - t0

    def _kill(self, procs: Iterable[_Proc], node: str | None = None) -> None:
        """SIGKILL these processes and any process of the cluster (or node) still found, until none
        is left. The given ones count even when no longer found: a Ray worker whose raylet is gone
        is re-parented away and its ``ray::`` title names no temp dir."""
        known = {(p.pid, p.start): p for p in procs}
        for _ in range(20):
            known.update({(p.pid, p.start): p for p in self._members(node)})
            left = [p for p in known.values() if p.alive()]
            if not left:
                return
            for p in left:
                p.signal(signal.SIGKILL)
            _wait_gone(left, 2.0)
        raise RayClusterError(f"processes survived SIGKILL: {[p.pid for p in known.values() if p.alive()]}")

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- clusters left behind -----------------------------------------------------------------------------

OWNER_FILE = "owner.json"


def stop_orphaned_clusters() -> list[str]:
    """Stop the clusters whose owner process is gone (a test session killed before its teardown),
    found by the owner file in their temp dir; returns their temp dirs. Other sessions' live
    clusters, and temp dirs without an owner file, are left alone."""
    stopped = []
    for owner_file in Path("/tmp").glob(f"aray-*/{OWNER_FILE}"):
        try:
            owner = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            continue
        stat = _stat(int(owner["pid"]))
        if stat is not None and stat[2] == owner["start"]:
            continue
        orphan = RayCluster([])
        orphan.temp_dir = str(owner_file.parent)
        orphan._orphan_roots = {(pid, start) for pid, start in owner.get("by_port", [])}
        orphan.stop()
        stopped.append(orphan.temp_dir)
    return stopped


# -- the driver's auth settings ------------------------------------------------------------------------

AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@contextlib.contextmanager
def driver_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set Ray's auth variables in ``os.environ`` to exactly ``env`` (the others unset), restore them
    afterwards.

    Ray 2.60 reads ``RAY_AUTH_MODE`` once, when ``ray`` is imported, and caches the token: a test
    process that imported ``ray`` earlier (another test did) ignores a later ``RAY_AUTH_MODE=token``
    and ``ray.init`` fails after 20 s with a bare ConnectionError. So Ray's config and token cache
    are refreshed on entry and on exit (the same two calls Ray's own tests make).
    """
    saved = {k: os.environ.get(k) for k in AUTH_VARS}
    _set_auth(dict(env))
    try:
        yield
    finally:
        _set_auth({k: v for k, v in saved.items() if v is not None})


def _set_auth(env: Mapping[str, str]) -> None:
    for key in AUTH_VARS:
        if key in env:
            os.environ[key] = env[key]
        else:
            os.environ.pop(key, None)
    if "ray._raylet" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


# -- /proc -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    """A process as read from /proc; (pid, start time) identifies it even if the pid is reused."""

    pid: int
    ppid: int
    start: int
    name: str
    cmdline: str

    def alive(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat[2] == self.start and stat[3] != "Z"

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)


def _stat(pid: int) -> tuple[str, int, int, str] | None:
    """(comm, ppid, start time, state) of a pid, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), int(fields[19]), fields[0]


def _scan() -> list[_Proc]:
    procs = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None or stat[3] == "Z":
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        procs.append(_Proc(pid, stat[1], stat[2], stat[0], cmdline))
    return procs


def _descendants(procs: list[_Proc], roots: set[int]) -> list[_Proc]:
    """The roots and all their descendants, never this process or its parent (pytest, a shell)."""
    own = {os.getpid(), os.getppid()}
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or pid in own:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return [p for p in procs if p.pid in found]


def _group(p: _Proc) -> str:
    return p.name if p.name in ("raylet", "gcs_server") else "other"


def _wait_gone(procs: Iterable[_Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if p.alive()]


# -- small helpers -----------------------------------------------------------------------------------


def _ids(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {r["name"]: r["node_id"] for r in rows if r["alive"] and r["name"]}


def _errors(path: Path, limit: int = 2000) -> str:
    """A daemon's error log without the stack frames: its fatal and error lines say what happened."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    picked = [line for line in lines if re.search(r"\] \(\w+\) |Error|error|failed|Check", line)] or lines
    return "\n".join(picked)[-limit:]


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def port_free(port: int) -> bool:
    # SO_REUSEADDR as Ray's gRPC servers do: a TIME_WAIT left by an earlier cluster does not block them.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _overlaps(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1
