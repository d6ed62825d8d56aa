"""Benchmark: the wall-clock cost of ``aido run`` against a bare, equally hardened ``docker run``.

One invocation of this script:

1. creates a throwaway project directory with ``hello.py`` and runs ``aido sandbox up`` in it;
2. after 2 warm-up runs of each, times N whole-process ``aido run hello.py`` invocations
   interleaved with N ``docker run --rm`` of the same image and command with the same
   hardening aido applies (see ``host_config`` in src/aido/backends/docker/hostconfig.py);
3. times N ``aido --version`` (CLI start-up alone) and N ``python -c pass`` (interpreter floor);
4. prints median / p90 / min per command and the ratio of the medians, PASS/FAIL against
   ``--target`` (or one JSON document with ``--json``);
5. destroys the sandbox, removes the directory and checks no container is left behind.

Every command is started from the real binaries (``aido`` next to ``sys.executable``, not a
pyenv shim, which would add ~0.2 s of bash per call). Standard library only.

    python3 benchmarks/bench_run.py [--runs 15] [--target 1.5] [--json] [--check]

Exit status: 0 whatever the ratio, unless ``--check`` is given (then 1 when over target);
2 if the benchmark itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE = "python:3.11-slim"  # what aido picks for a .py task with the default runtime (python:3.11)
TASK_NAME = "hello.py"
TASK_SOURCE = 'print("hello")\n'
WARMUP = 2
UNPRIVILEGED_UID = 10001  # aido's task uid when it runs as root (run/request.py)
BENCH_LABEL = "aido-bench.run"  # put on the raw containers so a leftover can always be found


class BenchError(Exception):
    """The benchmark could not measure what it set out to measure."""


@dataclass(frozen=True)
class Stats:
    name: str
    command: str
    samples_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90(self) -> float:
        if len(self.samples_ms) < 2:
            return self.samples_ms[0]
        return statistics.quantiles(self.samples_ms, n=10, method="inclusive")[8]

    @property
    def minimum(self) -> float:
        return min(self.samples_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": self.command,
            "runs": len(self.samples_ms),
            "median_ms": round(self.median, 2),
            "p90_ms": round(self.p90, 2),
            "min_ms": round(self.minimum, 2),
            "samples_ms": [round(s, 2) for s in self.samples_ms],
        }


# -- helpers ----------------------------------------------------------------------------------


def aido_command() -> list[str]:
    """The real ``aido`` entry point next to this interpreter (never a pyenv shim)."""
    script = Path(sys.executable).parent / "aido"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "aido"]  # same code, same interpreter


def docker_binary() -> str:
    found = shutil.which("docker")
    if found is None:
        raise BenchError("the docker CLI is not on PATH")
    return str(Path(found).resolve())


def task_user() -> str:
    """The uid:gid aido runs tasks as (mirrors aido.run.request.task_user)."""
    if os.getuid() == 0:
        return f"{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}"
    return f"{os.getuid()}:{os.getgid()}"


def run_checked(argv: Sequence[str], cwd: Path, what: str) -> str:
    """Run a setup/teardown command, capture its output, raise BenchError on failure."""
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(
            f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n"
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done.stdout


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall-clock milliseconds of one whole process, output discarded. Failures are fatal:
    a benchmark of a command that errors out measures nothing."""
    start = time.perf_counter_ns()
    code = subprocess.call(list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if code != 0:
        # Run it again with the output kept, only to say why.
        run_checked(argv, cwd, f"a timed command (exit {code})")
        raise BenchError(f"a timed command exited {code} once, then succeeded: {' '.join(argv)}")
    return elapsed


def raw_docker_command(
    docker: str, sandbox_root: Path, token: str, task: str = TASK_NAME, args: Sequence[str] = ()
) -> list[str]:
    """``docker run`` with the HostConfig aido's adapter sets (hostconfig.host_config), flag for
    flag, running ``/work/TASK ARGS`` with python."""
    root = sandbox_root.resolve()
    return [
        docker,
        "run",
        "--rm",
        "--label",
        f"{BENCH_LABEL}={token}",
        "--network",
        "none",
        "--user",
        task_user(),
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,noexec,nosuid,nodev,size=64m",
        "--memory",
        "512m",
        "--memory-swap",
        "512m",
        "--cpus",
        "1",
        "--pids-limit",
        "256",
        "--ulimit",
        "nofile=1024:1024",
        "--init",
        "--log-driver",
        "none",
        "--ipc",
        "private",  # host_config sets IpcMode=private too
        "-v",
        f"{root / 'inputs'}:/inputs:ro",
        "-v",
        f"{root / 'work'}:/work",
        "-v",
        f"{root / 'outputs'}:/outputs",
        "-w",
        "/work",
        IMAGE,
        "python",
        f"/work/{task}",
        *args,
    ]


def containers_with_label(docker: str, label: str) -> list[str]:
    done = subprocess.run(
        [docker, "ps", "-aq", "--no-trunc", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.split() if done.returncode == 0 else []


def start_sandbox(aido: list[str], project: Path, *options: str) -> tuple[str, Path]:
    """``aido sandbox up OPTIONS`` in ``project``: the new sandbox's id and directory."""
    out = run_checked([*aido, "sandbox", "up", *options], project, "aido sandbox up")
    sandbox_id = out.strip().splitlines()[-1].strip()
    sandbox_root = project / ".aido" / "sandboxes" / sandbox_id
    if not sandbox_root.is_dir():
        raise BenchError(f"`aido sandbox up` printed {sandbox_id!r}, but {sandbox_root} does not exist")
    return sandbox_id, sandbox_root


def environment(notes: dict[str, Any]) -> dict[str, Any]:
    """The notes plus the interpreter and machine, for a benchmark's JSON document."""
    return {
        **notes,
        "python": sys.executable,
        "python_version": platform.python_version(),
        "cpus": os.cpu_count(),
    }


# -- the benchmark ------------------------------------------------------------------------------


def clean_up(aido: list[str], project: Path, sandbox_id: str | None, docker: str, token: str) -> int:
    """Destroy the benchmark's sandbox, remove any container left behind and the project
    directory; return how many containers had to be removed by hand."""
    leftovers: list[str] = []
    try:
        if sandbox_id is not None:
            done = subprocess.run(
                [*aido, "sandbox", "destroy", sandbox_id],
                cwd=project,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                print(f"warning: aido sandbox destroy failed: {done.stderr.strip()}", file=sys.stderr)
            leftovers += containers_with_label(docker, f"aido.sandbox={sandbox_id}")
        leftovers += containers_with_label(docker, f"{BENCH_LABEL}={token}")
        if leftovers:
            print(f"warning: removing {len(leftovers)} leftover container(s)", file=sys.stderr)
            subprocess.run(
                [docker, "rm", "-f", "-v", *leftovers],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return len(leftovers)


def benchmark(runs: int) -> tuple[list[Stats], dict[str, Any]]:
    aido = aido_command()
    docker = docker_binary()
    token = uuid.uuid4().hex[:12]
    notes: dict[str, Any] = {"image": IMAGE, "task_user": task_user(), "aido": " ".join(aido)}
    project = Path(tempfile.mkdtemp(prefix="aido-bench-"))
    sandbox_id: str | None = None
    try:
        (project / TASK_NAME).write_text(TASK_SOURCE, encoding="utf-8")
        sandbox_id, sandbox_root = start_sandbox(aido, project)
        notes["sandbox_id"] = sandbox_id

        aido_run = [*aido, "run", TASK_NAME]
        raw_run = raw_docker_command(docker, sandbox_root, token)
        version = [*aido, "--version"]
        floor = [sys.executable, "-c", "pass"]

        # The same run with sealing switched off: what the seal costs a run (AIDO_SEAL=off is
        # for this measurement only; such runs are unverifiable).
        unsealed = {**os.environ, "AIDO_SEAL": "off"}

        # Warm-up: aido first, since its first run is what copies hello.py into work/.
        for _ in range(WARMUP):
            timed(aido_run, project)
            timed(aido_run, project, unsealed)
            timed(raw_run, project)
        if not (sandbox_root / "work" / TASK_NAME).is_file():
            raise BenchError(f"aido did not install the task into {sandbox_root / 'work'}")

        aido_ms: list[float] = []
        unsealed_ms: list[float] = []
        raw_ms: list[float] = []
        for i in range(runs):
            # Rotate which goes first, so none always follows another (page cache, engine state).
            order: list[tuple[list[float], list[str], dict[str, str] | None]] = [
                (aido_ms, aido_run, None),
                (unsealed_ms, aido_run, unsealed),
                (raw_ms, raw_run, None),
            ]
            for samples, argv, env in order[i % 3 :] + order[: i % 3]:
                samples.append(timed(argv, project, env))
        notes["seal_added_ms"] = round(
            statistics.median(a - u for a, u in zip(aido_ms, unsealed_ms, strict=True)), 2
        )

        for _ in range(WARMUP):
            timed(version, project)
            timed(floor, project)
        version_ms: list[float] = []
        floor_ms: list[float] = []
        for _ in range(runs):
            version_ms.append(timed(version, project))
            floor_ms.append(timed(floor, project))

        stats = [
            Stats("aido run", shlex.join(aido_run), aido_ms),
            Stats("aido run unsealed", "AIDO_SEAL=off " + shlex.join(aido_run), unsealed_ms),
            Stats("docker run", shlex.join(raw_run), raw_ms),
            Stats("aido --version", shlex.join(version), version_ms),
            Stats("python -c pass", shlex.join(floor), floor_ms),  # the interpreter start-up floor
        ]
        return stats, notes
    finally:
        notes["leftover_containers"] = clean_up(aido, project, sandbox_id, docker, token)


# -- output -------------------------------------------------------------------------------------


def render_table(stats: list[Stats], ratio: float, target: float, runs: int, notes: dict[str, Any]) -> str:
    lines = [
        f"aido run benchmark: {runs} runs each, {WARMUP} warm-ups, interleaved; "
        f"image {notes['image']}, task user {notes['task_user']}",
        "",
        f"{'command':<20}{'median':>10}{'p90':>10}{'min':>10}",
    ]
    lines += [f"{s.name:<20}{s.median:>8.1f}ms{s.p90:>8.1f}ms{s.minimum:>8.1f}ms" for s in stats]
    by_name = {s.name: s for s in stats}
    overhead = by_name["aido run"].median - by_name["docker run"].median
    verdict = "PASS" if ratio <= target else "FAIL"
    lines += [
        "",
        f"aido overhead over raw docker (median): {overhead:+.1f}ms",
        f"ratio (median aido run / median docker run): {ratio:.2f}x",
        f"sealing adds (median of paired differences, sealed - unsealed): {notes['seal_added_ms']:+.1f}ms",
        f"{verdict}: target <= {target:g}x",
    ]
    if notes.get("leftover_containers"):
        lines.append(f"warning: {notes['leftover_containers']} leftover container(s) had to be removed")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15, metavar="N", help="timed runs of each (default 15)")
    parser.add_argument(
        "--target", type=float, default=1.5, help="maximum acceptable median ratio aido/raw (default 1.5)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--check", action="store_true", help="exit 1 when the ratio is over --target")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.target <= 0:
        parser.error("--target must be positive")
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwind through the finally blocks: sandbox, containers, temp dir


def clean_up_on_signals() -> None:
    """Clean up on Ctrl-C and on SIGTERM, even when started in the background (SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clean_up_on_signals()
    try:
        stats, notes = benchmark(args.runs)
    except BenchError as exc:
        print(f"bench_run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_run: interrupted; sandbox and containers cleaned up", file=sys.stderr)
        return 130
    by_name = {s.name: s for s in stats}
    ratio = by_name["aido run"].median / by_name["docker run"].median
    passed = ratio <= args.target
    if args.json:
        result = {
            "benchmark": "aido-run-vs-docker-run",
            "runs": args.runs,
            "warmup": WARMUP,
            "target_ratio": args.target,
            "ratio": round(ratio, 4),
            "overhead_ms": round(by_name["aido run"].median - by_name["docker run"].median, 2),
            "seal_added_ms": notes["seal_added_ms"],
            "pass": passed,
            "results": [s.to_json() for s in stats],
            "environment": environment(notes),
        }
        print(json.dumps(result, indent=2))
    else:
        print(render_table(stats, ratio, args.target, args.runs, notes))
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
