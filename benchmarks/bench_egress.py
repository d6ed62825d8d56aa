"""Benchmark: what an egress allowlist costs, per run and per request.

One invocation:

1. compiles aido's bytecode (as a user's install has it: warm_pool.bytecode_cached);
2. starts a test "internet" on a Docker network it creates (tests/helpers/internet.py: an
   origin answering ``allowed.test``, a DNS server for the proxy); nothing else is contacted;
3. creates two sandboxes (``--runtime python:3.11``): one with the default ``network: false``,
   one with ``permissions.network.allow: [allowed.test]`` (confirmed with ``--yes``);
4. after a warm-up run of each, times N whole-process runs, interleaved:

   - **docker run**: ``docker run --rm`` of ``hello.py`` with aido's hardening (bench_run.py);
   - **aido run (no network)**: ``aido run hello.py`` in the first sandbox (``AIDO_SERVER=off``);
   - **aido run (allowlist)**: the same task in the second sandbox: the run's own internal
     network and Squid proxy are created, started, stopped and removed around it;

5. per request: a task fetches ``http://allowed.test/`` M times through the run's proxy (a new
   connection each), against a plain container on the test network fetching the origin
   directly M times; it prints the median milliseconds of each and their ratio;
6. removes the sandboxes, the test internet and the directory.

    python3 benchmarks/bench_egress.py [--runs 10] [--requests 200] [--json]

Exit status: 0, or 2 if the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # tests.helpers.internet: the same test internet as the tests
from bench_run import (  # noqa: E402
    BENCH_LABEL,
    BenchError,
    Stats,
    aido_command,
    containers_with_label,
    docker_binary,
    environment,
    raw_docker_command,
    run_checked,
    start_sandbox,
    timed,
)
from tests.helpers.internet import IMAGE, internet  # noqa: E402
from warm_pool import PoolError, bytecode_cached  # noqa: E402

HELLO = 'print("hello")\n'
# M fetches, each on a new connection; prints the median milliseconds.
FETCH = r"""
import statistics, sys, time, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
handlers = [urllib.request.ProxyHandler({})] if len(sys.argv) > 3 else []  # "direct": no proxy
opener = urllib.request.build_opener(*handlers)
times = []
for _ in range(count):
    start = time.perf_counter()
    with opener.open(url, timeout=10) as reply:
        reply.read()
    times.append((time.perf_counter() - start) * 1000)
print(round(statistics.median(times), 3))
"""


def measure(runs: int, requests: int) -> tuple[list[Stats], dict[str, Any]]:
    aido, docker = aido_command(), docker_binary()
    token = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="aido-bench-egress-") as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        with internet(base / "internet") as net:
            env = {**os.environ, **net.env, "AIDO_SERVER": "off", "NO_COLOR": "1"}
            os.environ.update(net.env)  # start_sandbox's aido processes
            (project / "hello.py").write_text(HELLO)
            (project / "fetch.py").write_text(FETCH)
            plain_id, plain_root = start_sandbox(aido, project, "--runtime", "python:3.11")
            (project / "sandbox.yaml").write_text(
                "runtime: python:3.11\npermissions:\n  network:\n"
                f"    allow: [allowed.test, {net.allowed_ip}/32]\n    allow_ip_ranges: true\n"
            )
            egress_id = json.loads(
                run_checked([*aido, "sandbox", "up", "--yes", "--json"], project, "sandbox up")
            )["sandbox_id"]
            (plain_root / "work" / "hello.py").write_text(HELLO)  # what `aido run` installs there
            (plain_root / "work" / "hello.py").chmod(0o644)
            commands = {
                "docker run": raw_docker_command(docker, plain_root, token),
                "aido run (no network)": [*aido, "run", "--sandbox", plain_id, "hello.py"],
                "aido run (allowlist)": [*aido, "run", "--sandbox", egress_id, "hello.py"],
            }
            samples: dict[str, list[float]] = {name: [] for name in commands}
            for argv in commands.values():
                timed(argv, project, env)  # warm-up
            order = list(commands)
            for i in range(runs):
                for name in order[i % len(order) :] + order[: i % len(order)]:
                    samples[name].append(timed(commands[name], project, env))
            proxied = run_checked(
                [
                    *aido,
                    "run",
                    "--sandbox",
                    egress_id,
                    "fetch.py",
                    "--",
                    "http://allowed.test/",
                    str(requests),
                ],
                project,
                "the proxied fetches",
            )
            direct = run_checked(
                [
                    docker, "run", "--rm", "--network", net.network, "--dns", "127.0.0.1",
                    "--label", f"{BENCH_LABEL}={token}", "-v", f"{project}:/b:ro", IMAGE,
                    "python3", "/b/fetch.py", f"http://{net.allowed_ip}/", str(requests), "direct",
                ],
                project,
                "the direct fetches",
            )  # fmt: skip
            for sandbox_id in (plain_id, egress_id):
                run_checked([*aido, "sandbox", "destroy", sandbox_id], project, "sandbox destroy")
        left = containers_with_label(docker, f"{BENCH_LABEL}={token}")
        if left:
            raise BenchError(f"containers left behind: {left}")
    stats = [Stats(name, " ".join(argv), samples[name]) for name, argv in commands.items()]
    per_request = {"proxied_ms": float(proxied.strip()), "direct_ms": float(direct.strip())}
    return stats, per_request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        with bytecode_cached() as notes:
            stats, per_request = measure(args.runs, args.requests)
    except (BenchError, PoolError, subprocess.CalledProcessError) as exc:
        print(f"bench_egress: {exc}", file=sys.stderr)
        return 2
    base = next(s for s in stats if s.name == "docker run").median
    plain = next(s for s in stats if s.name == "aido run (no network)").median
    egress = next(s for s in stats if s.name == "aido run (allowlist)").median
    ratio = per_request["proxied_ms"] / per_request["direct_ms"]
    if args.json:
        print(
            json.dumps(
                {
                    "runs": [s.to_json() for s in stats],
                    "allowlist_vs_docker": round(egress / base, 3),
                    "allowlist_vs_no_network": round(egress / plain, 3),
                    "allowlist_extra_ms": round(egress - plain, 1),
                    "per_request": {**per_request, "ratio": round(ratio, 3)},
                    "environment": environment(notes),
                },
                indent=2,
            )
        )
        return 0
    print(f"{'command':<24} {'median ms':>10} {'p90 ms':>8} {'vs docker':>10}")
    for s in stats:
        print(f"{s.name:<24} {s.median:>10.1f} {s.p90:>8.1f} {s.median / base:>9.2f}x")
    print(
        f"allowlist run: +{egress - plain:.0f} ms over the same run without network ({egress / plain:.2f}x)"
    )
    proxied, direct = per_request["proxied_ms"], per_request["direct_ms"]
    print(
        f"per request ({args.requests}, new connection each): proxied {proxied:.2f} ms, "
        f"direct {direct:.2f} ms ({ratio:.2f}x, +{proxied - direct:.2f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
