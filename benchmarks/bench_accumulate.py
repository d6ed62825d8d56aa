"""Benchmark: ``aido run`` does not slow down as a sandbox's runs accumulate.

Until sandbox.json schema 2, sandbox.json listed every run and was loaded and rewritten two or
three times per run (about 210 ms per run at 10,000 runs). Runs now go to the append-only run
index ``runs.jsonl``, and ``aido run`` never reads it. One invocation of this script:

1. creates a throwaway project directory with ``hello.py`` and runs ``aido sandbox up --ttl 6h``;
2. compiles aido's bytecode into a private cache (``PYTHONPYCACHEPREFIX``) and runs every aido
   process with ``PYTHONDONTWRITEBYTECODE`` unset, so that no process compiles aido's sources
   (which would cost more than anything measured here);
3. after 2 warm-ups, times N whole ``aido run hello.py`` processes: the first runs;
4. builds the history up to ``--history`` runs (default 2,000) with batch processes
   ``aido run --parallel P hello.py hello.py ...``: real runs, each its own container and evidence;
5. creates a second, fresh sandbox in the same workspace and, after 2 warm-ups of each, times N
   whole ``aido run --sandbox ID hello.py`` processes in each, alternately: the first runs of the
   fresh one against the runs after the history of the other, at the same moment, so that a
   change in the machine's load (other users of the engine and the CPUs) between steps 3 and 5
   cannot pass for a slowdown or hide one;
6. prints the medians, PASS/FAIL of the alternated ratio (after the history / first runs) against
   ``--target`` (default 1.10), the ratio to step 3's first runs too, and, for reference, what
   loading and rewriting a schema-1 sandbox.json listing that many runs costs (the per-run work
   the index replaced, measured in this process on the sandbox's own runs);
7. destroys the sandboxes and removes the directory.

    python3 benchmarks/bench_accumulate.py [--runs 21] [--history 2000] [--parallel 16]
                                           [--target 1.10] [--json] [--check]

Exit status: 0 whatever the ratio, unless ``--check`` is given (then 1 when over target); 2 if
the benchmark itself could not run. Standard library only (plus aido itself for the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import (
    TASK_NAME,
    TASK_SOURCE,
    WARMUP,
    BenchError,
    Stats,
    aido_command,
    clean_up,
    clean_up_on_signals,
    docker_binary,
    environment,
)

SANDBOX_TTL = "6h"  # outlives the benchmark; destroyed at the end regardless
BATCH = 200  # tasks per history-building process
OLD_SAVES_PER_RUN = 2.5  # sandbox.json loaded and rewritten two or three times per run


def aido_env(pycache: Path) -> dict[str, str]:
    """The environment of every aido process: bytecode cached in ``pycache``, never compiled anew."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def compile_aido(env: dict[str, str]) -> None:
    """Compile aido's modules into the cache the timed processes use."""
    import aido

    package = Path(aido.__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(f"compileall failed: {(done.stderr or done.stdout).strip()[-2000:]}")


def checked(argv: Sequence[str], cwd: Path, env: dict[str, str], what: str) -> str:
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(
            f"{what} failed (exit {done.returncode}): {shlex.join(argv)}\n"
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done.stdout


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall-clock milliseconds of one whole process, output discarded; a failure is fatal."""
    start = time.perf_counter_ns()
    code = subprocess.call(list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if code != 0:
        checked(argv, cwd, env, f"a timed command (exit {code})")
        raise BenchError(f"a timed command exited {code} once, then succeeded: {shlex.join(argv)}")
    return elapsed


def count_runs(sandbox_root: Path) -> int:
    return sum(1 for name in os.listdir(sandbox_root / "runs") if name.startswith("run-"))


def sample(argv: Sequence[str], cwd: Path, env: dict[str, str], runs: int) -> list[float]:
    for _ in range(WARMUP):
        timed(argv, cwd, env)
    return [timed(argv, cwd, env) for _ in range(runs)]


def bookkeeping_ms(project: Path, sandbox_id: str, repeats: int = 21) -> float:
    """Median milliseconds of the store work one ``aido run`` does, in this process and
    without a container: the plan's load of sandbox.json, ``begin_run`` (next id, marker,
    running line) and ``close_run`` (closed line). Each adds a run id to the sandbox (a
    directory without evidence), so this runs last, just before the sandbox is destroyed."""
    from aido.store.records import RunRef, isoformat, utcnow
    from aido.store.store import SandboxStore
    from aido.store.workspace import Workspace

    store = SandboxStore(Workspace(project))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        store.load(sandbox_id)
        rid, _, lock_fd = store.begin_run(sandbox_id, TASK_NAME)
        now = isoformat(utcnow())
        store.close_run(
            sandbox_id,
            RunRef(rid, TASK_NAME, "success", now, now, 0, 0, f"runs/{rid}", [f"runs/{rid}/summary.json"]),
        )
        samples.append((time.perf_counter_ns() - start) / 1e6)
        os.close(lock_fd)
    return statistics.median(samples)


def old_format_cost_ms(sandbox_root: Path, repeats: int = 5) -> float:
    """What one load + rewrite of a schema-1 sandbox.json listing this sandbox's runs costs
    (median of ``repeats``): the work each run did two or three times before the run index."""
    from aido import fs
    from aido.store import runindex
    from aido.store.records import SandboxRecord

    current = fs.read_json(sandbox_root / "sandbox.json")
    runs = [dict(vars(r)) for r in runindex.read(sandbox_root / "runs.jsonl")]
    old = {**current, "schema_version": 1, "runs": runs}
    with tempfile.TemporaryDirectory(prefix="aido-bench-old-") as tmp:
        path = Path(tmp) / "sandbox.json"
        path.write_text(json.dumps(old, indent=2), encoding="utf-8")
        samples = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            data = fs.read_json(path)
            record = SandboxRecord.from_json(data, source=str(path))  # validates every run
            saved = record.legacy_runs or []
            # Schema 1's writer: the record indented, one compact line per run.
            rows = ",\n    ".join(json.dumps(vars(r), ensure_ascii=False) for r in saved)
            head = json.dumps({k: v for k, v in data.items() if k != "runs"}, indent=2)
            fs.atomic_write_bytes(path, (head[:-2] + f',\n  "runs": [\n    {rows}\n  ]\n}}\n').encode())
            samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def start(aido: list[str], project: Path, env: dict[str, str]) -> tuple[str, Path]:
    out = checked([*aido, "sandbox", "up", "--ttl", SANDBOX_TTL], project, env, "aido sandbox up")
    sandbox_id = out.strip().splitlines()[-1].strip()
    sandbox_root = project / ".aido" / "sandboxes" / sandbox_id
    if not sandbox_root.is_dir():
        raise BenchError(f"`aido sandbox up` printed {sandbox_id!r}, but {sandbox_root} does not exist")
    return sandbox_id, sandbox_root


def alternated(
    first: list[str], second: list[str], cwd: Path, env: dict[str, str], runs: int
) -> tuple[list[float], list[float]]:
    for _ in range(WARMUP):
        timed(first, cwd, env)
        timed(second, cwd, env)
    a: list[float] = []
    b: list[float] = []
    for i in range(runs):  # alternate which goes first
        if i % 2 == 0:
            a.append(timed(first, cwd, env))
            b.append(timed(second, cwd, env))
        else:
            b.append(timed(second, cwd, env))
            a.append(timed(first, cwd, env))
    return a, b


def benchmark(runs: int, history: int, parallel: int, progress: Any) -> tuple[list[Stats], dict[str, Any]]:
    aido = aido_command()
    docker = docker_binary()
    token = uuid.uuid4().hex[:12]
    project = Path(tempfile.mkdtemp(prefix="aido-bench-acc-"))
    pycache = project / ".pycache"
    env = aido_env(pycache)
    notes: dict[str, Any] = {"aido": " ".join(aido), "history": history, "parallel": parallel}
    sandbox_id: str | None = None
    fresh_id: str | None = None
    try:
        compile_aido(env)
        (project / TASK_NAME).write_text(TASK_SOURCE, encoding="utf-8")
        sandbox_id, sandbox_root = start(aido, project, env)
        notes["sandbox_id"] = sandbox_id
        one = [*aido, "run", "--sandbox", sandbox_id, TASK_NAME]

        progress(f"timing {runs} runs at the start")
        first = sample(one, project, env, runs)
        first_at = count_runs(sandbox_root)

        started = time.monotonic()
        while (have := count_runs(sandbox_root)) < history - WARMUP:
            tasks = min(BATCH, history - WARMUP - have)
            progress(f"history: {have} runs, adding {tasks}")
            batch = [*aido, "run", "--parallel", str(parallel), *([TASK_NAME] * tasks)]
            checked(batch, project, env, "a batch of runs")
        notes["history_seconds"] = round(time.monotonic() - started, 1)
        if not (sandbox_root / "runs.jsonl").is_file():
            raise BenchError("this aido has no run index (runs.jsonl); nothing to compare")

        fresh_id, _ = start(aido, project, env)
        fresh = [*aido, "run", "--sandbox", fresh_id, TASK_NAME]
        progress(f"timing {runs} runs after {count_runs(sandbox_root)}, alternated with a fresh sandbox's")
        after_at = count_runs(sandbox_root) + WARMUP
        later, control = alternated(one, fresh, project, env, runs)
        notes["runs_in_sandbox"] = count_runs(sandbox_root)
        notes["sandbox_json_bytes"] = (sandbox_root / "sandbox.json").stat().st_size
        notes["run_index_bytes"] = (sandbox_root / "runs.jsonl").stat().st_size
        try:
            notes["old_format_ms"] = round(old_format_cost_ms(sandbox_root), 2)
            notes["bookkeeping_ms"] = {
                "fresh": round(bookkeeping_ms(project, fresh_id), 2),
                "after_history": round(bookkeeping_ms(project, sandbox_id), 2),
            }
        except Exception as exc:  # only reference figures: never fail the benchmark for them
            notes["reference_error"] = str(exc)
        stats = [
            Stats(f"runs {first_at - runs + 1}-{first_at}", shlex.join(one), first),
            Stats(f"fresh {WARMUP + 1}-{WARMUP + runs}", shlex.join(fresh), control),
            Stats(f"runs {after_at}-{after_at + runs - 1}", shlex.join(one), later),
        ]
        return stats, notes
    finally:
        if fresh_id is not None:  # clean_up (below) checks its containers too, by the bench's label
            subprocess.run([*aido, "sandbox", "destroy", fresh_id], cwd=project, env=env, capture_output=True)
        notes["leftover_containers"] = clean_up(aido, project, sandbox_id, docker, token)
        shutil.rmtree(project, ignore_errors=True)


def render_table(stats: list[Stats], ratio: float, target: float, notes: dict[str, Any]) -> str:
    start_ratio = stats[2].median / stats[0].median
    lines = [
        f"aido run as runs accumulate: {len(stats[0].samples_ms)} timed runs each, {WARMUP} warm-ups; "
        f"history built with --parallel {notes['parallel']} in {notes.get('history_seconds')}s",
        "",
        f"{'aido run':<18}{'median':>10}{'p90':>10}{'min':>10}",
    ]
    lines += [f"{s.name:<18}{s.median:>8.1f}ms{s.p90:>8.1f}ms{s.minimum:>8.1f}ms" for s in stats]
    verdict = "PASS" if ratio <= target else "FAIL"
    lines += [
        "",
        f"ratio (median after {notes['runs_in_sandbox']} runs / a fresh sandbox's first, alternated): "
        f"{ratio:.3f}x",
        f"ratio (the same / this sandbox's first runs, timed before the history): {start_ratio:.3f}x",
        f"{verdict}: target <= {target:g}x",
        f"sandbox.json {notes['sandbox_json_bytes']} bytes; runs.jsonl {notes['run_index_bytes']} bytes",
    ]
    if "old_format_ms" in notes:
        old = notes["old_format_ms"]
        lines.append(
            f"reference: one load + rewrite of a schema-1 sandbox.json with these runs: {old:.1f}ms "
            f"(x{OLD_SAVES_PER_RUN:g} per run = ~{old * OLD_SAVES_PER_RUN:.0f}ms a run no longer pays)"
        )
    if "bookkeeping_ms" in notes:
        work = notes["bookkeeping_ms"]
        lines.append(
            f"store work per run, in-process (load + begin_run + close_run): {work['fresh']:.2f}ms in the "
            f"fresh sandbox, {work['after_history']:.2f}ms after the history"
        )
    if notes.get("reference_error"):
        lines.append(f"warning: reference figures failed: {notes['reference_error']}")
    if notes.get("leftover_containers"):
        lines.append(f"warning: {notes['leftover_containers']} leftover container(s) had to be removed")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=21, metavar="N", help="timed runs at each end")
    parser.add_argument("--history", type=int, default=2000, metavar="H", help="runs before the 2nd timing")
    parser.add_argument("--parallel", type=int, default=16, metavar="P", help="concurrency building history")
    parser.add_argument("--target", type=float, default=1.10, help="maximum median ratio later/first (1.10)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--check", action="store_true", help="exit 1 when the ratio is over --target")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.history < args.runs + 2 * WARMUP or not 1 <= args.parallel <= 64:
        parser.error("need --runs >= 1, --history above the timed runs, 1 <= --parallel <= 64")
    if args.target <= 0:
        parser.error("--target must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clean_up_on_signals()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"bench_accumulate: {message}", file=sys.stderr, flush=True)

    try:
        stats, notes = benchmark(args.runs, args.history, args.parallel, progress)
    except BenchError as exc:
        print(f"bench_accumulate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_accumulate: interrupted; sandbox and containers cleaned up", file=sys.stderr)
        return 130
    ratio = stats[2].median / stats[1].median  # alternated: the same moment, the same load
    passed = ratio <= args.target
    if args.json:
        result = {
            "benchmark": "aido-run-as-runs-accumulate",
            "runs": args.runs,
            "warmup": WARMUP,
            "target_ratio": args.target,
            "ratio": round(ratio, 4),
            "ratio_to_start": round(stats[2].median / stats[0].median, 4),
            "pass": passed,
            "results": [s.to_json() for s in stats],
            "environment": environment(notes),
        }
        print(json.dumps(result, indent=2))
    else:
        print(render_table(stats, ratio, args.target, notes))
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
