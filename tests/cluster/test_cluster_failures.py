"""Failures on a real Ray cluster: a node killed mid-run (alone, and mid-batch), --retries,
every aido node gone, and a node whose engine goes away mid-run. These tests kill nodes,
so they have clusters of their own, and run in file order (each one's cluster is left with
fewer nodes).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido, aido_argv, aido_env, wait_for
from tests.helpers.raycluster import FAST_NODE_DEATH, NodeSpec, RayCluster
from tests.helpers.sockproxy import EngineRelay

pytestmark = pytest.mark.docker

SLOW = "import time\nprint('up', flush=True)\ntime.sleep(10)\nprint('done', flush=True)\n"
# SLOW for run-001 only: the run that is lost with its node must still be running when the node
# is killed, its retry (run-002, the same task) need not wait 10 s more.
SLOW_FIRST = (
    "import os, time\nprint('up', flush=True)\n"
    "time.sleep(10 if os.environ['AIDO_RUN_ID'] == 'run-001' else 0)\nprint('done', flush=True)\n"
)


@pytest.fixture(scope="module")
def three_nodes(engine: None) -> Iterator[RayCluster]:
    workers = [NodeSpec(name, resources={"aido": 2}) for name in ("w1", "w2", "w3")]
    with RayCluster(workers, head_env=FAST_NODE_DEATH) as cluster:
        yield cluster


def _events(project: Path, sandbox: str) -> list[dict[str, Any]]:
    log = project / ".aido" / "sandboxes" / sandbox / "events.log"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _placed(project: Path, sandbox: str) -> dict[str, str]:
    """run id -> the Ray node id it was placed on, from the driver's events."""
    return {e["run_id"]: e["node"]["id"] for e in _events(project, sandbox) if e["event"] == "run_placed"}


def _summary(project: Path, sandbox: str, rid: str) -> dict[str, Any]:
    return json.loads((project / ".aido" / "sandboxes" / sandbox / "runs" / rid / "summary.json").read_text())


def _aido_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=aido.managed=true"], capture_output=True, text=True
    )
    return out.stdout.split()


def _spawn(project: Path, cluster: RayCluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        aido_argv("run", "--cluster", cluster.address, *args),
        cwd=project,
        env=aido_env(cluster.driver_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_retries_run_a_lost_run_again_elsewhere(
    three_nodes: RayCluster, aido: Aido, sandbox: str, project: Path
) -> None:
    (project / "slow.py").write_text(SLOW_FIRST)
    proc = _spawn(project, three_nodes, "--retries", "1", "slow.py")
    wait_for(lambda: "run-001" in _placed(project, sandbox), timeout=60, what="run-001 to be placed")
    by_id = {v: k for k, v in three_nodes.node_ids().items()}
    lost_node = _placed(project, sandbox)["run-001"]
    three_nodes.kill_node(by_id[lost_node])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.count("done") == 1, out  # the retry ran the task to its end, the lost run did not
    lost = _summary(project, sandbox, "run-001")
    assert (lost["status"], lost["stop_reason"]) == ("interrupted", "node_lost")
    assert lost["node"]["id"] == lost_node, "the lost run names its node"
    retry = _summary(project, sandbox, "run-002")
    assert retry["status"] == "success" and retry["retry_of"] == "run-001"
    assert retry["node"]["id"] != lost_node
    assert "running it again as a new run" in err
    assert aido("verify", "--strict", env=three_nodes.driver_env).code == 0
    wait_for(lambda: not _aido_containers(), timeout=30, what="the lost node's container to be removed")


def test_node_lost_mid_batch_others_complete(
    three_nodes: RayCluster, aido: Aido, sandbox: str, project: Path
) -> None:
    alive = [n for n in ("w1", "w2", "w3") if three_nodes.raylet_pid(n) is not None]
    assert len(alive) >= 2
    ids = three_nodes.node_ids()
    (project / "slow.py").write_text(SLOW)
    proc = _spawn(project, three_nodes, "--parallel", "4", *(["slow.py"] * 6))

    def both_busy() -> bool:
        return {ids[n] for n in alive} <= set(_placed(project, sandbox).values())

    wait_for(both_busy, timeout=90, what="runs on both remaining nodes")
    victim = alive[0]
    three_nodes.kill_node(victim)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 125, err  # a run lost with its node: the infrastructure failed
    placed = _placed(project, sandbox)
    statuses = {rid: _summary(project, sandbox, rid) for rid in (f"run-{n:03d}" for n in range(1, 7))}
    on_victim = [rid for rid, node in placed.items() if node == ids[victim]]
    assert on_victim, "some runs were on the killed node"
    for rid, summary in statuses.items():
        if rid in on_victim and summary["status"] != "success":
            assert (summary["status"], summary["stop_reason"]) == ("interrupted", "node_lost")
            assert summary["node"]["id"] == ids[victim]
        else:
            assert summary["status"] == "success", (rid, summary.get("message"))
    lost = [rid for rid, s in statuses.items() if s["status"] != "success"]
    assert lost, "the killed node had a run in flight"
    assert aido("verify", "--strict", env=three_nodes.driver_env).code == 0
    wait_for(lambda: not _aido_containers(), timeout=30, what="every container to be removed")


def test_no_aido_node_left_exits_125(
    three_nodes: RayCluster, aido: Aido, sandbox: str, project: Path
) -> None:
    for name in ("w1", "w2", "w3"):
        if three_nodes.raylet_pid(name) is not None:
            three_nodes.kill_node(name)
            three_nodes.wait_dead(name, timeout=60)
    (project / "t.py").write_text("print(1)\n")
    result = aido("run", "--cluster", three_nodes.address, "t.py", env=three_nodes.driver_env, timeout=120)
    assert result.code == 125, result.stderr
    assert "aido" in result.stderr and "ray start --address" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error and its hint


def test_unreachable_cluster_exits_125(aido: Aido, sandbox: str, project: Path) -> None:
    import socket

    (project / "t.py").write_text("print(1)\n")
    held = socket.socket()  # a port of this test's own, bound but not listening: refused
    held.bind(("127.0.0.1", 0))
    try:
        result = aido("run", "--cluster", f"127.0.0.1:{held.getsockname()[1]}", "t.py", timeout=60)
    finally:
        held.close()
    assert result.code == 125
    assert "cannot reach the Ray cluster" in result.stderr
    runs = project / ".aido" / "sandboxes" / sandbox / "runs"
    assert not any(runs.iterdir()), "nothing ran, nothing recorded"


def test_node_engine_dies_mid_run_is_an_error(engine: None, aido: Aido, sandbox: str, project: Path) -> None:
    relay = EngineRelay(project.parent / "engine.sock").start()
    try:
        spec = NodeSpec("we", resources={"aido": 1}, env={"DOCKER_HOST": relay.docker_host})
        with RayCluster([spec]) as cluster:
            (project / "slow.py").write_text(SLOW)
            proc = _spawn(project, cluster, "slow.py")
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "up"
            relay.stop()  # the node's engine is gone
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 125, err
            summary = _summary(project, sandbox, "run-001")
            assert summary["status"] == "error"
            assert summary["node"]["id"] == cluster.node_ids()["we"]
            relay.start()  # the engine is back: the node's next task sweeps what was left
            (project / "t.py").write_text("print('again')\n")
            again = aido("run", "--cluster", cluster.address, "t.py", env=cluster.driver_env)
            assert again.code == 0, again.stderr
            wait_for(lambda: not _aido_containers(), timeout=30, what="the left container to be removed")
            assert aido("verify", "--strict", env=cluster.driver_env).code == 0
    finally:
        relay.stop()
