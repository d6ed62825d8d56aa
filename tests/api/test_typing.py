"""The API is typed for its users: examples/api_agent.py passes `mypy --strict` against the
aido under test (a wrong use of a result fails it), runs as documented, and the wheel
ships py.typed."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import aido

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "api_agent.py"
PACKAGE = Path(aido.__file__).resolve().parent

WRONG = """\
import aido

def first_line(sb: aido.Sandbox) -> int:
    r = sb.run_code("print(1)")
    return r.stdout  # a str, not an int
"""


def test_the_example_agent_passes_mypy_strict(tmp_path: Path) -> None:
    assert (PACKAGE / "py.typed").is_file()
    wrong = tmp_path / "wrong.py"
    wrong.write_text(WRONG)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--follow-imports=silent",
            str(EXAMPLE),
            str(wrong),
        ],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(PACKAGE.parent)},  # the aido under test, typed
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    # The only error is the deliberate one: the example is clean, and results are not Any.
    assert len(errors) == 1, done.stdout + done.stderr
    assert errors[0].startswith(
        'wrong.py:5: error: Incompatible return value type (got "str", expected "int")'
    )


@pytest.mark.docker
def test_the_example_agent_runs(engine: None, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "[run-001] success (exit 0)" in done.stdout
    assert "added outputs/primes.json" in done.stdout
    assert done.stdout.rstrip().endswith("outputs: ['primes.json']; 15 primes, largest 47")
    assert not any((tmp_path / ".aido" / "sandboxes").iterdir())  # the with block destroyed it


def test_the_wheel_ships_py_typed(tmp_path: Path) -> None:
    wheel_builder = pytest.importorskip("hatchling.builders.wheel")
    [built] = wheel_builder.WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    names = zipfile.ZipFile(built).namelist()
    assert "aido/py.typed" in names
    assert "aido/api/sandbox.py" in names
