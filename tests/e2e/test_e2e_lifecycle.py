"""Sandbox lifecycle under faults, against the real engine through the real CLI: TTL expiry
(with and without the reaper, with and without a running task), crash recovery of a
killed ``aido run``, many concurrent runs, lock independence between sandboxes, destroy
during a run, parallel batches, the reaper's single instance, and metadata versions.

The last test stops the Docker daemon itself and restarts it; it is named to sort last
and always brings the engine back, whatever happens.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido, Result, aido_argv, aido_env, spawn, wait_for
from tests.helpers.engine import assert_no_containers, labelled_containers
from tests.helpers.files import load, write
from tests.helpers.sandbox import (
    assert_no_run_consumed,
    events,
    record,
    run_dir,
    sandbox_root,
    sandbox_up,
    summary,
    with_runs,
)

pytestmark = pytest.mark.docker

FAST_REAPER = {"AIDO_REAPER_INTERVAL": "1"}
IDLE_REAPER = {"AIDO_REAPER_INTERVAL": "3600"}  # sweeps once when it starts, then not for an hour
LONG_TASK = "import time\nprint('started', flush=True)\ntime.sleep(60)\nprint('never')\n"


# -- helpers ----------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an exited reaper may stay a zombie
    for a moment until init reaps it, and kill(pid, 0) succeeds on zombies)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def reaper_pids(project: Path) -> list[int]:
    """Live reaper processes serving this workspace: `python -P -m aido.lifecycle.reaper ROOT`."""
    wanted = ["-P", "-m", "aido.lifecycle.reaper", str(project.resolve())]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        if [a.decode("utf-8", "replace") for a in argv[1:]] == wanted and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


@pytest.fixture(autouse=True)
def reapers_stopped(project: Path) -> Iterator[None]:
    """No reaper a test started outlives it (one serving a sandbox the test could not
    destroy would otherwise sweep a deleted tmp directory for an hour)."""
    yield
    for pid in reaper_pids(project):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def workspace_events(project: Path) -> list[dict[str, Any]]:
    path = project / ".aido" / "events.log"
    return events(path) if path.exists() else []


def destroyed_events(project: Path, sandbox_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in workspace_events(project)
        if e["event"] == "sandbox_destroyed" and e["sandbox_id"] == sandbox_id
    ]


def run_containers(sandbox_id: str, run_id: str, *, running_only: bool = False) -> list[str]:
    done = subprocess.run(
        [
            "docker", "ps", "-q", *([] if running_only else ["-a"]),
            "--filter", f"label=aido.sandbox={sandbox_id}", "--filter", f"label=aido.run={run_id}",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.split()


def wait_until_expired(project: Path, sandbox_id: str, extra: float = 0.0) -> None:
    """Sleep until the sandbox's recorded expires_at has passed (plus ``extra`` seconds)."""
    from datetime import datetime

    expires = datetime.fromisoformat(record(project, sandbox_id)["expires_at"].replace("Z", "+00:00"))
    delay = expires.timestamp() - time.time() + 0.2 + extra
    if delay > 0:
        time.sleep(delay)


def printed(project: Path, sandbox_id: str, text: str, run_id: str = "run-001") -> bool:
    log = run_dir(project, sandbox_id, run_id) / "stdout.log"
    try:
        return log.read_text() == text
    except OSError:
        return False


