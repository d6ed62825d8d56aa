"""Benchmark: the wall-clock cost of ``aido run``, cold and warm, against an equally hardened ``docker run``.

One invocation of this script:

1. compiles aido's bytecode and unsets ``PYTHONDONTWRITEBYTECODE`` for every aido process (as a
   user's install has it: see warm_pool.bytecode_cached);
2. creates a throwaway project directory with ``hello.py`` and two sandboxes in it, both
   ``--runtime python:3.11``: one without a pool (every run starts cold) and one with
   ``--warm N`` (default 2: N containers started in advance by aido's background keeper);
3. after 2 warm-up runs of each, times N whole-process runs of each of, interleaved (the order
   rotates from one round to the next):

   - **aido run (cold)**: ``aido run --sandbox COLD hello.py`` in aido's own process
     (``AIDO_SERVER=off``), as every run of a workspace without a pool is;
   - **aido run unsealed**: the same with ``AIDO_SEAL=off``, to measure what the seal costs;
   - **aido run (cold, served)**: the same cold run handed to the workspace's command server
     (cli/server.py), which a workspace with a pool has;
   - **aido run (warm)**: ``aido run --sandbox WARM hello.py``, which claims a pre-started
     container;
   - **docker run**: ``docker run --rm`` of the same image and command with the same hardening
     aido applies (see ``host_config`` in src/aido/backends/docker/hostconfig.py);

   before every sample it waits (untimed, up to 15 s) until the pool is full again and its
   keeper idle, so that each warm sample really is warm and no sample shares the engine with
   the keeper's refill. Every aido run's evidence (summary.json ``start``) says how it started:
   a warm sample that started cold, or a cold one that started warm, makes the measurement
   invalid (exit 2);
4. times N ``aido --version`` (CLI start-up alone) and N ``python -c pass`` (interpreter floor);
5. prints median / p90 / min per command, the ratios of the medians to docker run and
   PASS/FAIL against ``--target`` (cold, default 1.1) and ``--warm-target`` (default 0.5), or
   one JSON document with ``--json``;
6. destroys the sandboxes, removes the directory and checks no container is left behind.

Every command is started from the real binaries (``aido`` next to ``sys.executable``, not a
pyenv shim, which would add ~0.2 s of bash per call). Standard library only; aido's package is
found, not imported, to compile it.

    python3 benchmarks/bench_run.py [--runs 15] [--warm 2] [--target 1.1] [--warm-target 0.5]
                                    [--json] [--check]

Exit status: 0 whatever the ratios, unless ``--check`` is given (then 1 when over a target);
2 if the benchmark itself could not run or a sample did not start as it should have.
"""

from __future__ import annotations

import argparse
import fcntl
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

# A sibling module, not a package: run as a script, this directory is sys.path[0].
sys.path.insert(0, str(Path(__file__).resolve().parent))
from warm_pool import (
    PoolError,
    Start,
    bytecode_cached,
    pool_state,
    run_ids,
    start_counts,
    starts,
    wait_for_pool,
)

IMAGE = "python:3.11-slim"  # what aido picks for a .py task with the default runtime (python:3.11)
RUNTIME = "python:3.11"  # both sandboxes' runtime (a warm pool needs one); its image is IMAGE
TASK_NAME = "hello.py"
TASK_SOURCE = 'print("hello")\n'
WARMUP = 2
UNPRIVILEGED_UID = 10001  # aido's task uid when it runs as root (run/request.py)
LEFTOVER_FORMAT = "{{.Name}} {{.State.Status}} {{json .Config.Labels}}"
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


