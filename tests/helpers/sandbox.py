"""A project's sandboxes as the CLI creates them, and the evidence they keep on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.helpers.cli import Aido, wait_for
from tests.helpers.engine import labelled_containers, run_containers
from tests.helpers.files import load

# The task's uid:gid: 10001 when the tests (so aido) run as root, else the caller's own.
TASK_UID = 10001 if os.getuid() == 0 else os.getuid()
TASK_GID = 10001 if os.getuid() == 0 else os.getgid()
ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")


def sandbox_up(aido: Aido, *args: str, env: dict[str, str] | None = None) -> str:
    """``aido sandbox up --json ARGS``; returns the new id."""
    result = aido("sandbox", "up", "--json", *args, env=env)
    assert result.code == 0, result.stderr
    sandbox_id = result.json["sandbox_id"]
    assert isinstance(sandbox_id, str)
    assert len(sandbox_id) == 12
    assert set(sandbox_id) <= ID_CHARS
    return sandbox_id


def sandbox_root(project: Path, sandbox_id: str) -> Path:
    return project / ".aido" / "sandboxes" / sandbox_id


def record(project: Path, sandbox_id: str) -> dict[str, Any]:
    """The sandbox's sandbox.json, with its runs from the run index under "runs" (as the
    file listed them before schema 2)."""
    return with_runs(sandbox_root(project, sandbox_id))


def indexed_runs(root: Path) -> list[dict[str, Any]]:
    """A (live or archived) sandbox directory's runs.jsonl: each run as its last line has
    it, in the order the runs first appear."""
    path = root / "runs.jsonl"
    if not path.exists():
        return []
    runs: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        runs[entry["run_id"]] = entry
    return list(runs.values())


def with_runs(root: Path) -> dict[str, Any]:
    """sandbox.json of a (live or archived) sandbox directory, plus "runs" from its index."""
    data = load(root / "sandbox.json")
    assert isinstance(data, dict)
    assert "runs" not in data, "sandbox.json (schema 2) must not list runs"
    return {**data, "runs": indexed_runs(root)}


def summary(project: Path, sandbox_id: str, run_id: str = "run-001") -> dict[str, Any]:
    data = load(sandbox_root(project, sandbox_id) / "runs" / run_id / "summary.json")
    assert isinstance(data, dict)
    return data


def run_dir(project: Path, sandbox_id: str, run_id: str = "run-001") -> Path:
    return sandbox_root(project, sandbox_id) / "runs" / run_id


def events(path: Path) -> list[dict[str, Any]]:
    """The records of an events.log (one JSON object a line)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_no_run_consumed(project: Path, sandbox_id: str) -> None:
    """The sandbox has no run recorded and no run directory."""
    assert record(project, sandbox_id)["runs"] == []
    assert list((sandbox_root(project, sandbox_id) / "runs").iterdir()) == []


def destroy_all_checking_leftovers(aido: Aido, project: Path) -> None:
    """Destroy every sandbox of the project; fail if any of them still had a container
    (a run must never leave one behind) other than its warm pool's (``warm: N``), or if
    the destroy left any container, its pool's included."""
    sandboxes = project / ".aido" / "sandboxes"
    if not sandboxes.is_dir():
        return
    ids = [p.name for p in sandboxes.iterdir()]
    leftovers = {i: run_containers(i) for i in ids}
    aido("sandbox", "destroy", "--all")
    assert {k: v for k, v in leftovers.items() if v} == {}, "containers survived the test's runs"
    # A keeper that was starting a pool container as the destroy ran removes it as soon as
    # the start returns (run/warm.py keep): give it that moment, no more.
    wait_for(
        lambda: not any(labelled_containers(i) for i in ids),
        timeout=10,
        what="no container left after `aido sandbox destroy --all`",
    )
