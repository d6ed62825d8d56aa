"""What `aido cluster status` shows and `aido cluster trust` trusts, from probe results (no
cluster needed), and a node's own facts read on this machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from aido.cluster.probe import node_facts, short_error
from aido.cluster.status import node_keys, problems, summary, table_rows, trust_keys
from aido.errors import ClusterUnavailable
from aido.evidence.keys import PublicKey, public_key_from_pem, trusted_keys


def _key(trusted: bool = False) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = PublicKey(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    return {"keyid": public.keyid, "public_key": public.pem(), "error": None, "trusted": trusted}


def _node(node_id: str, capacity: int = 2, **changes: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "node_id": node_id * 7,
        "alive": True,
        "head": False,
        "address": "10.0.0.1",
        "hostname": f"host-{node_id}",
        "capacity": capacity,
        "in_flight": 0,
        "answered": True,
        "error": None,
        "aido_version": "0.1.0",
        "python": "3.11.7",
        "engine": {"reachable": True, "version": "27.1.0", "api_version": "1.45", "error": None},
        "isolation": ["default", "gvisor"],
        "key": _key(),
    }
    node.update(changes)
    return node


def test_the_table_says_what_each_node_can_do() -> None:
    nodes = [
        _node("a1b2c3d4e5f6", in_flight=1),
        _node("f00dfeedbeef", capacity=0, head=True, isolation=["default"]),
        _node(
            "deadbeef0000",
            engine={"reachable": False, "version": None, "api_version": None, "error": "engine gone"},
            isolation=[],
        ),
        _node(
            "5110200000aa", answered=False, error="no answer within 15 s", engine=None, isolation=[], key=None
        ),
        _node("0dead0dead00", alive=False, answered=False, error="dead: killed", key=None, in_flight=None),
    ]
    rows = table_rows(nodes)
    assert rows[0] == [
        "a1b2c3d4e5f6",
        "host-a1b2c3d4e5f6",
        "docker 27.1.0",
        "default, gvisor",
        "2",
        "1",
        f"{nodes[0]['key']['keyid'][:16]} (not trusted)",
    ]
    assert rows[1][0] == "f00dfeedbeef (head)" and rows[1][4:6] == ["0 (no runs)", "-"]
    assert rows[2][2:4] == ["unreachable", "-"]
    assert rows[3][2] == "no answer" and rows[3][6] == "-"
    assert rows[4][2] == "node dead"
    lines = problems(nodes)
    assert "node deadbeef0000: engine gone" in lines
    assert "node 5110200000aa: no answer within 15 s" in lines
    assert "node 0dead0dead00: dead: killed" in lines
    # The head takes no runs, so its untrusted key does not matter; the workers' do.
    untrusted = [line for line in lines if "aido cluster trust" in line]
    assert [line.split(":")[0] for line in untrusted] == ["node a1b2c3d4e5f6", "node deadbeef0000"]


def test_the_summary_counts_only_nodes_that_take_runs() -> None:
    data = {"aido_nodes": 2, "capacity": 4, "in_flight": 1, "nodes": [{}, {}, {}]}
    assert summary(data) == "4 aido slots on 2 nodes, 1 in flight (3 nodes in the cluster)"
    assert "? in flight" in summary({**data, "in_flight": None})


def test_node_keys_groups_shared_keys_and_skips_nodes_without_runs() -> None:
    shared = _key()
    nodes = [
        _node("aaaaaaaaaaaa", key=dict(shared)),
        _node("bbbbbbbbbbbb", key=dict(shared)),
        _node("cccccccccccc", capacity=0),  # the head: never seals an aido run
        _node(
            "dddddddddddd", key={"keyid": None, "public_key": None, "error": "SigningKeyError: unreadable"}
        ),
        _node("eeeeeeeeeeee", alive=False, key=None),
    ]
    entries, missing = node_keys(nodes)
    assert [e["keyid"] for e in entries] == [shared["keyid"]]
    assert [n["node_id"] for n in entries[0]["nodes"]] == ["a" * 84, "b" * 84]
    assert missing == ["node dddddddddddd (host-dddddddddddd): SigningKeyError: unreadable"]


def test_node_keys_without_any_key_is_a_cluster_error() -> None:
    nodes = [_node("aaaaaaaaaaaa", answered=False, error="no answer within 3 s", key=None)]
    with pytest.raises(ClusterUnavailable, match=r"no aido node reported its key: .*no answer within 3 s"):
        node_keys(nodes)


def test_trust_keys_writes_new_keys_once(signing_keys: Path) -> None:
    entries, _ = node_keys([_node("aaaaaaaaaaaa"), _node("bbbbbbbbbbbb")])
    first = trust_keys([dict(e) for e in entries])
    assert [e["new"] for e in first] == [True, True]
    for entry in first:
        kept = Path(entry["path"])
        assert kept.parent == signing_keys / "trusted"
        assert public_key_from_pem(kept.read_text()).keyid == entry["keyid"]
        assert entry["keyid"] in trusted_keys()
    again = trust_keys([dict(e) for e in entries])
    assert [e["new"] for e in again] == [False, False]
    assert [e["path"] for e in again] == [e["path"] for e in first]
    for entry in first:
        Path(entry["path"]).unlink()  # the session's keys stay as other tests expect them


def test_short_error_is_one_capped_line() -> None:
    assert short_error(ValueError("first\nsecond")) == "ValueError: first"
    assert short_error(TimeoutError()) == "TimeoutError"
    assert len(short_error(RuntimeError("x" * 1000))) == 200


@pytest.mark.docker
def test_node_facts_reads_this_machine(engine: None, signing_keys: Path) -> None:
    facts = node_facts()
    assert facts["node_id"] is None  # not inside a Ray task
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()  # and no local Ray instance started to ask
    assert facts["engine"]["reachable"] and facts["engine"]["version"] and facts["engine"]["error"] is None
    assert facts["isolation"][0] == "default"
    key = facts["key"]
    assert key["error"] is None and key["keyid"] == public_key_from_pem(key["public_key"]).keyid


def test_node_facts_reports_a_dead_engine_as_a_string(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    facts = node_facts()
    assert facts["engine"]["reachable"] is False and facts["isolation"] == []
    assert facts["engine"]["error"].startswith("RuntimeUnavailable: Docker engine unreachable")
