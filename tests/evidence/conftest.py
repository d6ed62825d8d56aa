"""A workspace with one sandbox and four sealed runs, made once (real engine, real CLI) and
copied whole for each test that tampers with it, so every tamper case starts clean and
costs a directory copy rather than four container runs.

The runs: run-001 writes outputs/a.txt ("one") and prints to stdout and stderr; run-002
writes outputs/b.txt; run-003 rewrites outputs/a.txt ("three": a later run explaining
the change to what run-001 sealed); run-004 only prints.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.cli import Result, run_aido

TASKS = {
    "one.py": 'import sys\nopen("/outputs/a.txt", "w").write("one\\n")\nprint("first run")\n'
    'print("to stderr", file=sys.stderr)\n',
    "two.py": 'open("/outputs/b.txt", "w").write("two\\n")\nprint("second run")\n',
    "three.py": 'open("/outputs/a.txt", "w").write("three\\n")\nprint("third run")\n',
    "four.py": 'print("fourth run")\n',
}


@dataclass
class Sealed:
    project: Path
    sandbox_id: str

    @property
    def root(self) -> Path:
        return self.project / ".aido" / "sandboxes" / self.sandbox_id

    def run_dir(self, run: str) -> Path:
        return self.root / "runs" / run

    def aido(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        return run_aido(*args, cwd=self.project, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def sealed_original(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    project = tmp_path_factory.mktemp("sealed") / "project"
    project.mkdir()
    for name, text in TASKS.items():
        (project / name).write_text(text)
    # No auto-cleanup: a copy of this workspace must never start a reaper of its own.
    up = run_aido("sandbox", "up", "--no-auto-cleanup", "--json", cwd=project)
    assert up.code == 0, up.stderr
    sealed = Sealed(project, up.json["sandbox_id"])
    try:
        for name in TASKS:
            done = sealed.aido("run", name)
            assert done.code == 0, done.stderr
        yield sealed
    finally:
        run_aido("sandbox", "destroy", "--all", "--yes", cwd=project)


@pytest.fixture
def sealed(sealed_original: Sealed, tmp_path: Path) -> Sealed:
    """A private copy of the sealed workspace (links copied as links)."""
    project = tmp_path / "project"
    shutil.copytree(sealed_original.project, project, symlinks=True)
    return Sealed(project, sealed_original.sandbox_id)
