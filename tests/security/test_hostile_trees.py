"""Hostile trees: whatever a task leaves in work/ and outputs/ (very deep nesting, very
long names and paths, floods of entries, odd or locking permission bits, sparse
files, fifos and sockets, names with control characters or that are not UTF-8) must
never crash aido nor make the sandbox impossible to snapshot, clean, destroy or reap.

Each test runs one class of tree through the real CLI in a real container, under the
isolation of AIDO_TEST_ISOLATION (runc, and gVisor in CI's second pass), then checks:
the run ended with a sane status and exit code; summary.json is valid JSON and says
what the snapshot could not hash or walk; ``aido sandbox clean`` empties both trees;
the task runs again, and ``aido sandbox destroy`` leaves nothing behind but the
evidence; and the TTL reaper destroys a second, expired sandbox holding the same tree.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aido import fs
from aido.store.records import isoformat, utcnow
from tests.helpers.cli import Aido, Result, aido_argv, aido_env, wait_for
from tests.helpers.files import write
from tests.helpers.hostile import GVISOR, assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import run_dir, sandbox_root

pytestmark = pytest.mark.docker

REAPER = {"AIDO_REAPER_INTERVAL": "1"}
MiB = 1 << 20


def _after_run_checks(aido: Aido, project: Path, sandbox_id: str, run_id: str) -> None:
    """Whatever tree the task left, the run's evidence is plain files, its seal verifies,
    and it exports to a bundle that verifies too (what could not be hashed is listed in
    the seal as unhashed, never a crash)."""
    evidence = run_dir(project, sandbox_id, run_id)
    json.loads((evidence / "summary.json").read_bytes())
    for path in evidence.rglob("*"):
        assert path.is_file() or path.is_dir(), path
        assert not path.is_symlink(), path
    verified = aido("verify", run_id, "--sandbox", sandbox_id, timeout=300)
    assert verified.code == 0, verified.stdout + verified.stderr
    bundle = project.parent / f"{sandbox_id}-{run_id}.tar.gz"
    exported = aido("export", run_id, "--sandbox", sandbox_id, "-o", str(bundle), timeout=300)
    assert exported.code == 0, exported.stderr
    checked = aido("verify", str(bundle), timeout=300)
    assert checked.code == 0, checked.stdout + checked.stderr
    bundle.unlink()


def _summary(project: Path, sandbox_id: str, run_id: str) -> dict[str, Any]:
    """summary.json, which must be valid (strict) JSON whatever the task named its files."""
    data = json.loads((run_dir(project, sandbox_id, run_id) / "summary.json").read_bytes())
    assert isinstance(data, dict)
    return data


def _run(aido: Aido, project: Path, sandbox_id: str, run_id: str) -> dict[str, Any]:
    result = aido("run", "task.py", "--timeout", "600s", timeout=900)
    assert result.code == 0, result.stderr
    run_summary = _summary(project, sandbox_id, run_id)
    assert run_summary["status"] == "success"
    assert run_summary["exit_code"] == 0
    assert_ran_isolated(run_summary)
    _after_run_checks(aido, project, sandbox_id, run_id)
    return run_summary


def _expire(project: Path, sandbox_id: str) -> None:
    """Move the sandbox's expiry into the past, as if its TTL had run out."""
    path = sandbox_root(project, sandbox_id) / "sandbox.json"
    data = json.loads(path.read_bytes())
    data["expires_at"] = isoformat(utcnow().replace(year=2000))
    fs.atomic_write_json(path, data)


# Runs an aido command and says its peak resident size on stderr's last line: the test
# process's own RUSAGE_CHILDREN would be the largest of every child the suite ever waited for
# (mypy in another test's run is larger than aido).
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('peak-rss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _measured(aido: Aido, project: Path, peaks: list[int]) -> Aido:
    """An ``aido`` fixture whose every command's peak memory is added to ``peaks``."""

    def run(
        *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ) -> Result:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, *aido_argv(*args)],
            cwd=cwd or project,
            env=aido_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        stderr, _, last = done.stderr.rstrip("\n").rpartition("\n")
        label, _, peak = last.partition(" ")
        assert label == "peak-rss", done.stderr
        peaks.append(int(peak))
        return Result(done.returncode, done.stdout, stderr + "\n" if stderr else "")

    return run


