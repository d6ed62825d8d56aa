"""Hostile tasks that try to exhaust the host: memory, CPU, processes, output, disk,
inodes, file descriptors, and state left behind for the next run.

Each test runs the task through the real CLI in a real container and checks both that
the host is unharmed (aido returned in bounded time with bounded memory, the host still
answers, no container or process survives, files on the host stay within their limits)
and that the evidence (summary.json, sandbox.json, events.log, stdout.log) says what
happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido, spawn
from tests.helpers.engine import labelled_containers
from tests.helpers.files import write
from tests.helpers.hostile import GVISOR, assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import events, record, run_dir, sandbox_root, summary

pytestmark = pytest.mark.docker

MiB = 1 << 20
GiB = 1 << 30


# -- host-side checks -------------------------------------------------------------------


def host_processes_of(sandbox_id: str) -> list[int]:
    """Host pids whose environment names this sandbox (every task process carries
    AIDO_SANDBOX_ID). Under gVisor task processes live in the sandbox kernel, never here."""
    needle = f"AIDO_SANDBOX_ID={sandbox_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def assert_host_unharmed(sandbox_id: str) -> None:
    """Nothing of the task survives, and the host (and its engine) still answer promptly."""
    assert labelled_containers(sandbox_id) == [], "a container of the run survived"
    assert host_processes_of(sandbox_id) == [], "a task process survived on the host"
    started = time.monotonic()
    subprocess.run(["true"], check=True, timeout=10)
    assert time.monotonic() - started < 2, "the host is slow to start a process"
    started = time.monotonic()
    subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=30)
    assert time.monotonic() - started < 15, "the engine is slow to answer"


def completed_events(project: Path, sandbox_id: str) -> list[dict[str, Any]]:
    log = sandbox_root(project, sandbox_id) / "events.log"
    return [e for e in events(log) if e["event"] == "run_completed"]


def disk_usage(directory: Path) -> tuple[int, int]:
    """(allocated bytes, number of entries) below ``directory``, as du counts them."""
    used, count = 0, 0
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            used += os.lstat(os.path.join(root, name)).st_blocks * 512
            count += 1
    return used, count


# -- memory, CPU, processes ---------------------------------------------------------------


def test_memory_bomb_is_oom_killed_and_reported(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  memory: 64M\n")
    sandbox_id = hostile_sandbox(aido)
    write(project / "hog.py", "x = []\nwhile True:\n    x.append(bytearray(50 << 20))\n")
    started = time.monotonic()
    result = aido("run", "hog.py", "--timeout", "30s", timeout=60)
    elapsed = time.monotonic() - started
    assert result.code == 137, result.stderr
    assert "out of memory" in result.stderr
    assert "64M" in result.stderr
    assert elapsed < 20
    run_summary = summary(project, sandbox_id)
    assert run_summary["oom_killed"] is True
    assert run_summary["timed_out"] is False
    assert run_summary["status"] == "failed"
    assert run_summary["exit_code"] == 137
    assert "out of memory" in run_summary["message"]
    applied = run_summary["security"]["applied"]
    assert applied["memory_bytes"] == applied["memory_swap_bytes"] == 64 * MiB  # no swap on top
    assert_ran_isolated(run_summary)
    (done,) = completed_events(project, sandbox_id)
    assert done["oom_killed"] is True
    assert record(project, sandbox_id)["runs"][0]["status"] == "failed"
    assert_host_unharmed(sandbox_id)


@pytest.mark.parametrize(
    "body",
    ["while True:\n    pass\n", "import time\ntime.sleep(1e6)\n"],
    ids=["cpu-spin", "sleep"],
)
def test_runaway_task_is_killed_at_the_wall_timeout(aido: Aido, project: Path, body: str) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "runaway.py", "print('started', flush=True)\n" + body)
    started = time.monotonic()
    result = aido("run", "runaway.py", "--timeout", "2s", timeout=60)
    elapsed = time.monotonic() - started
    assert result.code == 124, result.stderr
    assert elapsed < 15, f"aido took {elapsed:.1f}s to enforce a 2s timeout"
    assert result.stdout == "started\n"
    assert "timed out after 2s" in result.stderr
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "timed_out"
    assert run_summary["timed_out"] is True
    assert run_summary["exit_code"] is None
    assert run_summary["stop_reason"] == "timeout"
    assert run_summary["oom_killed"] is False
    assert run_summary["limits"]["timeout_seconds"] == 2.0
    assert 1500 <= run_summary["duration_ms"] < 15000
    assert_ran_isolated(run_summary)
    assert (run_dir(project, sandbox_id) / "stdout.log").read_text() == "started\n"
    (done,) = completed_events(project, sandbox_id)
    assert (done["status"], done["timed_out"], done.get("exit_code")) == ("timed_out", True, None)
    assert record(project, sandbox_id)["runs"][0]["status"] == "timed_out"
    assert_host_unharmed(sandbox_id)


FORK_BOMBS = {
    "python": (
        "bomb.py",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    ),
    "shell": ("bomb.sh", "b() { b | b & }\nb\nsleep 60\n"),
}


@pytest.mark.parametrize("kind", sorted(FORK_BOMBS))
def test_fork_bomb_is_contained(aido: Aido, project: Path, kind: str) -> None:
    sandbox_id = hostile_sandbox(aido)
    name, source = FORK_BOMBS[kind]
    write(project / name, source)
    started = time.monotonic()
    result = aido("run", name, "--timeout", "5s", "--json", timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 25, f"aido took {elapsed:.1f}s to stop a fork bomb with a 5s timeout"
    run_summary = summary(project, sandbox_id)
    assert result.json["status"] == run_summary["status"]
    if GVISOR:
        # gVisor's pids limit (1024) also counts its own threads. The bomb then runs out of
        # memory (the kernel OOM-kills the task or gVisor's own process; the container may
        # exit 2 without OOMKilled, and the engine's oom event is what says why), or the
        # sandbox hits the pids limit and gVisor's own Go runtime exits 2 when it cannot
        # start a thread (pids_limit_reached, watched every 50 ms, usually says so). Either
        # way nothing survives (checked below).
        assert run_summary["status"] in ("timed_out", "failed"), run_summary
        if run_summary["status"] == "failed":
            explained = run_summary["oom_killed"] or run_summary["pids_limit_reached"]
            assert explained or run_summary["exit_code"] == 2, run_summary
        if run_summary["oom_killed"]:
            assert "out of memory" in run_summary["message"]
        elif run_summary["pids_limit_reached"]:
            assert "limit of 1024 processes and threads (gVisor's own included)" in run_summary["message"]
    else:
        # The pids limit holds the bomb at 256 processes until the wall timeout kills it,
        # and the evidence says that the limit was reached.
        assert run_summary["status"] == "timed_out", run_summary
        assert run_summary["pids_limit_reached"] is True, run_summary
        assert "it reached its limit of 256 processes and threads" in run_summary["message"]
    if run_summary["status"] == "timed_out":
        assert result.code == 124
        assert run_summary["exit_code"] is None
        assert run_summary["timed_out"] is True
    else:
        assert result.code == run_summary["exit_code"] != 0
    assert run_summary["security"]["applied"]["pids_limit"] == (1024 if GVISOR else 256)
    assert_ran_isolated(run_summary)
    (done,) = completed_events(project, sandbox_id)
    assert done["status"] == run_summary["status"]
    assert_host_unharmed(sandbox_id)


# -- output -------------------------------------------------------------------------------

FLOOD = """\
import os
chunk = memoryview(b"x" * (1 << 20))
goal = 2 << 30
total = 0
while total < goal:  # short writes (gVisor makes many) are retried, so all 2 GiB go out
    total += os.write(1, chunk[: goal - total])
