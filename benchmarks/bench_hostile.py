"""Benchmark: aido under hostile volumes (a million tiny files, gigabytes of output) against a
bare, equally hardened ``docker run`` of the same task, measured in the same run.

The issue asks that "huge sparse files and millions of tiny files do not hang or crash aido"
and that aido's own memory stays bounded under an output flood. This script proves both with
numbers rather than a timed test assertion:

1. creates a throwaway project whose ``sandbox.yaml`` allows the volume (``resources.files``
   above the file count, ``disk: 8G``) and runs ``aido sandbox up`` in it;
2. for each scenario, runs ``aido run TASK`` once and the raw ``docker run --rm`` of the same
   task with the same hardening once (``bench_run.raw_docker_command``), each as a whole
   process, recording wall time and the peak RSS of that process (``wait4``'s ru_maxrss);
3. prints, per scenario, both times, their ratio, aido's peak RSS and the run's status from
   its evidence (or one JSON document with ``--json``);
4. destroys the sandbox, removes the directories and checks no container is left behind.

Scenarios: ``files`` (``--files`` empty files in /work, 1,000,000 by default: aido meters the
tree every 50 ms and snapshots it before and after) and ``flood`` (``--flood-mib`` MiB on
stdout, 2048 by default: aido captures the first 16 MiB and counts the rest).

    python3 benchmarks/bench_hostile.py [--files 1000000] [--flood-mib 2048] [--json]
        [--check] [--max-rss-mib 150]

Exit status: 0 whatever the figures, unless ``--check`` is given (then 1 when a run did not
complete or aido's RSS went over ``--max-rss-mib``); 2 if the benchmark itself could not run.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import (  # a sibling script, not a package
    BenchError,
    aido_command,
    clean_up,
    clean_up_on_signals,
    docker_binary,
    raw_docker_command,
    start_sandbox,
)

FILES_TASK = (
    "import os, sys\n"
    "total = int(sys.argv[1])\n"
    "per_dir = 1000\n"
    "for d in range((total + per_dir - 1) // per_dir):\n"
    "    base = f'/work/many/d{d:05d}'\n"
    "    os.makedirs(base)\n"
    "    for i in range(min(per_dir, total - d * per_dir)):\n"
    "        open(f'{base}/{i}', 'wb').close()\n"
    "print('made', total, 'files')\n"
)
FLOOD_TASK = (
    "import os, sys\nchunk = b'x' * (1 << 20)\nfor _ in range(int(sys.argv[1])):\n    os.write(1, chunk)\n"
)


@dataclass(frozen=True)
class Context:
    project: Path
    raw_root: Path
    aido: list[str]
    docker: str
    token: str
    sandbox_id: str


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mib: float
    code: int


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    aido: Measured
    raw: Measured
    status: str
    evidence: dict[str, Any]

    @property
    def ratio(self) -> float:
        return self.aido.seconds / self.raw.seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "what": self.what,
            "aido_seconds": round(self.aido.seconds, 2),
            "raw_docker_seconds": round(self.raw.seconds, 2),
            "ratio": round(self.ratio, 3),
            "aido_peak_rss_mib": round(self.aido.peak_rss_mib, 1),
            "docker_cli_peak_rss_mib": round(self.raw.peak_rss_mib, 1),
            "status": self.status,
            "evidence": self.evidence,
        }


def measure(argv: Sequence[str], cwd: Path) -> Measured:
    """Wall time and peak RSS of one whole process (output discarded)."""
    start = time.perf_counter()
    process = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(time.perf_counter() - start, usage.ru_maxrss / 1024, process.returncode)


def run_scenario(ctx: Context, name: str, what: str, task: str, source: str, args: list[str]) -> Scenario:
    project, raw_root = ctx.project, ctx.raw_root
    (project / task).write_text(source)
    aido_run = measure([*ctx.aido, "run", "--json", task, "--", *args], project)
    runs = sorted((project / ".aido" / "sandboxes" / ctx.sandbox_id / "runs").iterdir())
    summary = json.loads((runs[-1] / "summary.json").read_text())
    if aido_run.code != 0:
        raise BenchError(f"aido run {task} exited {aido_run.code}: {summary.get('message')}")
    shutil.copy(project / task, raw_root / "work" / task)
    os.chmod(raw_root / "work", 0o777)  # the task's uid writes there, as in aido's work/
    raw = measure(raw_docker_command(ctx.docker, raw_root, ctx.token, task, args), raw_root)
    if raw.code != 0:
        raise BenchError(f"the raw docker run of {task} exited {raw.code}")
    # Neither run's files may weigh on the next scenario.
    shutil.rmtree(raw_root / "work")
    (raw_root / "work").mkdir()
    shutil.rmtree(project / ".aido" / "sandboxes" / ctx.sandbox_id / "work" / "many", ignore_errors=True)
    evidence = {
        "disk": summary.get("disk"),
        "output": summary.get("output"),
        "changes_recorded": len(summary.get("changes", [])),
        "changes_notes": summary.get("changes_notes", [])[:3],
    }
    return Scenario(name, what, aido_run, raw, str(summary.get("status")), evidence)


def benchmark(files: int, flood_mib: int) -> list[Scenario]:
    aido = aido_command()
    docker = docker_binary()
    token = uuid.uuid4().hex[:12]
    base = Path(tempfile.mkdtemp(prefix="aido-bench-hostile-"))
    project, raw_root = base / "project", base / "raw"
    for path in (project, raw_root / "inputs", raw_root / "work", raw_root / "outputs"):
        path.mkdir(parents=True)
    (project / "sandbox.yaml").write_text(
        f"resources:\n  files: {max(2 * files, 100000)}\n  disk: 8G\n  timeout: 30m\n"
    )
    sandbox_id = None
    try:
        sandbox_id, _ = start_sandbox(aido, project, "--ttl", "2h")
        ctx = Context(project, raw_root, aido, docker, token, sandbox_id)
        many = f"{files:,} empty files in /work"
        flood = f"{flood_mib:,} MiB on stdout"
        return [
            run_scenario(ctx, "files", many, "many.py", FILES_TASK, [str(files)]),
            run_scenario(ctx, "flood", flood, "flood.py", FLOOD_TASK, [str(flood_mib)]),
        ]
    finally:
        clean_up(aido, project, sandbox_id, docker, token)  # warns about any leftover itself
        shutil.rmtree(base, ignore_errors=True)


def passed(scenarios: list[Scenario], max_rss: float) -> bool:
    """The targets: aido completes each run (no hang, no crash) and its memory stays
    bounded. The time ratios are reported, not judged: how much slower than raw docker
    aido may be while it meters a million files is a trade-off, not a defect."""
    return all(s.status == "success" and s.aido.peak_rss_mib <= max_rss for s in scenarios)


def render(scenarios: list[Scenario], max_rss: float) -> str:
    lines = [
        f"{'scenario':<10} {'aido s':>8} {'docker s':>9} {'ratio':>6} {'aido RSS':>9}  status     what",
    ]
    for s in scenarios:
        lines.append(
            f"{s.name:<10} {s.aido.seconds:>8.2f} {s.raw.seconds:>9.2f} {s.ratio:>6.2f} "
            f"{s.aido.peak_rss_mib:>7.1f}M  {s.status:<10} {s.what}"
        )
    for s in scenarios:
        lines.append(f"  {s.name}: {json.dumps(s.evidence)}")
    verdict = "PASS" if passed(scenarios, max_rss) else "FAIL"
    lines.append(f"{verdict}: every run completed with aido's peak RSS <= {max_rss:g} MiB")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=1_000_000, help="tiny files to make (default 1,000,000)")
    parser.add_argument("--flood-mib", type=int, default=2048, help="MiB written to stdout (default 2048)")
    parser.add_argument("--max-rss-mib", type=float, default=150.0, help="the highest acceptable aido RSS")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--check", action="store_true", help="exit 1 when a figure misses its target")
    args = parser.parse_args(argv)
    if args.files < 1 or args.flood_mib < 1:
        parser.error("--files and --flood-mib must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clean_up_on_signals()
    try:
        scenarios = benchmark(args.files, args.flood_mib)
    except BenchError as exc:
        print(f"bench_hostile: {exc}", file=sys.stderr)
        return 2
    ok = passed(scenarios, args.max_rss_mib)
    if args.json:
        print(json.dumps({"scenarios": [s.to_json() for s in scenarios], "pass": ok}, indent=2))
    else:
        print(render(scenarios, args.max_rss_mib))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
