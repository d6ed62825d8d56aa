"""``aido run`` under Ctrl-C / SIGTERM, and concurrent runs in one sandbox."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, spawn, wait_for
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import write
from tests.helpers.sandbox import record, run_dir, sandbox_up, summary

pytestmark = pytest.mark.docker

WAITER = "import time\nprint('waiting', flush=True)\ntime.sleep(30)\nprint('never')\n"


@pytest.mark.parametrize(
    ("signum", "expected_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_stops_the_task_and_keeps_the_evidence(
    aido: Aido, project: Path, signum: signal.Signals, expected_code: int
) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "waiter.py", WAITER)
    process = spawn(project, "run", "waiter.py", text=True)
    try:
        # Wait until the task itself has printed, so the signal lands while it runs.
        wait_for(
            lambda: (
                (run_dir(project, sandbox_id) / "stdout.log").is_file()
                and (run_dir(project, sandbox_id) / "stdout.log").read_text() == "waiting\n"
            ),
            timeout=30,
            what="the task to start",
        )
        started = time.monotonic()
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == expected_code, stderr
    assert elapsed < 15
    assert stdout == "waiting\n"
    assert "interrupted" in stderr.lower()
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "interrupted"
    assert run_summary["interrupted"] is True
    assert run_summary["exit_code"] is None
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["status"] == "interrupted"
    assert_no_containers(sandbox_id)


def test_concurrent_runs_in_one_sandbox_get_distinct_run_ids(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(
        project / "who.py",
        "import os, sys, time\ntime.sleep(1)\nprint(sys.argv[1], os.environ['AIDO_RUN_ID'])\n",
    )
    processes = [spawn(project, "run", "who.py", "--", name, text=True) for name in ("a", "b", "c")]
    outputs = {}
    for name, process in zip(("a", "b", "c"), processes, strict=True):
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        outputs[name] = stdout.split()
    run_ids = sorted(run_id for _, run_id in outputs.values())
    assert run_ids == ["run-001", "run-002", "run-003"]
    for name, (printed, run_id) in outputs.items():
        assert printed == name
        assert (run_dir(project, sandbox_id, run_id) / "stdout.log").read_text() == f"{name} {run_id}\n"
        assert summary(project, sandbox_id, run_id)["args"] == [name]
    refs = record(project, sandbox_id)["runs"]
    assert sorted(r["run_id"] for r in refs) == run_ids
    assert {r["status"] for r in refs} == {"success"}
    assert_no_containers(sandbox_id)
