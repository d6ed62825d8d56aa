"""Benchmark: throughput (runs per second) of ``aido run`` against an equally hardened ``docker run``
at concurrency 1, 2, 4 and 8.

``bench_run.py`` measures the latency of one run; this measures how many short runs per second
aido sustains when it runs several at once, which is what an agent fanning out tasks sees. One
invocation of this script:

1. compiles aido's bytecode and unsets ``PYTHONDONTWRITEBYTECODE`` for every aido process (as a
   user's install has it: warm_pool.bytecode_cached), creates a throwaway project directory with
   ``hello.py`` (``print(1)``) and two sandboxes in it, both ``--ttl 6h --runtime python:3.11``:
   one without a pool and one with ``--warm W`` (default 8) pre-started containers;
2. warms up (one run of each kind), then, for every concurrency C, repeats R times, in an order
   that rotates from one repeat to the next (to cancel drift), four measurements of M runs each:

   - **raw**: M ``docker run --rm`` of the same image, command, mounts and hardening aido applies
     (``bench_run.raw_docker_command``, imported, not copied), C worker threads each running
     ``subprocess.run(docker run ...)`` back to back;
   - **aido batch**: one ``aido run --parallel C hello.py hello.py ...`` process (the task given
     M times, so C bounds the concurrency): one aido start-up for M runs, C threads inside it;
   - **aido procs**: C worker threads each spawning whole ``aido run hello.py`` processes back to
     back (M in all), i.e. C concurrent aido processes, as a shell loop or an agent would do;
   - **warm procs**: the same in the sandbox with the pool. Each measurement starts with a full
     pool; under sustained load the pool drains faster than its keeper refills it and runs fall
     back to cold starts, which is correct: each run's evidence (summary.json ``start``) says
     which, and the script reports how many of each (and why the cold ones were cold);

   before every measurement the script waits (untimed) until the pool is full and its keeper
   idle, so that no measurement shares the engine with the refill after another;

   each measurement's throughput is M / its wall-clock time, and every run must succeed (aido's
   runs are also counted in the sandbox's ``runs/`` folder): a measurement in which one failed
   is reported, discarded and taken again, at most 3 times in all;
3. prints, per concurrency, the median throughput of each and the ratios aido/raw, PASS/FAIL of
   each ratio against ``--target`` (issue 12: separate processes too, at every concurrency; or
   one JSON document with ``--json``), the warm/cold starts of the warm procs, and the client
   CPU per run (user + sys of the processes started, from ``RUSAGE_CHILDREN``): on a small host
   the engine and the clients share the CPUs, so client CPU is what caps throughput at high C;
4. destroys the sandboxes, removes the directory and any container left behind.

Other users of the same Docker engine make the numbers noisy: before every measurement the
script counts running containers (all of them foreign, since ours are gone by then) and the load
average, and reports the maximum seen. The cold aido runs go into one sandbox, so its run record
grows by a few hundred runs over the benchmark, as it would in real use.

    python3 benchmarks/bench_throughput.py [--runs 16] [--repeats 3] [--concurrency 1,2,4,8]
                                           [--warm 8] [--target 0.9] [--json] [--check]

Exit status: 0 whatever the ratios, unless ``--check`` is given (then 1 when a ratio (batch, procs
or warm procs) at any concurrency is below target); 2 if the benchmark itself could not run.
Standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# The hardened raw `docker run` and the helpers come from the latency benchmark, so both compare
# against exactly the same flags. Run as a script, this directory is sys.path[0] already.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import (
    IMAGE,
    RUNTIME,
    TASK_NAME,
    BenchError,
    aido_command,
    clean_up,
    clean_up_on_signals,
    docker_binary,
    environment,
    raw_docker_command,
    start_sandbox,
    task_user,
)
from warm_pool import PoolError, bytecode_cached, run_ids, start_counts, starts, wait_for_pool

T = TypeVar("T")
TASK_SOURCE = "print(1)\n"
SANDBOX_TTL = "6h"  # outlives any sensible benchmark; destroyed at the end regardless
ATTEMPTS = 3  # a measurement in which a run failed is taken again, at most this many times in all
RETRY_PAUSE = 5.0  # seconds, e.g. for a restarted engine to come back
MODES = ("raw", "aido_batch", "aido_procs", "served_procs", "warm_procs")
AIDO_MODES = MODES[1:]  # each compared with raw
MODE_NAMES = {
    "raw": "docker run",
    "aido_batch": "aido batch",
    "aido_procs": "aido procs",
    "served_procs": "served procs",
    "warm_procs": "warm procs",
}


@dataclass
class Sample:
    mode: str
    concurrency: int
    repeat: int
    runs: int
    seconds: float
    cpu_seconds: float  # user + sys of the processes this measurement started (not the engine's)
    foreign_containers: int
    load1: float
    starts: dict[str, Any] = field(default_factory=dict)  # warm procs: warm_pool.start_counts

    @property
    def throughput(self) -> float:
        return self.runs / self.seconds


@dataclass
class Level:
    """All measurements at one concurrency."""

    concurrency: int
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {m: [] for m in MODES})

    def median(self, mode: str) -> float:
        return statistics.median(s.throughput for s in self.samples[mode])

    def spread(self, mode: str) -> tuple[float, float]:
        values = [s.throughput for s in self.samples[mode]]
        return min(values), max(values)

    def ratio(self, mode: str) -> float:
        return self.median(mode) / self.median("raw")

    def cpu_ms_per_run(self, mode: str) -> float:
        return statistics.median(1000 * s.cpu_seconds / s.runs for s in self.samples[mode])

    def warm_starts(self) -> dict[str, Any]:
        """How the warm procs' runs started, over all repeats at this concurrency."""
        total: dict[str, Any] = {"warm": 0, "cold": 0, "cold_reasons": {}}
        for sample in self.samples["warm_procs"]:
            total["warm"] += sample.starts["warm"]
            total["cold"] += sample.starts["cold"]
            for reason, n in sample.starts["cold_reasons"].items():
                total["cold_reasons"][reason] = total["cold_reasons"].get(reason, 0) + n
        return total