def _survives(
    aido: Aido,
    project: Path,
    task: str,
    check: Callable[[dict[str, Any]], None],
    *,
    config: str | None = None,
    prepare: Callable[[Path], None] | None = None,
) -> None:
    """The whole life of two sandboxes whose task leaves a hostile tree (see the module);
    ``prepare(sandbox_root)`` adds to their trees from the host before the first run."""
    if config:
        write(project / "sandbox.yaml", config)
    write(project / "task.py", task)
    sandbox_id = hostile_sandbox(aido, env=REAPER)
    root = sandbox_root(project, sandbox_id)
    if prepare is not None:
        prepare(root)
    check(_run(aido, project, sandbox_id, "run-001"))

    cleaned = aido("sandbox", "clean", "--json", timeout=600)
    assert cleaned.code == 0, cleaned.stderr
    assert sorted(cleaned.json["cleared"]) == ["outputs", "work"]
    assert list((root / "work").iterdir()) == []
    assert list((root / "outputs").iterdir()) == []

    check(_run(aido, project, sandbox_id, "run-002"))  # the tree again, for destroy
    destroyed = aido("sandbox", "destroy", sandbox_id, "--json", timeout=600)
    assert destroyed.code == 0, destroyed.stderr
    assert not root.exists()
    archive = project / ".aido" / "archive"
    assert sorted(p.name for p in archive.iterdir()) == [sandbox_id]  # no .partial left
    kept = sorted(p.name for p in (archive / sandbox_id).iterdir())
    assert "work" not in kept and "outputs" not in kept
    assert sorted(p.name for p in (archive / sandbox_id / "runs").iterdir()) == ["run-001", "run-002"]

    # The reaper, on a second sandbox whose TTL runs out with the tree in it.
    reaped = hostile_sandbox(aido, env=REAPER)
    if prepare is not None:
        prepare(sandbox_root(project, reaped))
    _run(aido, project, reaped, "run-001")
    _expire(project, reaped)
    wait_for(lambda: not sandbox_root(project, reaped).exists(), timeout=300, what="the reaper")
    wait_for(lambda: (archive / reaped).is_dir(), timeout=60, what="the reaper's archive")
    assert sorted(p.name for p in archive.iterdir()) == sorted([sandbox_id, reaped])
    log = (project / ".aido" / "reaper.log").read_text(encoding="utf-8", errors="replace")
    assert "sweep failed" not in log, log


def _notes(run_summary: dict[str, Any]) -> list[str]:
    notes = run_summary["changes_notes"]
    assert isinstance(notes, list)
    return [str(n) for n in notes]


def _changes(run_summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c["path"]): c for c in run_summary["changes"]}


# -- one test per class ----------------------------------------------------------------


DEEP = """\
import os
for tree in ("/work", "/outputs"):
    os.chdir(tree)
    for _ in range(3000):  # relative names: no path ever passes PATH_MAX
        os.mkdir("d")
        os.chdir("d")
    with open("bottom.txt", "w") as f:
        f.write("3000 levels down")
print("nested")
"""


def test_very_deep_nesting(aido: Aido, project: Path) -> None:
    def check(run_summary: dict[str, Any]) -> None:
        notes = _notes(run_summary)
        for tree in ("work", "outputs"):
            assert any(n.startswith(f"{tree}: d/d/") and "not descended: deeper than 32" in n for n in notes)

    _survives(aido, project, DEEP, check)


LONG = """\
import os
for tree in ("/work", "/outputs"):
    os.chdir(tree)
    with open("x" * 255, "w") as f:  # the longest name there is
        f.write("a long name")
    os.symlink("t" * 4000, "l" * 255)  # and a long link target, never followed
    os.mkdir("p")
    os.chdir("p")
    for _ in range(25):  # 25 levels of 250 bytes: 6 KB of path, past PATH_MAX
        os.mkdir("n" * 250)
        os.chdir("n" * 250)
    with open("y" * 255, "w") as f:
        f.write("at the bottom of a path past PATH_MAX")
print("long")
"""


def test_very_long_names_and_paths_past_path_max(aido: Aido, project: Path) -> None:
    def check(run_summary: dict[str, Any]) -> None:
        changes = _changes(run_summary)
        for tree in ("work", "outputs"):
            bottom = f"{tree}/p/" + ("n" * 250 + "/") * 25 + "y" * 255
            assert len(bottom) > 4096
            assert changes[bottom]["sha256"] is not None  # walked by descriptor, and hashed
            assert changes[f"{tree}/{'x' * 255}"]["type"] == "file"
            assert changes[f"{tree}/{'l' * 255}"]["target"] == "t" * 4000

    _survives(aido, project, LONG, check)


