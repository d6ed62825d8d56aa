"""The test cluster itself, against real Ray: nodes and resources, placement of ``aido`` tasks,
per-node environment, a node killed, and a stop that leaves nothing behind."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from tests.helpers.raycluster import FAST_NODE_DEATH, GIB, NodeSpec, RayCluster, port_free


def _connect(cluster: RayCluster) -> None:
    import ray

    # The conventions of CLUSTER-SPEC.md: aido's namespace, no task output copied to the driver.
    ray.init(address=cluster.address, namespace="aido", log_to_driver=False, logging_level="ERROR")


def test_nodes_registered_with_their_resources(ray_cluster: RayCluster) -> None:
    table = ray_cluster.nodes_table()
    rows = {r["name"]: r for r in table if r["alive"]}
    assert set(rows) == {"head", "w1", "w2"}
    assert ray_cluster.node_ids() == {name: row["node_id"] for name, row in rows.items()}
    for name in ("w1", "w2"):
        res = rows[name]["resources"]
        assert (res["aido"], res["CPU"], res[f"node:{name}"], res["memory"]) == (2, 2, 1, 4 * GIB)
    head = rows["head"]["resources"]
    assert "aido" not in head
    assert head["CPU"] == 1


def test_aido_tasks_run_on_the_workers_never_on_the_head(ray_cluster: RayCluster) -> None:
    import ray

    ids = ray_cluster.node_ids()
    _connect(ray_cluster)

    @ray.remote(num_cpus=1, resources={"aido": 1}, max_retries=0)
    def where() -> str:
        time.sleep(0.2)  # holds its slot, so 20 tasks need both workers' 4 slots
        return str(ray.get_runtime_context().get_node_id())

    placed = ray.get([where.remote() for _ in range(20)], timeout=60)
    assert ids["head"] not in placed
    assert set(placed) == {ids["w1"], ids["w2"]}


def test_each_node_runs_tasks_with_its_own_environment(ray_cluster: RayCluster) -> None:
    """A node's ``env`` reaches the tasks on it (this is how nodes get their own signing keys), and
    the ``node:<name>`` resource pins a task to that node."""
    import ray

    ids = ray_cluster.node_ids()
    _connect(ray_cluster)

    @ray.remote(num_cpus=0, max_retries=0)
    def probe() -> tuple[str, str | None]:
        return str(ray.get_runtime_context().get_node_id()), os.environ.get("XDG_CONFIG_HOME")

    for name in ("w1", "w2"):
        pinned = probe.options(resources={f"node:{name}": 0.01})
        node_id, config = ray.get(pinned.remote(), timeout=30)
        assert node_id == ids[name]
        assert config == ray_cluster.nodes[name].spec.env["XDG_CONFIG_HOME"]


def test_killed_node_is_lost_and_stop_leaves_nothing() -> None:
    """Its own cluster (the shared one stays whole), with token auth on: a task running on the node
    fails once its raylet is SIGKILLed, the task's worker dies, the GCS marks the node dead; then
    ``stop()`` leaves no process, no temp dir and no port behind, and is idempotent."""
    import ray

    cluster = RayCluster(
        [NodeSpec("w1", num_cpus=1, resources={"aido": 1})],
        token=secrets.token_hex(32),
        head_env=FAST_NODE_DEATH,  # the default 14 s would be a third of this file's time
    )
    with cluster, cluster.as_driver():
        _connect(cluster)

        @ray.remote(num_cpus=1, resources={"aido": 1}, max_retries=0)
        def sleeper() -> None:
            time.sleep(120)

        ref = sleeper.remote()
        worker = _wait_for_worker(cluster, "w1", "ray::sleeper")
        cluster.kill_node("w1")
        with pytest.raises(ray.exceptions.RayError):
            ray.get(ref, timeout=30)
        assert _gone_within(worker, 10)
        cluster.wait_dead("w1", timeout=20)
        ray.shutdown()
        temp_dir, port = cluster.temp_dir, cluster.base_port
        assert temp_dir is not None and port is not None

    # Checked independently of the helper's own bookkeeping: straight from /proc.
    assert _cmdlines_with(temp_dir) == []
    assert not Path(temp_dir).exists()
    assert port_free(port)
    cluster.stop()


def _wait_for_worker(cluster: RayCluster, node: str, title: str, timeout: float = 30) -> int:
    """The pid of the worker on ``node`` running the task titled ``title`` (Ray retitles workers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in cluster.node_processes(node):
            if _cmdline(pid).startswith(title):
                return pid
        time.sleep(0.1)
    raise AssertionError(f"no {title} worker on {node} after {timeout} s")


def _gone_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _cmdline(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _cmdline(pid)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cmdlines_with(text: str) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if (
            entry.name.isdigit()
            and entry.name != str(os.getpid())
            and text in (line := _cmdline(int(entry.name)))
        ):
            found.append(f"{entry.name}: {line[:200]}")
    return found