def lock_is_free(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


# -- TTL expiry -------------------------------------------------------------------------------


def test_the_reaper_destroys_an_expired_sandbox_with_no_command_run_then_exits(
    aido: Aido, project: Path
) -> None:
    sandbox_id = sandbox_up(aido, "--ttl", "2s", env=FAST_REAPER)
    (reaper,) = reaper_pids(project)
    expires_at = record(project, sandbox_id)["expires_at"]
    # No aido command from here on: only the reaper can remove it.
    # The event is written last, after the directory is gone: wait for it, not the directory.
    wait_for(lambda: destroyed_events(project, sandbox_id), timeout=6, what="the reaper")
    assert not sandbox_root(project, sandbox_id).exists()
    (event,) = destroyed_events(project, sandbox_id)
    assert event["reason"] == "expired"
    assert event["expired_at"] == expires_at
    assert event["containers_removed"] == 0
    assert_no_containers(sandbox_id)
    # Nothing with auto-cleanup is left: the reaper exits on its own (IDLE_CHECK is 5 s).
    wait_for(lambda: not alive(reaper), timeout=10, what="the reaper to exit")
    assert reaper_pids(project) == []
    assert lock_is_free(project / ".aido" / "reaper.lock")
    log = (project / ".aido" / "reaper.log").read_text()
    assert f"[{reaper}] started (interval 1s)" in log
    assert "destroyed_expired" in log
    assert f"[{reaper}] exiting" in log


def test_reaper_lock_names_the_running_reaper(aido: Aido, project: Path) -> None:
    sandbox_up(aido, "--ttl", "1h", env=IDLE_REAPER)
    (reaper,) = reaper_pids(project)
    lock = project / ".aido" / "reaper.lock"
    deadline = time.monotonic() + 5
    while (not lock.exists() or lock.read_text().strip() == "") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.read_text().strip() == str(reaper)


def test_no_auto_cleanup_survives_the_reaper_but_refuses_to_run(aido: Aido, project: Path) -> None:
    # An auto-cleanup sandbox keeps a fast reaper running next to the one under test.
    keeper = sandbox_up(aido, "--ttl", "1h", env=FAST_REAPER)
    (reaper,) = reaper_pids(project)
    kept = sandbox_up(aido, "--ttl", "1s", "--no-auto-cleanup", env=FAST_REAPER)
    assert record(project, kept)["auto_cleanup"] is False
    write(project / "hello.py", "print('hi')\n")
    wait_until_expired(project, kept, extra=3)  # three reaper sweeps after expiry
    assert alive(reaper)
    assert sandbox_root(project, kept).is_dir()
    assert destroyed_events(project, kept) == []

    result = aido("run", "hello.py")  # the active sandbox is the expired one
    assert result.code == 3
    assert f"sandbox {kept} expired" in result.stderr
    assert_no_run_consumed(project, kept)

    listed = aido("sandbox", "list", "--json")
    assert listed.code == 0
    statuses = {s["id"]: s["status"] for s in listed.json["sandboxes"]}
    assert statuses == {kept: "expired", keeper: "created"}
    assert sandbox_root(project, kept).is_dir()  # the command's own sweep left it too


def test_every_command_sweeps_an_expired_sandbox_and_run_never_falls_back(aido: Aido, project: Path) -> None:
    other = sandbox_up(aido, "--ttl", "1h", env=IDLE_REAPER)
    doomed = sandbox_up(aido, "--ttl", "3s", env=IDLE_REAPER)  # active
    # The reaper swept once at its start (nothing expired then) and waits an hour: kill it
    # anyway so that only the commands below can remove the sandbox.
    for pid in reaper_pids(project):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: reaper_pids(project) == [], timeout=5, what="the reaper to die")
    wait_until_expired(project, doomed)
    assert sandbox_root(project, doomed).is_dir()

    listed = aido("sandbox", "list")
    assert listed.code == 0, listed.stderr
    assert f"removed expired sandbox {doomed}" in listed.stderr
    assert doomed not in listed.stdout
    assert other in listed.stdout
    assert not sandbox_root(project, doomed).exists()
    (event,) = destroyed_events(project, doomed)
    assert event["reason"] == "expired"

    write(project / "hello.py", "print('hi')\n")
    result = aido("run", "hello.py")
    assert result.code == 3
    assert f"the active sandbox {doomed} no longer exists" in result.stderr
    assert result.stdout == ""
    assert_no_run_consumed(project, other)  # not silently run in the other sandbox


