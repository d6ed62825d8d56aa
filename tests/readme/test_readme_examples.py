"""The README's examples, run as written.

A fenced block directly after an ``<!-- example: KIND[, group=NAME][, needs=EXTRA] -->`` comment
is executed: ``python`` blocks with this interpreter, ``console`` blocks as the ``$ `` lines they
show (a trailing ``\\`` continues a command; a command ending in ``# exit N`` must exit N; the
other lines are the output a reader would see and are not checked), ``json`` blocks are parsed.
Blocks of one group run in order in one fresh project directory holding a copy of ``examples/``
(the examples of a section build on each other); every block must exit 0. ``pip install`` in an
example installs into a directory of the test's own (on the examples' PYTHONPATH, and without
dependencies: aido itself is the one under test), never into the environment running the tests.
After a group, its sandboxes are destroyed and no container of theirs may be left.

A README example that stops working fails here, so the README cannot drift from the product.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.cli import aido_env, run_aido
from tests.helpers.sandbox import destroy_all_checking_leftovers

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- example: (?P<spec>[^>]*?) -->\s*$")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")
EXPECTED_EXIT = re.compile(r"\s#\s*exit (?P<code>\d+)\s*$")


@dataclass
class Block:
    kind: str
    line: int  # where the block starts in README.md (1-based), for the failure message
    text: str


@dataclass
class Group:
    name: str
    needs: set[str] = field(default_factory=set)
    blocks: list[Block] = field(default_factory=list)


def parse(readme: str) -> list[Group]:
    groups: dict[str, Group] = {}
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        found = MARKER.match(lines[i])
        i += 1
        if not found:
            continue
        options = [part.strip() for part in found["spec"].split(",")]
        kind, settings = options[0], dict(part.split("=", 1) for part in options[1:])
        fence = FENCE.match(lines[i]) if i < len(lines) else None
        assert fence, f"README.md:{i}: an example marker must be followed by a ``` block"
        start, i = i + 1, i + 1
        while not lines[i].startswith("```"):
            i += 1
        name = settings.get("group", f"line-{start}")
        group = groups.setdefault(name, Group(name))
        group.needs |= set(filter(None, settings.get("needs", "").split("+")))
        group.blocks.append(Block(kind, start, "\n".join(lines[start:i]) + "\n"))
    return list(groups.values())


def console_script(text: str) -> str:
    """The ``$ `` commands of a console block, continuation lines joined, as one bash script."""
    commands: list[str] = []
    continuing = False
    for line in text.splitlines():
        if continuing:
            commands[-1] += "\n" + line
        elif line.startswith("$ "):
            commands.append(line[2:])
        else:
            continue
        continuing = line.endswith("\\")
    script = ["set -euo pipefail"]
    for command in commands:
        expected = EXPECTED_EXIT.search(command)
        if expected:  # an example of a refusal: it must fail, with exactly this code
            script.append(f"set +e\n{command}\nrc=$?\nset -e\n[ $rc -eq {expected['code']} ]")
        else:
            script.append(command)
    return "\n".join(script) + "\n"


GROUPS = parse(README.read_text(encoding="utf-8"))


def test_readme_has_examples() -> None:
    # The sections this file protects: a README without marked examples would pass vacuously.
    assert len(GROUPS) >= 5, [g.name for g in GROUPS]


@pytest.mark.parametrize("group", GROUPS, ids=[g.name for g in GROUPS])
def test_readme_example(group: Group, engine: None, tmp_path: Path) -> None:
    for extra in sorted(group.needs):
        if importlib.util.find_spec(extra) is None:
            pytest.fail(f"the README example needs the {extra!r} extra: pip install 'aido[{extra}]'")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "examples", project / "examples")
    site = tmp_path / "site"
    # pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation: build with this venv's hatchling.
    pip = {"PIP_TARGET": str(site), "PIP_NO_DEPS": "1", "PIP_NO_BUILD_ISOLATION": "0"}
    env = aido_env({**pip, "PYTHONPATH": str(site), "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        for block in group.blocks:
            where = f"README.md:{block.line} ({block.kind} example of group {group.name})"
            if block.kind == "json":
                json.loads(block.text)
                continue
            if block.kind == "python":
                argv = [sys.executable, "-c", block.text]
            elif block.kind == "console":
                argv = ["bash", "-c", console_script(block.text)]
            else:
                pytest.fail(f"{where}: unknown example kind {block.kind!r}")
            done = subprocess.run(
                argv, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
            )
            assert done.returncode == 0, f"{where} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    finally:
        destroy_all_checking_leftovers(
            lambda *args, **kw: run_aido(*args, cwd=project, **kw),  # the `aido` fixture's shape
            project,
        )