"""


def test_output_flood_is_capped_and_aido_memory_stays_bounded(
    aido: Aido, project: Path, tmp_path: Path
) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / ".aido" / "config.json", json.dumps({"output_limit": MiB}))
    write(project / "flood.py", FLOOD)
    stderr_path = tmp_path / "aido-stderr.txt"
    with stderr_path.open("wb") as stderr:
        proc = spawn(project, "run", "flood.py", "--timeout", "90s", stdout=subprocess.DEVNULL, stderr=stderr)
        # aido's own peak (VmHWM), read while it runs: wait4's ru_maxrss would also count any
        # child aido happened to reap (e.g. a finished reaper it had started), not aido itself.
        peak_kib = 0
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                status_text = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                break
            for line in status_text.splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    aido_stderr = stderr_path.read_text()
    assert proc.returncode == 0, aido_stderr
    assert peak_kib > 0, "aido's memory was never sampled"
    # aido streamed 2 GiB without holding it.
    assert peak_kib * 1024 < 200 * MiB, f"aido peaked at {peak_kib >> 10} MiB"
    assert f"stdout was truncated at {MiB} bytes ({2 * GiB} written)" in aido_stderr

    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "success"
    assert run_summary["output"]["stdout"] == {
        "path": "stdout.log",
        "bytes_total": 2 * GiB,
        "bytes_captured": MiB,
        "truncated": True,
        "limit": MiB,
    }
    assert run_summary["output"]["stderr"]["truncated"] is False
    log = run_dir(project, sandbox_id) / "stdout.log"
    assert log.stat().st_size == MiB
    assert log.read_bytes() == b"x" * MiB
    # The engine kept no copy of its own (no json-file log growing under /var/lib/docker).
    assert run_summary["security"]["applied"]["log_driver"] == "none"
    assert_ran_isolated(run_summary)
    assert_host_unharmed(sandbox_id)


# -- disk and inodes ----------------------------------------------------------------------

FILL_ONE = """\
import errno, os, time
fd = os.open("/outputs/fill", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
chunk = b"\\xab" * (1 << 16)
refusals = 0
while True:  # forever: past the limit, keep trying
    try:
        os.write(fd, chunk)
    except OSError as e:
        if not refusals:
            print("refused:", errno.errorcode.get(e.errno, e.errno), flush=True)
        refusals += 1
        time.sleep(0.01)
"""


def test_disk_fill_is_stopped_at_the_disk_limit(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  disk: 20M\n")
    sandbox_id = hostile_sandbox(aido)
    write(project / "fill.py", FILL_ONE)
    started = time.monotonic()
    result = aido("run", "fill.py", "--timeout", "30s", timeout=60)
    elapsed = time.monotonic() - started
    assert result.code == 137, result.stderr
    assert "disk limit" in result.stderr
    assert elapsed < 20
    # The task hit the file-size limit itself, then aido's guard stopped it.
    assert (run_dir(project, sandbox_id) / "stdout.log").read_text() == "refused: EFBIG\n"
    filled = sandbox_root(project, sandbox_id) / "outputs" / "fill"
    assert filled.stat().st_size <= 20 * MiB
    used, _ = disk_usage(sandbox_root(project, sandbox_id) / "outputs")
    assert used <= 20 * MiB + MiB

    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "disk_limit"
    assert run_summary["stop_reason"] == "disk_limit"
    assert run_summary["disk_limit_exceeded"] is True
    assert run_summary["exit_code"] is None
    assert run_summary["disk"]["limit_bytes"] == 20 * MiB
    assert run_summary["disk"]["exceeded"].startswith("disk limit exceeded")
    assert "disk limit" in run_summary["message"]
    assert run_summary["limits"]["fsize_bytes"] == 20 * MiB
    assert {c["path"]: c["size"] for c in run_summary["changes"]} == {"outputs/fill": filled.stat().st_size}
    assert_ran_isolated(run_summary)
    (done,) = completed_events(project, sandbox_id)
    assert (done["status"], done["stop_reason"]) == ("disk_limit", "disk_limit")
    assert record(project, sandbox_id)["runs"][0]["status"] == "disk_limit"
    assert_host_unharmed(sandbox_id)


FILL_MANY = """\
import itertools
chunk = b"\\xab" * (1 << 20)
for n in itertools.count():  # a new file whenever the file-size limit stops one
    try:
        with open(f"/outputs/fill-{n:04d}", "wb") as f:
            while True:
                f.write(chunk)
    except OSError:
        pass
"""


def fill_many(aido: Aido, project: Path) -> tuple[str, float]:
    write(project / "sandbox.yaml", "resources:\n  disk: 20M\n")
    sandbox_id = hostile_sandbox(aido)
    write(project / "fill.py", FILL_MANY)
    started = time.monotonic()
    result = aido("run", "fill.py", "--timeout", "30s", "--json", timeout=60)
    assert result.code == 137, result.stderr
    return sandbox_id, time.monotonic() - started


def test_disk_fill_across_many_files_is_stopped_and_reported(aido: Aido, project: Path) -> None:
    sandbox_id, elapsed = fill_many(aido, project)
    assert elapsed < 20
    outputs = sandbox_root(project, sandbox_id) / "outputs"
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "disk_limit"
    assert run_summary["disk_limit_exceeded"] is True
    assert run_summary["exit_code"] is None
    assert "disk limit" in run_summary["message"]
    # No single file got past the file-size limit, and the evidence lists every file left.
    sizes = {f"outputs/{p.name}": p.stat().st_size for p in outputs.iterdir()}
    assert max(sizes.values()) <= 20 * MiB
    assert {c["path"]: c["size"] for c in run_summary["changes"]} == sizes
    assert_host_unharmed(sandbox_id)


def test_disk_fill_across_many_files_is_stopped_within_a_bounded_overshoot(aido: Aido, project: Path) -> None:
    """The disk limit is enforced by measuring from the host every 50 ms (a bind mount has no
    quota), and the file-size limit caps each file meanwhile: a task writing new files at
    page-cache speed overshoots by what it writes before the kill lands (~100-300 MB here),
    never more (the README says so). The run is reported as disk_limit either way."""
    sandbox_id, _ = fill_many(aido, project)
    used, _ = disk_usage(sandbox_root(project, sandbox_id) / "outputs")
    assert used <= 20 * MiB + 512 * MiB, f"{used >> 20} MiB left on the host for a 20M disk limit"
    assert summary(project, sandbox_id)["status"] == "disk_limit"


def test_disk_usage_in_the_summary_is_what_the_task_left(aido: Aido, project: Path) -> None:
    sandbox_id, _ = fill_many(aido, project)
    used, _ = disk_usage(sandbox_root(project, sandbox_id) / "outputs")
    reported = summary(project, sandbox_id)["disk"]["bytes_used"]
    assert reported >= used, f"summary says {reported} bytes used, {used} bytes are on the host"


SPARSE = """\
import os
with open("/outputs/huge", "wb") as f:
    f.truncate(1 << 40)
print(os.stat("/outputs/huge").st_size)
"""


def test_terabyte_sparse_file_is_recorded_without_being_read(aido: Aido, project: Path) -> None:
    # The disk limit is also the file-size limit: at the default 1G, truncate() fails with EFBIG.
    write(project / "sandbox.yaml", "resources:\n  disk: 1T\n")
    sandbox_id = hostile_sandbox(aido)
    write(project / "sparse.py", SPARSE)
    write(project / "again.py", "print('again')\n")
    started = time.monotonic()
    result = aido("run", "sparse.py", "--json", timeout=60)
    elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    assert elapsed < 15, f"aido took {elapsed:.1f}s over a sparse file"
    assert (run_dir(project, sandbox_id) / "stdout.log").read_text() == f"{1 << 40}\n"
    huge = (sandbox_root(project, sandbox_id) / "outputs" / "huge").stat()
    assert huge.st_size == 1 << 40
    assert huge.st_blocks * 512 < MiB  # the host's disk holds no terabyte

    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "success"
    assert run_summary["changes"] == [
        {"path": "outputs/huge", "change": "added", "type": "file", "size": 1 << 40, "sha256": None}
    ]
    assert any(n.startswith("outputs: huge: not hashed") for n in run_summary["changes_notes"])
    assert run_summary["disk"]["bytes_used"] < MiB
    assert run_summary["disk"]["exceeded"] is None

    # The next run's snapshots walk past it just as quickly, and see it unchanged.
    started = time.monotonic()
    result = aido("run", "again.py", "--json", timeout=60)
    assert result.code == 0, result.stderr
    assert time.monotonic() - started < 15
    assert summary(project, sandbox_id, "run-002")["changes"] == []
    assert_host_unharmed(sandbox_id)


SPARSE_MANY = """\
for i in range(200):
    with open(f"/outputs/s{i:03d}", "wb") as f:
        f.truncate((256 << 20) - 1)  # just under the size aido still hashes
print("done", flush=True)
"""


def test_many_sparse_files_under_the_hash_cap_do_not_stall_aido(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "sparse.py", SPARSE_MANY)
    try:
        result = aido("run", "sparse.py", "--json", timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("aido was still busy 20s after starting a task that takes under a second")
    assert result.code == 0, result.stderr
    assert summary(project, sandbox_id)["status"] == "success"


MANY_FILES = """\
import os
os.makedirs("/outputs/many", exist_ok=True)
for i in range(50_000):
    with open(f"/outputs/many/f{i:05d}", "w") as f:
        f.write("x")
print("created all 50000", flush=True)
"""


def test_fifty_thousand_files_stop_at_the_file_limit(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  files: 10000\n")
    sandbox_id = hostile_sandbox(aido)
    write(project / "many.py", MANY_FILES)
    started = time.monotonic()
    result = aido("run", "many.py", "--timeout", "60s", timeout=90)
    elapsed = time.monotonic() - started
    assert result.code == 137, result.stderr
    assert "file limit exceeded" in result.stderr
    assert elapsed < 30, f"aido took {elapsed:.1f}s"
    assert "created all" not in (run_dir(project, sandbox_id) / "stdout.log").read_text()
    _, count = disk_usage(sandbox_root(project, sandbox_id) / "outputs")
    assert count < 50_000

    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "disk_limit"
    assert run_summary["stop_reason"] == "disk_limit"
    assert run_summary["exit_code"] is None
    assert run_summary["disk"]["limit_files"] == 10_000
    assert run_summary["disk"]["exceeded"].startswith("file limit exceeded")
    assert "file limit exceeded" in run_summary["message"]
    # The snapshot is bounded too, and says where it stopped.
    assert len(run_summary["changes"]) <= 10_000
    assert "outputs: stopped after 10000 entries" in run_summary["changes_notes"]
    assert_host_unharmed(sandbox_id)


def test_a_disk_limit_that_sandbox_up_accepts_can_be_run(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  disk: 2T\n")
    sandbox_id = hostile_sandbox(aido)
    write(project / "ok.py", "print('ok')\n")
    result = aido("run", "ok.py", "--json")
    assert result.code == 0, result.stdout
    assert summary(project, sandbox_id)["limits"]["fsize_bytes"] == 2 << 40


# -- descriptors and leftovers --------------------------------------------------------------

NOFILE = """\
import errno, json, os, resource
fds = []
try:
    while len(fds) < 1 << 20:
        fds.append(os.open("/dev/null", os.O_RDONLY))
    stopped = None
except OSError as e:
    stopped = errno.errorcode.get(e.errno, e.errno)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
    raised = True
except (ValueError, OSError):
    raised = False
print(json.dumps({"opened": len(fds), "stopped": stopped, "raised": raised,
                  "limit": resource.getrlimit(resource.RLIMIT_NOFILE)}))
"""


def test_opening_files_until_emfile_fails_in_the_task(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "fds.py", NOFILE)
    result = aido("run", "fds.py", "--timeout", "60s", "--json", timeout=90)
    assert result.code == 0, result.stderr
    report = json.loads((run_dir(project, sandbox_id) / "stdout.log").read_text())
    assert report["stopped"] == "EMFILE"
    assert 900 < report["opened"] < 1024
    assert report["raised"] is False
    assert report["limit"] == [1024, 1024]
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "success"
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in run_summary["security"]["applied"]["ulimits"]}
    assert ulimits["nofile"] == (1024, 1024)
    assert_ran_isolated(run_summary)
    assert_host_unharmed(sandbox_id)


PLANT = """\
import json, os
out = {}
for d in ("/tmp", "/dev/shm"):
    path = os.path.join(d, "planted")
    try:
        with open(path, "w") as f:
            f.write("left by run 1")
        out[d] = "written"
    except OSError as e:
        out[d] = str(e)
print(json.dumps(out))
"""
LOOK = """\
import json, os
print(json.dumps({d: sorted(os.listdir(d)) for d in ("/tmp", "/dev/shm")}))
"""


def test_tmp_and_dev_shm_do_not_persist_between_runs(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "plant.py", PLANT)
    write(project / "look.py", LOOK)
    assert aido("run", "plant.py", "--json").code == 0
    assert aido("run", "look.py", "--json").code == 0
    planted = json.loads((run_dir(project, sandbox_id, "run-001") / "stdout.log").read_text())
    assert planted == {"/tmp": "written", "/dev/shm": "written"}  # the first run could write them
    seen = json.loads((run_dir(project, sandbox_id, "run-002") / "stdout.log").read_text())
    assert "planted" not in seen["/tmp"]
    assert seen["/dev/shm"] == []
    assert [r["status"] for r in record(project, sandbox_id)["runs"]] == ["success", "success"]
    for rid in ("run-001", "run-002"):
        assert summary(project, sandbox_id, rid)["changes"] == []
    # Nor did anything land in the sandbox's directories on the host.
    assert not any(p.name == "planted" for p in sandbox_root(project, sandbox_id).rglob("*"))
    assert_host_unharmed(sandbox_id)
