"""What a driver sends a node for one run, and what comes back: plain picklable values.

The node rebuilds the sandbox from ``RemoteSpec`` (same id, config, secrets, inputs) and
runs the task with the ordinary pipeline; the run's evidence comes back sealed by the
node, as an export bundle the driver checks with the same code as ``aido verify BUNDLE``.
"""

from __future__ import annotations

from typing import Any

from aido.values import dataclass, field

# Generator items a node yields, in order: NODE once, OUTPUT any number of times, then
# DONE (the run exists and is sealed) or FAILED (no run could start there).
NODE = "node"
OUTPUT = "out"
DONE = "done"
FAILED = "failed"

DEFAULT_RETURN_LIMIT = 256 << 20  # outputs sent back per run; the rest is listed, not sent
MAX_INPUTS = 256 << 20  # a sandbox's inputs/ shipped to the nodes (once per batch)


def node_name(node: dict[str, Any]) -> str:
    """A node as messages name it: its host and the start of its Ray node id."""
    if not node:
        return "the node"
    return f"node {node.get('hostname')} ({str(node.get('id', ''))[:12]})"


@dataclass(frozen=True)
class RemoteSpec:
    sandbox_id: str
    name: str | None
    created_at: str
    expires_at: str
    config: dict[str, Any]
    secrets: dict[str, str]
    inputs_manifest: bytes | None  # the driver's inputs.json, byte for byte (the seal hashes it)
    number: int  # the driver's run number: the node's run takes the same id
    task_name: str
    task_source: bytes
    task_mode: int
    from_code: bool  # a code string (`run -c`): the node plans it as one, so it is recorded so
    args: list[str]
    env: dict[str, str]  # from -e flags
    timeout_seconds: float
    network: bool  # --network, confirmed on the driver
    output_limit: int
    return_limit: int
    aido_version: str
    retry_of: str | None = None
    code_runtime: str | None = None  # a code string's runtime (the sandbox's, or run -c --runtime)
    git: dict[str, Any] | None = None  # the driver's project (the summary records it, as locally)
    driver: dict[str, Any] = field(default_factory=dict)  # hostname, pid: for the node's log


@dataclass(frozen=True)
class NodeResult:
    """A sealed run as a node returns it: the bundle (``aido export --no-outputs`` of the
    node's run) and the outputs within the return limit, as (name under outputs/, bytes)."""

    bundle: bytes
    outputs: list[tuple[str, bytes]]
    not_returned: list[dict[str, Any]]  # {path, bytes, reason}: sealed but not sent back
    error: dict[str, Any] | None = None  # what failed after the run existed (engine died, ...)
