"""A sandbox's image is checked (and pulled) at `sandbox up`: a missing one creates nothing.

No registry is reachable from the test machines, and a test must not reach one anyway: the
missing images name an empty registry the test runs itself on loopback (tests.helpers.registry), so
the pull aido really attempts fails at once without reaching anything else, not even a
resolver.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.registry import empty_registry
from tests.helpers.sandbox import assert_no_run_consumed, sandbox_up

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    with empty_registry() as address:
        yield address


def assert_hint_names_only_up_options(hint: str) -> None:
    """The hint names `aido sandbox up --runtime` or sandbox.yaml's `runtime:`; never an
    option of another command (`aido run` has no --runtime)."""
    assert "`aido sandbox up --runtime " in hint
    assert "`runtime:` in sandbox.yaml" in hint
    assert "aido run --runtime" not in hint
    # Every aido command quoted in the hint is `aido sandbox up ...`.
    assert re.findall(r"`aido (\w+(?: \w+)?)", hint) == ["sandbox up"]


def assert_nothing_created(project: Path) -> None:
    sandboxes = project / ".aido" / "sandboxes"
    assert not sandboxes.exists() or list(sandboxes.iterdir()) == []


def test_missing_image_at_up_exits_125_and_creates_nothing(aido: Aido, project: Path, registry: str) -> None:
    missing = f"{registry}/never-built:1"
    result = aido("sandbox", "up", "--runtime", f"docker://{missing}")
    assert result.code == 125, result.stderr
    assert result.stdout == ""  # no sandbox id for a script to pick up
    assert f"⬇ pulling {missing}" in result.stderr  # the pull was tried, and shown
    assert f"error: image {missing} is not available locally and could not be pulled" in result.stderr
    hint = result.stderr.split("hint: ", 1)[1]
    assert f"docker build -t {missing} ." in hint
    assert_hint_names_only_up_options(hint)
    assert not (project / ".aido").exists(), "no workspace for a sandbox that was not created"

    as_json = aido("sandbox", "up", "--runtime", f"docker://{missing}", "--json")
    assert as_json.code == 125
    doc = as_json.json
    assert doc["status"] == "error"
    assert doc["error"]["code"] == "image_unavailable"
    assert missing in doc["error"]["message"]
    assert_hint_names_only_up_options(doc["error"]["hint"])
    assert as_json.stderr == ""  # --json: no progress lines
    assert not (project / ".aido").exists()


def test_missing_image_keeps_the_active_sandbox(aido: Aido, project: Path, registry: str) -> None:
    first = sandbox_up(aido)
    write(project / "sandbox.yaml", f"runtime: docker://{registry}/never-built:1\n")
    result = aido("sandbox", "up")
    assert result.code == 125, result.stderr
    assert_hint_names_only_up_options(result.stderr.split("hint: ", 1)[1])
    assert sorted(p.name for p in (project / ".aido" / "sandboxes").iterdir()) == [first]
    assert (project / ".aido" / "active").read_text().strip() == first


def test_a_runtime_whose_image_is_here_creates_the_sandbox(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--runtime", "python:3.11")
    listed = aido("sandbox", "list", "--json")
    assert sandbox_id in listed.stdout
    assert "pulling" not in aido("sandbox", "up", "--runtime", "sh").stderr  # present: no pull


@pytest.fixture
def throwaway_image(registry: str) -> Iterator[str]:
    """A local tag of a present image, unique to this test (other tests run at the same time),
    named after the empty registry: once removed, a pull of it fails there."""
    tag = f"{registry}/gone-{os.getpid()}:1"
    subprocess.run(["docker", "tag", "debian:bookworm-slim", tag], check=True)
    yield tag
    subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)


def test_image_removed_after_up_fails_the_run_with_a_hint_run_can_follow(
    aido: Aido, project: Path, throwaway_image: str
) -> None:
    sandbox_id = sandbox_up(aido, "--runtime", f"docker://{throwaway_image}")
    subprocess.run(["docker", "rmi", throwaway_image], check=True, capture_output=True)
    write(project / "hello.sh", "echo hi\n")
    result = aido("run", "hello.sh")
    assert result.code == 125
    assert f"image {throwaway_image} is not available" in result.stderr
    hint = result.stderr.split("hint: ", 1)[1]
    assert "create a sandbox with another runtime" in hint
    assert_hint_names_only_up_options(hint)
    assert_no_run_consumed(project, sandbox_id)
