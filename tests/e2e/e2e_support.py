"""Helpers shared by the end-to-end tests (plain functions plus one autouse fixture).

Not a conftest: a second ``conftest`` module would shadow tests/conftest.py for
``from conftest import ...`` under pytest's default import mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, labelled_containers

Aido = Callable[..., Result]

# The task's uid:gid: 10001 when the tests (so aido) run as root, else the caller's own.
TASK_UID = 10001 if os.getuid() == 0 else os.getuid()
TASK_GID = 10001 if os.getuid() == 0 else os.getgid()
ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")


@pytest.fixture(autouse=True)
def destroy_every_sandbox(engine: None, aido: Aido, project: Path) -> Iterator[None]:
    """After each test: no container of any of its sandboxes is left, and every sandbox is destroyed."""
    yield
    sandboxes = project / ".aido" / "sandboxes"
    if not sandboxes.is_dir():
        return
    leftovers = {p.name: labelled_containers(p.name) for p in sandboxes.iterdir()}
    aido("sandbox", "destroy", "--all")
    assert {k: v for k, v in leftovers.items() if v} == {}, "containers survived the test's runs"


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


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def record(project: Path, sandbox_id: str) -> dict[str, Any]:
    """The sandbox's sandbox.json."""
    data = load(sandbox_root(project, sandbox_id) / "sandbox.json")
    assert isinstance(data, dict)
    return data


def summary(project: Path, sandbox_id: str, run_id: str = "run-001") -> dict[str, Any]:
    data = load(sandbox_root(project, sandbox_id) / "runs" / run_id / "summary.json")
    assert isinstance(data, dict)
    return data


def run_dir(project: Path, sandbox_id: str, run_id: str = "run-001") -> Path:
    return sandbox_root(project, sandbox_id) / "runs" / run_id


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def assert_no_run_consumed(project: Path, sandbox_id: str) -> None:
    """The sandbox has no run recorded and no run directory."""
    assert record(project, sandbox_id)["runs"] == []
    assert list((sandbox_root(project, sandbox_id) / "runs").iterdir()) == []


def assert_no_containers(sandbox_id: str) -> None:
    assert labelled_containers(sandbox_id) == []


def aido_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the ``aido`` fixture gives its subprocess, for Popen-based tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDO_")}
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def aido_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "aido", *args]


def spawn(project: Path, *args: str, **popen: Any) -> subprocess.Popen[Any]:
    """Start ``aido ARGS`` in the background (stdout and stderr piped unless given)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(aido_argv(*args), cwd=project, env=aido_env(), **popen)


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
