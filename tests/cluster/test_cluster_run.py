"""`aido run --cluster` against a real Ray cluster on this machine (tests/cluster/conftest.py:
a head without the `aido` resource and two aido nodes, w1 and w2), driven as a user would:
the real `aido` command in a subprocess. Node failures have their own cluster
(test_cluster_failures.py): they kill nodes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido, aido_argv, aido_env, run_aido, wait_for
from tests.helpers.raycluster import RayCluster

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", autouse=True)
def trusted_nodes(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each node of the fixture has its own key, as separate machines would: this driver
    trusts them once, as a user does (`aido cluster trust`)."""
    where = tmp_path_factory.mktemp("trust")
    done = run_aido(
        "cluster", "trust", "--cluster", ray_cluster.address, "--yes", cwd=where, env=ray_cluster.driver_env
    )
    assert done.code == 0, done.stderr


def _summaries(project: Path, sandbox: str) -> dict[str, dict[str, Any]]:
    runs = project / ".aido" / "sandboxes" / sandbox / "runs"
    return {p.name: json.loads((p / "summary.json").read_text()) for p in sorted(runs.iterdir())}


def _aido_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=aido.managed=true"], capture_output=True, text=True
    )
    return out.stdout.split()


def _no_containers_left() -> None:
    wait_for(lambda: not _aido_containers(), timeout=30, what="every aido container to be removed")


def test_batch_spreads_over_aido_nodes_only_and_verifies(
    ray_cluster: RayCluster, aido: Aido, sandbox: str, project: Path
) -> None:
    (project / "task.py").write_text(
        "import os\n"
        "open('/outputs/result.txt', 'w').write(os.environ['AIDO_RUN_ID'] + '\\n')\n"
        "print('ran', os.environ['AIDO_RUN_ID'])\n"
    )
    tasks = ["task.py"] * 12
    env = ray_cluster.driver_env
    result = aido(
        "run", "--cluster", ray_cluster.address, "--parallel", "4", *tasks, "--json", env=env, timeout=240
    )
    assert result.code == 0, result.stderr
    assert result.json["counts"] == {"success": 12}
    assert all(run["node"]["id"] for run in result.json["runs"]), "--json names each run's node"
    summaries = _summaries(project, sandbox)
    assert len(summaries) == 12
    nodes = ray_cluster.node_ids()
    used = {s["node"]["id"] for s in summaries.values()}
    assert used == {nodes["w1"], nodes["w2"]}, "runs must reach both aido nodes and only them"
    assert nodes["head"] not in used
    for rid, summary in summaries.items():
        assert summary["run_id"] == rid and summary["status"] == "success"
        assert set(summary["node"]) >= {"id", "hostname", "engine_version"}
        assert summary["node"]["engine_version"]
        # Each run's outputs land in their own folder: parallel runs never overwrite each other.
        stored = project / ".aido" / "sandboxes" / sandbox / "outputs" / rid / "result.txt"
        assert stored.read_text() == rid + "\n"
        assert (
            f"ran {rid}"
            in (project / ".aido" / "sandboxes" / sandbox / "runs" / rid / "stdout.log").read_text()
        )
        assert summary["security"]["applied"], "the node read the hardening back from its engine"
    verified = aido("verify", "--strict", "--json", env=env)
    assert verified.code == 0, verified.stdout + verified.stderr
    shown = aido("show", "run-003")
    assert f"Ray node {summaries['run-003']['node']['id'][:12]}" in shown.stdout
    one = project / ".aido" / "sandboxes" / sandbox / "runs" / "run-003" / "node-evidence.tar"
    assert aido("verify", str(one)).code == 0, "the node's own bundle stays verifiable"
    _no_containers_left()


def test_exit_code_timeout_and_oom_as_locally(
    ray_cluster: RayCluster, aido: Aido, engine: None, project: Path
) -> None:
    (project / "sandbox.yaml").write_text("resources:\n  memory: 128M\n")
    up = aido("sandbox", "up", "-f", "sandbox.yaml", "--json")
    assert up.code == 0, up.stderr
    (project / "exit3.py").write_text("import sys\nprint('bye')\nsys.exit(3)\n")
    (project / "slow.py").write_text("import time\nprint('zz', flush=True)\ntime.sleep(60)\n")
    (project / "hog.py").write_text("x = []\nwhile True:\n    x.append(bytearray(16 << 20))\n")
    cases = [("exit3.py", []), ("slow.py", ["--timeout", "2s"]), ("hog.py", [])]
    env = ray_cluster.driver_env
    seen = {}
    for task, flags in cases:
        local = aido("run", task, *flags, "--json", timeout=120)
        remote = aido("run", "--cluster", ray_cluster.address, task, *flags, "--json", env=env, timeout=120)
        assert remote.code == local.code, (task, local.stderr, remote.stderr)
        for key in ("status", "exit_code", "timed_out", "oom_killed", "stop_reason"):
            assert remote.json.get(key) == local.json.get(key), (task, key)
        seen[task] = (remote.code, remote.json["status"])
    assert seen["exit3.py"] == (3, "failed")
    assert seen["slow.py"] == (124, "timed_out")
    assert seen["hog.py"][0] == 137  # the task's OOM kill, as a local run reports it
    assert aido("verify", "--strict").code == 0
    aido("sandbox", "destroy", "--all")
    _no_containers_left()


