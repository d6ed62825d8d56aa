"""Benchmark: a run through the typed Python API (what an agent loop does) against a bare,
equally hardened ``docker run``, and against a whole ``aido run -c`` process.

One invocation of this script, in one throwaway project directory:

1. opens ``aido.Sandbox(runtime="python:3.11")`` (the sandbox an agent would hold open);
2. after 2 warm-up rounds, times N interleaved rounds of
   - ``sb.run_code('print("hello")')``: a code string, run, recorded and sealed, in-process;
   - ``sb.run("hello.py")``: the same as a task file;
   - ``aido run -c 'print("hello")'``: the whole CLI process, as a shell script would do it;
   - ``docker run --rm`` of the same image and command with aido's hardening (bench_run.py's
     ``raw_docker_command``, flag for flag): the floor;
3. prints median / p90 / min for each and each one's ratio to the floor (or one JSON
   document with ``--json``), then destroys the sandbox and checks no container is left.

Run it with bytecode caches, as an installed aido has them: ``python -m compileall -q src``
first, and without ``PYTHONDONTWRITEBYTECODE``.

    python3 benchmarks/bench_api.py [--runs 15] [--json]

Exit status: 0; 2 if the benchmark itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import (  # a sibling script, not a package
    TASK_NAME,
    TASK_SOURCE,
    WARMUP,
    BenchError,
    Stats,
    aido_command,
    containers_with_label,
    docker_binary,
    environment,
    raw_docker_command,
    timed,
)

CODE = TASK_SOURCE.strip()  # print("hello"), as a code string


def _timed_call(call: Callable[[], Any]) -> float:
    """Milliseconds of one in-process API call; a run that did not succeed is fatal."""
    start = time.perf_counter_ns()
    outcome = call()
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if not outcome.ok or outcome.stdout != "hello\n":
        raise BenchError(f"an API run did not succeed: {outcome.status} {outcome.message or ''}")
    return elapsed


def benchmark(runs: int) -> tuple[list[Stats], dict[str, Any]]:
    import aido

    docker = docker_binary()
    cli = aido_command()
    token = uuid.uuid4().hex[:12]
    project = Path(tempfile.mkdtemp(prefix="aido-bench-api-"))
    (project / TASK_NAME).write_text(TASK_SOURCE, encoding="utf-8")
    samples: dict[str, list[float]] = {"api_code": [], "api_file": [], "cli_code": [], "raw": []}
    sandbox_id = ""
    try:
        with aido.Sandbox(runtime="python:3.11", workspace=project) as sb:
            sandbox_id = sb.id
            root = project / ".aido" / "sandboxes" / sb.id
            sb.run(project / TASK_NAME)  # installs work/hello.py, which the raw baseline runs too
            raw = raw_docker_command(docker, root, token)
            cli_code = [*cli, "run", "--sandbox", sb.id, "-c", CODE]
            for i in range(WARMUP + runs):
                # Interleaved, so a drift of the machine's speed hits every command alike.
                round_ms = {
                    "api_code": _timed_call(lambda: sb.run_code(CODE)),
                    "api_file": _timed_call(lambda: sb.run(project / TASK_NAME)),
                    "cli_code": timed(cli_code, project),
                    "raw": timed(raw, project),
                }
                if i >= WARMUP:
                    for name, value in round_ms.items():
                        samples[name].append(value)
    finally:
        leftovers = containers_with_label(docker, f"aido.sandbox={sandbox_id}") if sandbox_id else []
        leftovers += containers_with_label(docker, f"aido-bench.run={token}")
        if leftovers:
            subprocess.run([docker, "rm", "-f", "-v", *leftovers], capture_output=True, check=False)
        shutil.rmtree(project, ignore_errors=True)
    if leftovers:
        raise BenchError(f"{len(leftovers)} container(s) were left behind")
    stats = [
        Stats("sb.run_code() (API, in-process)", f"Sandbox.run_code({CODE!r})", samples["api_code"]),
        Stats("sb.run(file) (API, in-process)", f"Sandbox.run({TASK_NAME!r})", samples["api_file"]),
        Stats("aido run -c (whole process)", " ".join(cli_code[len(cli) :]), samples["cli_code"]),
        Stats("docker run --rm (hardened)", "raw docker run, aido's flags", samples["raw"]),
    ]
    notes = environment({"runs": runs, "bytecode_cached": "PYTHONDONTWRITEBYTECODE" not in os.environ})
    return stats, notes


def render(stats: list[Stats], notes: dict[str, Any]) -> str:
    floor = stats[-1].median
    lines = [
        f"{'command':<34} {'median':>9} {'p90':>9} {'min':>9} {'vs docker run':>14}",
    ]
    for s in stats:
        lines.append(
            f"{s.name:<34} {s.median:>7.1f}ms {s.p90:>7.1f}ms {s.minimum:>7.1f}ms {s.median / floor:>13.2f}x"
        )
    lines.append(f"({notes['runs']} interleaved rounds after {WARMUP} warm-up; cpus {notes['cpus']})")
    if not notes["bytecode_cached"]:
        lines.append("warning: PYTHONDONTWRITEBYTECODE is set: the CLI process pays for compiling aido")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    try:
        stats, notes = benchmark(args.runs)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        floor = stats[-1].median
        report = {
            "benchmark": "api",
            "results": [{**s.to_json(), "ratio_to_docker_run": round(s.median / floor, 3)} for s in stats],
            "environment": notes,
        }
        print(json.dumps(report, indent=2))
    else:
        print(render(stats, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
