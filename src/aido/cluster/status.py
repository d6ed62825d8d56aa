"""`aido cluster status` and `aido cluster trust`, apart from the terminal: what the probe
found, shaped for a table or a JSON document, and which node keys to trust.

A node's runs are accepted by the driver only when the key that sealed them is one of the
driver's trusted keys, so status shows each node's key next to whether it is trusted here,
and trust adds the keys the aido nodes report, each as an ordinary trusted ``.pub``.
"""

from __future__ import annotations

from typing import Any

from aido.cluster.connect import connect, token_required
from aido.cluster.probe import PROBE_TIMEOUT, probe_nodes
from aido.errors import ClusterUnavailable

UNAUTHENTICATED = (
    "the cluster accepts unauthenticated connections: anything that can reach its ports can run "
    "code on every node (and the nodes hold Docker); use RAY_AUTH_MODE=token with a token on every "
    "node and driver (see `aido cluster --help`)"
)
UNAUTHENTICATED_KEYS = (
    "these keys came over an unauthenticated connection: whoever can reach the cluster could have "
    "joined a node; compare the key ids with `aido key show` on the nodes"
)
KEY_HINT = "check that aido is installed on every aido node (`aido cluster status` shows what failed)"


def cluster_status(address: str, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Every node of the cluster at ``address``, probed: the data of the JSON envelope."""
    from aido.evidence.keys import trusted_keys

    connect(address)
    nodes = probe_nodes(timeout)
    trusted = trusted_keys()
    for node in nodes:
        key = node.get("key")
        if key and key.get("keyid"):
            key["trusted"] = key["keyid"] in trusted
    takes_runs = [n for n in nodes if n["alive"] and n["capacity"] > 0]
    in_flight = [n["in_flight"] for n in takes_runs]
    return {
        "address": address,
        "token_required": token_required(),
        "nodes": nodes,
        "aido_nodes": len(takes_runs),
        "capacity": sum(n["capacity"] for n in takes_runs),
        "in_flight": None if None in in_flight else sum(in_flight),
        "warnings": [] if token_required() else [UNAUTHENTICATED],
    }


# -- the table -----------------------------------------------------------------------------

COLUMNS = ["NODE", "HOST", "ENGINE", "ISOLATION", "CAPACITY", "IN FLIGHT", "KEY"]


def _engine_cell(node: dict[str, Any]) -> str:
    if not node["alive"]:
        return "node dead"
    if not node["answered"]:
        return "no answer"
    engine = node.get("engine") or {}
    if not engine.get("reachable"):
        return "unreachable"
    return f"docker {engine.get('version') or '?'}"


def _key_cell(node: dict[str, Any]) -> str:
    key = node.get("key") or {}
    if not key.get("keyid"):
        return "-" if not key.get("error") else "error"
    return f"{key['keyid'][:16]} ({'trusted' if key.get('trusted') else 'not trusted'})"


def table_rows(nodes: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for node in nodes:
        capacity = node["capacity"]
        in_flight = node["in_flight"]
        rows.append(
            [
                node["node_id"][:12] + (" (head)" if node.get("head") else ""),
                node.get("hostname") or "-",
                _engine_cell(node),
                ", ".join(node.get("isolation") or []) or "-",
                str(capacity) if capacity else "0 (no runs)",
                "-" if not capacity or in_flight is None else str(in_flight),
                _key_cell(node),
            ]
        )
    return rows


def problems(nodes: list[dict[str, Any]]) -> list[str]:
    """One line per thing wrong with a node, to print under the table."""
    lines = []
    for node in nodes:
        name = node["node_id"][:12]
        engine = node.get("engine") or {}
        key = node.get("key") or {}
        for error in (node.get("error"), engine.get("error"), key.get("error")):
            if error:
                lines.append(f"node {name}: {error}")
        if node["alive"] and node["capacity"] and key.get("keyid") and not key.get("trusted"):
            lines.append(f"node {name}: its runs will not verify here until you run `aido cluster trust`")
    return lines


def summary(data: dict[str, Any]) -> str:
    nodes = data["aido_nodes"]
    flight = "?" if data["in_flight"] is None else data["in_flight"]
    return (
        f"{data['capacity']} aido slot{'s' * (data['capacity'] != 1)} on {nodes} "
        f"node{'s' * (nodes != 1)}, {flight} in flight ({len(data['nodes'])} nodes in the cluster)"
    )


# -- trust ---------------------------------------------------------------------------------


def node_keys(nodes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The keys of the nodes that take runs, one entry per key (nodes of one user on one
    machine share theirs), and one line per such node that gave none."""
    keys: dict[str, dict[str, Any]] = {}
    missing = []
    for node in nodes:
        if not (node["alive"] and node["capacity"] > 0):
            continue  # a node without the aido resource never seals an aido run
        key = node.get("key") or {}
        if not key.get("keyid"):
            why = key.get("error") or node.get("error") or "no key reported"
            missing.append(f"node {node['node_id'][:12]} ({node.get('hostname') or '?'}): {why}")
            continue
        entry = keys.setdefault(
            key["keyid"],
            {"keyid": key["keyid"], "public_key": key["public_key"], "nodes": [], "trusted": False},
        )
        entry["nodes"].append({"node_id": node["node_id"], "hostname": node.get("hostname")})
        entry["trusted"] = bool(key.get("trusted"))
    if not keys:
        detail = "; ".join(missing) or "none answered"
        raise ClusterUnavailable(f"no aido node reported its key: {detail}", hint=KEY_HINT)
    return list(keys.values()), missing


def describe_key(entry: dict[str, Any]) -> str:
    where = ", ".join(f"{n['node_id'][:12]} on {n['hostname'] or '?'}" for n in entry["nodes"])
    return f"key {entry['keyid']} (node {where})"


def trust_keys(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trust every key not trusted yet; each entry gains ``path`` (where the trusted key is
    kept: your own key's file if a node seals with it) and ``new``."""
    from aido.evidence.keys import trust_pem, trusted_keys

    known = trusted_keys()
    for entry in entries:
        if entry["keyid"] in known:
            entry.update(path=known[entry["keyid"]].source, new=False, trusted=True)
            continue
        _, path, new = trust_pem(entry["public_key"], f"node {entry['nodes'][0]['node_id']}")
        entry.update(path=str(path), new=new, trusted=True)
    return entries
