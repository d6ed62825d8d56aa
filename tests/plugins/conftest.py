"""Real plugin packages, built and installed with pip into temporary directories that the
``aido`` subprocesses see through PYTHONPATH (so entry points are found exactly as for an
installed plugin): the example examples/aido-census, and the test packages in pkgs/.

Built without build isolation when hatchling is installed (the dev extra has it: no
network); otherwise pip fetches hatchling into an isolated build environment."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, Result, run_aido

HERE = Path(__file__).parent
CENSUS = HERE.parents[1] / "examples" / "aido-census"
TESTPLUGIN = HERE / "pkgs" / "aido-testplugin"
BROKEN = HERE / "pkgs" / "aido-brokenplugin"
WONKY = HERE / "pkgs" / "aido-wonkyplugin"


def install(target: Path, *packages: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-compile",
        "--disable-pip-version-check",
        "--target",
        str(target),
    ]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")
    done = subprocess.run(
        [*command, *map(str, packages)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return target


def plugin_env(target: Path) -> dict[str, str]:
    """The environment of an aido that sees the plugins installed in ``target``."""
    inherited = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(target) + (os.pathsep + inherited if inherited else "")}


@pytest.fixture(scope="session")
def plugins_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aido-census and aido-testplugin, installed."""
    return install(tmp_path_factory.mktemp("plugins"), CENSUS, TESTPLUGIN)


@pytest.fixture(scope="session")
def broken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aido-census and aido-brokenplugin (its module raises on import), installed."""
    return install(tmp_path_factory.mktemp("plugins-broken"), CENSUS, BROKEN)


@pytest.fixture(scope="session")
def wonky_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aido-testplugin and aido-wonkyplugin (its runtimes are refused but one), installed."""
    return install(tmp_path_factory.mktemp("plugins-wonky"), TESTPLUGIN, WONKY)


@pytest.fixture(scope="module")
def plugged(tmp_path_factory: pytest.TempPathFactory, plugins_dir: Path, engine: None) -> Iterator[Aido]:
    """``aido`` with the plugins, in a project with one sandbox (for the whole module)."""
    project = tmp_path_factory.mktemp("plugged") / "project"
    project.mkdir()

    def run(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> Result:
        return run_aido(*args, cwd=project, env={**plugin_env(plugins_dir), **(env or {})}, **kwargs)  # type: ignore[arg-type]

    run.project = project  # type: ignore[attr-defined]
    up = run("sandbox", "up", "--json")
    assert up.code == 0, up.stderr
    run.sandbox = up.json["sandbox_id"]  # type: ignore[attr-defined]
    yield run
    run("sandbox", "destroy", "--all")