def clean_up(
    aido: list[str], project: Path, sandbox_ids: str | Sequence[str] | None, docker: str, token: str
) -> int:
    """Destroy the benchmark's sandbox(es), remove any container left behind and the project
    directory; return how many containers had to be removed by hand."""
    ids = [sandbox_ids] if isinstance(sandbox_ids, str) else list(sandbox_ids or ())
    leftovers: list[str] = []
    try:
        for sandbox_id in ids:
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
            # Say which (name, state, labels): a leftover is a finding about aido or the engine.
            shown = subprocess.run(
                [docker, "inspect", "--format", LEFTOVER_FORMAT, *leftovers],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            print(f"warning: removing {len(leftovers)} leftover container(s):\n{shown}", file=sys.stderr)
            subprocess.run(
                [docker, "rm", "-f", "-v", *leftovers],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
    finally:
        wait_for_reaper(project)
        shutil.rmtree(project, ignore_errors=True)
    return len(leftovers)


def wait_for_reaper(project: Path, timeout: float = 5.0) -> None:
    """Wait until the workspace's background process (reaper and pool keeper) has exited: it
    logs its exit into .aido/reaper.log, which would re-create .aido/ in a removed project.
    It holds an flock on .aido/reaper.lock until after that last write."""
    try:
        fd = os.open(project / ".aido" / "reaper.lock", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return  # never started
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                time.sleep(0.05)
        print(f"warning: aido's keeper in {project} still ran after {timeout:g}s", file=sys.stderr)
    finally:
        os.close(fd)


COLD, UNSEALED, WARM, RAW = "aido run (cold)", "aido run unsealed", "aido run (warm)", "docker run"
SERVED = "aido run (cold, served)"
EXPECTED_START = {COLD: "cold", UNSEALED: "cold", SERVED: "cold", WARM: "warm"}


class Sampler:
    """Times whole processes and, for aido runs, reads how each started from its evidence."""

    def __init__(self, project: Path, warm_root: Path, warm: int) -> None:
        self.project = project
        self.warm_root = warm_root
        self.warm = warm
        self.starts: dict[str, list[Start]] = {name: [] for name in EXPECTED_START}
        self.refill_ms: list[float] = []
        self.pool_not_full = 0  # warm samples taken without a full pool (the wait timed out)

    def take(self, name: str, argv: list[str], root: Path | None, env: dict[str, str] | None) -> float:
        full, _ = wait_for_pool(self.warm_root, self.warm)  # untimed: every sample on a quiet engine
        if name == WARM and not full:
            self.pool_not_full += 1
        before = run_ids(root) if root is not None else set()
        elapsed = timed(argv, self.project, env)
        if root is not None:
            new = run_ids(root) - before
            if len(new) != 1:
                raise BenchError(f"{shlex.join(argv)} made {len(new)} runs in {root}, expected 1")
            self.starts[name] += starts(root, new)
        if name == WARM:
            refilled, waited = wait_for_pool(self.warm_root, self.warm)
            if not refilled:
                state = pool_state(self.warm_root)
                raise BenchError(
                    f"the warm pool was not full again {waited:.0f}s after a warm run ({state}); "
                    "is aido's background keeper running? (.aido/reaper.log)"
                )
            self.refill_ms.append(waited * 1000)
        return elapsed


def benchmark(runs: int, warm: int) -> tuple[list[Stats], dict[str, Any]]:
    aido = aido_command()
    docker = docker_binary()
    token = uuid.uuid4().hex[:12]
    notes: dict[str, Any] = {"image": IMAGE, "task_user": task_user(), "aido": " ".join(aido), "warm": warm}
    project = Path(tempfile.mkdtemp(prefix="aido-bench-"))
    sandbox_ids: list[str] = []
    try:
        with bytecode_cached() as compiled:
            notes.update(compiled)
            (project / TASK_NAME).write_text(TASK_SOURCE, encoding="utf-8")
            cold_id, cold_root = start_sandbox(aido, project, "--runtime", RUNTIME)
            sandbox_ids.append(cold_id)
            warm_id, warm_root = start_sandbox(aido, project, "--runtime", RUNTIME, "--warm", str(warm))
            sandbox_ids.append(warm_id)
            notes["sandbox_ids"] = {"cold": cold_id, "warm": warm_id}
            cold, warm_sandbox = (cold_id, cold_root), (warm_id, warm_root)
            return measure(aido, docker, token, project, cold, warm_sandbox, runs, notes)
    finally:
        notes["leftover_containers"] = clean_up(aido, project, sandbox_ids, docker, token)


def measure(
    aido: list[str],
    docker: str,
    token: str,
    project: Path,
    cold: tuple[str, Path],
    warm: tuple[str, Path],
    runs: int,
    notes: dict[str, Any],
) -> tuple[list[Stats], dict[str, Any]]:
    (cold_id, cold_root), (warm_id, warm_root) = cold, warm
    sampler = Sampler(project, warm_root, notes["warm"])
    cold_run = [*aido, "run", "--sandbox", cold_id, TASK_NAME]
    warm_run = [*aido, "run", "--sandbox", warm_id, TASK_NAME]
    raw_run = raw_docker_command(docker, cold_root, token)
    version = [*aido, "--version"]
    floor = [sys.executable, "-c", "pass"]
    # The same run with sealing switched off: what the seal costs a run (AIDO_SEAL=off is
    # for this measurement only; such runs are unverifiable).
    # The cold rows are aido as a workspace without a pool runs it: in the aido process
    # itself (AIDO_SERVER=off). "cold, served" is the cold sandbox's run handed to the
    # command server that a workspace with a pool has (cli/server.py): no container waits
    # for it, but aido's own start-up is paid already.
    plain = {**os.environ, "AIDO_SERVER": "off"}
    unsealed = {**plain, "AIDO_SEAL": "off"}
    order: list[tuple[str, list[str], Path | None, dict[str, str] | None]] = [
        (COLD, cold_run, cold_root, plain),
        (UNSEALED, cold_run, cold_root, unsealed),
        (SERVED, cold_run, cold_root, None),
        (WARM, warm_run, warm_root, None),
        (RAW, raw_run, None, None),
    ]

    # Warm-up: aido first, since its first run is what copies hello.py into work/.
    for _ in range(WARMUP):
        for name, argv, root, env in order:
            sampler.take(name, argv, root, env)
    if not (cold_root / "work" / TASK_NAME).is_file():
        raise BenchError(f"aido did not install the task into {cold_root / 'work'}")
    sampler.starts = {name: [] for name in EXPECTED_START}  # count the timed samples only
    sampler.refill_ms, sampler.pool_not_full = [], 0

    samples: dict[str, list[float]] = {name: [] for name, *_ in order}
    for i in range(runs):
        # Rotate which goes first, so none always follows another (page cache, engine state).
        shift = i % len(order)
        for name, argv, root, env in order[shift:] + order[:shift]:
            samples[name].append(sampler.take(name, argv, root, env))
    notes["seal_added_ms"] = round(
        statistics.median(a - u for a, u in zip(samples[COLD], samples[UNSEALED], strict=True)), 2
    )
    notes["starts"] = {name: start_counts(found) for name, found in sampler.starts.items()}
    notes["unexpected_starts"] = [
        f"{name}: {s.run_id} started {s.mode}" + (f" ({s.reason})" if s.reason else "")
        for name, found in sampler.starts.items()
        for s in found
        if s.mode != EXPECTED_START[name]
    ]
    notes["pool_not_full_before_warm_sample"] = sampler.pool_not_full
    if sampler.refill_ms:
        notes["pool_refill_ms"] = {
            "median": round(statistics.median(sampler.refill_ms), 1),
            "max": round(max(sampler.refill_ms), 1),
        }

    for _ in range(WARMUP):
        timed(version, project)
        timed(floor, project)
    version_ms: list[float] = []
    floor_ms: list[float] = []
    for _ in range(runs):
        version_ms.append(timed(version, project))
        floor_ms.append(timed(floor, project))

    stats = [
        Stats(COLD, "AIDO_SERVER=off " + shlex.join(cold_run), samples[COLD]),
        Stats(UNSEALED, "AIDO_SERVER=off AIDO_SEAL=off " + shlex.join(cold_run), samples[UNSEALED]),
        Stats(SERVED, shlex.join(cold_run), samples[SERVED]),
        Stats(WARM, shlex.join(warm_run), samples[WARM]),
        Stats(RAW, shlex.join(raw_run), samples[RAW]),
        Stats("aido --version", shlex.join(version), version_ms),
        Stats("python -c pass", shlex.join(floor), floor_ms),  # the interpreter start-up floor
    ]
    return stats, notes


# -- output -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    cold_ratio: float
    warm_ratio: float
    cold_target: float
    warm_target: float

    @property
    def cold_pass(self) -> bool:
        return self.cold_ratio <= self.cold_target

    @property
    def warm_pass(self) -> bool:
        return self.warm_ratio <= self.warm_target


def verdict(stats: list[Stats], args: argparse.Namespace) -> Verdict:
    by_name = {s.name: s for s in stats}
    raw = by_name[RAW].median
    return Verdict(by_name[COLD].median / raw, by_name[WARM].median / raw, args.target, args.warm_target)


def _starts_line(name: str, counts: dict[str, Any]) -> str:
    line = f"{name}: {counts['warm']} started warm, {counts['cold']} cold"
    if counts["cold_reasons"]:
        line += " (" + "; ".join(f"{n}x {reason}" for reason, n in counts["cold_reasons"].items()) + ")"
    return line


def render_table(stats: list[Stats], v: Verdict, runs: int, notes: dict[str, Any]) -> str:
    lines = [
        f"aido run benchmark: {runs} runs each, {WARMUP} warm-ups, interleaved; "
        f"image {notes['image']}, task user {notes['task_user']}, warm pool of {notes['warm']}",
        "",
        f"{'command':<24}{'median':>10}{'p90':>10}{'min':>10}",
    ]
    lines += [f"{s.name:<24}{s.median:>8.1f}ms{s.p90:>8.1f}ms{s.minimum:>8.1f}ms" for s in stats]
    by_name = {s.name: s for s in stats}
    raw = by_name[RAW].median
    refill = notes.get("pool_refill_ms")
    lines += [
        "",
        f"cold aido overhead over raw docker (median): {by_name[COLD].median - raw:+.1f}ms",
        f"warm aido overhead over raw docker (median): {by_name[WARM].median - raw:+.1f}ms",
        f"sealing adds (median of paired differences, sealed - unsealed): {notes['seal_added_ms']:+.1f}ms",
        _starts_line(WARM, notes["starts"][WARM]),
        _starts_line(COLD, notes["starts"][COLD]),
    ]
    if refill:
        lines.append(
            f"pool full and its keeper idle again after a warm run: median {refill['median']:.0f}ms, "
            f"max {refill['max']:.0f}ms (untimed; waited for before every sample)"
        )
    lines += [
        "",
        f"{'PASS' if v.cold_pass else 'FAIL'}: cold aido run / docker run = {v.cold_ratio:.2f}x "
        f"(target <= {v.cold_target:g}x)",
        f"{'PASS' if v.warm_pass else 'FAIL'}: warm aido run / docker run = {v.warm_ratio:.2f}x "
        f"(target <= {v.warm_target:g}x)",
    ]
    for unexpected in notes["unexpected_starts"]:
        lines.append(f"INVALID: {unexpected}")
    if notes.get("leftover_containers"):
        lines.append(f"warning: {notes['leftover_containers']} leftover container(s) had to be removed")
    return "\n".join(lines)


def render_json(stats: list[Stats], v: Verdict, args: argparse.Namespace, notes: dict[str, Any]) -> str:
    by_name = {s.name: s for s in stats}
    raw = by_name[RAW].median
    result = {
        "benchmark": "aido-run-vs-docker-run",
        "runs": args.runs,
        "warmup": WARMUP,
        "warm_pool": args.warm,
        "target_ratio": v.cold_target,
        "warm_target_ratio": v.warm_target,
        "ratio": round(v.cold_ratio, 4),  # cold, as before warm starts existed
        "warm_ratio": round(v.warm_ratio, 4),
        "overhead_ms": round(by_name[COLD].median - raw, 2),
        "warm_overhead_ms": round(by_name[WARM].median - raw, 2),
        "seal_added_ms": notes["seal_added_ms"],
        "starts": notes["starts"],
        "unexpected_starts": notes["unexpected_starts"],
        "valid": not notes["unexpected_starts"],
        "pool_refill_ms": notes.get("pool_refill_ms"),
        "pool_not_full_before_warm_sample": notes["pool_not_full_before_warm_sample"],
        "cold_pass": v.cold_pass,
        "warm_pass": v.warm_pass,
        "pass": v.cold_pass and v.warm_pass,
        "results": [s.to_json() for s in stats],
        "environment": environment(notes),
    }
    return json.dumps(result, indent=2)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15, metavar="N", help="timed runs of each (default 15)")
    parser.add_argument(
        "--warm", type=int, default=2, metavar="N", help="the warm sandbox's pool size (default 2)"
    )
    parser.add_argument(
        "--target",
        type=float,
        default=1.1,
        help="maximum acceptable median ratio cold aido run / docker run (default 1.1)",
    )
    parser.add_argument(
        "--warm-target",
        type=float,
        default=0.5,
        help="maximum acceptable median ratio warm aido run / docker run (default 0.5)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--check", action="store_true", help="exit 1 when a ratio is over its target")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not 1 <= args.warm <= 16:
        parser.error("--warm must be between 1 and 16 (aido's own bounds)")
    if args.target <= 0 or args.warm_target <= 0:
        parser.error("--target and --warm-target must be positive")
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
        stats, notes = benchmark(args.runs, args.warm)
    except (BenchError, PoolError) as exc:
        print(f"bench_run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_run: interrupted; sandboxes and containers cleaned up", file=sys.stderr)
        return 130
    v = verdict(stats, args)
    print(render_json(stats, v, args, notes) if args.json else render_table(stats, v, args.runs, notes))
    if notes["unexpected_starts"]:
        # A "warm" figure with cold samples in it (or the reverse) measures something else.
        print(
            f"bench_run: {len(notes['unexpected_starts'])} sample(s) did not start as they should "
            "have (see INVALID above); the measurement is void",
            file=sys.stderr,
        )
        return 2
    return 1 if args.check and not (v.cold_pass and v.warm_pass) else 0


if __name__ == "__main__":
    sys.exit(main())