# -- measuring ------------------------------------------------------------------------------------


def _run_ok(argv: Sequence[str], cwd: Path) -> None:
    """One whole process, stdout discarded; a failure is fatal (it would measure nothing)."""
    done = subprocess.run(
        list(argv), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(
            f"a timed command exited {done.returncode}: {shlex.join(argv)}\n{done.stderr.strip()[-2000:]}"
        )


def _pool(argv: Sequence[str], cwd: Path, runs: int, concurrency: int) -> float:
    """``runs`` copies of one command, at most ``concurrency`` at a time; wall-clock seconds."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
        futures = [pool.submit(_run_ok, argv, cwd) for _ in range(runs)]
        for future in futures:
            future.result()  # re-raises the first failure (the pool still drains the rest)
    return time.perf_counter() - start


def _timed_one(argv: Sequence[str], cwd: Path) -> float:
    start = time.perf_counter()
    _run_ok(argv, cwd)
    return time.perf_counter() - start


def _running_containers(docker: str) -> int:
    done = subprocess.run([docker, "ps", "-q"], capture_output=True, text=True, check=False)
    return len(done.stdout.split()) if done.returncode == 0 else -1


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # children that have been waited for
    return usage.ru_utime + usage.ru_stime


def _bytecode_cached() -> bool | None:
    """Whether aido's compiled bytecode is cached where its processes will look (None: unknown).
    Without it (e.g. PYTHONDONTWRITEBYTECODE=1 on an editable install) every aido process compiles
    its own sources first, which costs CPU per process."""
    try:
        spec = importlib.util.find_spec("aido.manager")
    except ImportError:
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    try:
        cached = Path(importlib.util.cache_from_source(spec.origin))
        return cached.stat().st_mtime >= Path(spec.origin).stat().st_mtime
    except (OSError, NotImplementedError):
        return False


def _count_runs(sandbox_root: Path) -> int:
    runs = sandbox_root / "runs"
    return sum(1 for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else 0


@dataclass(frozen=True)
class Sandbox:
    id: str
    root: Path


class Bench:
    def __init__(
        self, aido: list[str], docker: str, project: Path, cold: Sandbox, warm: Sandbox, size: int, token: str
    ) -> None:
        self.aido = aido
        self.docker = docker
        self.project = project
        self.sandbox_root = cold.root
        self.cold = cold
        self.warm = warm
        self.size = size  # the warm sandbox's pool
        self.raw = raw_docker_command(docker, cold.root, token)
        # aido procs and the batch run in aido's own processes (AIDO_SERVER=off), as in a
        # workspace without a pool; served procs are the same cold runs handed to the command
        # server that this workspace has for its pool (cli/server.py); warm procs take a
        # pre-started container too.
        in_place = ["env", "AIDO_SERVER=off", *aido]
        self.aido_one = [*in_place, "run", "--sandbox", cold.id, TASK_NAME]
        self.served_one = [*aido, "run", "--sandbox", cold.id, TASK_NAME]
        self.warm_one = [*aido, "run", "--sandbox", warm.id, TASK_NAME]
        self.in_place = in_place

    def batch_argv(self, runs: int, concurrency: int) -> list[str]:
        # The task M times: with several tasks, --parallel bounds the concurrency (with one task,
        # --parallel N would mean N copies instead).
        return [
            *self.in_place,
            "run",
            "--sandbox",
            self.cold.id,
            "--parallel",
            str(concurrency),
            *([TASK_NAME] * runs),
        ]

    def settle(self) -> None:
        """Untimed: wait for a full pool and an idle keeper (the refill after warm procs is
        engine work that would otherwise slow whatever is measured next)."""
        full, waited = wait_for_pool(self.warm.root, self.size)
        if not full:
            raise BenchError(f"the warm pool was not full again after {waited:.0f}s")

    def measure(self, mode: str, runs: int, concurrency: int, repeat: int) -> Sample:
        self.settle()
        foreign = _running_containers(self.docker)  # ours are all gone here: these are someone else's
        load1 = os.getloadavg()[0]
        root = self.warm.root if mode == "warm_procs" else self.cold.root
        before = run_ids(root)
        cpu = _children_cpu()
        if mode == "raw":
            seconds = _pool(self.raw, self.project, runs, concurrency)
        elif mode == "aido_procs":
            seconds = _pool(self.aido_one, self.project, runs, concurrency)
        elif mode == "served_procs":
            seconds = _pool(self.served_one, self.project, runs, concurrency)
        elif mode == "warm_procs":
            seconds = _pool(self.warm_one, self.project, runs, concurrency)
        elif mode == "aido_batch":
            seconds = _timed_one(self.batch_argv(runs, concurrency), self.project)
        else:
            raise ValueError(mode)
        cpu = _children_cpu() - cpu
        made = run_ids(root) - before
        expected = 0 if mode == "raw" else runs
        if len(made) != expected:
            raise BenchError(
                f"{mode} at concurrency {concurrency} made {len(made)} aido runs, expected {expected}"
            )
        counts = start_counts(starts(root, made)) if mode == "warm_procs" else {}
        return Sample(mode, concurrency, repeat, runs, seconds, cpu, foreign, load1, counts)


def with_retries(
    what: str, step: Callable[[], T], notes: dict[str, Any], progress: Callable[[str], None]
) -> T:
    """A measurement in which a run failed is discarded and taken again (up to ATTEMPTS times in
    all): on a shared engine, someone else's test may stop or restart dockerd under our runs."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return step()
        except BenchError as exc:
            if attempt == ATTEMPTS:
                raise
            first = str(exc).splitlines()[0]
            shown = first if len(first) <= 100 else first[:99] + "…"
            notes.setdefault("discarded_measurements", []).append(f"{what}: {shown}")
            progress(f"discarded {what} (attempt {attempt}): {exc}")
            time.sleep(RETRY_PAUSE)
    raise AssertionError("unreachable")


def benchmark(
    runs: int, repeats: int, levels: list[int], warm: int, progress: Callable[[str], None]
) -> tuple[list[Level], dict[str, Any]]:
    aido = aido_command()
    docker = docker_binary()
    token = uuid.uuid4().hex[:12]
    notes: dict[str, Any] = {"image": IMAGE, "task_user": task_user(), "aido": " ".join(aido), "warm": warm}
    project = Path(tempfile.mkdtemp(prefix="aido-bench-tp-"))
    sandbox_ids: list[str] = []
    try:
        with bytecode_cached() as compiled:
            notes.update(compiled)
            notes["aido_bytecode_cached"] = _bytecode_cached()
            (project / TASK_NAME).write_text(TASK_SOURCE, encoding="utf-8")
            options = ("--ttl", SANDBOX_TTL, "--runtime", RUNTIME)
            cold = Sandbox(*start_sandbox(aido, project, *options))
            sandbox_ids.append(cold.id)
            pooled = Sandbox(*start_sandbox(aido, project, *options, "--warm", str(warm)))
            sandbox_ids.append(pooled.id)
            notes["sandbox_ids"] = {"cold": cold.id, "warm": pooled.id}
            bench = Bench(aido, docker, project, cold, pooled, warm, token)
            return run_levels(bench, runs, repeats, levels, notes, progress)
    finally:
        notes["leftover_containers"] = clean_up(aido, project, sandbox_ids, docker, token)


def run_levels(
    bench: Bench,
    runs: int,
    repeats: int,
    levels: list[int],
    notes: dict[str, Any],
    progress: Callable[[str], None],
) -> tuple[list[Level], dict[str, Any]]:
    project, sandbox_root = bench.project, bench.cold.root
    notes["commands"] = {
        "raw": shlex.join(bench.raw),
        "aido_procs": shlex.join(bench.aido_one),
        "served_procs": shlex.join(bench.served_one),
        "warm_procs": shlex.join(bench.warm_one),
        "aido_batch": shlex.join(bench.batch_argv(2, 1)).replace(
            f"{TASK_NAME} {TASK_NAME}", f"{TASK_NAME} x M"
        ),
    }

    # Warm-up, aido first: its first run is what copies hello.py into work/ for the raw runs.
    progress("warm-up")
    with_retries("warm-up", lambda: _run_ok(bench.aido_one, project), notes, progress)
    if not (sandbox_root / "work" / TASK_NAME).is_file():
        raise BenchError(f"aido did not install the task into {sandbox_root / 'work'}")

    def warm_up() -> None:
        _pool(bench.raw, project, 2, 2)
        _run_ok(bench.batch_argv(2, 2), project)
        _pool(bench.aido_one, project, 2, 2)
        bench.settle()
        _pool(bench.warm_one, project, 2, 2)

    with_retries("warm-up", warm_up, notes, progress)

    results: list[Level] = []
    for index, concurrency in enumerate(levels):
        level = Level(concurrency)
        for repeat in range(repeats):
            shift = (index + repeat) % len(MODES)  # rotate who goes first, and who follows whom
            for mode in MODES[shift:] + MODES[:shift]:
                sample = with_retries(
                    f"C={concurrency} {MODE_NAMES[mode]}",
                    lambda: bench.measure(mode, runs, concurrency, repeat),  # noqa: B023 (called now)
                    notes,
                    progress,
                )
                level.samples[mode].append(sample)
                warm_note = f", {sample.starts['warm']}/{runs} warm" if sample.starts else ""
                progress(
                    f"C={concurrency} repeat {repeat + 1}/{repeats} {MODE_NAMES[mode]:<11}"
                    f"{sample.throughput:6.2f} runs/s ({sample.seconds:.2f}s for {runs}{warm_note}, "
                    f"client CPU {1000 * sample.cpu_seconds / runs:.0f} ms/run; "
                    f"{sample.foreign_containers} foreign containers, load {sample.load1:.2f})"
                )
        results.append(level)
    notes["aido_runs_in_sandbox"] = _count_runs(sandbox_root)
    return results, notes


# -- output ---------------------------------------------------------------------------------------


def _noise(levels: list[Level]) -> tuple[int, float]:
    samples = [s for level in levels for mode in MODES for s in level.samples[mode]]
    return max(s.foreign_containers for s in samples), max(s.load1 for s in samples)


def render_table(levels: list[Level], runs: int, repeats: int, target: float, notes: dict[str, Any]) -> str:
    lines = [
        f"aido throughput benchmark: {runs} runs per measurement, median of {repeats} interleaved repeats; "
        f"image {notes['image']}, task user {notes['task_user']}, {os.cpu_count()} CPUs",
        "throughput in runs/s (min-max over repeats); ratio = median aido / median docker run",
        "",
        f"{'C':>3}  {'docker run':>18}"
        + "".join(f"  {MODE_NAMES[mode]:>18} {'ratio':>6}" for mode in AIDO_MODES)
        + f"  {'warm starts':>11}",
    ]
    for level in levels:
        cells = []
        for mode in MODES:
            low, high = level.spread(mode)
            cell = f"{level.median(mode):6.2f} ({low:5.2f}-{high:5.2f})"
            cells.append(cell if mode == "raw" else f"{cell} {level.ratio(mode):5.2f}x")
        counts = level.warm_starts()
        cells.append(f"{counts['warm']:>5}/{counts['warm'] + counts['cold']:<5}")
        lines.append(f"{level.concurrency:>3}  " + "  ".join(cells))
    lines += [
        "",
        "client CPU per run, median ms (user+sys of the processes started; not the engine's own CPU)",
        f"{'C':>3}  " + "  ".join(f"{MODE_NAMES[mode]:>10}" for mode in MODES),
    ]
    for level in levels:
        lines.append(
            f"{level.concurrency:>3}  " + "  ".join(f"{level.cpu_ms_per_run(mode):>10.1f}" for mode in MODES)
        )
    lines += [
        "",
        "warm procs: how their runs started (each measurement began with a full pool of "
        f"{notes['warm']}; a drained pool means cold starts)",
    ]
    for level in levels:
        counts = level.warm_starts()
        reasons = "; ".join(f"{n}x {reason}" for reason, n in counts["cold_reasons"].items())
        lines.append(
            f"{level.concurrency:>3}  {counts['warm']} warm, {counts['cold']} cold"
            + (f" ({reasons})" if reasons else "")
        )
    lines.append("")
    for mode in AIDO_MODES:
        failing = [level.concurrency for level in levels if level.ratio(mode) < target]
        if failing:
            lines.append(
                f"FAIL: {MODE_NAMES[mode]} below {target:.0%} of docker run at concurrency "
                f"{', '.join(map(str, failing))}"
            )
        else:
            lines.append(f"PASS: {MODE_NAMES[mode]} at least {target:.0%} of docker run at every concurrency")
    foreign, load = _noise(levels)
    lines.append(
        f"noise: up to {foreign} foreign running container(s) and load average {load:.2f} seen "
        "before a measurement (other users of this engine skew results)"
    )
    lines.append(f"aido runs recorded in the cold sandbox by the end: {notes['aido_runs_in_sandbox']}")
    if notes.get("aido_bytecode_cached") is False:
        lines.append(
            "note: aido's bytecode is not cached (PYTHONDONTWRITEBYTECODE="
            f"{notes.get('PYTHONDONTWRITEBYTECODE') or ''}): every aido process compiles its sources, "
            "which inflates aido procs; set PYTHONPYCACHEPREFIX=/some/dir and unset it to compare"
        )
    for discarded in notes.get("discarded_measurements", []):
        lines.append(f"warning: discarded and re-measured after a failed run: {discarded}")
    if notes.get("leftover_containers"):
        lines.append(f"warning: {notes['leftover_containers']} leftover container(s) had to be removed")
    return "\n".join(lines)


def _levels(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(not 1 <= v <= 64 for v in values):
        raise argparse.ArgumentTypeError("each concurrency must be between 1 and 64")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=16, metavar="M", help="runs per measurement (default 16)")
    parser.add_argument(
        "--repeats", type=int, default=3, metavar="R", help="interleaved repeats per measurement (default 3)"
    )
    parser.add_argument(
        "--concurrency",
        type=_levels,
        default=[1, 2, 4, 8],
        metavar="C,C,...",
        help="concurrency levels (default 1,2,4,8)",
    )
    parser.add_argument(
        "--warm", type=int, default=8, metavar="W", help="the warm sandbox's pool size (default 8)"
    )
    parser.add_argument(
        "--target",
        type=float,
        default=0.9,
        help="minimum acceptable median throughput ratio of each aido mode / docker run (default 0.9)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a ratio (batch, procs, warm procs) at any concurrency is below --target",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not 1 <= args.warm <= 16:
        parser.error("--warm must be between 1 and 16 (aido's own bounds)")
    if args.target <= 0:
        parser.error("--target must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clean_up_on_signals()

    def progress(message: str) -> None:
        print(f"bench_throughput: {message}", file=sys.stderr, flush=True)

    try:
        levels, notes = benchmark(args.runs, args.repeats, args.concurrency, args.warm, progress)
    except (BenchError, PoolError) as exc:
        print(f"bench_throughput: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_throughput: interrupted; sandbox and containers cleaned up", file=sys.stderr)
        return 130
    passes = {mode: all(level.ratio(mode) >= args.target for level in levels) for mode in AIDO_MODES}
    passed = all(passes.values())
    if args.json:
        foreign, load = _noise(levels)
        result = {
            "benchmark": "aido-run-throughput-vs-docker-run",
            "runs": args.runs,
            "repeats": args.repeats,
            "warm_pool": args.warm,
            "target_ratio": args.target,
            "pass": passed,
            **{f"{mode}_pass": ok for mode, ok in passes.items()},
            "levels": [
                {
                    "concurrency": level.concurrency,
                    **{f"{mode}_runs_per_s": round(level.median(mode), 3) for mode in MODES},
                    "aido_batch_ratio": round(level.ratio("aido_batch"), 4),
                    "aido_procs_ratio": round(level.ratio("aido_procs"), 4),
                    "served_procs_ratio": round(level.ratio("served_procs"), 4),
                    "warm_procs_ratio": round(level.ratio("warm_procs"), 4),
                    "warm_procs_starts": level.warm_starts(),
                    **{
                        f"{mode}_client_cpu_ms_per_run": round(level.cpu_ms_per_run(mode), 1)
                        for mode in MODES
                    },
                    "samples": {
                        mode: [
                            {
                                "repeat": s.repeat,
                                "seconds": round(s.seconds, 4),
                                "runs_per_s": round(s.throughput, 3),
                                "client_cpu_ms_per_run": round(1000 * s.cpu_seconds / s.runs, 1),
                                "foreign_containers": s.foreign_containers,
                                "load1": round(s.load1, 2),
                                **({"starts": s.starts} if s.starts else {}),
                            }
                            for s in level.samples[mode]
                        ]
                        for mode in MODES
                    },
                }
                for level in levels
            ],
            "noise": {"max_foreign_containers": foreign, "max_load1": round(load, 2)},
            "environment": environment(notes),
        }
        print(json.dumps(result, indent=2))
    else:
        print(render_table(levels, args.runs, args.repeats, args.target, notes))
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
