"""Shared fixtures (the helpers they call live in tests/helpers/).

Tests that touch containers use the real Docker engine (the ``engine`` fixture
fails, never skips, when there is none: CI always has one). ``aido`` runs the real
command in a subprocess, so exit codes, stdout/stderr separation and signals are
exactly what a user gets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import EGRESS_DNS, Aido, Result, run_aido
from tests.helpers.engine import engine_ok
from tests.helpers.sandbox import destroy_all_checking_leftovers

# The egress proxy of a run a test starts in this process resolves nothing anywhere: its
# resolver is its own loopback (aido subprocesses get the same from aido_env), unless the
# test gives it the test internet's DNS server (tests/helpers/internet.py).
os.environ["AIDO_EGRESS_DNS"] = EGRESS_DNS


@pytest.fixture(scope="session", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every aido it starts) keeps its signing keys in a temporary config
    directory, never in ~/.config. Session-wide, so that module-scoped fixtures that run
    aido before any function-scoped fixture get it too."""
    config = tmp_path_factory.mktemp("xdg-config")
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "AIDO_SIGNING_KEY")}
    os.environ["XDG_CONFIG_HOME"] = str(config)
    os.environ.pop("AIDO_SIGNING_KEY", None)
    yield config / "aido" / "keys"
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, also the current directory."""
    directory = tmp_path / "project"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


@pytest.fixture
def aido(project: Path) -> Aido:
    """Run ``python -m aido ARGS`` in the project directory; returns code, stdout, stderr."""

    def run(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        input: str | None = None,
    ) -> Result:
        return run_aido(*args, cwd=cwd or project, env=env, timeout=timeout, input=input)

    return run


@pytest.fixture(scope="session")
def engine() -> None:
    """The real Docker engine. Fails (does not skip) without one: run scripts/bootstrap.sh."""
    if not engine_ok():
        pytest.fail("no Docker engine: run scripts/bootstrap.sh (CI does) before the tests", pytrace=False)


@pytest.fixture
def sandbox(engine: None, aido: Aido, project: Path) -> Iterator[str]:
    """A fresh sandbox (defaults) in the project; destroyed afterwards."""
    result = aido("sandbox", "up", "--json")
    assert result.code == 0, result.stderr
    sandbox_id = result.json["sandbox_id"]
    yield sandbox_id
    aido("sandbox", "destroy", "--all")


@pytest.fixture
def destroy_every_sandbox(engine: None, aido: Aido, project: Path) -> Iterator[None]:
    """After the test: no container of any of its sandboxes is left, and every sandbox is
    destroyed. Autouse in tests/e2e and tests/security (their conftest.py)."""
    yield
    destroy_all_checking_leftovers(aido, project)
