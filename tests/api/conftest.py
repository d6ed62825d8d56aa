"""One sandbox per test module (made through the API itself), in a project directory of
its own; every test module leaves no container behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import aido
from tests.helpers.engine import assert_no_containers


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-project")


@pytest.fixture(scope="module")
def sb(engine: None, project_dir: Path) -> Iterator[aido.Sandbox]:
    """A python sandbox small enough that running out of memory is quick."""
    with aido.Sandbox(ttl="15m", runtime="python:3.11", memory="64M", workspace=project_dir) as sandbox:
        yield sandbox
    assert_no_containers(sandbox.id)
