"""Benchmark: throughput (runs per second) of ``aido run`` against an equally hardened ``docker run``
at concurrency 1, 2, 4 and 8.

``bench_run.py`` measures the latency of one run; this measures how many short runs per second
aido sustains when it runs several at once, which is what an agent fanning out tasks sees. One
invocation of this script:

1. creates a throwaway project directory with ``hello.py`` (``print(1)``) and runs
   ``aido sandbox up --ttl 6h`` in it;
2. warms up (one run of each kind), then, for every concurrency C, repeats R times, in an order
   that rotates from one repeat to the next (to cancel drift), three measurements of M runs each:

   - **raw**: M ``docker run --rm`` of the same image, command, mounts and hardening aido applies
     (``bench_run.raw_docker_command``, imported, not copied), C worker threads each running
     ``subprocess.run(docker run ...)`` back to back;
   - **aido batch**: one ``aido run --parallel C hello.py hello.py ...`` process (the task given
     M times, so C bounds the concurrency): one aido start-up for M runs, C threads inside it;
   - **aido procs**: C worker threads each spawning whole ``aido run hello.py`` processes back to
     back (M in all), i.e. C concurrent aido processes, as a shell loop or an agent would do;

   each measurement's throughput is M / its wall-clock time, and every run must succeed (aido's
   runs are also counted in the sandbox's ``runs/`` folder): a measurement in which one failed
   is reported, discarded and taken again, at most 3 times in all;
3. prints, per concurrency, the median throughput of each and the ratios aido/raw, PASS/FAIL of
   the batch ratio against ``--target`` (or one JSON document with ``--json``), and the client
   CPU per run (user + sys of the processes started, from ``RUSAGE_CHILDREN``): on a small host
   the engine and the clients share the CPUs, so client CPU is what caps throughput at high C;
4. destroys the sandbox, removes the directory and any container left behind.

Other users of the same Docker engine make the numbers noisy: before every measurement the
script counts running containers (all of them foreign, since ours are gone by then) and the load
average, and reports the maximum seen. All aido runs go into one sandbox, so its run record grows
by a few hundred runs over the benchmark, as it would in real use.

    python3 benchmarks/bench_throughput.py [--runs 16] [--repeats 3] [--concurrency 1,2,4,8]
                                           [--target 0.9] [--json] [--check]

Exit status: 0 whatever the ratios, unless ``--check`` is given (then 1 when the batch ratio at
any concurrency is below target); 2 if the benchmark itself could not run. Standard library only.
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

T = TypeVar("T")
TASK_SOURCE = "print(1)\n"
SANDBOX_TTL = "6h"  # outlives any sensible benchmark; destroyed at the end regardless
ATTEMPTS = 3  # a measurement in which a run failed is taken again, at most this many times in all
RETRY_PAUSE = 5.0  # seconds, e.g. for a restarted engine to come back
MODES = ("raw", "aido_batch", "aido_procs")
MODE_NAMES = {"raw": "docker run", "aido_batch": "aido batch", "aido_procs": "aido procs"}


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


class Bench:
    def __init__(self, aido: list[str], docker: str, project: Path, sandbox_root: Path, token: str) -> None:
        self.aido = aido
        self.docker = docker
        self.project = project
        self.sandbox_root = sandbox_root
        self.raw = raw_docker_command(docker, sandbox_root, token)
        self.aido_one = [*aido, "run", TASK_NAME]

    def batch_argv(self, runs: int, concurrency: int) -> list[str]:
        # The task M times: with several tasks, --parallel bounds the concurrency (with one task,
        # --parallel N would mean N copies instead).
        return [*self.aido, "run", "--parallel", str(concurrency), *([TASK_NAME] * runs)]

    def measure(self, mode: str, runs: int, concurrency: int, repeat: int) -> Sample:
        foreign = _running_containers(self.docker)  # ours are all gone here: these are someone else's
        load1 = os.getloadavg()[0]
        before = _count_runs(self.sandbox_root)
        cpu = _children_cpu()
        if mode == "raw":
            seconds = _pool(self.raw, self.project, runs, concurrency)
        elif mode == "aido_procs":
            seconds = _pool(self.aido_one, self.project, runs, concurrency)
        elif mode == "aido_batch":
            seconds = _timed_one(self.batch_argv(runs, concurrency), self.project)
        else:
            raise ValueError(mode)
        cpu = _children_cpu() - cpu
        made = _count_runs(self.sandbox_root) - before
        expected = 0 if mode == "raw" else runs
        if made != expected:
            raise BenchError(
                f"{mode} at concurrency {concurrency} made {made} aido runs, expected {expected}"
            )
        return Sample(mode, concurrency, repeat, runs, seconds, cpu, foreign, load1)


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
    runs: int, repeats: int, levels: list[int], progress: Callable[[str], None]
) -> tuple[list[Level], dict[str, Any]]:
    aido = aido_command()
    docker = docker_binary()
    token = uuid.uuid4().hex[:12]
    notes: dict[str, Any] = {
        "image": IMAGE,
        "task_user": task_user(),
        "aido": " ".join(aido),
        "aido_bytecode_cached": _bytecode_cached(),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE") or None,
    }
    project = Path(tempfile.mkdtemp(prefix="aido-bench-tp-"))
    sandbox_id: str | None = None
    try:
        (project / TASK_NAME).write_text(TASK_SOURCE, encoding="utf-8")
        sandbox_id, sandbox_root = start_sandbox(aido, project, "--ttl", SANDBOX_TTL)
        notes["sandbox_id"] = sandbox_id
        bench = Bench(aido, docker, project, sandbox_root, token)
        notes["commands"] = {
            "raw": shlex.join(bench.raw),
            "aido_procs": shlex.join(bench.aido_one),
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
                    progress(
                        f"C={concurrency} repeat {repeat + 1}/{repeats} {MODE_NAMES[mode]:<11}"
                        f"{sample.throughput:6.2f} runs/s ({sample.seconds:.2f}s for {runs}, "
                        f"client CPU {1000 * sample.cpu_seconds / runs:.0f} ms/run; "
                        f"{sample.foreign_containers} foreign containers, load {sample.load1:.2f})"
                    )
            results.append(level)
        notes["aido_runs_in_sandbox"] = _count_runs(sandbox_root)
        return results, notes
    finally:
        notes["leftover_containers"] = clean_up(aido, project, sandbox_id, docker, token)


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
        f"{'C':>3}  {'docker run':>18}  {'aido batch':>18} {'ratio':>6}  {'aido procs':>18} {'ratio':>6}",
    ]
    for level in levels:
        cells = []
        for mode in MODES:
            low, high = level.spread(mode)
            cell = f"{level.median(mode):6.2f} ({low:5.2f}-{high:5.2f})"
            cells.append(cell if mode == "raw" else f"{cell} {level.ratio(mode):5.2f}x")
        lines.append(f"{level.concurrency:>3}  " + "  ".join(cells))
    lines += [
        "",
        "client CPU per run, median ms (user+sys of the processes started; not the engine's own CPU)",
        f"{'C':>3}  {'docker run':>10}  {'aido batch':>10}  {'aido procs':>10}",
    ]
    for level in levels:
        lines.append(
            f"{level.concurrency:>3}  " + "  ".join(f"{level.cpu_ms_per_run(mode):>10.1f}" for mode in MODES)
        )
    failing = [level.concurrency for level in levels if level.ratio("aido_batch") < target]
    lines.append("")
    if failing:
        lines.append(
            f"FAIL: aido batch below {target:.0%} of docker run at concurrency {', '.join(map(str, failing))}"
        )
    else:
        lines.append(f"PASS: aido batch at least {target:.0%} of docker run at every concurrency")
    procs_failing = [level.concurrency for level in levels if level.ratio("aido_procs") < target]
    if procs_failing:
        lines.append(
            f"(aido procs below {target:.0%} at concurrency {', '.join(map(str, procs_failing))}; "
            "not part of the check)"
        )
    foreign, load = _noise(levels)
    lines.append(
        f"noise: up to {foreign} foreign running container(s) and load average {load:.2f} seen "
        "before a measurement (other users of this engine skew results)"
    )
    lines.append(f"aido runs recorded in the benchmark's sandbox by the end: {notes['aido_runs_in_sandbox']}")
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
        "--target",
        type=float,
        default=0.9,
        help="minimum acceptable median throughput ratio aido batch / docker run (default 0.9)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the batch ratio at any concurrency is below --target",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.target <= 0:
        parser.error("--target must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clean_up_on_signals()

    def progress(message: str) -> None:
        print(f"bench_throughput: {message}", file=sys.stderr, flush=True)

    try:
        levels, notes = benchmark(args.runs, args.repeats, args.concurrency, progress)
    except BenchError as exc:
        print(f"bench_throughput: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_throughput: interrupted; sandbox and containers cleaned up", file=sys.stderr)
        return 130
    passed = all(level.ratio("aido_batch") >= args.target for level in levels)
    if args.json:
        foreign, load = _noise(levels)
        result = {
            "benchmark": "aido-run-throughput-vs-docker-run",
            "runs": args.runs,
            "repeats": args.repeats,
            "target_ratio": args.target,
            "pass": passed,
            "levels": [
                {
                    "concurrency": level.concurrency,
                    **{f"{mode}_runs_per_s": round(level.median(mode), 3) for mode in MODES},
                    "aido_batch_ratio": round(level.ratio("aido_batch"), 4),
                    "aido_procs_ratio": round(level.ratio("aido_procs"), 4),
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
