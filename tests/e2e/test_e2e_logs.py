"""``aido logs``: which run, which streams, and following a run in progress."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, spawn, wait_for
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import write
from tests.helpers.sandbox import record, sandbox_up

pytestmark = pytest.mark.docker


@pytest.fixture
def two_runs(aido: Aido, project: Path) -> str:
    """A sandbox with run-001 (prints 'first') and run-002 (prints 'second', warns on stderr)."""
    sandbox_id = sandbox_up(aido)
    write(project / "first.py", 'print("first")\n')
    write(project / "second.py", 'import sys\nprint("second")\nprint("a warning", file=sys.stderr)\n')
    assert aido("run", "first.py").code == 0
    assert aido("run", "second.py").code == 0
    return sandbox_id


def test_logs_shows_the_latest_runs_stdout_by_default(aido: Aido, two_runs: str) -> None:
    result = aido("logs")
    assert result.code == 0, result.stderr
    assert result.stdout == "second\n"
    assert "a warning" not in result.stderr


def test_logs_stderr_flag_adds_stderr_on_our_stderr(aido: Aido, two_runs: str) -> None:
    result = aido("logs", "--stderr")
    assert result.code == 0
    assert result.stdout == "second\n"
    assert "a warning" in result.stderr


@pytest.mark.parametrize(("run", "expected"), [("run-001", "first\n"), ("1", "first\n"), ("2", "second\n")])
def test_logs_run_selects_a_run_by_id_or_number(aido: Aido, two_runs: str, run: str, expected: str) -> None:
    result = aido("logs", "--run", run)
    assert result.code == 0, result.stderr
    assert result.stdout == expected


def test_logs_sandbox_option_selects_a_non_active_sandbox(aido: Aido, project: Path, two_runs: str) -> None:
    other = sandbox_up(aido)  # now the active one, with no runs
    assert aido("logs").code == 3
    result = aido("logs", "--sandbox", two_runs)
    assert result.code == 0
    assert result.stdout == "second\n"
    assert other != two_runs


@pytest.mark.parametrize("run", ["run-009", "9"])
def test_logs_for_an_unknown_run_exits_3_and_lists_the_runs(aido: Aido, two_runs: str, run: str) -> None:
    result = aido("logs", "--run", run)
    assert result.code == 3
    assert result.stdout == ""
    assert "no run run-009" in result.stderr
    assert "run-001, run-002" in result.stderr


def test_logs_with_a_malformed_run_id_is_a_usage_error(aido: Aido, two_runs: str) -> None:
    result = aido("logs", "--run", "../run-001")
    assert result.code == 2
    assert "invalid run id" in result.stderr


def test_logs_before_any_run_exits_3(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    result = aido("logs")
    assert result.code == 3
    assert "no runs yet" in result.stderr
    assert "aido run" in result.stderr


def test_logs_of_a_failed_run_shows_stderr_too(aido: Aido, project: Path) -> None:
    sandbox_up(aido)
    write(project / "boom.py", 'import sys\nprint("before the crash")\nraise RuntimeError("boom")\n')
    assert aido("run", "boom.py").code == 1
    result = aido("logs")
    assert result.code == 0
    assert result.stdout == "before the crash\n"
    assert "RuntimeError: boom" in result.stderr


SLOW_LINES = 8
SLOW = (
    "import time\n"
    f"for i in range(1, {SLOW_LINES + 1}):\n"
    "    print(f'line {i}', flush=True)\n"
    "    time.sleep(0.5)\n"
)
EXPECTED_LINES = [f"line {i}\n" for i in range(1, SLOW_LINES + 1)]


def test_logs_follow_streams_a_run_in_progress_and_exits_when_it_ends(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "slow.py", SLOW)
    runner = spawn(project, "run", "slow.py")
    follower: subprocess.Popen[str] | None = None
    arrivals: list[tuple[float, str]] = []
    try:
        wait_for(
            lambda: any(r["status"] == "running" for r in record(project, sandbox_id)["runs"]),
            timeout=30,
            what="the run to start",
        )
        listed = aido("sandbox", "list", "--json")
        assert listed.json["sandboxes"][0]["status"] == "running"
        follower = spawn(project, "logs", "--follow", text=True)
        stdout = follower.stdout
        assert stdout is not None

        def read_lines() -> None:
            for line in stdout:
                arrivals.append((time.monotonic(), line))

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        runner_stdout, _ = runner.communicate(timeout=60)
        run_ended = time.monotonic()
        follower.wait(timeout=30)
        follower_ended = time.monotonic()
        reader.join(timeout=10)
        follower_stderr = follower.stderr.read() if follower.stderr else ""
    finally:
        for process in (runner, follower):
            if process is not None and process.poll() is None:
                process.kill()
    assert runner.returncode == 0
    assert runner_stdout.decode() == "".join(EXPECTED_LINES)
    assert follower.returncode == 0, follower_stderr
    assert [line for _, line in arrivals] == EXPECTED_LINES
    # The first lines reached the follower well before the task finished ...
    assert arrivals[0][0] < run_ended - 1.0
    # ... and the follower stopped on its own soon after the run ended.
    assert follower_ended - run_ended < 5
    assert record(project, sandbox_id)["runs"][0]["status"] == "success"
    assert_no_containers(sandbox_id)


def test_logs_of_a_silent_run_says_so(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "quiet.py", "pass\n")
    assert aido("run", "quiet.py").code == 0
    result = aido("logs")
    assert result.code == 0
    assert result.stdout == ""
    assert result.stderr == f"(run-001 of sandbox {sandbox_id} printed nothing on stdout; status: success)\n"


def test_logs_follow_does_not_hang_on_a_run_whose_aido_was_killed(aido: Aido, project: Path) -> None:
    """kill -9 of `aido run` leaves the run marked running; following it must still end."""
    sandbox_id = sandbox_up(aido)
    write(project / "brief.py", "import time\nprint('started', flush=True)\ntime.sleep(2)\n")
    runner = spawn(project, "run", "brief.py", stderr=subprocess.DEVNULL)
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline() == b"started\n"
        runner.kill()
        runner.wait(timeout=10)
        assert record(project, sandbox_id)["runs"][0]["status"] == "running"
        started = time.monotonic()
        followed = aido("logs", "--follow", timeout=60)
        elapsed = time.monotonic() - started
    finally:
        if runner.poll() is None:
            runner.kill()
        subprocess.run(["docker", "rm", "-f", f"aido-{sandbox_id}-run-001"], capture_output=True, check=False)
    # It ends like the run did: recovered as interrupted, with that outcome and exit code.
    assert followed.code == 130, followed.stderr
    assert followed.stdout == "started\n"
    # The command's sweep finds the orphaned run first and closes its record.
    assert "recovered run-001" in followed.stderr
    assert followed.stderr.rstrip().splitlines()[-1].startswith("✗ Aido stopped while the task ran")
    assert record(project, sandbox_id)["runs"][0]["status"] == "interrupted"
    assert elapsed < 20


def test_logs_follow_json_waits_for_the_end_and_reports_the_final_status(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "slow.py", SLOW)
    runner = spawn(project, "run", "slow.py", stdout=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: any(r["status"] == "running" for r in record(project, sandbox_id)["runs"]),
            timeout=30,
            what="the run to start",
        )
        followed = aido("logs", "--follow", "--json", timeout=60)
        runner.wait(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0
    # The follower returns once the record says the run ended, which can be a moment before the
    # `aido run` process itself exits; the final status and the whole output prove it waited.
    assert followed.code == 0, followed.stderr
    doc = json.loads(followed.stdout)
    assert doc["command"] == "logs"
    assert doc["run"]["status"] == "success"
    assert doc["stdout"] == "".join(EXPECTED_LINES)


def test_logs_follow_on_a_finished_run_prints_it_and_returns(aido: Aido, two_runs: str) -> None:
    started = time.monotonic()
    result = aido("logs", "--follow", "--run", "1", timeout=30)
    assert result.code == 0
    assert result.stdout == "first\n"
    assert time.monotonic() - started < 10
