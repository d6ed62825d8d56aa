"""The warm pool (``warm: N``, issue 12): never shared, never stale, always cleaned up.

Concurrent runs each get their own container; a pool container that died behind aido's
back is never used (the run starts cold, saying why) and the keeper replaces it; a run
that widens the sandbox's settings never takes one; a different ``-e`` still runs warm;
destroy and a sweep after a killed keeper leave no container; ``sandbox list`` shows the
pool; a bad ``warm:`` is a config error at its line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, spawn, wait_for
from tests.helpers.files import write
from tests.helpers.sandbox import sandbox_root, sandbox_up, summary
from tests.helpers.warm import engine_containers, keeper_stopped, ready, wait_full

pytestmark = pytest.mark.docker

PRINT = "import os\nprint(os.environ.get('GREETING', '-'), os.environ['AIDO_RUN_ID'])\n"


def warm_sandbox(aido: Aido, project: Path, size: int) -> str:
    write(project / "sandbox.yaml", f"runtime: python\nwarm: {size}\n")
    sandbox_id = sandbox_up(aido)
    wait_full(project, sandbox_id, size)
    return sandbox_id


def started(project: Path, sandbox_id: str, run_id: str = "run-001") -> tuple[str, dict[str, object]]:
    run = summary(project, sandbox_id, run_id)
    return run["start"], run["start_detail"]


def gone(container: str, sandbox_id: str) -> bool:
    """The container (a full id, or the 12-character prefix the evidence keeps) is not in the engine."""
    return not any(c.startswith(container) for c in engine_containers(sandbox_id))


def test_twenty_concurrent_runs_never_share_a_container(aido: Aido, project: Path) -> None:
    sandbox_id = warm_sandbox(aido, project, 4)
    write(project / "who.py", "import os, time\ntime.sleep(0.3)\nprint(os.environ['AIDO_RUN_ID'])\n")
    processes = [spawn(project, "run", "who.py", text=True) for _ in range(20)]
    printed = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        printed.append(stdout)
    assert sorted(printed) == [f"run-{n:03d}\n" for n in range(1, 21)]
    starts = [started(project, sandbox_id, f"run-{n:03d}") for n in range(1, 21)]
    containers = [str(detail["container"]) for mode, detail in starts if mode == "warm"]
    assert len(containers) >= 4, starts  # the four that were ready went to four runs
    assert len(set(containers)) == len(containers), f"a warm container ran two tasks: {sorted(containers)}"
    for mode, detail in starts:
        assert mode == "warm" or detail.get("reason") == "no pre-started container was ready", detail
    # Used once, then removed by the keeper; the pool is full again.
    wait_for(lambda: all(gone(c, sandbox_id) for c in containers), timeout=30, what="used containers removed")
    assert not set(wait_full(project, sandbox_id, 4)) & set(containers)


def test_a_pool_container_killed_behind_aidos_back_is_never_used(aido: Aido, project: Path) -> None:
    sandbox_id = warm_sandbox(aido, project, 1)
    write(project / "hello.py", PRINT)
    # The keeper notices (it asks the engine every 2 s), drops it and starts another.
    (killed,) = ready(project, sandbox_id)
    subprocess.run(["docker", "kill", killed], check=True, capture_output=True, timeout=30)
    wait_for(
        lambda: gone(killed, sandbox_id) and len(ready(project, sandbox_id)) == 1,
        timeout=20,
        what="the keeper to replace the killed container",
    )
    # With the keeper stopped, a run finds the dead container itself: it starts cold and says why.
    with keeper_stopped(project):
        (dead,) = ready(project, sandbox_id)
        subprocess.run(["docker", "kill", dead], check=True, capture_output=True, timeout=30)
        result = aido("run", "hello.py")
        assert result.code == 0, result.stderr
        assert result.stdout == "- run-001\n"
        mode, detail = started(project, sandbox_id)
        assert mode == "cold"
        assert "could not be used: it had stopped" in str(detail["reason"]), detail
        assert gone(dead, sandbox_id), "the run left the dead container"
        assert ready(project, sandbox_id) == set()
    # The next command brings the keeper back; it refills the pool, and runs are warm again.
    assert aido("sandbox", "list").code == 0
    wait_full(project, sandbox_id, 1)
    assert aido("run", "hello.py").code == 0
    assert started(project, sandbox_id, "run-002")[0] == "warm"


def test_a_widened_run_never_takes_a_warm_container(aido: Aido, project: Path) -> None:
    sandbox_id = warm_sandbox(aido, project, 1)
    pool = ready(project, sandbox_id)
    write(project / "hello.py", PRINT)
    result = aido("run", "--network", "--yes", "hello.py")
    assert result.code == 0, result.stderr
    mode, detail = started(project, sandbox_id)
    assert mode == "cold"
    assert "settings differ" in str(detail["reason"]), detail
    assert summary(project, sandbox_id)["security"]["applied"]["network_mode"] == "bridge"
    assert ready(project, sandbox_id) == pool, "the pool's container was taken or dropped"
    assert aido("run", "hello.py").code == 0
    mode, detail = started(project, sandbox_id, "run-002")
    assert (mode, detail["container"]) == ("warm", next(iter(pool))[:12])
    assert summary(project, sandbox_id, "run-002")["security"]["applied"]["network_mode"] == "none"


def test_each_run_gets_its_own_environment_and_the_keeper_refills(aido: Aido, project: Path) -> None:
    sandbox_id = warm_sandbox(aido, project, 2)
    pool = ready(project, sandbox_id)
    write(project / "hello.py", PRINT)
    with_env = aido("run", "-e", "GREETING=hello", "hello.py")
    assert with_env.code == 0, with_env.stderr
    assert with_env.stdout == "hello run-001\n"
    without = aido("run", "hello.py")
    assert without.code == 0, without.stderr
    assert without.stdout == "- run-002\n"  # nothing of the previous run's environment
    used = []
    for run_id in ("run-001", "run-002"):
        mode, detail = started(project, sandbox_id, run_id)
        assert mode == "warm", detail
        used.append(str(detail["container"]))
    assert len(set(used)) == 2
    assert any(c.startswith(used[0]) for c in pool)  # the second may take one the keeper just started
    refilled = wait_full(project, sandbox_id, 2)
    assert not {c[:12] for c in refilled} & set(used)
    wait_for(lambda: all(gone(u, sandbox_id) for u in used), timeout=10, what="used containers removed")


def test_destroy_removes_the_pool(aido: Aido, project: Path) -> None:
    sandbox_id = warm_sandbox(aido, project, 2)
    assert len(engine_containers(sandbox_id, running=True)) == 2
    result = aido("sandbox", "destroy", sandbox_id)
    assert result.code == 0, result.stderr
    # The keeper may be draining the pool at the same moment: the engine then answers the
    # destroy's remove with 409 (removal in progress) and finishes it a moment later.
    wait_for(lambda: engine_containers(sandbox_id) == [], timeout=5, what="the pool removed")


def test_a_killed_keeper_leaves_nothing_behind(aido: Aido, project: Path) -> None:
    sandbox_id = warm_sandbox(aido, project, 1)
    write(project / "hello.py", PRINT)
    with keeper_stopped(project):
        assert aido("run", "hello.py").code == 0
        mode, detail = started(project, sandbox_id)
        assert mode == "warm"
        used = str(detail["container"])
        assert not gone(used, sandbox_id), "with no keeper, the used container should still be there"
    # The next command's sweep brings the keeper back: it removes the used one and refills.
    assert aido("sandbox", "list").code == 0
    wait_for(lambda: gone(used, sandbox_id), timeout=20, what="the used container removed")
    wait_full(project, sandbox_id, 1)
    # Killed again, with a used container left: destroy alone removes everything.
    with keeper_stopped(project):
        assert aido("run", "hello.py").code == 0
        assert started(project, sandbox_id, "run-002")[0] == "warm"
        assert len(engine_containers(sandbox_id)) == 1  # the used one (no keeper to refill)
        result = aido("sandbox", "destroy", sandbox_id)
        assert result.code == 0, result.stderr
        assert engine_containers(sandbox_id) == []  # no keeper: nobody else was removing them


def test_sandbox_list_shows_the_pool(aido: Aido, project: Path) -> None:
    sandbox_id = warm_sandbox(aido, project, 2)
    table = aido("sandbox", "list")
    assert table.code == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[-1] == "WARM"
    assert sandbox_id in row and row.rstrip().endswith("2/2 ready"), table.stdout
    listed = aido("sandbox", "list", "--json")
    assert listed.code == 0, listed.stderr
    (entry,) = listed.json["sandboxes"]
    assert entry["warm"] == {"size": 2, "ready": 2, "starting": 0, "in_use": 0, "error": None}
    write(project / "hold.py", "import time\nprint('running', flush=True)\ntime.sleep(30)\n")
    holding = spawn(project, "run", "hold.py", text=True)
    try:
        log = sandbox_root(project, sandbox_id) / "runs" / "run-001" / "stdout.log"
        wait_for(lambda: log.is_file() and log.read_text() == "running\n", timeout=30, what="the task")
        during = json.loads(aido("sandbox", "list", "--json").stdout)["sandboxes"][0]["warm"]
        assert during["in_use"] == 1, during
    finally:
        holding.kill()
        holding.communicate(timeout=30)


@pytest.mark.parametrize(
    ("spec", "args", "where"),
    [
        ("name: x\nwarm: 3\n", (), "sandbox.yaml:2: warm: 3 needs a runtime"),
        ("runtime: python\nwarm: -1\n", (), "sandbox.yaml:2: warm: expected a whole number"),
        ("runtime: python\nwarm: 17\n", (), "sandbox.yaml:2: warm: expected a whole number"),
        ("runtime: python\nwarm: true\n", (), "sandbox.yaml:2: warm: expected a whole number"),
        (None, ("--warm", "2"), "--warm: 2 needs a runtime"),
        (None, ("--warm", "17", "--runtime", "python"), "--warm: expected a whole number"),
    ],
    ids=["no-runtime", "negative", "too-many", "boolean", "flag-no-runtime", "flag-too-many"],
)
def test_a_bad_warm_is_a_config_error(
    aido: Aido, project: Path, spec: str | None, args: tuple[str, ...], where: str
) -> None:
    if spec is not None:
        write(project / "sandbox.yaml", spec)
    result = aido("sandbox", "up", *args)
    assert result.code == 2, result.stderr
    assert result.stderr.startswith(f"error: {where}"), result.stderr
    assert not (project / ".aido" / "sandboxes").is_dir() or not any(
        (project / ".aido" / "sandboxes").iterdir()
    )


def test_a_fork_refused_just_before_the_task_exits_is_reported(aido: Aido, project: Path) -> None:
    """A warm container outlives its task, so its pids.events can still be read after the
    exec ended: a task that hits the pids limit and exits at once is reported every time
    (a cold run's cgroup goes with its task, and the 50 ms watch may miss it)."""
    sandbox_id = warm_sandbox(aido, project, 1)
    write(
        project / "threads.py",
        "import threading\nhold = threading.Event()\nn = 0\ntry:\n    while n < 5000:\n"
        "        threading.Thread(target=hold.wait, daemon=True).start()\n        n += 1\n"
        "except RuntimeError:\n    pass\nhold.set()\n",
    )
    for n in range(1, 4):
        wait_full(project, sandbox_id, 1)
        result = aido("run", "threads.py")
        run = summary(project, sandbox_id, f"run-{n:03d}")
        assert run["start"] == "warm"
        assert run["pids_limit_reached"] is True, run
        assert result.code == 137, result.stderr  # exited 0 although a limit was reached
