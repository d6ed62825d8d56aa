"""Choosing a sandbox, against the real engine through the real CLI: `destroy` with several
ids (checked before anything is destroyed, one outcome per id), no silent switch to another
sandbox once the active one is gone, `sandbox use`, `sandbox extend`, `sandbox list -q` and
`destroy --all` without a workspace."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aido import fs
from tests.helpers.cli import Aido, spawn, wait_for
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import write
from tests.helpers.sandbox import assert_no_run_consumed, events, record, sandbox_root, sandbox_up, summary

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
    assert human.stderr.splitlines() == [
        f"✓ Sandbox destroyed: {third}",
        f"  evidence of 0 run(s) kept for 30d in .aido/archive/{third}/",
    ]


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
        assert lines[1] == f"  evidence of 0 run(s) kept for 30d in .aido/archive/{first}/"
        assert lines[2] == f"✓ Sandbox destroyed: {last}"
        assert lines[3] == f"  evidence of 0 run(s) kept for 30d in .aido/archive/{last}/"
        assert lines[4].startswith(f"✗ Sandbox {broken} not destroyed: ")
        assert lines[5].startswith(f"error: 1 of 3 sandboxes could not be destroyed: {broken}: ")
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


# -- no silent switch to another sandbox ------------------------------------------------------


def test_no_active_sandbox_stops_run_logs_and_destroy(aido: Aido, project: Path) -> None:
    kept = sandbox_up(aido, "--name", "alpha")
    write(project / "hello.sh", "echo hello\n")
    assert aido("run", "hello.sh").code == 0  # run-001 of alpha, for `logs` to find
    doomed = sandbox_up(aido)  # now the active one
    assert aido("sandbox", "destroy").code == 0
    assert active(project) is None

    result = aido("run", "hello.sh")
    assert result.code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: no active sandbox; this workspace has 1: {kept} (alpha)",
        "hint: choose one with `aido sandbox use ID`, or give --sandbox ID",
    ]
    assert len(record(project, kept)["runs"]) == 1  # the old code ran it in alpha, silently

    logs = aido("logs")
    assert logs.code == 3
    assert logs.stdout == ""  # the old code showed alpha's run-001
    assert f"this workspace has 1: {kept} (alpha)" in logs.stderr

    destroy = aido("sandbox", "destroy")
    assert destroy.code == 3
    assert "no active sandbox" in destroy.stderr
    assert "`aido sandbox destroy ID` (or --all for every one)" in destroy.stderr
    assert sandbox_root(project, kept).is_dir()  # the old code destroyed alpha

    as_json = aido("run", "hello.sh", "--json")
    assert as_json.code == 3
    error = as_json.json["error"]
    assert error["code"] == "no_active_sandbox"
    assert error["sandboxes"] == [{"id": kept, "name": "alpha", "status": "created"}]
    assert doomed not in as_json.stdout

    batch = aido("run", "hello.sh", "hello.sh")
    assert batch.code == 3
    assert "no active sandbox" in batch.stderr
    assert len(record(project, kept)["runs"]) == 1

    # An explicit sandbox still works, and does not change which one is active.
    explicit = aido("run", "--sandbox", kept, "hello.sh")
    assert explicit.code == 0, explicit.stderr
    assert explicit.stdout == "hello\n"
    assert active(project) is None
    assert aido("logs", "--sandbox", kept).stdout == "hello\n"


def test_the_choice_lists_every_sandbox_and_marks_expired_ones(aido: Aido, project: Path) -> None:
    old = sandbox_up(aido, "--ttl", "1s", "--no-auto-cleanup", "--name", "old")
    time.sleep(1.2)  # expired, and created a second before the next (the list is oldest first)
    plain = sandbox_up(aido)
    (project / ".aido" / "active").unlink()
    result = aido("logs", "--json")
    assert result.code == 3
    assert result.json["error"]["message"] == (
        f"no active sandbox; this workspace has 2: {old} (old, expired), {plain}"
    )
    assert [s["status"] for s in result.json["error"]["sandboxes"]] == ["expired", "created"]


def test_without_any_sandbox_the_hint_is_to_create_one(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    assert aido("sandbox", "destroy").code == 0
    write(project / "hello.sh", "echo hello\n")
    result = aido("run", "hello.sh")
    assert result.code == 3
    assert result.stderr.splitlines() == [
        "error: no sandbox in this workspace",
        "hint: create one with `aido sandbox up`",
    ]


def test_sandbox_up_makes_the_new_sandbox_active_again(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    assert aido("sandbox", "destroy").code == 0
    fresh = sandbox_up(aido)
    assert active(project) == fresh
    write(project / "hello.sh", "echo hello\n")
    assert aido("run", "hello.sh").code == 0
    assert len(record(project, fresh)["runs"]) == 1


# -- sandbox use ----------------------------------------------------------------------------------


def test_use_selects_the_sandbox_run_logs_and_destroy_default_to(aido: Aido, project: Path) -> None:
    first = sandbox_up(aido, "--name", "first")
    second = sandbox_up(aido)
    result = aido("sandbox", "use", first)
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"✓ Active sandbox: {first} (first), expires in ")
    assert active(project) == first

    write(project / "hello.sh", "echo hello\n")
    assert aido("run", "hello.sh").code == 0
    assert len(record(project, first)["runs"]) == 1
    assert_no_run_consumed(project, second)
    assert aido("logs").stdout == "hello\n"

    as_json = aido("sandbox", "use", second, "--json")
    assert as_json.code == 0
    assert as_json.json == {
        "schema_version": 1,
        "command": "sandbox use",
        "status": "success",
        "exit_code": 0,
        "sandbox_id": second,
        "name": None,
        "previous_sandbox_id": first,
        "error": None,
    }
    assert aido("sandbox", "destroy").code == 0
    assert not sandbox_root(project, second).exists()
    assert sandbox_root(project, first).is_dir()


def test_use_refuses_what_cannot_be_used_and_keeps_the_active_one(aido: Aido, project: Path) -> None:
    expired = sandbox_up(aido, "--ttl", "1s", "--no-auto-cleanup")
    going = sandbox_up(aido)
    current = sandbox_up(aido)
    # Being destroyed: the marker, and its destroyer alive and holding the directory's lock
    # (a marker nobody holds is a crashed destroy, which the next command's sweep finishes).
    destroyer = fs.hold_lock(sandbox_root(project, going))
    (sandbox_root(project, going) / ".destroying").touch()
    time.sleep(1.2)

    cases = [
        (UNKNOWN, 3, f"error: no sandbox {UNKNOWN} in "),
        ("NOT-AN-ID", 2, "error: invalid sandbox id 'NOT-AN-ID': expected 12 lowercase letters or digits"),
        (expired, 3, f"error: sandbox {expired} expired at "),
        (going, 3, f"error: sandbox {going} is being destroyed"),
    ]
    for given, code, line in cases:
        result = aido("sandbox", "use", given)
        assert result.code == code, (given, result.stderr)
        assert result.stderr.startswith(line), result.stderr
        assert result.stderr.count("error:") == 1
        assert active(project) == current

    as_json = aido("sandbox", "use", expired, "--json")
    assert as_json.code == 3
    assert as_json.json["error"]["code"] == "sandbox_expired"
    missing = aido("sandbox", "use")
    assert missing.code == 2
    assert "Missing argument 'ID'" in missing.stderr
    (sandbox_root(project, going) / ".destroying").unlink()
    assert destroyer is not None
    os.close(destroyer)


# -- sandbox extend -------------------------------------------------------------------------------


def test_extend_sets_the_expiry_from_now_and_records_it(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--ttl", "5m")
    before, before_text = expires(project, sandbox_id), record(project, sandbox_id)["expires_at"]
    result = aido("sandbox", "extend", sandbox_id, "--ttl", "2h", "--json")
    assert result.code == 0, result.stderr
    doc = result.json
    assert doc["sandbox_id"] == sandbox_id
    assert doc["previous_expires_at"] == before_text
    after = expires(project, sandbox_id)
    assert doc["expires_at"] == record(project, sandbox_id)["expires_at"]
    assert after - before > timedelta(minutes=110)
    assert abs((after - datetime.now(UTC)) - timedelta(hours=2)) < timedelta(seconds=30)
    last = events(sandbox_root(project, sandbox_id) / "events.log")[-1]
    assert last["event"] == "sandbox_extended"
    assert last["ttl"] == "2h"
    assert last["previous_expires_at"] == doc["previous_expires_at"]
    assert last["expires_at"] == doc["expires_at"]

    # Without an id: the active sandbox. It sets, so it can shorten too.
    human = aido("sandbox", "extend", "--ttl", "10m")
    assert human.code == 0, human.stderr
    assert human.stderr.startswith(f"✓ Sandbox {sandbox_id} now expires ")
    assert expires(project, sandbox_id) < after


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ("soon", "--ttl: expected a duration like 90s, 15m or 2h, got 'soon'"),
        ("15", "--ttl: expected a duration like 90s, 15m or 2h, got '15'"),
        ("0s", "--ttl: duration '0s' is too short: the minimum is 1s"),
        ("31d", "--ttl: duration '31d' is too long: the maximum is 30d"),
    ],
)
def test_extend_refuses_a_bad_ttl(aido: Aido, project: Path, ttl: str, message: str) -> None:
    sandbox_id = sandbox_up(aido)
    before = record(project, sandbox_id)
    result = aido("sandbox", "extend", sandbox_id, "--ttl", ttl)
    assert result.code == 2
    hint = "hint: give a duration like 30m or 2h, at most 30d"
    assert result.stderr.splitlines() == [f"error: {message}", hint]
    assert record(project, sandbox_id) == before


def test_extend_refuses_a_sandbox_it_cannot_extend(aido: Aido, project: Path) -> None:
    expired = sandbox_up(aido, "--ttl", "1s", "--no-auto-cleanup")
    time.sleep(1.2)
    before = record(project, expired)
    result = aido("sandbox", "extend", expired, "--ttl", "1h")
    assert result.code == 3
    assert result.stderr.startswith(f"error: sandbox {expired} expired at {before['expires_at']}")
    assert record(project, expired) == before
    assert aido("run", "--sandbox", expired, "x.sh").code == 3  # still expired

    unknown = aido("sandbox", "extend", UNKNOWN, "--ttl", "1h", "--json")
    assert unknown.code == 3
    assert unknown.json["error"]["code"] == "sandbox_not_found"
    malformed = aido("sandbox", "extend", "../x", "--ttl", "1h")
    assert malformed.code == 2
    no_ttl = aido("sandbox", "extend", expired)
    assert no_ttl.code == 2
    assert "Missing option '--ttl'" in no_ttl.stderr

    assert aido("sandbox", "destroy", expired).code == 0
    other = sandbox_up(aido)
    assert aido("sandbox", "destroy", other).code == 0
    write(project / "x.sh", "true\n")
    none_active = aido("sandbox", "extend", "--ttl", "1h")
    assert none_active.code == 3
    assert none_active.stderr.splitlines()[0] == "error: no sandbox in this workspace"


def test_extend_keeps_a_running_task_going_past_the_old_expiry(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--ttl", "4s")
    write(project / "slow.sh", "echo started\nsleep 6\necho finished\n")
    process = spawn(project, "run", "slow.sh", text=True)
    try:
        log = sandbox_root(project, sandbox_id) / "runs" / "run-001" / "stdout.log"
        wait_for(lambda: log.is_file() and b"started" in log.read_bytes(), timeout=30, what="the start")
        assert aido("sandbox", "extend", "--ttl", "1h").code == 0
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr  # the old code stopped it at the first expiry (exit 3)
    assert stdout == "started\nfinished\n"
    assert summary(project, sandbox_id)["status"] == "success"
    assert_no_containers(sandbox_id)


# -- sandbox list -q, destroy --all without a workspace ---------------------------------------


def test_list_quiet_prints_only_ids(aido: Aido, project: Path) -> None:
    assert aido("sandbox", "list", "-q").stdout == ""  # no workspace: nothing, exit 0
    ids = [sandbox_up(aido), sandbox_up(aido)]
    # In the order of `list` (oldest first; two made in the same second may come either way).
    listed = [item["id"] for item in aido("sandbox", "list", "--json").json["sandboxes"]]
    assert sorted(listed) == sorted(ids)
    for flag in ("-q", "--quiet"):
        result = aido("sandbox", "list", flag)
        assert result.code == 0, result.stderr
        assert result.stdout.splitlines() == listed
        assert result.stderr == ""
    both = aido("sandbox", "list", "-q", "--json")
    assert both.code == 2
    assert both.json["error"]["message"] == "give -q or --json, not both"
    destroyed = aido("sandbox", "destroy", *aido("sandbox", "list", "-q").stdout.split())
    assert destroyed.code == 0
    assert aido("sandbox", "list", "-q").stdout == ""


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
