"""Shared fixtures.

Tests that touch containers use the real Docker engine (the ``engine`` fixture
fails, never skips, when there is none: CI always has one). ``aido`` runs the real
command in a subprocess, so exit codes, stdout/stderr separation and signals are
exactly what a user gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, also the current directory."""
    directory = tmp_path / "project"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


@pytest.fixture
def aido(project: Path) -> Callable[..., Result]:
    """Run ``python -m aido ARGS`` in the project directory; returns code, stdout, stderr."""

    def run(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        input: str | None = None,
    ) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIDO_")}
        full_env["NO_COLOR"] = "1"
        full_env.update(env or {})
        done = subprocess.run(
            [sys.executable, "-m", "aido", *args],
            cwd=cwd or project,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


def _engine_ok() -> bool:
    try:
        return (
            subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def engine() -> None:
    """The real Docker engine. Fails (does not skip) without one: run scripts/bootstrap.sh."""
    if not _engine_ok():
        pytest.fail("no Docker engine: run scripts/bootstrap.sh (CI does) before the tests", pytrace=False)


@pytest.fixture
def sandbox(engine: None, aido: Callable[..., Result], project: Path) -> Iterator[str]:
    """A fresh sandbox (defaults) in the project; destroyed afterwards."""
    result = aido("sandbox", "up", "--json")
    assert result.code == 0, result.stderr
    sandbox_id = result.json["sandbox_id"]
    yield sandbox_id
    aido("sandbox", "destroy", "--all")


def labelled_containers(sandbox_id: str) -> list[str]:
    """Container ids (any state) that aido labelled for this sandbox, straight from the engine."""
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=aido.sandbox={sandbox_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