@pytest.mark.parametrize("client", [False, True], ids=["gcs-address", "ray-client"])
def test_output_streams_live_and_logs_follow_sees_it(
    ray_cluster: RayCluster, sandbox: str, project: Path, client: bool
) -> None:
    """Through a node-local driver (a streaming generator) and through Ray Client
    (ray://, which has none: a queue actor carries the lines)."""
    address = ray_cluster.client_address if client else ray_cluster.address
    (project / "tick.py").write_text(
        "import time\nprint('first', flush=True)\ntime.sleep(6)\nprint('second', flush=True)\n"
    )
    proc = subprocess.Popen(
        aido_argv("run", "--cluster", address, "tick.py"),
        cwd=project,
        env=aido_env(ray_cluster.driver_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_at = time.monotonic()
    if not first:  # aido ended without a line: say why
        proc.wait(timeout=60)
        assert proc.stderr is not None
        pytest.fail(
            f"aido run exited {proc.returncode} before any output:\n{proc.stderr.read()}"
            f"\nthe head's Ray Client servers:{ray_cluster.client_server_errors()}"
        )
    assert first.strip() == "first"
    # The task is still sleeping: the line came while it ran, not with its evidence.
    follow = subprocess.run(
        aido_argv("logs", "--follow"),
        cwd=project,
        env=aido_env(ray_cluster.driver_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    rest, _ = proc.communicate(timeout=60)
    ended_at = time.monotonic()
    assert proc.returncode == 0
    assert rest.strip() == "second"
    assert ended_at - first_at > 3, "the first line arrived only when the run ended"
    assert follow.returncode == 0, follow.stderr
    assert "first" in follow.stdout and "second" in follow.stdout
    summary = json.loads(
        (project / ".aido" / "sandboxes" / sandbox / "runs" / "run-001" / "summary.json").read_text()
    )
    assert summary["status"] == "success" and summary["node"]["id"] in ray_cluster.node_ids().values()


def test_ctrl_c_cancels_the_remote_run_and_removes_its_container(
    ray_cluster: RayCluster, sandbox: str, project: Path
) -> None:
    (project / "long.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen(
        aido_argv("run", "--cluster", ray_cluster.address, "long.py"),
        cwd=project,
        env=aido_env(ray_cluster.driver_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell or CI may start the tests with SIGINT ignored: the child gets the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    assert _aido_containers(), "the task's container runs on a node"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    _no_containers_left()
    summary = _summaries(project, sandbox)["run-001"]
    assert summary["status"] == "interrupted"


def test_refusals_before_anything_runs(
    ray_cluster: RayCluster, aido: Aido, sandbox: str, project: Path
) -> None:
    (project / "t.py").write_text("print(1)\n")
    env = ray_cluster.driver_env
    net = aido("run", "--cluster", ray_cluster.address, "--network", "--yes", "t.py", env=env)
    assert net.code == 2
    assert "RAY_AUTH_MODE=token" in net.stderr
    host = aido("run", "--cluster", ray_cluster.address, "--host-filesystem", "--yes", "t.py", env=env)
    assert host.code == 2 and "--cluster" in host.stderr
    egress = aido(
        "run", "--cluster", ray_cluster.address, "--allow-host", "pypi.org", "--yes", "t.py", env=env
    )
    assert egress.code == 2 and "an egress allowlist" in egress.stderr and "--cluster" in egress.stderr
    retries = aido("run", "--retries", "1", "t.py")
    assert retries.code == 2 and "--cluster" in retries.stderr
    runs = project / ".aido" / "sandboxes" / sandbox / "runs"
    assert not any(runs.iterdir()), "a refused run leaves no trace"


def test_untrusted_node_key_is_kept_aside_then_trusted(
    ray_cluster: RayCluster, aido: Aido, sandbox: str, project: Path, tmp_path: Path
) -> None:
    """A driver that does not trust the nodes' key never merges their records."""
    (project / "t.py").write_text("print('hi')\n")
    other = {**ray_cluster.driver_env, "XDG_CONFIG_HOME": str(tmp_path / "driver-config")}
    rejected = aido("run", "--cluster", ray_cluster.address, "t.py", env=other)
    assert rejected.code == 125, rejected.stderr
    assert "failed verification" in rejected.stderr and "does not trust" in rejected.stderr
    kept = project / ".aido" / "rejected" / f"{sandbox}-run-001"
    assert (kept / "node-evidence.tar").is_file() and (kept / "why.json").is_file()
    run_dir = project / ".aido" / "sandboxes" / sandbox / "runs" / "run-001"
    assert not (run_dir / "node-evidence.tar").exists(), "never merged"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "error"
    assert not (project / ".aido" / "sandboxes" / sandbox / "outputs" / "run-001").exists()
    trust = aido("cluster", "trust", "--cluster", ray_cluster.address, "--yes", env=other)
    assert trust.code == 0, trust.stderr
    accepted = aido("run", "--cluster", ray_cluster.address, "t.py", env=other)
    assert accepted.code == 0, accepted.stderr
    assert aido("verify", "--strict", env=other).code == 0


def test_python_api_runs_on_the_cluster(
    ray_cluster: RayCluster, sandbox: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    for key, value in ray_cluster.driver_env.items():
        monkeypatch.setenv(key, value)
    from aido.manager import SandboxManager

    (project / "t.py").write_text("print('api')\n")
    manager = SandboxManager()
    try:
        result = manager.run(Path("t.py"), cluster=ray_cluster.address)
        assert result.status == "success" and result.exit_code == 0
        assert result.summary["node"]["id"] in {ray_cluster.node_ids()["w1"], ray_cluster.node_ids()["w2"]}
        batch = manager.run_batch([Path("t.py")] * 3, parallel=3, cluster=ray_cluster.address)
        assert [i.status for i in batch.items] == ["success"] * 3
        assert [i.result.run_id for i in batch.items if i.result] == ["run-002", "run-003", "run-004"]
        # A code string goes to the node as one: same snippet, same runtime, sealed there.
        coded = manager.run_code("console.log('code')", runtime="node", cluster=ray_cluster.address)
        assert coded.status == "success", coded.error
        assert coded.summary["task_source"] == "code" and coded.summary["runtime"] == "node:18"
        assert coded.task.startswith("snippet-") and coded.task.endswith(".js")
        assert (coded.evidence_dir / "stdout.log").read_text() == "code\n"
    finally:
        from aido.cluster.connect import disconnect

        disconnect()
        assert not ray.is_initialized()


def test_local_and_cluster_runs_mix_in_one_sandbox_and_their_outputs_are_sealed(
    ray_cluster: RayCluster, aido: Aido, sandbox: str, project: Path
) -> None:
    env = ray_cluster.driver_env
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], cwd=project, check=True)
    (project / "write.py").write_text("import sys\nopen('/outputs/' + sys.argv[1], 'w').write(sys.argv[2])\n")
    assert aido("run", "write.py", "--", "a.txt", "local-1").code == 0
    assert (
        aido("run", "--cluster", ray_cluster.address, "write.py", "--", "b.txt", "remote", env=env).code == 0
    )
    assert aido("run", "write.py", "--", "a.txt", "local-2").code == 0
    outputs = project / ".aido" / "sandboxes" / sandbox / "outputs"
    assert (outputs / "a.txt").read_text() == "local-2"
    assert (outputs / "run-002" / "b.txt").read_text() == "remote"
    summaries = _summaries(project, sandbox)
    # A cluster run records the driver's project, as a local run does (not the node's temp dir).
    assert summaries["run-002"]["git"]["commit"] == summaries["run-001"]["git"]["commit"]
    assert aido("verify", "--strict").code == 0
    (outputs / "run-002" / "b.txt").write_text("edited by hand")
    tampered = aido("verify", "--strict")
    assert tampered.code == 1, tampered.stdout
    assert "run-002/b.txt" in tampered.stdout


def test_gvisor_sandbox_runs_under_gvisor_on_the_node(
    ray_cluster: RayCluster, aido: Aido, engine: None, project: Path
) -> None:
    up = aido("sandbox", "up", "--isolation", "gvisor", "--json")
    assert up.code == 0, up.stderr
    (project / "k.py").write_text("import platform\nprint(platform.release())\n")
    ran = aido("run", "--cluster", ray_cluster.client_address, "k.py", env=ray_cluster.driver_env)
    assert ran.code == 0, f"{ran.stderr}\nthe head's Ray Client servers:{ray_cluster.client_server_errors()}"
    summary = _summaries(project, up.json["sandbox_id"])["run-001"]
    assert summary["security"]["requested"]["isolation"] == "gvisor"
    assert summary["security"]["applied"]["runtime"] == "runsc", "read back from the node's engine"
    aido("sandbox", "destroy", "--all")
