"""Benchmark: ``aido run --cluster`` on a 3-node Ray cluster of this machine against the same runs done
locally: batch throughput, dispatch overhead per run, and the latency of streamed output.

Issue 10 sets two targets: a cluster batch keeps at least 80 % of the throughput of a local batch on
the same hardware, and sending a run to a node adds at most 50 ms to it. One invocation of this
script:

1. compiles aido's sources (``python -m compileall -q src``) and starts every process without
   ``PYTHONDONTWRITEBYTECODE``, so no aido process or Ray worker pays for compiling aido (see
   ``_bytecode_cached`` in bench_throughput.py); strips ``AIDO_*`` from the environment (an
   inherited ``AIDO_CLUSTER`` would send the local runs to a cluster) and gives the driver and both
   nodes one fresh ``XDG_CONFIG_HOME`` (one signing key, made by a local run before the cluster
   starts, so the driver trusts what the nodes seal);
2. creates a throwaway project directory with ``hello.py`` (``print(1)``), runs
   ``aido sandbox up --ttl 2h`` in it, and starts a Ray cluster on this machine with
   ``tests/helpers/raycluster.py`` (run the script from the repository root): a head without the
   ``aido`` resource and two worker nodes with 2 CPUs and ``{"aido": 2}`` each, i.e. 4 run slots;
   each node rebuilds runs in a directory of its own (``AIDO_NODE_DIR``), as separate machines would;
3. **throughput**: after one small batch of each as a warm-up, R repeats (``--repeats``, default 3),
   in an order that alternates from one repeat to the next, of two whole-process measurements of
   M runs each (``--runs``, default 100):

   - **local batch**: ``aido run --parallel C hello.py ... (M times)`` (C = ``--parallel``, default 4);
   - **cluster batch**: ``aido run --cluster ADDRESS --parallel C hello.py ... (M times)``;

   each measurement's throughput is M / its wall-clock time (process start to exit, so the cluster
   batch includes ``import ray``, connecting and starting Ray workers on the nodes); every run must
   succeed and be recorded in the sandbox's ``runs/`` folder, else the measurement is discarded and
   taken again (at most 3 times in all). The cluster batch's **fixed cost** is measured apart: the
   median wall time of K whole ``aido run --cluster ADDRESS hello.py`` processes (one run each)
   minus that of K ``aido run hello.py``, interleaved (K = ``--fixed-runs``, default 3);
4. **dispatch overhead**: in this process, through the Python API (``SandboxManager().run(task)``
   and ``.run(task, cluster=ADDRESS)``; one connection to the cluster for all of them), after W
   warm-ups of each (``--warmup``, default 3; the first cluster one starts a Ray worker and is also
   reported), N sequential single runs of each (``--dispatch-runs``, default 30), interleaved in
   alternating order; the dispatch overhead is median(cluster run) - median(local run), wall time
   of the API call;
5. **streaming latency**: a task printing ``repr(time.time())`` L times (``--stream-lines``, default
   40), one line every 0.05 s, run once on the cluster and once locally (the reference) through the
   API with ``RunHooks(on_output=...)``; a line's latency is the time it reached the callback minus
   the time it printed (the container shares this machine's clock); median and p95 of each;
6. prints a table, the machine's CPUs and load, and PASS/FAIL for the two targets (or one JSON
   document with ``--json``);
7. disconnects, stops the cluster (by pid, never ``ray stop``: that would stop every cluster on the
   machine), destroys the sandbox, removes any container of the sandbox left behind (there should be
   none: a leftover is reported) and the temporary directories, and checks that no node kept a run
   directory.

All four run slots are on the same cores as the driver and the Docker engine, with Ray's own
processes (about 1.2 GB, see shared/research/ray-notes.md) competing with dockerd; the cluster is up
during the local measurements too, so both pay for it. A cluster of separate machines adds their
cores; this measures only what the cluster path costs. Other users of the same engine make the
numbers noisy: the load average and the running containers of others are sampled before every
throughput measurement and reported.

    python3 benchmarks/bench_cluster.py [--runs 100] [--repeats 3] [--parallel 4] [--fixed-runs 3]
                                        [--dispatch-runs 30] [--warmup 3] [--stream-lines 40]
                                        [--target 0.8] [--max-overhead-ms 50] [--json] [--check]

Exit status: 0 whatever the figures, unless ``--check`` is given (then 1 when a target is missed);
2 if the benchmark itself could not run (no Docker, no Ray, the cluster did not start, a run
failed three times). Standard library only, plus aido itself, Ray (which aido imports to drive the
cluster) and tests/helpers/raycluster.py.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, this directory is sys.path[0] already; the repository root and its src/ come
# first so that this process, the aido subprocesses and the Ray nodes all run this checkout's aido
# (a node refuses a run from a driver of another aido version).
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src"
for _path in (str(HERE), str(REPO), str(SRC)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench_run import (  # noqa: E402
    IMAGE,
    TASK_NAME,
    BenchError,
    aido_command,
    clean_up,
    clean_up_on_signals,
    docker_binary,
    environment,
    start_sandbox,
    task_user,
)
from bench_throughput import (  # noqa: E402
    _bytecode_cached,
    _count_runs,
    _run_ok,
    _running_containers,
    with_retries,
)

TASK_SOURCE = "print(1)\n"
STREAM_TASK = "stream.py"
STREAM_INTERVAL = 0.05  # seconds between the streaming task's lines
SANDBOX_TTL = "2h"  # outlives the benchmark; destroyed at the end regardless
WARMUP_BATCH = 4  # runs in each warm-up batch
WORKERS = ("w1", "w2")
SLOTS_PER_NODE = 2
NODE_CPUS = 2
MODES = ("local", "cluster")
REAPER_GRACE = 10.0  # seconds: the reaper looks for work left every 5 s (lifecycle/reaper.py)


def progress(message: str) -> None:
    print(f"bench_cluster: {message}", file=sys.stderr, flush=True)


@dataclass
class BatchSample:
    mode: str
    repeat: int
    runs: int
    seconds: float
    foreign_containers: int
    load1: float

    @property
    def throughput(self) -> float:
        return self.runs / self.seconds


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _p95(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


# -- the environment ------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
    }
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(("MemTotal:", "MemAvailable:")):
                key = "mem_total_gib" if line.startswith("MemTotal:") else "mem_available_gib"
                facts[key] = round(int(line.split()[1]) / (1 << 20), 1)
    return facts


def compile_sources() -> None:
    """``python -m compileall -q src``: aido's bytecode cached for every process that imports it."""
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(SRC)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"compileall {SRC} failed:\n{(done.stderr or done.stdout).strip()[-2000:]}")


