"""Shared fixtures.

Tests that touch containers use the real Docker engine (the ``engine`` fixture
fails, never skips, when there is none: CI always has one). ``aido`` runs the real
command in a subprocess, so exit codes, stdout/stderr separation and signals are
exactly what a user gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
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


def as_unprivileged(body: Callable[[Path], None]) -> None:
    """Run ``body`` where mode bits apply: as ourselves, or as nobody when we are root
    (root bypasses permission bits, so a mode-000 test as root would prove nothing)."""
    base = Path(tempfile.mkdtemp(prefix="aido-test-"))
    os.chmod(base, 0o777)
    try:
        if os.geteuid() != 0:
            body(base)
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                body(base)
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged check failed (traceback above)"
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o700)
        shutil.rmtree(base, ignore_errors=True)
