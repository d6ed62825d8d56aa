"""`aido cluster status` and `aido cluster trust` against a real Ray cluster (the `ray_cluster`
fixture: a head without the aido resource and worker nodes with it), run as a user would."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from aido.evidence.keys import keyid_of, public_key_from_pem
from tests.helpers.cli import Aido, Result, answer_on_terminal

pytestmark = pytest.mark.docker  # every node's probe asks its Docker engine
HEAD_RESOURCE = "node:__internal_head__"
# Every node answers; a busy machine (CI, or this one at load 20) may take long to start the
# command's Ray workers, and a healthy node is never waited on longer than it takes.
ANSWER = ("--timeout", "120")


def _env(cluster: Any, config: Path) -> dict[str, str]:
    """The driver's environment: the cluster's auth settings and keys of its own (never the
    session's, which other tests' nodes may be checked against)."""
    return {**cluster.driver_env, "XDG_CONFIG_HOME": str(config)}


def _status(aido: Aido, cluster: Any, config: Path) -> Result:
    result = aido(
        "cluster", "status", "--cluster", cluster.address, *ANSWER, "--json", env=_env(cluster, config)
    )
    assert result.code == 0, result.stderr
    return result


def _alive(cluster: Any) -> dict[str, dict[str, Any]]:
    return {row["node_id"]: row for row in cluster.nodes_table() if row["alive"]}


def test_status_lists_every_node_with_its_engine_capacity_and_key(
    ray_cluster: Any, aido: Aido, tmp_path: Path
) -> None:
    result = _status(aido, ray_cluster, tmp_path / "driver")
    data = result.json
    assert data["command"] == "cluster status" and data["status"] == "success"
    expected = _alive(ray_cluster)
    nodes = {n["node_id"]: n for n in data["nodes"] if n["alive"]}
    assert set(nodes) == set(expected)
    for node_id, node in nodes.items():
        resources = expected[node_id]["resources"]
        assert node["capacity"] == int(resources.get("aido", 0))
        assert node["head"] == (HEAD_RESOURCE in resources)
        assert node["answered"] and node["error"] is None, node
        assert node["engine"]["reachable"] and node["engine"]["version"], node
        assert "default" in node["isolation"]
        key = node["key"]
        assert key["error"] is None and key["trusted"] is False  # a fresh driver trusts none
        assert key["keyid"] == keyid_of(public_key_from_pem(key["public_key"]).raw)
        assert node["in_flight"] == 0
    head = [n for n in nodes.values() if n["head"]]
    assert len(head) == 1 and head[0]["capacity"] == 0  # the head never gets runs
    takes_runs = [n for n in nodes.values() if n["capacity"] > 0]
    assert takes_runs and data["aido_nodes"] == len(takes_runs)
    assert data["capacity"] == sum(n["capacity"] for n in takes_runs) and data["in_flight"] == 0
    if data["token_required"]:
        assert data["warnings"] == []
    else:  # the fixture's cluster runs without token auth: say what that means, on stderr
        assert "unauthenticated connections" in data["warnings"][0]
        assert "warning: the cluster accepts unauthenticated connections" in result.stderr

    env = _env(ray_cluster, tmp_path / "driver")
    table = aido("cluster", "status", "--cluster", ray_cluster.address, *ANSWER, env=env)
    assert table.code == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header == ["NODE", "HOST", "ENGINE", "ISOLATION", "CAPACITY", "IN", "FLIGHT", "KEY"]
    for node_id in nodes:
        assert node_id[:12] in table.stdout
    assert "(head)" in table.stdout and "0 (no runs)" in table.stdout and "not trusted" in table.stdout
    assert "aido cluster trust" in table.stderr  # untrusted aido nodes: what to do about it


def test_status_counts_the_runs_in_flight_on_each_node(
    ray_cluster: Any, aido: Aido, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray
    from ray._private.state import available_resources_per_node

    from aido.cluster.connect import connect, disconnect

    for key, value in ray_cluster.driver_env.items():
        monkeypatch.setenv(key, value)
    connect(ray_cluster.address)
    try:

        def hold() -> None:  # defined here, so Ray ships it by value: nodes need not import tests
            time.sleep(120)

        def busy() -> list[str]:
            """Nodes with an aido slot taken (Ray leaves a fully used resource out)."""
            free = available_resources_per_node()
            capacity = {n["NodeID"]: n["Resources"].get("aido", 0) for n in ray.nodes() if n["Alive"]}
            return sorted(n for n, c in capacity.items() if free.get(n, {}).get("aido", 0) < c)

        # One aido slot held, as a run holds it, on whichever node Ray picks.
        held = ray.remote(num_cpus=0, resources={"aido": 1}, max_retries=0)(hold).remote()
        deadline = time.monotonic() + 60
        while not busy():
            assert time.monotonic() < deadline, "the holding task never started"
            time.sleep(0.1)
        data = _status(aido, ray_cluster, tmp_path / "driver").json
        assert data["in_flight"] == 1
        assert [n["node_id"] for n in data["nodes"] if n["in_flight"]] == busy()
        ray.cancel(held, force=True)
    finally:
        disconnect()


def test_trust_asks_then_trusts_every_aido_node_key_once(
    ray_cluster: Any, aido: Aido, tmp_path: Path
) -> None:
    config = tmp_path / "driver"
    env = _env(ray_cluster, config)
    trusted_dir = config / "aido" / "keys" / "trusted"
    refused = aido(
        "cluster", "trust", "--cluster", ray_cluster.address, *ANSWER, env=env
    )  # no terminal, no --yes
    assert refused.code == 2 and "no key was trusted" in refused.stderr
    assert "will verify as genuine" in refused.stderr
    assert not trusted_dir.exists() or not list(trusted_dir.iterdir())

    status = _status(aido, ray_cluster, config).json
    aido_nodes = {n["node_id"]: n for n in status["nodes"] if n["alive"] and n["capacity"] > 0}
    wanted = {n["key"]["keyid"] for n in aido_nodes.values()}
    for key_id in wanted:
        assert key_id in refused.stderr  # shown before the question, in full

    trusted = aido("cluster", "trust", "--cluster", ray_cluster.address, *ANSWER, "--yes", "--json", env=env)
    assert trusted.code == 0, trusted.stderr
    keys = trusted.json["keys"]
    assert {k["keyid"] for k in keys} == wanted and all(k["new"] for k in keys)
    assert {n["node_id"] for k in keys for n in k["nodes"]} == set(aido_nodes)  # never the head's
    assert trusted.json["missing"] == []
    for key in keys:
        assert Path(key["path"]).parent == trusted_dir and Path(key["path"]).is_file()
    listed = aido("key", "list", "--json", env=env).json["keys"]
    assert wanted <= {k["keyid"] for k in listed}

    after = _status(aido, ray_cluster, config).json
    assert all(n["key"]["trusted"] for n in after["nodes"] if n["node_id"] in aido_nodes)
    again = aido(
        "cluster", "trust", "--cluster", ray_cluster.address, *ANSWER, env=env
    )  # nothing new: no question
    assert again.code == 0, again.stderr
    assert "already trusted" in again.stderr and "will verify as genuine" not in again.stderr


def test_trust_on_a_terminal_asks_and_takes_yes(
    ray_cluster: Any, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _env(ray_cluster, tmp_path / "driver").items():
        monkeypatch.setenv(key, value)  # answer_on_terminal runs aido with this process's environment
    args = ("cluster", "trust", "--cluster", ray_cluster.address, *ANSWER)
    code, shown = answer_on_terminal(project, *args, answer=b"n")
    assert code == 2 and "no key was trusted" in shown
    code, shown = answer_on_terminal(project, *args, answer=b"y")
    assert code == 0, shown
    assert "aido: trust this key? [y/N]" in shown or "aido: trust these" in shown
    assert "✓ trusted key" in shown


# Seconds. The test waits all of it for the silent node, so it is kept short; the node with no
# engine must answer within it, which takes starting a Ray worker (1-3 s here, ~5 s at load 8).
WAIT = 15


def test_a_node_that_does_not_answer_is_reported_and_never_hangs_the_command(
    aido: Aido, tmp_path: Path
) -> None:
    """Two nodes of a cluster of its own: one whose Docker engine accepts a connection and
    never answers (its probe hangs), one with no engine at all."""
    from tests.helpers.raycluster import NodeSpec, RayCluster

    hung = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as engine:
        engine.bind(str(hung))
        engine.listen(8)  # connections queue up, and are never answered
        nodes = [
            NodeSpec("hung", num_cpus=1, resources={"aido": 1}, env={"DOCKER_HOST": f"unix://{hung}"}),
            NodeSpec(
                "noengine", num_cpus=1, resources={"aido": 1}, env={"DOCKER_HOST": f"unix://{tmp_path}/none"}
            ),
        ]
        with RayCluster(nodes) as cluster:
            ids = cluster.node_ids()
            env = _env(cluster, tmp_path / "driver")
            started = time.monotonic()
            result = aido(
                "cluster", "status", "--cluster", cluster.address, "--timeout", str(WAIT), "--json", env=env
            )
            took = time.monotonic() - started
            assert result.code == 0, result.stderr
            nodes_by_id = {n["node_id"]: n for n in result.json["nodes"]}
            silent = nodes_by_id[ids["hung"]]
            assert not silent["answered"] and silent["error"] == f"no answer within {WAIT} s"
            assert silent["engine"] is None and silent["key"] is None
            dead_engine = nodes_by_id[ids["noengine"]]
            assert dead_engine["answered"] and not dead_engine["engine"]["reachable"]
            assert "Docker engine unreachable" in dead_engine["engine"]["error"]
            assert dead_engine["isolation"] == [] and dead_engine["key"]["keyid"]
            assert took < WAIT + 60, (
                f"{took:.0f} s"
            )  # the timeout, plus starting Python and Ray on a busy machine
