"""A destroyed sandbox's evidence outlives it: ``.aido/archive/<id>/``, against the real engine.

Destroying (by hand, by a ttl sweep, by the reaper) removes containers and working trees
but keeps every run's evidence; ``logs``, ``runs`` and ``sandbox list --all`` read it;
``destroy --purge`` deletes it (confirmed); ``evidence_retention`` prunes old archives;
a crash halfway through is finished by the next command.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from aido.manager import SandboxManager
from aido.store.workspace import Workspace
from tests.helpers.cli import Aido, spawn, wait_for
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import load, write
from tests.helpers.sandbox import events, sandbox_root, sandbox_up, with_runs

pytestmark = pytest.mark.docker

SECRET = "s3cr3t-value-for-the-archive-test"
PRINTS = "print('hello from the task')\nopen('/outputs/result.txt', 'w').write('42')\n"
FAST_REAPER = {"AIDO_REAPER_INTERVAL": "1"}
IDLE_REAPER = {"AIDO_REAPER_INTERVAL": "3600"}  # sweeps once when it starts, then not for an hour


def archive_root(project: Path, sandbox_id: str) -> Path:
    return project / ".aido" / "archive" / sandbox_id


def workspace_events(project: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in events(project / ".aido" / "events.log") if e["event"] == name]


def up_and_run(
    aido: Aido, project: Path, *up_args: str, task: str = PRINTS, env: dict[str, str] | None = None
) -> str:
    """A sandbox with a secret env value and an input file, and one finished run."""
    write(project / "data.csv", "a,b\n1,2\n")
    write(
        project / "sandbox.yaml",
        f"inputs: [data.csv]\nenv:\n  API_TOKEN: {SECRET}\n  GREETING: hi\n",
    )
    sandbox_id = sandbox_up(aido, *up_args, env=env)
    write(project / "task.py", task)
    result = aido("run", "task.py")
    assert result.code == 0, result.stderr
    return sandbox_id


def assert_archived(project: Path, sandbox_id: str, *, reason: str) -> dict[str, Any]:
    """The sandbox is gone, its evidence kept (and nothing else), with no secret in it."""
    assert not sandbox_root(project, sandbox_id).exists()
    root = archive_root(project, sandbox_id)
    assert sorted(p.name for p in root.iterdir()) == [
        "events.log",
        "inputs.json",
        "runs",
        "runs.jsonl",
        "sandbox.json",
    ]
    run = root / "runs" / "run-001"
    assert (run / "stdout.log").read_text() == "hello from the task\n"
    assert load(run / "summary.json")["status"] == "success"
    assert (run / "task" / "task.py").read_text().startswith("print(")
    meta = with_runs(root)
    assert meta["status"] == "destroyed"
    assert meta["destroy_reason"] == reason
    assert meta["destroyed_at"].endswith("Z")
    assert [r["status"] for r in meta["runs"]] == ["success"]
    assert events(root / "events.log")[-1]["event"] == "sandbox_destroyed"
    # secrets.json is never archived, and no archived file holds the secret's value.
    for path in root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert_no_containers(sandbox_id)
    return meta


def assert_readable(aido: Aido, sandbox_id: str) -> None:
    """logs, runs and sandbox list --all all see the archived run."""
    logs = aido("logs", "--sandbox", sandbox_id, "--run", "run-001")
    assert logs.code == 0, logs.stderr
    assert logs.stdout == "hello from the task\n"
    latest = aido("logs", "--sandbox", sandbox_id, "--json")
    assert latest.code == 0, latest.stderr
    assert latest.json["run"]["run_id"] == "run-001"
    assert latest.json["stdout"] == "hello from the task\n"

    listed = aido("sandbox", "list", "--all", "--json")
    assert listed.code == 0, listed.stderr
    (entry,) = [s for s in listed.json["sandboxes"] if s["id"] == sandbox_id]
    assert entry["status"] == "destroyed"
    assert entry["archived"] is True
    assert entry["runs"] == 1
    assert entry["destroyed_at"]
    human = aido("sandbox", "list", "--all")
    assert human.code == 0, human.stderr
    (row,) = [line for line in human.stdout.splitlines() if sandbox_id in line]
    assert "destroyed" in row
    assert "ago" in row
    # Without --all, only live sandboxes (and a hint that there is more).
    assert sandbox_id not in aido("sandbox", "list").stdout

    runs = aido("runs", "--all", "--json")
    assert runs.code == 0, runs.stderr
    (run,) = [r for r in runs.json["runs"] if r["sandbox_id"] == sandbox_id]
    assert run["run_id"] == "run-001"
    assert run["archived"] is True
    assert run["status"] == "success"
    assert run["exit_code"] == 0
    assert run["task"] == "task.py"
    assert run["evidence_dir"] == f".aido/archive/{sandbox_id}/runs/run-001"
    one = aido("runs", "--sandbox", sandbox_id)
    assert one.code == 0, one.stderr
    assert "run-001" in one.stdout
    assert f"{sandbox_id} (destroyed)" in one.stdout


# -- destroy keeps the evidence ---------------------------------------------------------------


def test_destroy_keeps_each_runs_evidence_in_the_archive(aido: Aido, project: Path) -> None:
    sandbox_id = up_and_run(aido, project)
    assert (sandbox_root(project, sandbox_id) / "secrets.json").is_file()

    result = aido("sandbox", "destroy", sandbox_id)
    assert result.code == 0, result.stderr
    assert f"✓ Sandbox destroyed: {sandbox_id}" in result.stderr
    assert f"evidence of 1 run(s) kept for 30d in .aido/archive/{sandbox_id}/" in result.stderr
    assert_archived(project, sandbox_id, reason="destroyed")
    (event,) = workspace_events(project, "sandbox_destroyed")
    assert event["evidence"] == f"archive/{sandbox_id}"
    assert_readable(aido, sandbox_id)

    # Destroying it again says where its evidence is, and how to delete it.
    again = aido("sandbox", "destroy", sandbox_id)
    assert again.code == 3
    assert "already destroyed" in again.stderr
    assert f"aido sandbox destroy --purge {sandbox_id}" in again.stderr


def test_destroy_json_says_where_the_evidence_is(aido: Aido, project: Path) -> None:
    sandbox_id = up_and_run(aido, project)
    result = aido("sandbox", "destroy", "--json")
    assert result.code == 0, result.stderr
    (item,) = result.json["destroyed"]
    assert item["sandbox_id"] == sandbox_id
    assert item["evidence_dir"] == str(archive_root(project, sandbox_id))
    assert item["purged"] is False
    assert item["runs"] == 1


def test_a_ttl_sweep_keeps_the_evidence(aido: Aido, project: Path) -> None:
    # The reaper sweeps once as it starts, then not for an hour: the command's sweep does it.
    sandbox_id = up_and_run(aido, project, "--ttl", "6s", env=IDLE_REAPER)
    expires = load(sandbox_root(project, sandbox_id) / "sandbox.json")["expires_at"]
    wait_for(lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > expires, timeout=10, what="expiry")
    listed = aido("sandbox", "list")  # any command sweeps
    assert listed.code == 0, listed.stderr
    meta = assert_archived(project, sandbox_id, reason="expired")
    assert meta["destroyed_at"] >= meta["expires_at"]
    (event,) = workspace_events(project, "sandbox_destroyed")
    assert event["reason"] == "expired"
    assert_readable(aido, sandbox_id)


def test_the_reaper_keeps_the_evidence(aido: Aido, project: Path) -> None:
    sandbox_id = up_and_run(aido, project, "--ttl", "5s", env=FAST_REAPER)
    # No aido command from here on: only the reaper (started by `up`, 1 s interval) acts.
    wait_for(
        lambda: (
            (archive_root(project, sandbox_id) / "sandbox.json").is_file()
            and not sandbox_root(project, sandbox_id).exists()
        ),
        timeout=15,
        what="the reaper to archive the sandbox",
    )
    wait_for(
        lambda: bool(workspace_events(project, "sandbox_destroyed")), timeout=5, what="the destroy event"
    )
    assert_archived(project, sandbox_id, reason="expired")
    assert_readable(aido, sandbox_id)


def test_a_run_stopped_by_destroy_is_archived_with_what_it_printed(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "slow.py", "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    running = spawn(project, "run", "slow.py")
    stdout_log = sandbox_root(project, sandbox_id) / "runs" / "run-001" / "stdout.log"
    wait_for(lambda: stdout_log.is_file() and b"started" in stdout_log.read_bytes(), timeout=30, what="start")
    result = aido("sandbox", "destroy", sandbox_id)
    assert result.code == 0, result.stderr
    assert running.wait(timeout=30) == 3
    meta = with_runs(archive_root(project, sandbox_id))
    assert [r["status"] for r in meta["runs"]] == ["interrupted"]
    logs = aido("logs", "--sandbox", sandbox_id, "--run", "1")
    assert logs.code == 0, logs.stderr
    assert logs.stdout == "started\n"


# -- purge ------------------------------------------------------------------------------------


def test_purge_needs_confirmation_then_deletes_a_live_sandboxs_evidence(aido: Aido, project: Path) -> None:
    sandbox_id = up_and_run(aido, project)
    refused = aido("sandbox", "destroy", "--purge", sandbox_id)  # no terminal, no --yes
    assert refused.code == 2
    assert "refusing to delete evidence without confirmation" in refused.stderr
    assert "--yes" in refused.stderr
    assert "irreversibly" in refused.stderr
    assert (sandbox_root(project, sandbox_id) / "runs" / "run-001" / "stdout.log").is_file()  # untouched

    result = aido("sandbox", "destroy", "--purge", "--yes", sandbox_id)
    assert result.code == 0, result.stderr
    assert "its evidence was purged" in result.stderr
    assert not sandbox_root(project, sandbox_id).exists()
    assert not archive_root(project, sandbox_id).exists()
    assert list((project / ".aido" / "archive").iterdir()) == []
    (purged,) = workspace_events(project, "evidence_purged")
    assert purged["sandbox_id"] == sandbox_id
    assert purged["reason"] == "purge"
    assert aido("logs", "--sandbox", sandbox_id).code == 3


def test_purge_deletes_an_archived_sandboxs_evidence(aido: Aido, project: Path) -> None:
    sandbox_id = up_and_run(aido, project)
    assert aido("sandbox", "destroy", sandbox_id).code == 0
    refused = aido("sandbox", "destroy", "--purge", sandbox_id, "--json")
    assert refused.code == 2
    assert refused.json["error"]["code"] == "not_confirmed"
    assert (archive_root(project, sandbox_id) / "runs" / "run-001").is_dir()
    # An unknown id next to it: nothing is purged.
    unknown = aido("sandbox", "destroy", "--purge", "--yes", sandbox_id, "zzzzzzzzzzzz")
    assert unknown.code == 3
    assert (archive_root(project, sandbox_id) / "runs" / "run-001").is_dir()

    result = aido("sandbox", "destroy", "--purge", "--yes", sandbox_id, "--json")
    assert result.code == 0, result.stderr
    (item,) = result.json["destroyed"]
    assert item["purged"] is True
    assert item["already_destroyed"] is True
    assert not archive_root(project, sandbox_id).exists()
    (purged,) = workspace_events(project, "evidence_purged")
    assert purged["sandbox_id"] == sandbox_id
    assert purged["runs"] == 1


# -- retention --------------------------------------------------------------------------------


def backdate(project: Path, sandbox_id: str, days: float) -> None:
    """Make an archive look destroyed ``days`` ago (its record and its files' times)."""
    root = archive_root(project, sandbox_id)
    meta = load(root / "sandbox.json")
    then = time.time() - days * 86400
    meta["destroyed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(then))
    (root / "sandbox.json").write_text(json.dumps(meta))
    for path in (root / "sandbox.json", root):
        os.utime(path, (then, then))


def test_retention_prunes_archives_older_than_it(aido: Aido, project: Path) -> None:
    old = up_and_run(aido, project)
    assert aido("sandbox", "destroy", old).code == 0
    recent = up_and_run(aido, project)
    assert aido("sandbox", "destroy", recent).code == 0
    backdate(project, old, 31)
    backdate(project, recent, 29)

    # `never` keeps everything, however old.
    write(project / ".aido" / "config.json", '{"evidence_retention": "never"}\n')
    assert aido("sandbox", "list").code == 0
    assert archive_root(project, old).is_dir()

    # The default, 30 days: the next command prunes the older one only.
    (project / ".aido" / "config.json").unlink()
    assert aido("sandbox", "list").code == 0
    assert not archive_root(project, old).exists()
    assert archive_root(project, recent).is_dir()
    (pruned,) = workspace_events(project, "evidence_purged")
    assert pruned["sandbox_id"] == old
    assert pruned["reason"] == "retention"
    assert pruned["retention"] == "30d"

    # A tiny retention from the settings file (YAML too) prunes the others, a fresh one as well.
    fresh = up_and_run(aido, project)
    assert aido("sandbox", "destroy", fresh).code == 0
    write(project / ".aido" / "config.json", "evidence_retention: 2s\n")
    assert aido("runs", "--all").code == 0
    assert archive_root(project, fresh).is_dir()
    time.sleep(2.2)
    assert aido("runs", "--all").code == 0
    assert not archive_root(project, recent).exists()
    assert not archive_root(project, fresh).exists()
    pruned = workspace_events(project, "evidence_purged")
    assert [e["sandbox_id"] for e in pruned] == [old, recent, fresh]
    assert pruned[-1]["retention"] == "2s"


def test_an_invalid_retention_is_refused(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    write(project / ".aido" / "config.json", '{"evidence_retention": "forever"}\n')
    result = aido("sandbox", "list")
    assert result.code == 2
    assert "evidence_retention: expected a duration like 90s, 15m or 2h, got 'forever'" in result.stderr
    assert "never" in result.stderr


# -- hostile trees ----------------------------------------------------------------------------


def test_links_planted_by_the_task_are_never_followed(aido: Aido, project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "canary.txt", "still here")
    task = f"""
import os
os.symlink({str(outside)!r}, '/outputs/dir-link')
os.symlink({str(outside / "canary.txt")!r}, '/work/file-link')
os.makedirs('/outputs/locked/deeper')
os.symlink({str(outside)!r}, '/outputs/locked/deeper/link')
os.chmod('/outputs/locked', 0)
print('hello from the task')
"""
    sandbox_id = up_and_run(aido, project, task=task)
    result = aido("sandbox", "destroy", sandbox_id)
    assert result.code == 0, result.stderr
    assert (outside / "canary.txt").read_text() == "still here"
    assert sorted(p.name for p in outside.iterdir()) == ["canary.txt"]
    root = archive_root(project, sandbox_id)
    assert (root / "runs" / "run-001" / "stdout.log").read_text() == "hello from the task\n"
    assert not (root / "outputs").exists()
    assert not (root / "work").exists()


# -- crash recovery ---------------------------------------------------------------------------


def crash_after_the_move(project: Path, sandbox_id: str) -> Path:
    """What a destroy leaves when it dies right after its rename (design step 3): the
    sandbox's whole directory at archive/<id>.partial, working trees still in it."""
    live = sandbox_root(project, sandbox_id)
    write(
        live / ".destroying",
        '{"reason": "destroyed", "requested_at": "2026-01-01T00:00:00Z", "purge": false}',
    )
    with (live / "events.log").open("a") as log:  # written before the move, as destroy does
        log.write(json.dumps({"event": "sandbox_destroyed", "sandbox_id": sandbox_id}) + "\n")
    (live / "secrets.json").unlink()
    staging = project / ".aido" / "archive" / f"{sandbox_id}.partial"
    staging.parent.mkdir(exist_ok=True)
    os.rename(live, staging)
    assert (staging / "work" / "task.py").is_file()
    return staging


@pytest.mark.parametrize("finisher", ["a command's sweep", "a second destroy"])
def test_a_crash_after_the_move_is_finished(aido: Aido, project: Path, finisher: str) -> None:
    sandbox_id = up_and_run(aido, project)
    staging = crash_after_the_move(project, sandbox_id)
    if finisher == "a second destroy":
        # Through the API: every CLI command sweeps first, which would finish it already.
        (item,) = SandboxManager(Workspace(project)).destroy([sandbox_id]).destroyed
        assert item["evidence_dir"] == str(archive_root(project, sandbox_id))
    else:
        result = aido("sandbox", "list")
        assert result.code == 0, result.stderr
    assert not staging.exists()
    meta = assert_archived(project, sandbox_id, reason="destroyed")
    assert meta["destroyed_at"] == "2026-01-01T00:00:00Z"  # when the destroy began
    (event,) = workspace_events(project, "sandbox_destroyed")
    assert event["recovered"] is True
    assert_readable(aido, sandbox_id)


def test_a_crash_before_the_move_is_finished_by_the_next_command(aido: Aido, project: Path) -> None:
    sandbox_id = up_and_run(aido, project)
    # A destroyer died after marking the sandbox (design step 1); nobody holds its lock.
    write(
        sandbox_root(project, sandbox_id) / ".destroying",
        '{"reason": "destroyed", "requested_at": "2026-01-01T00:00:00Z", "purge": false}',
    )
    result = aido("sandbox", "list")
    assert result.code == 0, result.stderr
    assert_archived(project, sandbox_id, reason="destroyed")
    assert_readable(aido, sandbox_id)


def test_a_crash_mid_purge_is_finished_by_the_next_command(aido: Aido, project: Path) -> None:
    sandbox_id = up_and_run(aido, project)
    staging = project / ".aido" / "archive" / f"{sandbox_id}.0badc0de.purge"
    staging.parent.mkdir(exist_ok=True)
    os.rename(sandbox_root(project, sandbox_id), staging)
    assert aido("sandbox", "list").code == 0
    assert not staging.exists()
    assert list((project / ".aido" / "archive").iterdir()) == []


def test_the_runs_listing_of_live_sandboxes(aido: Aido, project: Path) -> None:
    sandbox_id = up_and_run(aido, project)
    result = aido("runs")
    assert result.code == 0, result.stderr
    assert "run-001" in result.stdout
    assert f"{sandbox_id} " in result.stdout
    assert "(destroyed)" not in result.stdout
    assert aido("runs", "--sandbox", "zzzzzzzzzzzz").code == 3


@pytest.mark.skipif(os.getuid() != 0, reason="a hard disk quota mounts a filesystem: root only")
def test_a_hard_quota_sandbox_is_unmounted_before_its_evidence_is_archived(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  disk: 20M\n  disk_quota: hard\n")
    sandbox_id = sandbox_up(aido)
    write(project / "task.py", PRINTS)
    assert aido("run", "task.py").code == 0
    assert (sandbox_root(project, sandbox_id) / "disk.img").is_file()

    result = aido("sandbox", "destroy", sandbox_id)
    assert result.code == 0, result.stderr
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert [m for m in mounts if m.startswith(str(project))] == []
    root = archive_root(project, sandbox_id)
    assert sorted(p.name for p in root.iterdir()) == ["events.log", "runs", "runs.jsonl", "sandbox.json"]
    assert (root / "runs" / "run-001" / "stdout.log").read_text() == "hello from the task\n"
