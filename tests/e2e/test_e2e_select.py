"""Choosing a sandbox, against the real engine through the real CLI: `destroy` with several
ids (checked before anything is destroyed, one outcome per id), no silent switch to another
sandbox once the active one is gone, `sandbox use`, `sandbox extend`, `sandbox list -q` and
`destroy --all` without a workspace."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

# destroy_every_sandbox is an autouse fixture: importing it is what enables it here.
from e2e_support import (  # noqa: F401
    Aido,
    assert_no_containers,
    assert_no_run_consumed,
    destroy_every_sandbox,
    events,
    record,
    sandbox_root,
    sandbox_up,
    spawn,
    summary,
    wait_for,
)

pytestmark = pytest.mark.docker

UNKNOWN = "zzzzzzzzzzzz"
OTHER_UNKNOWN = "yyyyyyyyyyyy"


def active(project: Path) -> str | None:
    pointer = project / ".aido" / "active"
    return pointer.read_text().strip() if pointer.exists() else None


def expires(project: Path, sandbox_id: str) -> datetime:
    return datetime.fromisoformat(record(project, sandbox_id)["expires_at"].replace("Z", "+00:00"))


# -- destroy A BAD B ----------------------------------------------------------------------------


def test_destroy_with_unknown_ids_destroys_nothing_and_names_them_all(aido: Aido, project: Path) -> None:
    first, second = sandbox_up(aido), sandbox_up(aido)
    result = aido("sandbox", "destroy", first, UNKNOWN, second, OTHER_UNKNOWN)
    assert result.code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: no sandboxes {UNKNOWN}, {OTHER_UNKNOWN} in {project.resolve() / '.aido'}; "
        "nothing was destroyed",
        "hint: list sandboxes with `aido sandbox list`",
    ]
    assert sandbox_root(project, first).is_dir()  # the old code destroyed the first one
    assert sandbox_root(project, second).is_dir()
    assert active(project) == second

    as_json = aido("sandbox", "destroy", first, UNKNOWN, "--json")
    assert as_json.code == 3
    assert as_json.json["error"]["code"] == "sandbox_not_found"
    assert f"no sandbox {UNKNOWN} " in as_json.json["error"]["message"]
    assert sandbox_root(project, first).is_dir()


def test_a_malformed_id_among_good_ones_destroys_nothing(aido: Aido, project: Path) -> None:
    first = sandbox_up(aido)
    result = aido("sandbox", "destroy", first, "../escape")
    assert result.code == 2
    assert "invalid sandbox id '../escape'" in result.stderr
    assert sandbox_root(project, first).is_dir()


def test_destroy_reports_each_sandbox_once_in_order(aido: Aido, project: Path) -> None:
    first, second, third = sandbox_up(aido), sandbox_up(aido), sandbox_up(aido)
    result = aido("sandbox", "destroy", second, first, second, "--json")
    assert result.code == 0, result.stderr
    doc = result.json
    assert doc["status"] == "success"
    assert [item["sandbox_id"] for item in doc["destroyed"]] == [second, first]
    assert doc["already_gone"] == []
    assert doc["failed"] == []
    assert sandbox_root(project, third).is_dir()

    human = aido("sandbox", "destroy", third)
    assert human.code == 0
    assert human.stderr.splitlines() == [f"✓ Sandbox destroyed: {third}"]


def test_destroy_goes_on_past_a_sandbox_that_fails_and_reports_each(aido: Aido, project: Path) -> None:
    first, broken, last = sandbox_up(aido), sandbox_up(aido), sandbox_up(aido)
    lock = sandbox_root(project, broken) / ".lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()  # the sandbox's lock cannot be taken: destroying it fails midway
    try:
        result = aido("sandbox", "destroy", first, broken, last)
        assert result.code == 3, result.stderr
        lines = result.stderr.splitlines()
        assert lines[0] == f"✓ Sandbox destroyed: {first}"
        assert lines[1] == f"✓ Sandbox destroyed: {last}"
        assert lines[2].startswith(f"✗ Sandbox {broken} not destroyed: ")
        assert lines[3].startswith(f"error: 1 of 3 sandboxes could not be destroyed: {broken}: ")
        assert not sandbox_root(project, first).exists()
        assert not sandbox_root(project, last).exists()  # the old code stopped at the failure
        assert sandbox_root(project, broken).is_dir()

        again = aido("sandbox", "destroy", broken, "--json")
        assert again.code == 3
        doc = again.json
        assert doc["status"] == "error"
        assert doc["exit_code"] == 3
        assert doc["destroyed"] == []
        (failed,) = doc["failed"]
        assert failed["sandbox_id"] == broken
        assert failed["error"]["code"] == "workspace"
        assert doc["error"]["code"] == "destroy_failed"
    finally:
        lock.rmdir()
    assert aido("sandbox", "destroy", broken).code == 0


# -- destroy --all without a workspace ----------------------------------------------------------


def test_destroy_all_without_a_workspace_has_nothing_to_do(aido: Aido, project: Path) -> None:
    result = aido("sandbox", "destroy", "--all")
    assert result.code == 0, result.stderr  # the old code: exit 3, "no aido workspace"
    assert result.stdout == ""
    assert result.stderr == "No sandboxes to destroy.\n"
    as_json = aido("sandbox", "destroy", "--all", "--json")
    assert as_json.code == 0
    assert as_json.json["destroyed"] == []
    assert as_json.json["status"] == "success"
    assert not (project / ".aido").exists()
    # Naming a sandbox, or the active one, still needs a workspace.
    assert aido("sandbox", "destroy", UNKNOWN).code == 3
    assert aido("sandbox", "destroy").code == 3
    assert not (project / ".aido").exists()