@contextlib.contextmanager
def bench_environment(config_home: Path) -> Iterator[dict[str, str | None]]:
    """This process's environment (inherited by aido subprocesses and the Ray nodes) for the
    benchmark, restored afterwards; yields what was removed."""
    saved = dict(os.environ)
    removed: dict[str, str | None] = {}
    for key in list(os.environ):
        if key.startswith("AIDO_") or key in ("PYTHONDONTWRITEBYTECODE", "RAY_ADDRESS"):
            removed[key] = os.environ.pop(key)
    paths = [str(SRC), str(REPO)]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    os.environ["XDG_CONFIG_HOME"] = str(config_home)
    os.environ["NO_COLOR"] = "1"
    try:
        yield removed
    finally:
        os.environ.clear()
        os.environ.update(saved)


# -- measuring ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, aido: list[str], docker: str, project: Path, sandbox_id: str, sandbox_root: Path):
        self.aido = aido
        self.docker = docker
        self.project = project
        self.sandbox_id = sandbox_id
        self.sandbox_root = sandbox_root
        self.address = ""

    def batch_argv(self, mode: str, runs: int, parallel: int) -> list[str]:
        where = ["--cluster", self.address] if mode == "cluster" else []
        # The task given M times: with several tasks --parallel bounds the concurrency.
        return [*self.aido, "run", *where, "--parallel", str(parallel), *([TASK_NAME] * runs)]

    def one_argv(self, mode: str) -> list[str]:
        where = ["--cluster", self.address] if mode == "cluster" else []
        return [*self.aido, "run", *where, TASK_NAME]

    def timed_process(self, argv: list[str], runs: int, what: str) -> float:
        """Wall time of one whole aido process that must add exactly ``runs`` successful runs."""
        before = _count_runs(self.sandbox_root)
        start = time.perf_counter()
        done = subprocess.run(
            argv, cwd=self.project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            # aido prints one line per run, a failed one starting with a cross (as does the total).
            crossed = [ln.strip() for ln in done.stderr.splitlines() if ln.startswith("\u2717 ")]
            failed = [ln for ln in crossed if not re.match(r"\S+ \d+ runs in ", ln)]
            first = failed[0] if failed else (done.stderr.strip().splitlines() or ["no output"])[-1]
            more = "\n".join(failed[1:5] + crossed[-1:])
            raise BenchError(f"{what} exited {done.returncode}: {first}\n{more}".rstrip())
        made = _count_runs(self.sandbox_root) - before
        if made != runs:
            raise BenchError(f"{what} made {made} runs, expected {runs}")
        return seconds

    def batch(self, mode: str, runs: int, parallel: int, repeat: int) -> BatchSample:
        foreign = _running_containers(self.docker)  # ours are all gone here: someone else's
        load1 = os.getloadavg()[0]
        seconds = self.timed_process(self.batch_argv(mode, runs, parallel), runs, f"{mode} batch")
        return BatchSample(mode, repeat, runs, seconds, foreign, load1)


def measure_throughput(
    bench: Bench, args: argparse.Namespace, notes: dict[str, Any], progress: Callable[[str], None]
) -> dict[str, Any]:
    progress(f"throughput warm-up ({WARMUP_BATCH}-run batch of each)")
    for mode in MODES:
        with_retries(
            f"{mode} warm-up",
            lambda m=mode: bench.timed_process(
                bench.batch_argv(m, WARMUP_BATCH, args.parallel), WARMUP_BATCH, f"{m} warm-up"
            ),
            notes,
            progress,
        )
    samples: dict[str, list[BatchSample]] = {m: [] for m in MODES}
    for repeat in range(args.repeats):
        order = MODES if repeat % 2 == 0 else MODES[::-1]
        for mode in order:
            sample = with_retries(
                f"{mode} batch, repeat {repeat + 1}",
                lambda m=mode, r=repeat: bench.batch(m, args.runs, args.parallel, r),
                notes,
                progress,
            )
            samples[mode].append(sample)
            progress(
                f"repeat {repeat + 1}/{args.repeats} {mode:<7} batch {sample.throughput:6.2f} runs/s "
                f"({sample.seconds:.2f}s for {args.runs}; {sample.foreign_containers} foreign containers, "
                f"load {sample.load1:.2f})"
            )

    # Fixed cost of a cluster process: one-run processes, interleaved.
    one: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(args.fixed_runs):
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            one[mode].append(
                with_retries(
                    f"one-run {mode} process",
                    lambda m=mode: bench.timed_process(bench.one_argv(m), 1, f"one-run {m}"),
                    notes,
                    progress,
                )
            )
    progress(
        "one-run processes: local "
        + ", ".join(f"{s:.2f}" for s in one["local"])
        + " s; cluster "
        + ", ".join(f"{s:.2f}" for s in one["cluster"])
        + " s"
    )
    local = _median([s.throughput for s in samples["local"]])
    cluster = _median([s.throughput for s in samples["cluster"]])
    fixed = _median(one["cluster"]) - _median(one["local"])
    cluster_seconds = _median([s.seconds for s in samples["cluster"]])
    return {
        "local_runs_per_s": local,
        "cluster_runs_per_s": cluster,
        "ratio": cluster / local,
        "spread": {
            m: (min(s.throughput for s in v), max(s.throughput for s in v)) for m, v in samples.items()
        },
        "one_run_process_s": {m: _median(v) for m, v in one.items()},
        "one_run_samples_s": one,
        "cluster_fixed_cost_s": fixed,
        # The cluster batch without the extra fixed cost: what a long-lived driver sustains.
        "cluster_runs_per_s_without_fixed_cost": args.runs / max(cluster_seconds - fixed, 1e-9),
        "samples": samples,
        "max_foreign_containers": max(s.foreign_containers for v in samples.values() for s in v),
        "max_load1": max(s.load1 for v in samples.values() for s in v),
    }


def measure_dispatch(
    bench: Bench, args: argparse.Namespace, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Sequential single runs through the API, local and on the cluster, in this process."""
    from aido.cluster.connect import connect
    from aido.errors import AidoError
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace

    manager = SandboxManager(Workspace.require(bench.project))
    task = bench.project / TASK_NAME

    def one(mode: str) -> float:
        cluster = bench.address if mode == "cluster" else None
        start = time.perf_counter()
        try:
            result = manager.run(task, sandbox_id=bench.sandbox_id, cluster=cluster)
        except AidoError as exc:
            raise BenchError(f"an API {mode} run failed: {exc.message}") from None
        seconds = time.perf_counter() - start
        if result.status != "success":
            raise BenchError(f"an API {mode} run ended {result.status}: {result.message or result.error}")
        return seconds

    progress("dispatch: connecting this process to the cluster")
    start = time.perf_counter()
    try:
        connect(bench.address)  # import ray + ray.init; every cluster run reuses the connection
    except AidoError as exc:
        raise BenchError(f"this process could not connect to the cluster: {exc.message}") from None
    connect_s = time.perf_counter() - start
    warm: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.warmup):
        for mode in MODES:
            warm[mode].append(one(mode))
    progress(
        f"dispatch: connected in {connect_s:.2f}s; warm-ups local "
        + ", ".join(f"{s:.2f}" for s in warm["local"])
        + " s, cluster "
        + ", ".join(f"{s:.2f}" for s in warm["cluster"])
        + " s"
    )
    before = _count_runs(bench.sandbox_root)
    samples: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(args.dispatch_runs):
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            samples[mode].append(one(mode))
    made = _count_runs(bench.sandbox_root) - before
    if made != 2 * args.dispatch_runs:
        raise BenchError(f"the dispatch runs made {made} runs, expected {2 * args.dispatch_runs}")
    local_ms = [1000 * s for s in samples["local"]]
    cluster_ms = [1000 * s for s in samples["cluster"]]
    result = {
        "connect_s": connect_s,
        "first_cluster_run_s": warm["cluster"][0] if warm["cluster"] else None,
        "warmup_s": warm,
        "local_median_ms": _median(local_ms),
        "cluster_median_ms": _median(cluster_ms),
        "local_p95_ms": _p95(local_ms),
        "cluster_p95_ms": _p95(cluster_ms),
        "overhead_ms": _median(cluster_ms) - _median(local_ms),
        "paired_overhead_ms": _median([c - loc for c, loc in zip(cluster_ms, local_ms, strict=True)]),
        "samples_ms": {"local": local_ms, "cluster": cluster_ms},
    }
    progress(
        f"dispatch: local {result['local_median_ms']:.0f} ms, cluster {result['cluster_median_ms']:.0f} ms "
        f"per run (median of {args.dispatch_runs})"
    )
    return result


def measure_api_batches(
    bench: Bench, args: argparse.Namespace, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Batches of ``--runs`` through the API in this (connected) process, local and on the cluster,
    alternated: the throughput a long-lived driver (a harness, an agent platform) sustains, without
    the per-process cost of starting Ray's workers that a whole `aido run --cluster` pays."""
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace

    manager = SandboxManager(Workspace.require(bench.project))
    task = bench.project / TASK_NAME
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for repeat in range(args.repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            cluster = bench.address if mode == "cluster" else None
            start = time.perf_counter()
            batch = manager.run_batch(
                [task] * args.runs, parallel=args.parallel, sandbox_id=bench.sandbox_id, cluster=cluster
            )
            seconds = time.perf_counter() - start
            failed = [i.status for i in batch.items if i.status != "success"]
            if failed:
                raise BenchError(f"an API {mode} batch had {len(failed)} unsuccessful runs: {failed[:3]}")
            rates[mode].append(args.runs / seconds)
            progress(f"API batch repeat {repeat + 1}/{args.repeats} {mode:<7} {rates[mode][-1]:6.2f} runs/s")
    local, cluster_rate = _median(rates["local"]), _median(rates["cluster"])
    return {
        "local_runs_per_s": local,
        "cluster_runs_per_s": cluster_rate,
        "ratio": cluster_rate / local,
        "samples": rates,
    }


class LineLatency:
    """An ``on_output`` hook: for each complete stdout line (a ``time.time()`` printed by the task),
    the milliseconds between its printing and its arrival here."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self._pending = bytearray()
        self._lock = threading.Lock()

    def on_output(self, fd: int, data: bytes) -> None:
        arrived = time.time()
        if fd != 1:
            return
        with self._lock:
            self._pending.extend(data)
            while b"\n" in self._pending:
                line, _, rest = bytes(self._pending).partition(b"\n")
                self._pending[:] = rest
                with contextlib.suppress(ValueError):
                    self.latencies_ms.append(1000 * (arrived - float(line.decode().strip())))


def measure_streaming(bench: Bench, lines: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """One streaming run on the cluster, one locally: the latency of each printed line."""
    from aido.errors import AidoError
    from aido.manager import SandboxManager
    from aido.run.request import RunHooks
    from aido.store.workspace import Workspace

    task = bench.project / STREAM_TASK
    task.write_text(
        "import time\n"
        f"for _ in range({lines}):\n"
        "    print(repr(time.time()), flush=True)\n"
        f"    time.sleep({STREAM_INTERVAL})\n",
        encoding="utf-8",
    )
    manager = SandboxManager(Workspace.require(bench.project))
    found: dict[str, Any] = {}
    for mode in ("cluster", "local"):
        lines_seen = LineLatency()

        cluster = bench.address if mode == "cluster" else None
        try:
            result = manager.run(
                task,
                sandbox_id=bench.sandbox_id,
                cluster=cluster,
                hooks=RunHooks(on_output=lines_seen.on_output),
            )
        except AidoError as exc:
            raise BenchError(f"the {mode} streaming run failed: {exc.message}") from None
        if result.status != "success":
            raise BenchError(
                f"the {mode} streaming run ended {result.status}: {result.message or result.error}"
            )
        latencies = lines_seen.latencies_ms
        if len(latencies) != lines:
            raise BenchError(f"the {mode} streaming run delivered {len(latencies)} of {lines} lines live")
        found[mode] = {
            "lines": len(latencies),
            "median_ms": _median(latencies),
            "p95_ms": _p95(latencies),
            "max_ms": max(latencies),
            "samples_ms": latencies,
        }
        progress(
            f"streaming {mode}: median {found[mode]['median_ms']:.1f} ms, p95 {found[mode]['p95_ms']:.1f} ms"
        )
    return found


def placement(sandbox_root: Path, node_ids: dict[str, str]) -> dict[str, int]:
    """Where the cluster runs of the sandbox ran, by node name (from each run's summary)."""
    names = {v: k for k, v in node_ids.items()}
    counts: dict[str, int] = {}
    for summary in sorted((sandbox_root / "runs").glob("*/summary.json")):
        with contextlib.suppress(OSError, ValueError):
            node = json.loads(summary.read_text()).get("node")
            if isinstance(node, dict) and node.get("id"):
                name = names.get(str(node["id"]), "unknown")
                counts[name] = counts.get(name, 0) + 1
    return counts


# -- the benchmark --------------------------------------------------------------------------------


def _start_cluster(config_home: Path, node_dir: Path, progress: Callable[[str], None]) -> Any:
    # Not imported here: the dispatch measurement times this process's first `import ray`.
    if importlib.util.find_spec("ray") is None:
        raise BenchError("Ray is not installed (pip install 'aido[ray]')")
    try:
        from tests.helpers.raycluster import NodeSpec, RayCluster
    except ImportError as exc:
        raise BenchError(
            f"tests/helpers/raycluster.py is needed (run from the repository root): {exc}"
        ) from None
    # One config home for the driver and the nodes: one signing key, trusted by the driver. Each
    # node rebuilds runs in a directory of its own, as on separate machines (checked empty at the end).
    workers = []
    for name in WORKERS:
        (node_dir / name).mkdir()
        env = {"XDG_CONFIG_HOME": str(config_home), "AIDO_NODE_DIR": str(node_dir / name)}
        workers.append(NodeSpec(name, num_cpus=NODE_CPUS, resources={"aido": SLOTS_PER_NODE}, env=env))
    progress("starting a Ray cluster: a head and two aido nodes")
    cluster = RayCluster(workers)
    try:
        cluster.start()
    except Exception as exc:  # RayClusterError, a timeout: the benchmark cannot run
        raise BenchError(f"the Ray cluster did not start: {exc}") from None
    return cluster


def benchmark(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    began = time.monotonic()
    aido = aido_command()
    docker = docker_binary()
    token = uuid.uuid4().hex[:12]
    machine = machine_facts()
    compile_sources()
    scratch = Path(tempfile.mkdtemp(prefix="aido-bench-cl-"))
    config_home, node_dir = scratch / "config", scratch / "nodes"
    config_home.mkdir(mode=0o700)
    node_dir.mkdir()
    project = Path(tempfile.mkdtemp(prefix="aido-bench-cl-proj-"))
    notes: dict[str, Any] = {"image": IMAGE, "task_user": task_user(), "aido": " ".join(aido)}
    report: dict[str, Any] = {"machine": machine, "notes": notes}
    sandbox_id: str | None = None
    cluster: Any = None
    try:
        with bench_environment(config_home) as removed:
            notes["removed_from_environment"] = sorted(removed)
            notes["aido_bytecode_cached"] = _bytecode_cached()
            (project / TASK_NAME).write_text(TASK_SOURCE, encoding="utf-8")
            sandbox_id, sandbox_root = start_sandbox(aido, project, "--ttl", SANDBOX_TTL)
            notes["sandbox_id"] = sandbox_id
            bench = Bench(aido, docker, project, sandbox_id, sandbox_root)
            # A local run first: it makes the signing key the nodes share (two nodes making it at
            # once would race) and installs the image and task.
            progress("local warm-up run (makes the shared signing key)")
            with_retries("local warm-up", lambda: _run_ok(bench.one_argv("local"), project), notes, progress)

            cluster = _start_cluster(config_home, node_dir, progress)
            os.environ.update(cluster.driver_env)
            bench.address = cluster.address
            report["cluster"] = {
                "address": cluster.address,
                "start_s": cluster.start_seconds,
                "nodes": {name: node_id[:12] for name, node_id in cluster.node_ids().items()},
                "workers": [{"name": w, "cpus": NODE_CPUS, "aido_slots": SLOTS_PER_NODE} for w in WORKERS],
            }
            progress(f"cluster up at {cluster.address} in {cluster.start_seconds:.1f}s")
            notes["commands"] = {
                m: shlex.join(bench.batch_argv(m, 2, args.parallel)).replace(
                    f"{TASK_NAME} {TASK_NAME}", f"{TASK_NAME} x{args.runs}"
                )
                for m in MODES
            }

            report["throughput"] = measure_throughput(bench, args, notes, progress)
            with cluster.as_driver():
                try:
                    report["dispatch"] = measure_dispatch(bench, args, progress)
                    report["api_throughput"] = measure_api_batches(bench, args, progress)
                    report["streaming"] = measure_streaming(bench, args.stream_lines, progress)
                finally:
                    from aido.cluster.connect import disconnect

                    disconnect()
            report["placement"] = placement(sandbox_root, cluster.node_ids())
            notes["aido_runs_in_sandbox"] = _count_runs(sandbox_root)
            machine["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if cluster is not None:
            cluster.stop()
            report.setdefault("cluster", {})["stop_s"] = cluster.stop_seconds
        notes["leftover_containers"] = clean_up(aido, project, sandbox_id, docker, token)
        # The sandbox's TTL reaper notices the workspace is gone within seconds and logs that it
        # exits: if that lands while the directory is being removed, .aido/reaper.log survives.
        deadline = time.monotonic() + REAPER_GRACE
        while project.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
            shutil.rmtree(project, ignore_errors=True)
        notes["leftover_node_dirs"] = sorted(f"{p.parent.name}/{p.name}" for p in node_dir.glob("*/*"))
        shutil.rmtree(scratch, ignore_errors=True)
        report["elapsed_s"] = time.monotonic() - began
    return report


# -- output ---------------------------------------------------------------------------------------


def verdicts(report: dict[str, Any], args: argparse.Namespace) -> tuple[bool, bool]:
    """The throughput target is judged on a connected driver's batches (the steady state a
    harness sees); whole `aido run` processes, with Ray's worker start in each, are shown too."""
    return (
        report["api_throughput"]["ratio"] >= args.target,
        report["dispatch"]["overhead_ms"] <= args.max_overhead_ms,
    )


def render_table(report: dict[str, Any], args: argparse.Namespace) -> str:
    tp, dp, st = report["throughput"], report["dispatch"], report["streaming"]
    m, notes = report["machine"], report["notes"]
    workers = len(WORKERS)
    lines = [
        f"aido cluster benchmark: a Ray head and {workers} aido nodes ({NODE_CPUS} CPUs, {SLOTS_PER_NODE} "
        f"slots each) on this machine; image {notes['image']}, task user {notes['task_user']}",
        f"machine: {m['cpus']} CPUs, {m.get('mem_total_gib', '?')} GiB; load average at start "
        f"{' '.join(f'{x:.2f}' for x in m['load_avg'])}, at end "
        f"{' '.join(f'{x:.2f}' for x in m.get('load_avg_end', []))}; cluster up in "
        f"{report['cluster']['start_s']:.1f}s",
        "",
        f"throughput: {args.runs} runs per batch, --parallel {args.parallel}, median of {args.repeats} "
        "alternating repeats (min-max)",
        f"{'':<16}{'runs/s':>8}  {'min-max':>13}",
    ]
    for mode in MODES:
        low, high = tp["spread"][mode]
        spread = f"{low:.2f}-{high:.2f}"
        lines.append(f"{mode + ' batch':<16}{tp[f'{mode}_runs_per_s']:>8.2f}  {spread:>13}")
    lines += [
        f"ratio cluster / local (whole processes, each starting Ray workers): {tp['ratio']:.2f}",
        f"one-run process (median of {args.fixed_runs}): local {tp['one_run_process_s']['local']:.2f}s, "
        f"cluster {tp['one_run_process_s']['cluster']:.2f}s -> cluster fixed cost "
        f"{tp['cluster_fixed_cost_s']:+.2f}s per process (import ray, connect, start workers)",
        f"cluster batch without that fixed cost: {tp['cluster_runs_per_s_without_fixed_cost']:.2f} runs/s",
        "",
        f"throughput through the API, one connected driver: {args.runs} runs per batch, --parallel "
        f"{args.parallel}, median of {args.repeats} alternating repeats",
        f"{'local batch':<16}{report['api_throughput']['local_runs_per_s']:>8.2f}",
        f"{'cluster batch':<16}{report['api_throughput']['cluster_runs_per_s']:>8.2f}",
        f"ratio cluster / local (connected driver): {report['api_throughput']['ratio']:.2f}",
        "",
        f"dispatch: {args.dispatch_runs} sequential single runs each through the API, one process, "
        f"{args.warmup} warm-ups",
        f"{'':<16}{'median':>10}{'p95':>10}",
        f"{'local run':<16}{dp['local_median_ms']:>8.0f}ms{dp['local_p95_ms']:>8.0f}ms",
        f"{'cluster run':<16}{dp['cluster_median_ms']:>8.0f}ms{dp['cluster_p95_ms']:>8.0f}ms",
        f"dispatch overhead (median cluster - median local): {dp['overhead_ms']:+.1f}ms "
        f"(median of paired differences {dp['paired_overhead_ms']:+.1f}ms)",
        f"in-process connect (import ray + ray.init) {dp['connect_s']:.2f}s; first cluster run "
        f"{dp['first_cluster_run_s']:.2f}s (starts a Ray worker)",
        "",
        f"streaming: {args.stream_lines} lines every {1000 * STREAM_INTERVAL:.0f} ms, printed time to "
        "on_output callback",
        f"{'':<16}{'median':>10}{'p95':>10}{'max':>10}",
    ]
    for mode in ("cluster", "local"):
        s = st[mode]
        lines.append(f"{mode + ' run':<16}{s['median_ms']:>8.1f}ms{s['p95_ms']:>8.1f}ms{s['max_ms']:>8.1f}ms")
    placed = ", ".join(f"{k} {v}" for k, v in sorted(report["placement"].items())) or "none"
    tp_ok, dp_ok = verdicts(report, args)
    lines += [
        "",
        f"cluster runs by node: {placed}",
        f"{'PASS' if tp_ok else 'FAIL'}: cluster throughput {report['api_throughput']['ratio']:.0%} of the "
        f"local batch through one connected driver (target >= {args.target:.0%}); whole processes "
        f"{tp['ratio']:.0%}",
        f"{'PASS' if dp_ok else 'FAIL'}: dispatch overhead {dp['overhead_ms']:.1f} ms per run "
        f"(target <= {args.max_overhead_ms:g} ms)",
        f"noise: up to {tp['max_foreign_containers']} foreign running container(s) and load average "
        f"{tp['max_load1']:.2f} seen before a throughput measurement",
        f"took {report['elapsed_s']:.0f}s; aido runs recorded in the sandbox: "
        f"{notes['aido_runs_in_sandbox']}",
    ]
    if notes.get("aido_bytecode_cached") is False:
        lines.append("note: aido's bytecode is not cached: every aido process compiled its sources")
    for discarded in notes.get("discarded_measurements", []):
        lines.append(f"warning: discarded and re-measured after a failed run: {discarded}")
    if notes.get("leftover_containers"):
        lines.append(f"warning: {notes['leftover_containers']} leftover container(s) had to be removed")
    if notes.get("leftover_node_dirs"):
        lines.append(f"warning: nodes kept run directories: {', '.join(notes['leftover_node_dirs'])}")
    return "\n".join(lines)


def _r(value: float, digits: int = 2) -> float:
    return round(value, digits)


def to_json(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    tp, dp, st = report["throughput"], report["dispatch"], report["streaming"]
    tp_ok, dp_ok = verdicts(report, args)
    return {
        "benchmark": "aido-cluster-vs-local",
        "runs": args.runs,
        "repeats": args.repeats,
        "parallel": args.parallel,
        "targets": {"throughput_ratio": args.target, "dispatch_overhead_ms": args.max_overhead_ms},
        "pass": tp_ok and dp_ok,
        "api_throughput": {
            k: (_r(v, 4) if isinstance(v, float) else {m: [_r(x, 3) for x in xs] for m, xs in v.items()})
            for k, v in report["api_throughput"].items()
        },
        "throughput": {
            "local_runs_per_s": _r(tp["local_runs_per_s"], 3),
            "cluster_runs_per_s": _r(tp["cluster_runs_per_s"], 3),
            "ratio": _r(tp["ratio"], 4),
            "pass": tp_ok,
            "one_run_process_s": {k: _r(v, 3) for k, v in tp["one_run_process_s"].items()},
            "cluster_fixed_cost_s": _r(tp["cluster_fixed_cost_s"], 3),
            "cluster_runs_per_s_without_fixed_cost": _r(tp["cluster_runs_per_s_without_fixed_cost"], 3),
            "samples": {
                mode: [
                    {
                        "repeat": s.repeat,
                        "seconds": _r(s.seconds, 3),
                        "runs_per_s": _r(s.throughput, 3),
                        "foreign_containers": s.foreign_containers,
                        "load1": _r(s.load1),
                    }
                    for s in samples
                ]
                for mode, samples in tp["samples"].items()
            },
            "one_run_samples_s": {k: [_r(x, 3) for x in v] for k, v in tp["one_run_samples_s"].items()},
        },
        "dispatch": {
            "runs": args.dispatch_runs,
            "warmup": args.warmup,
            "local_median_ms": _r(dp["local_median_ms"], 1),
            "cluster_median_ms": _r(dp["cluster_median_ms"], 1),
            "local_p95_ms": _r(dp["local_p95_ms"], 1),
            "cluster_p95_ms": _r(dp["cluster_p95_ms"], 1),
            "overhead_ms": _r(dp["overhead_ms"], 1),
            "paired_overhead_ms": _r(dp["paired_overhead_ms"], 1),
            "pass": dp_ok,
            "connect_s": _r(dp["connect_s"], 3),
            "first_cluster_run_s": _r(dp["first_cluster_run_s"], 3),
            "samples_ms": {k: [_r(x, 1) for x in v] for k, v in dp["samples_ms"].items()},
        },
        "streaming": {
            "interval_ms": 1000 * STREAM_INTERVAL,
            **{
                mode: {
                    "lines": s["lines"],
                    "median_ms": _r(s["median_ms"]),
                    "p95_ms": _r(s["p95_ms"]),
                    "max_ms": _r(s["max_ms"]),
                }
                for mode, s in st.items()
            },
        },
        "placement": report["placement"],
        "cluster": {
            **report["cluster"],
            "start_s": _r(report["cluster"]["start_s"], 1),
            "stop_s": _r(report["cluster"].get("stop_s") or 0.0, 2),
        },
        "machine": report["machine"],
        "elapsed_s": _r(report["elapsed_s"], 1),
        "environment": environment(report["notes"]),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100, metavar="M", help="runs per batch (default 100)")
    parser.add_argument(
        "--repeats", type=int, default=3, metavar="R", help="repeats of each batch (default 3)"
    )
    parser.add_argument(
        "--parallel", type=int, default=4, metavar="C", help="--parallel of both batches (default 4)"
    )
    parser.add_argument(
        "--fixed-runs",
        type=int,
        default=3,
        metavar="K",
        help="one-run processes of each, for the cluster's fixed cost (default 3)",
    )
    parser.add_argument(
        "--dispatch-runs", type=int, default=30, metavar="N", help="API runs of each (default 30)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, metavar="W", help="API warm-up runs of each (default 3)"
    )
    parser.add_argument(
        "--stream-lines",
        type=int,
        default=40,
        metavar="L",
        help="lines the streaming task prints (default 40)",
    )
    parser.add_argument(
        "--target",
        type=float,
        default=0.8,
        help="minimum throughput ratio cluster batch / local batch (default 0.8)",
    )
    parser.add_argument(
        "--max-overhead-ms",
        type=float,
        default=50.0,
        help="maximum dispatch overhead per run in ms (default 50)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    for name in ("runs", "repeats", "parallel", "fixed_runs", "dispatch_runs", "stream_lines"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first cluster run starts a Ray worker)")
    if args.target <= 0 or args.max_overhead_ms <= 0:
        parser.error("--target and --max-overhead-ms must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clean_up_on_signals()
    try:
        report = benchmark(args, progress)
    except BenchError as exc:
        print(f"bench_cluster: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_cluster: interrupted; cluster, sandbox and containers cleaned up", file=sys.stderr)
        return 130
    tp_ok, dp_ok = verdicts(report, args)
    if args.json:
        print(json.dumps(to_json(report, args), indent=2))
    else:
        print(render_table(report, args))
    return 1 if args.check and not (tp_ok and dp_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