MANY = """\
import os
made = 0
for tree in ("/work", "/outputs"):
    for d in range(52):
        os.mkdir(f"{tree}/d{d:02d}")
        for i in range(1000):
            os.close(os.open(f"{tree}/d{d:02d}/f{i:04d}", os.O_CREAT | os.O_WRONLY, 0o644))
            made += 1
print("made", made)
"""


def test_a_huge_number_of_entries(aido: Aido, project: Path) -> None:
    def check(run_summary: dict[str, Any]) -> None:
        notes = _notes(run_summary)
        assert "work: stopped after 10000 entries" in notes
        assert "outputs: stopped after 10000 entries" in notes
        assert run_summary["disk"]["files"] >= 104_000
        assert run_summary["disk"]["exceeded"] is None
        assert max(peaks) < 400 * MiB, f"aido's peak memory: {max(peaks) >> 20} MiB"

    peaks: list[int] = []
    _survives(_measured(aido, project, peaks), project, MANY, check, config="resources:\n  files: 200000\n")
    assert len(peaks) >= 10  # every run, verify, export, clean and destroy was measured


PERMS = """\
import os
for tree in ("/work", "/outputs"):
    os.chdir(tree)
    for name, mode in (("locked", 0), ("noexec", 0o600), ("nowrite", 0o500), ("sticky", 0o1777)):
        os.mkdir(name)
        os.makedirs(f"{name}/inner/deeper")
        for where in (name, f"{name}/inner", f"{name}/inner/deeper"):
            with open(f"{where}/f.txt", "w") as f:
                f.write(where)
            os.chmod(f"{where}/f.txt", 0)
        os.chmod(f"{name}/inner", 0)
        os.chmod(name, mode)
    for name, mode in (("setuid", 0o4755), ("setgid", 0o2755), ("none", 0), ("all", 0o7777)):
        with open(name, "w") as f:
            f.write(name)
        os.chmod(name, mode)
print("locked")
"""


def test_unreadable_and_odd_permission_bits(aido: Aido, project: Path) -> None:
    def check(run_summary: dict[str, Any]) -> None:
        changes = _changes(run_summary)
        for tree in ("work", "outputs"):
            for name in ("setuid", "setgid", "none", "all"):
                assert changes[f"{tree}/{name}"]["type"] == "file"
            # aido reads as root what the task locked, or says it could not.
            locked = f"{tree}/locked/inner/deeper/f.txt"
            assert locked in changes or any(n.startswith(f"{tree}: locked") for n in _notes(run_summary))

    _survives(aido, project, PERMS, check)


SPARSE = """\
import os
for tree in ("/work", "/outputs"):
    with open(f"{tree}/terabyte.bin", "wb") as f:
        f.truncate(1 << 40)  # 1 TiB apparent, a few blocks on disk
        f.seek(1 << 39)
        f.write(b"middle")
    with open(f"{tree}/holes.bin", "wb") as f:
        f.truncate(100 << 20)  # under the hashing limit, but mostly holes
        f.write(b"start")
print("sparse")
"""


def test_sparse_files(aido: Aido, project: Path) -> None:
    def check(run_summary: dict[str, Any]) -> None:
        notes = _notes(run_summary)
        changes = _changes(run_summary)
        for tree in ("work", "outputs"):
            assert changes[f"{tree}/terabyte.bin"]["size"] == 1 << 40
            assert changes[f"{tree}/terabyte.bin"]["sha256"] is None
            assert changes[f"{tree}/holes.bin"]["sha256"] is None
            assert f"{tree}: terabyte.bin: not hashed: larger than 256 MiB" in notes
            assert any(n.startswith(f"{tree}: holes.bin: not hashed: sparse") for n in notes)
        assert run_summary["disk"]["bytes_used"] < 64 * MiB  # blocks, not the apparent size

    # The file-size limit is the disk limit: 2T lets the task make its 1 TiB file.
    _survives(aido, project, SPARSE, check, config="resources:\n  disk: 2T\n")


SPECIAL = """\
import os, socket
for tree in ("/work", "/outputs"):
    os.mkfifo(f"{tree}/fifo")  # nobody will ever write to it: opening it would block
    server = socket.socket(socket.AF_UNIX)
    server.bind(f"{tree}/sock")
    server.listen()
    server.close()  # the socket file stays
    try:
        os.mknod(f"{tree}/null", 0o20666, os.makedev(1, 3))
        print("made a device node")
    except PermissionError:  # CAP_MKNOD is dropped
        print("no device node")
print("special")
"""