def test_a_running_task_is_stopped_when_its_sandbox_expires(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--ttl", "4s", env=FAST_REAPER)
    created = time.monotonic()
    write(project / "long.py", LONG_TASK)
    process = spawn(project, "run", "long.py", text=True)
    try:
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    elapsed = time.monotonic() - created
    assert process.returncode == 3, stderr
    assert elapsed < 12  # stopped at the 4 s expiry, long before the task's 60 s sleep
    assert stdout == "started\n"
    assert f"The task was stopped: sandbox {sandbox_id} expired at" in stderr
    assert "Traceback" not in stderr
    # The run closed its record; then the reaper removes the sandbox.
    # The event is written last, after the directory is gone: wait for it, not the directory.
    wait_for(lambda: destroyed_events(project, sandbox_id), timeout=6, what="the reaper")
    assert not sandbox_root(project, sandbox_id).exists()
    (event,) = destroyed_events(project, sandbox_id)
    assert event["reason"] == "expired"
    assert_no_containers(sandbox_id)


def test_an_expired_run_is_recorded_as_expired_before_the_sandbox_goes(aido: Aido, project: Path) -> None:
    # No reaper effect and no sweep between the run and the checks: the evidence is readable.
    sandbox_id = sandbox_up(aido, "--ttl", "4s", "--no-auto-cleanup")
    write(project / "long.py", LONG_TASK)
    result = aido("run", "long.py", "--json", timeout=30)
    assert result.code == 3, result.stderr
    assert result.json["status"] == "expired"
    assert result.json["stop_reason"] == "expired"
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "expired"
    assert run_summary["stop_reason"] == "expired"
    assert run_summary["exit_code"] is None
    assert (run_dir(project, sandbox_id) / "stdout.log").read_text() == "started\n"
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["status"] == "expired"
    completed = [
        e for e in events(sandbox_root(project, sandbox_id) / "events.log") if e["event"] == "run_completed"
    ]
    assert [(e["status"], e["stop_reason"]) for e in completed] == [("expired", "expired")]
    assert_no_containers(sandbox_id)


# -- the reaper process -----------------------------------------------------------------------


def test_one_reaper_per_workspace(aido: Aido, project: Path) -> None:
    sandbox_up(aido, "--ttl", "1h", env=FAST_REAPER)
    sandbox_up(aido, "--ttl", "1h", env=FAST_REAPER)
    # A second `sandbox up` racing the first reaper's start may spawn one more; it must go.
    wait_for(lambda: len(reaper_pids(project)) == 1, timeout=5, what="a single reaper")
    (serving,) = reaper_pids(project)
    extra = [
        subprocess.Popen(
            [sys.executable, "-P", "-m", "aido.lifecycle.reaper", str(project.resolve())],
            cwd=project,
            env=aido_env(FAST_REAPER),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        for process in extra:
            _, err = process.communicate(timeout=10)
            assert process.returncode == 0, err
            assert err == b""
    finally:
        for process in extra:
            if process.poll() is None:
                process.kill()
    assert reaper_pids(project) == [serving]
    assert not lock_is_free(project / ".aido" / "reaper.lock")


def test_sandboxes_outlive_a_killed_reaper_and_sandbox_up_starts_a_new_one(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--ttl", "1h")
    old = reaper_pids(project)
    assert len(old) == 1
    reaper_lock = project / ".aido" / "reaper.lock"
    wait_for(lambda: not lock_is_free(reaper_lock), timeout=5, what="the reaper to take its lock")
    # "Restart": everything of aido is killed, the sandbox's files stay.
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: reaper_pids(project) == [], timeout=5, what="the reaper to die")
    # A dead reaper leaves no stale lock. (Its command line vanishes a moment before the
    # kernel closes its files, hence a wait rather than an immediate check.)
    wait_for(lambda: lock_is_free(reaper_lock), timeout=5, what="the dead reaper's lock to be released")

    write(project / "hello.py", "print('still here')\n")
    result = aido("run", "hello.py")
    assert result.code == 0, result.stderr
    assert result.stdout == "still here\n"

    second = sandbox_up(aido, "--ttl", "1h")
    wait_for(lambda: len(reaper_pids(project)) == 1, timeout=5, what="a new reaper")
    assert set(reaper_pids(project)).isdisjoint(old)
    again = aido("run", "--sandbox", sandbox_id, "hello.py")
    assert again.code == 0, again.stderr
    assert [r["status"] for r in record(project, sandbox_id)["runs"]] == ["success", "success"]
    assert record(project, second)["runs"] == []


# -- crash recovery ---------------------------------------------------------------------------


def _kill_run_mid_task(project: Path, sandbox_id: str) -> None:
    """Start a long task, wait until it has printed, SIGKILL its `aido run`."""
    write(project / "long.py", LONG_TASK)
    process = spawn(project, "run", "long.py", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: printed(project, sandbox_id, "started\n"), timeout=30, what="the task to start")
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["status"] == "running"
    # Nobody stopped the task: its container is still running.
    assert len(run_containers(sandbox_id, "run-001", running_only=True)) == 1


def _assert_recovered(project: Path, sandbox_id: str) -> None:
    assert run_containers(sandbox_id, "run-001") == []
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["status"] == "interrupted"
    assert ref["completed_at"]
    assert "runs/run-001/summary.json" in ref["artifacts"]
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "interrupted"
    assert run_summary["stop_reason"] == "aido_lost"
    assert run_summary["exit_code"] is None
    assert run_summary["output"]["stdout"]["bytes_captured"] == len("started\n")
    assert (run_dir(project, sandbox_id) / "stdout.log").read_text() == "started\n"
    recovered = [
        e for e in events(sandbox_root(project, sandbox_id) / "events.log") if e["event"] == "run_recovered"
    ]
    assert [(e["run_id"], e["status"]) for e in recovered] == [("run-001", "interrupted")]


def test_the_next_command_recovers_a_run_whose_aido_was_killed(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--ttl", "1h", env=IDLE_REAPER)
    _kill_run_mid_task(project, sandbox_id)

    listed = aido("sandbox", "list")
    assert listed.code == 0, listed.stderr
    assert f"recovered run-001 of sandbox {sandbox_id}" in listed.stderr
    _assert_recovered(project, sandbox_id)

    logs = aido("logs")
    assert logs.code == 0, logs.stderr
    assert logs.stdout == "started\n"
    assert "recovered" not in logs.stderr  # recovered once, not at every command
    assert_no_containers(sandbox_id)


def test_the_reaper_alone_recovers_a_run_whose_aido_was_killed(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--ttl", "1h", env=FAST_REAPER)
    _kill_run_mid_task(project, sandbox_id)
    reaper_log = project / ".aido" / "reaper.log"
    # The reaper logs what it did last, after the record, the event and the container.
    wait_for(
        lambda: reaper_log.exists() and "recovered_run" in reaper_log.read_text(),
        timeout=6,
        what="the reaper to recover the run",
    )
    _assert_recovered(project, sandbox_id)


# -- concurrency ------------------------------------------------------------------------------


def test_twenty_concurrent_runs_in_one_sandbox(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "who.py", "import sys\nprint(sys.argv[1])\n")
    markers = [f"marker-{i:02d}" for i in range(20)]
    processes = [spawn(project, "run", "who.py", "--", m, text=True) for m in markers]
    try:
        for marker, process in zip(markers, processes, strict=True):
            stdout, stderr = process.communicate(timeout=180)
            assert process.returncode == 0, stderr
            assert stdout == f"{marker}\n"
            assert "Traceback" not in stderr
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    run_ids = [f"run-{n:03d}" for n in range(1, 21)]
    assert sorted(p.name for p in (sandbox_root(project, sandbox_id) / "runs").iterdir()) == run_ids
    seen = set()
    for rid in run_ids:
        directory = run_dir(project, sandbox_id, rid)
        assert {"stdout.log", "stderr.log", "summary.json"} <= {p.name for p in directory.iterdir()}
        run_summary = summary(project, sandbox_id, rid)
        assert run_summary["run_id"] == rid
        assert run_summary["status"] == "success"
        (marker,) = run_summary["args"]
        assert (directory / "stdout.log").read_text() == f"{marker}\n"
        assert run_summary["output"]["stdout"]["bytes_total"] == len(marker) + 1
        assert (directory / "stderr.log").read_text() == ""
        seen.add(marker)
    assert seen == set(markers)

    data = record(project, sandbox_id)  # parses: never a torn write
    assert sorted(r["run_id"] for r in data["runs"]) == run_ids
    assert {r["status"] for r in data["runs"]} == {"success"}
    lines = (sandbox_root(project, sandbox_id) / "events.log").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is whole JSON
    started = sorted(e["run_id"] for e in parsed if e["event"] == "run_started")
    completed = sorted(e["run_id"] for e in parsed if e["event"] == "run_completed")
    assert started == run_ids
    assert completed == run_ids
    assert_no_containers(sandbox_id)


def test_a_held_sandbox_lock_blocks_only_that_sandbox(aido: Aido, project: Path) -> None:
    first = sandbox_up(aido)
    second = sandbox_up(aido)
    write(project / "hello.py", "import os\nprint(os.environ['AIDO_SANDBOX_ID'])\n")
    fd = os.open(sandbox_root(project, first) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    waiting: subprocess.Popen[str] | None = None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        other = aido("run", "--sandbox", second, "hello.py", timeout=60)
        assert other.code == 0, other.stderr
        assert other.stdout == f"{second}\n"
        assert time.monotonic() - started < 30

        waiting = spawn(project, "run", "--sandbox", first, "hello.py", text=True)
        time.sleep(2)
        assert waiting.poll() is None, waiting.communicate()
        assert list((sandbox_root(project, first) / "runs").iterdir()) == []  # no run id yet
        os.close(fd)  # releases the lock
        fd = -1
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        if fd >= 0:
            os.close(fd)
        if waiting is not None and waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, stderr
    assert stdout == f"{first}\n"
    assert [r["status"] for r in record(project, first)["runs"]] == ["success"]


def test_destroy_during_a_run_stops_it_cleanly(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "long.py", LONG_TASK)
    process = spawn(project, "run", "long.py", text=True)
    try:
        wait_for(lambda: printed(project, sandbox_id, "started\n"), timeout=30, what="the task to start")
        started = time.monotonic()
        destroyed = aido("sandbox", "destroy", timeout=60)
        elapsed = time.monotonic() - started
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert destroyed.code == 0, destroyed.stderr
    assert elapsed < 20
    assert f"Sandbox destroyed: {sandbox_id}" in destroyed.stderr
    assert process.returncode == 3, stderr
    assert stdout == "started\n"
    assert f"sandbox {sandbox_id} was destroyed" in stderr
    assert "Traceback" not in stderr
    assert "internal error" not in stderr
    assert_no_containers(sandbox_id)
    assert not sandbox_root(project, sandbox_id).exists()
    (event,) = destroyed_events(project, sandbox_id)
    assert event["reason"] == "destroyed"
    assert event["runs_stopped"] == ["run-001"]


# -- parallel batches -------------------------------------------------------------------------


def test_a_batch_reports_every_run_and_exits_with_the_first_failure(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "a.py", "print('a')\n")
    write(project / "b.py", "import sys\nprint('b')\nsys.exit(4)\n")
    write(project / "c.py", "print('c')\n")
    result = aido("run", "a.py", "b.py", "c.py", "--json")
    assert result.code == 4, result.stderr
    envelope = result.json
    assert envelope["command"] == "run"
    assert envelope["status"] == "failed"
    assert envelope["exit_code"] == 4
    assert envelope["counts"] == {"success": 2, "failed": 1}
    runs = envelope["runs"]
    assert [r["task"] for r in runs] == ["a.py", "b.py", "c.py"]
    assert [r["status"] for r in runs] == ["success", "failed", "success"]
    assert [r["exit_code_of_run"] for r in runs] == [0, 4, 0]
    assert sorted(r["run_id"] for r in runs) == ["run-001", "run-002", "run-003"]
    refs = {r["run_id"]: r for r in record(project, sandbox_id)["runs"]}
    for run in runs:
        assert refs[run["run_id"]]["task"] == run["task"]
        assert refs[run["run_id"]]["status"] == run["status"]
        assert summary(project, sandbox_id, run["run_id"])["exit_code"] == run["exit_code_of_run"]
        assert (run_dir(project, sandbox_id, run["run_id"]) / "stdout.log").read_text() == run["task"][
            0
        ] + "\n"

    copies = aido("run", "--parallel", "4", "a.py", "--json")
    assert copies.code == 0, copies.stderr
    assert copies.json["counts"] == {"success": 4}
    assert sorted(r["run_id"] for r in copies.json["runs"]) == [f"run-{n:03d}" for n in range(4, 8)]
    assert len(record(project, sandbox_id)["runs"]) == 7
    assert_no_containers(sandbox_id)


def test_parallel_limits_how_many_run_at_once(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    tasks = []
    for n in range(4):
        tasks.append(f"s{n}.py")
        write(project / tasks[-1], "import time\ntime.sleep(1)\nprint('done')\n")
    started = time.monotonic()
    result = aido("run", "--parallel", "2", *tasks, "--json")
    elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    assert result.json["parallel"] == 2
    assert result.json["counts"] == {"success": 4}
    # Two waves of two one-second tasks.
    assert result.json["duration_ms"] >= 2000
    assert elapsed >= 2
    assert len(record(project, sandbox_id)["runs"]) == 4


def test_ctrl_c_stops_every_run_of_a_batch(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    tasks = []
    for n in range(3):
        tasks.append(f"w{n}.py")
        write(project / tasks[-1], LONG_TASK)
    process = spawn(project, "run", *tasks, text=True)
    run_ids = ["run-001", "run-002", "run-003"]
    try:
        wait_for(
            lambda: all(printed(project, sandbox_id, "started\n", rid) for rid in run_ids),
            timeout=60,
            what="every task to start",
        )
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert elapsed < 15
    assert "Traceback" not in stderr
    refs = record(project, sandbox_id)["runs"]
    assert sorted(r["run_id"] for r in refs) == run_ids
    assert {r["status"] for r in refs} == {"interrupted"}
    for rid in run_ids:
        assert summary(project, sandbox_id, rid)["status"] == "interrupted"
    assert_no_containers(sandbox_id)


def test_a_batch_with_a_missing_task_starts_nothing(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "a.py", "print('a')\n")
    result = aido("run", "a.py", "missing.py", "a.py")
    assert result.code == 127
    assert "missing.py" in result.stderr
    assert result.stdout == ""
    assert_no_run_consumed(project, sandbox_id)
    assert_no_containers(sandbox_id)


# -- metadata versions ------------------------------------------------------------------------


def test_a_sandbox_json_from_a_newer_aido_is_refused_and_left_alone(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    metadata = sandbox_root(project, sandbox_id) / "sandbox.json"
    original = metadata.read_text()
    newer = json.loads(original) | {"schema_version": 99}
    metadata.write_text(json.dumps(newer, indent=2))
    before = metadata.read_bytes()
    write(project / "hello.py", "print('hi')\n")
    try:
        result = aido("run", "hello.py")
        assert result.code == 3
        assert "newer aido" in result.stderr
        assert "metadata version 99" in result.stderr
        assert result.stdout == ""
        listed = aido("sandbox", "list", "--json")
        assert listed.code == 0
        assert [(s["id"], s["status"]) for s in listed.json["sandboxes"]] == [(sandbox_id, "invalid")]
        assert metadata.read_bytes() == before
        assert list((sandbox_root(project, sandbox_id) / "runs").iterdir()) == []
    finally:
        metadata.write_text(original)  # so the teardown can destroy it


def test_a_version_0_sandbox_json_is_migrated_on_read(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    metadata = sandbox_root(project, sandbox_id) / "sandbox.json"
    current = load(metadata)
    legacy = {
        k: v
        for k, v in current.items()
        if k not in ("schema_version", "expires_at", "task_user", "runtime_backend", "auto_cleanup", "name")
    } | {"runs": []}  # version 0 listed the runs in sandbox.json
    metadata.write_text(json.dumps(legacy))

    listed = aido("sandbox", "list", "--json")
    assert listed.code == 0, listed.stderr
    (item,) = listed.json["sandboxes"]
    assert item["id"] == sandbox_id
    assert item["status"] == "created"
    assert item["expires_at"] == current["expires_at"]  # created_at + the config's ttl
    assert json.loads(metadata.read_text()) == legacy  # reading does not rewrite the file

    write(project / "hello.py", "print('hi')\n")
    result = aido("run", "hello.py")
    assert result.code == 0, result.stderr
    assert result.stdout == "hi\n"
    saved = with_runs(metadata.parent)  # the first write stores the current version
    assert saved["schema_version"] == 2
    assert saved["expires_at"] == current["expires_at"]
    assert saved["task_user"] == "10001:10001"
    assert [r["status"] for r in saved["runs"]] == ["success"]


def test_destroy_removes_a_sandbox_with_invalid_metadata(aido: Aido, project: Path) -> None:
    ids = sorted([sandbox_up(aido), sandbox_up(aido)])
    corrupt = sandbox_root(project, ids[0])
    (corrupt / "sandbox.json").write_text('{"schema_version": 1, "id": 5}')  # hand-edited wrongly
    try:
        run = aido("run", "--sandbox", ids[0], "hello.py")
        assert run.code == 3
        assert "is invalid" in run.stderr
        assert "restore it or destroy the sandbox" in run.stderr
        result = aido("sandbox", "destroy", "--all")
        assert not sandbox_root(project, ids[1]).exists()  # the healthy one after it goes too
        assert result.code == 0, result.stderr
        assert not corrupt.exists()
    finally:
        shutil.rmtree(corrupt, ignore_errors=True)


# -- containers aido could not remove ---------------------------------------------------------


def test_a_container_aido_could_not_remove_goes_with_the_next_command(aido: Aido, project: Path) -> None:
    # No auto-cleanup: no reaper runs, so only the command's own sweep can remove it.
    up = aido("sandbox", "up", "--json", "--no-auto-cleanup")
    assert up.code == 0, up.stderr
    sandbox_id = up.json["sandbox_id"]
    assert reaper_pids(project) == []
    labels = {
        "aido.managed": "true",
        "aido.workspace": str(project.resolve()),
        "aido.sandbox": sandbox_id,
        "aido.run": "run-007",
    }
    started = subprocess.run(
        ["docker", "run", "-d", "--network", "none"]
        + [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        + ["debian:bookworm-slim", "sleep", "60"],
        capture_output=True,
        text=True,
        check=True,
    )
    marker = project / ".aido" / "containers-left"
    try:
        # Commands do not ask the engine for containers on every call: that costs each
        # command a round trip. A run whose container the engine failed to remove leaves
        # the marker, and that makes the next command look.
        listed = aido("sandbox", "list")
        assert listed.code == 0, listed.stderr
        assert len(labelled_containers(sandbox_id)) == 1
        marker.touch()
        listed = aido("sandbox", "list")
        assert listed.code == 0, listed.stderr
        assert labelled_containers(sandbox_id) == []
        assert not marker.exists()
    finally:
        subprocess.run(["docker", "rm", "-f", started.stdout.strip()], capture_output=True, check=False)


# -- the engine goes away mid-run (LAST: it restarts dockerd) ---------------------------------

DOCKERD_LOG = Path("/var/log/aido-dockerd.log")  # where scripts/bootstrap.sh sends it


def _engine_answers() -> bool:
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _find_dockerd() -> int:
    candidates = []
    try:
        candidates.append(int(Path("/var/run/docker.pid").read_text().strip()))
    except (OSError, ValueError):
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "dockerd":
                    candidates.append(int(entry.name))
            except OSError:
                continue
    for pid in candidates:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd" and alive(pid):
                return pid
        except OSError:
            continue
    pytest.fail("no local dockerd process: this test stops and restarts the engine bootstrap.sh starts")


def _restart_dockerd(pid: int, argv: list[str], env: dict[str, str], cwd: str) -> None:
    """Bring the engine back with the exact command line it had; never raises before trying."""
    deadline = time.monotonic() + 60
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(1)
    if not _engine_answers():
        with DOCKERD_LOG.open("ab") as log:
            subprocess.Popen(
                argv,
                env=env,
                cwd=cwd if os.path.isdir(cwd) else "/",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
    deadline = time.monotonic() + 60
    while not _engine_answers():
        if time.monotonic() > deadline:
            pytest.fail(f"dockerd did not come back within 60 s: see {DOCKERD_LOG}")
        time.sleep(0.5)


@dataclass
class EngineStop:
    """What happened when dockerd was stopped under a running task, then restarted."""

    project: Path
    sandbox_id: str
    code: int
    stdout: str
    stderr: str
    summary: dict[str, Any]
    ref: dict[str, Any]
    fresh_run: Result  # `aido run` in a new sandbox once the engine is back
    sweep: Result  # `aido sandbox list` after that
    old_containers: list[str]  # of the interrupted run's sandbox, after the sweep


def _aido(project: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    done = subprocess.run(
        aido_argv(*args), cwd=project, env=aido_env(env), capture_output=True, text=True, timeout=120
    )
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def engine_stopped_mid_run(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineStop]:
    """Stop dockerd (SIGTERM) while a task runs, wait for `aido run` to end, restart dockerd with
    its exact command line (always, in a finally), then use the engine again. Done once for
    the tests below."""
    if os.geteuid() != 0:
        pytest.skip("stopping and restarting dockerd needs root")
    if Path("/run/systemd/system").is_dir():
        pytest.skip("dockerd is managed by systemd here; this restarts a dockerd started by hand")
    pid = _find_dockerd()
    proc = Path(f"/proc/{pid}")
    argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]]
    env = dict(
        item.decode("utf-8", "surrogateescape").partition("=")[::2]
        for item in (proc / "environ").read_bytes().split(b"\0")
        if b"=" in item
    )
    cwd = os.readlink(proc / "cwd")

    project = tmp_path_factory.mktemp("engine-stop") / "project"
    project.mkdir()
    try:
        up = _aido(project, "sandbox", "up", "--json", "--ttl", "1h", env=IDLE_REAPER)
        assert up.code == 0, up.stderr
        sandbox_id = up.json["sandbox_id"]
        write(project / "long.py", LONG_TASK)
        process = spawn(project, "run", "long.py", text=True)
        try:
            wait_for(lambda: printed(project, sandbox_id, "started\n"), timeout=30, what="the task to start")
            os.kill(pid, signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            _restart_dockerd(pid, argv, env, cwd)
        run_summary = summary(project, sandbox_id)
        (ref,) = record(project, sandbox_id)["runs"]

        # The engine is back: a new sandbox works, and a sweep leaves nothing of the old run.
        fresh = _aido(project, "sandbox", "up", "--json")
        assert fresh.code == 0, fresh.stderr
        write(project / "hello.py", "print('back')\n")
        fresh_run = _aido(project, "run", "hello.py")
        sweep = _aido(project, "sandbox", "list")
        yield EngineStop(
            project,
            sandbox_id,
            process.returncode,
            stdout,
            stderr,
            run_summary,
            ref,
            fresh_run,
            sweep,
            labelled_containers(sandbox_id),
        )
    finally:
        if _engine_answers():
            _aido(project, "sandbox", "destroy", "--all")
        for reaper in reaper_pids(project):
            os.kill(reaper, signal.SIGKILL)


def test_zz_engine_stopped_mid_run_ends_the_run_and_the_engine_comes_back(
    engine_stopped_mid_run: EngineStop,
) -> None:
    stop = engine_stopped_mid_run
    assert stop.stdout == "started\n"
    assert "Traceback" not in stop.stderr
    assert "internal error" not in stop.stderr
    assert stop.code != 0, stop.stderr
    assert stop.summary["status"] not in ("success", "running")
    assert stop.ref["status"] == stop.summary["status"]
    assert stop.summary["run_id"] == "run-001"
    assert (run_dir(stop.project, stop.sandbox_id) / "stdout.log").read_text() == "started\n"

    assert stop.fresh_run.code == 0, stop.fresh_run.stderr
    assert stop.fresh_run.stdout == "back\n"
    assert stop.sweep.code == 0, stop.sweep.stderr
    assert stop.old_containers == []
    assert not (stop.project / ".aido" / "containers-left").exists()


def test_zz_engine_stopped_mid_run_is_recorded_as_an_engine_error(
    engine_stopped_mid_run: EngineStop,
) -> None:
    stop = engine_stopped_mid_run
    observed = (stop.summary["status"], stop.ref["status"], stop.code, stop.summary["exit_code"])
    assert observed == ("error", "error", 125, None), stop.stderr
