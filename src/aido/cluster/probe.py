"""What each node of a Ray cluster can do for aido: `aido cluster status` and `aido cluster trust`.

``node_facts`` runs on a node, inside a Ray task, and reports what only the node can see:
its Docker engine, the isolation levels that engine offers, and the key the node seals runs
with. ``probe_nodes`` runs on the driver: one such task pinned to every alive node, combined
with what Ray knows (the node's ``aido`` capacity, how much of it is in use, whether it is
alive). A node that does not answer in time is reported as such; the command never waits
on it longer than the timeout.

Ray is imported inside the functions: this module is only loaded on the cluster path.
"""

from __future__ import annotations

import platform
import socket
import sys
import time
from typing import Any

from aido import __version__
from aido.cluster.connect import RESOURCE
from aido.log import log

# Seconds. A node first starts a Python worker for the command's Ray job: about 1 s when idle,
# over 15 s on a machine whose cores are all busy (measured at load 22 on 2 cores). A node
# that answers returns at once, so this only bounds the wait on one that never will.
PROBE_TIMEOUT = 30.0
HEAD_RESOURCE = "node:__internal_head__"  # Ray's marker of the head node
# What Ray raises for a probe whose node went away between ray.nodes() and the answer.
NODE_GONE = ("TaskUnschedulableError", "NodeDiedError")
MAX_ERROR = 200  # characters: errors are shown in a table cell and a JSON field


def short_error(exc: BaseException) -> str:
    """One line for an exception: its first line, capped, never a traceback."""
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


# -- on the node ---------------------------------------------------------------------------


def _engine_facts() -> dict[str, Any]:
    """The node's Docker engine through aido's own backend, the one a run on this node uses
    (so DOCKER_HOST in the node's environment counts, as it does for its runs)."""
    engine: dict[str, Any] = {"reachable": False, "version": None, "api_version": None, "error": None}
    try:
        from aido.backends.registry import get_backend

        backend = get_backend()
        info = backend.info()
        engine.update(reachable=True, version=info.version or None, api_version=info.api_version or None)
        # The levels a sandbox's `isolation:` may ask for here: "default" (the engine's runc)
        # whenever the engine answers, "gvisor" when it has the runsc runtime registered.
        engine["isolation"] = backend.isolation_levels()
    except Exception as exc:  # any failure is a fact about the node, not a crash of the probe
        engine["error"] = short_error(exc)
        engine.setdefault("isolation", [])
    return engine


def _key_facts() -> dict[str, Any]:
    """The key this node seals runs with. Made on first use, as a local run would: a node
    needs one, and making it here lets `aido cluster trust` fetch it before the first run."""
    try:
        from aido.evidence.keys import signing_key

        public = signing_key().public
        return {"keyid": public.keyid, "public_key": public.pem(), "error": None}
    except Exception as exc:
        return {"keyid": None, "public_key": None, "error": short_error(exc)}


def _ray_node_id() -> str | None:
    ray = sys.modules.get("ray")
    # Outside a Ray worker (a test calling this directly) there is no node; and asking Ray's
    # runtime context there would start a whole local Ray instance (and write ~/.ray/auth_token).
    if ray is None or not ray.is_initialized():
        return None
    try:
        node_id: str = ray.get_runtime_context().get_node_id()
        return node_id
    except Exception as exc:
        log.debug("no Ray node id: %s", short_error(exc))
        return None


def node_facts() -> dict[str, Any]:
    """What this node can do for aido; every failure is a short string, never an exception."""
    engine = _engine_facts()
    return {
        "hostname": socket.gethostname(),
        "node_id": _ray_node_id(),
        "aido_version": __version__,
        "python": platform.python_version(),
        "engine": {k: v for k, v in engine.items() if k != "isolation"},
        "isolation": engine["isolation"],
        "key": _key_facts(),
    }


# -- on the driver -------------------------------------------------------------------------


def _availability() -> dict[str, dict[str, float]]:
    """Node id → the resources free on it now (a Ray DeveloperAPI that reads the GCS)."""
    from ray._private.state import available_resources_per_node

    found: dict[str, dict[str, float]] = available_resources_per_node()  # type: ignore[no-untyped-call]
    return found