def _host_fifo_and_socket(root: Path) -> None:
    """A fifo and a bound unix socket in both trees, made from the host: gVisor keeps those
    its task makes inside its own kernel, so there the host would never see one."""
    here = Path.cwd()
    for tree in ("work", "outputs"):
        os.mkfifo(root / tree / "host-fifo")
        os.chdir(root / tree)  # a relative name: a socket's path must fit in 108 bytes
        try:
            with socket.socket(socket.AF_UNIX) as server:
                server.bind("host-sock")
        finally:
            os.chdir(here)


def test_fifos_sockets_and_device_nodes(aido: Aido, project: Path) -> None:
    def check(run_summary: dict[str, Any]) -> None:
        changes = _changes(run_summary)
        for tree in ("work", "outputs"):
            assert f"{tree}/null" not in changes  # no CAP_MKNOD in the sandbox
            if not GVISOR:  # gVisor keeps the fifos and sockets its task makes to itself
                assert changes[f"{tree}/fifo"]["type"] == "fifo"
                assert changes[f"{tree}/sock"]["type"] == "socket"
            assert f"{tree}/host-fifo" not in changes  # there before and after, never opened

    _survives(aido, project, SPECIAL, check, prepare=_host_fifo_and_socket)


NAMES = """\
import os
names = [
    b"\\xff\\xfe not utf-8",
    b"new\\nline",
    b"esc \\x1b[31m red",
    b"cr\\r tab\\t bell\\x07",
    b"x\\n+++ forged header",
    b"\\xc3\\x28 \\xed\\xa0\\x80 bad sequences",
]
for tree in (b"/work", b"/outputs"):
    for name in names:
        fd = os.open(tree + b"/" + name, os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"text of " + name.hex().encode() + b"\\n")
        os.close(fd)
    os.mkdir(tree + b"/\\xff dir\\n")
    os.close(os.open(tree + b"/\\xff dir\\n/inner\\x1b", os.O_CREAT | os.O_WRONLY, 0o644))
print("odd names")
"""


def test_control_characters_and_invalid_utf8_names(aido: Aido, project: Path) -> None:
    def check(run_summary: dict[str, Any]) -> None:
        changes = _changes(run_summary)
        for tree in ("work", "outputs"):
            assert f"{tree}/\\xff\\xfe not utf-8" in changes
            assert f"{tree}/new\\x0aline" in changes
            assert f"{tree}/esc \\x1b[31m red" in changes
            assert f"{tree}/\\xff dir\\x0a/inner\\x1b" in changes
        for path in changes:
            assert path.isprintable(), path
        evidence = run_dir(project, run_summary["sandbox_id"], run_summary["run_id"])
        diff = (evidence / "changes.diff").read_text(encoding="utf-8")
        assert "+++ b/outputs/x\\x0a+++ forged header" in diff  # one header line, shown
        assert not any(line.startswith("+++ forged") for line in diff.splitlines())

    _survives(aido, project, NAMES, check)


HIDE_DEEP = """\
import os, time
os.chdir("/work")
for _ in range(300):  # the disk meter used to stop descending at 256 levels
    os.mkdir("d")
    os.chdir("d")
for i in range(4):  # 32 MB in all, each file under the 20M file-size limit
    with open(f"hidden{i}", "wb") as f:
        f.write(os.urandom(8 << 20))
time.sleep(120)
"""


def test_data_hidden_deep_is_still_under_the_disk_limit(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  disk: 20M\n")
    write(project / "task.py", HIDE_DEEP)
    sandbox_id = hostile_sandbox(aido)
    result = aido("run", "task.py", "--timeout", "300s", timeout=400)
    assert result.code != 0, result.stderr
    run_summary = _summary(project, sandbox_id, "run-001")
    assert run_summary["status"] == "disk_limit"
    assert [b["kind"] for b in run_summary["limits_exceeded"]] == ["disk"]
    assert run_summary["disk"]["measured_completely"] is True
    assert run_summary["duration_ms"] < 100_000  # stopped by the meter, not the sleep's end
    _after_run_checks(aido, project, sandbox_id, "run-001")
    assert aido("sandbox", "clean").code == 0
    destroyed = aido("sandbox", "destroy", sandbox_id)
    assert destroyed.code == 0, destroyed.stderr
    assert not sandbox_root(project, sandbox_id).exists()