def _available_per_node(ray: Any, timeout: float) -> dict[str, dict[str, float]] | None:
    """Free resources per node, or None if Ray would not say (runs in flight are then unknown)."""
    try:
        if not ray.util.client.ray.is_connected():
            return _availability()
        # A Ray Client (ray://) driver has no GCS connection of its own: ask from a worker.
        task = ray.remote(num_cpus=0, max_retries=0)(_availability)
        found: dict[str, dict[str, float]] = ray.get(task.remote(), timeout=timeout)
        return found
    except Exception as exc:
        log.debug("cannot read the free resources per node: %s", short_error(exc))
        return None


def _pending(ray: Any, refs: dict[str, Any], timeout: float, deadline: float) -> dict[str, Any]:
    """Wait for the probes until ``deadline``; node id → facts, or the error that replaced them."""
    answers: dict[str, Any] = {}
    if not refs:
        return answers
    left = max(0.0, deadline - time.monotonic())
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=left)
    done = set(ready)
    for node_id, ref in refs.items():
        if ref not in done:
            answers[node_id] = f"no answer within {timeout:g} s"
            try:  # a stuck probe must not keep a worker busy on that node
                ray.cancel(ref, force=True)
            except Exception as exc:  # the node may be gone already: nothing left to stop
                log.debug("cannot cancel the probe of node %s: %s", node_id, short_error(exc))
            continue
        try:
            answers[node_id] = ray.get(ref, timeout=0)
        except Exception as exc:  # the node died, aido is missing there, the task raised
            if type(exc).__name__ in NODE_GONE:
                answers[node_id] = "Ray lost the node (it died or left the cluster)"
            else:  # a task's own exception is its cause: Ray's wrapper adds only a traceback
                answers[node_id] = short_error(getattr(exc, "cause", None) or exc)
    return answers


def probe_nodes(timeout: float = PROBE_TIMEOUT) -> list[dict[str, Any]]:
    """Every node Ray knows, probed in parallel; alive nodes with capacity first."""
    import ray as ray_module
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray: Any = ray_module  # Ray's API is mostly untyped: one Any here rather than an ignore per call
    deadline = time.monotonic() + timeout  # one budget for everything: the command never waits longer
    nodes = ray.nodes()
    # No CPU and no aido slot, so a probe runs even on a node whose every slot is busy; never
    # retried (a probe re-run elsewhere would describe the wrong node); pinned, never moved.
    probe = ray.remote(num_cpus=0, max_retries=0)(node_facts)
    refs = {
        node["NodeID"]: probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            name="aido-probe",
        ).remote()
        for node in nodes
        if node.get("Alive")
    }
    available = _available_per_node(ray, max(0.1, deadline - time.monotonic()))
    answers = _pending(ray, refs, timeout, deadline)
    rows = [_combine(node, answers.get(node["NodeID"]), available) for node in nodes]
    return sorted(rows, key=lambda r: (not r["alive"], -r["capacity"], r["hostname"] or "", r["node_id"]))


def _combine(
    node: dict[str, Any],
    answer: dict[str, Any] | str | None,
    available: dict[str, dict[str, float]] | None,
) -> dict[str, Any]:
    """One node as `aido cluster status --json` shows it: Ray's view plus the node's own."""
    node_id: str = node["NodeID"]
    resources = node.get("Resources") or {}
    capacity = int(resources.get(RESOURCE, 0))
    alive = bool(node.get("Alive"))
    row: dict[str, Any] = {
        "node_id": node_id,
        "alive": alive,
        "head": HEAD_RESOURCE in resources,
        "address": node.get("NodeManagerAddress"),
        "hostname": node.get("NodeManagerHostname"),
        "capacity": capacity,  # 0: the node never gets aido runs
        "in_flight": None,
        "answered": isinstance(answer, dict),
        "error": None,
        "aido_version": None,
        "python": None,
        "engine": None,
        "isolation": [],
        "key": None,
    }
    if not alive:
        row["error"] = "dead: " + (node.get("DeathReasonMessage") or "Ray lost the node")
    elif isinstance(answer, dict):
        row.update({k: answer[k] for k in ("aido_version", "python", "engine", "isolation", "key")})
        row["hostname"] = answer.get("hostname") or row["hostname"]
    else:
        row["error"] = answer or "not probed"
    if alive and available is not None:
        # Runs in flight hold one aido slot each; Ray leaves a fully used resource out.
        free = available.get(node_id, {}).get(RESOURCE, 0.0)
        row["in_flight"] = max(0, round(capacity - free))
    return row
