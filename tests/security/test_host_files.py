"""Hostile tasks against aido's host-side file handling.

Everything a task leaves in work/ and outputs/ is attacker-written: symlinks to host
files, fifos, setuid and mode-000 entries, links planted where aido writes evidence,
files that flip between file and symlink while aido looks, names full of control
bytes. Each test runs the task for real and checks both that the host is unharmed
and that the evidence says what the task did.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from aido.evidence.snapshot import display_name
from tests.helpers.cli import Aido, aido_argv, aido_env, spawn, wait_for
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import sha256, write
from tests.helpers.hostile import GVISOR, assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import TASK_UID, record, run_dir, sandbox_root, summary

pytestmark = pytest.mark.docker

SGR = re.compile(rb"\x1b\[[0-9;]*m")


def regular_files(root: Path) -> dict[Path, bytes]:
    """Every regular file under root and its bytes, read without following any link
    and without opening fifos or devices (as a careful host-side reader must)."""
    found: dict[Path, bytes] = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except PermissionError:
                continue
            with os.fdopen(fd, "rb") as handle:
                found[path] = handle.read()
    return found


def assert_nowhere_under(root: Path, *needles: str) -> None:
    for path, data in regular_files(root).items():
        for needle in needles:
            assert needle.encode() not in data, f"{needle!r} leaked into {path}"


def on_terminal(project: Path, *args: str, timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run ``aido ARGS`` with stdout and stderr each on its own pseudo-terminal, as a
    user at a terminal would; returns (exit code, stdout bytes, stderr bytes)."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    process = subprocess.Popen(
        aido_argv(*args),
        cwd=project,
        env=aido_env(),
        stdin=subprocess.DEVNULL,
        stdout=out_slave,
        stderr=err_slave,
    )
    os.close(out_slave)
    os.close(err_slave)
    received = {out_master: bytearray(), err_master: bytearray()}
    pending = set(received)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                pytest.fail(f"aido {' '.join(args)} did not finish within {timeout}s")
            ready, _, _ = select.select(list(pending), [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: every writer of the terminal is gone
                    data = b""
                if data:
                    received[fd] += data
                else:
                    pending.discard(fd)
        code = process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(out_master)
        os.close(err_master)
    return code, bytes(received[out_master]), bytes(received[err_master])


def test_symlinks_to_host_files_are_recorded_never_followed_and_survive_destroy(
    aido: Aido, project: Path, tmp_path: Path
) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    host_file = write(tmp_path / "host" / "id_rsa", f"{canary}\n")
    host_dir = tmp_path / "host" / "home"
    precious = write(host_dir / "precious.txt", f"{canary} in a directory\n")
    sandbox_id = hostile_sandbox(aido)
    # The task learns the host's absolute paths (a real attacker guesses ~/.ssh/id_rsa).
    write(
        project / "plant.py",
        "import os\n"
        "os.symlink(os.environ['HOST_FILE'], '/outputs/report.txt')\n"
        "os.symlink(os.environ['HOST_DIR'], '/outputs/sub')\n"
        "os.symlink(os.environ['HOST_DIR'] + '/precious.txt', '/work/notes.txt')\n"
        "print('planted')\n",
    )
    result = aido("run", "-e", f"HOST_FILE={host_file}", "-e", f"HOST_DIR={host_dir}", "plant.py")
    assert result.code == 0, result.stderr
    assert result.stdout == "planted\n"

    assert_ran_isolated(summary(project, sandbox_id))
    changes = {c["path"]: c for c in summary(project, sandbox_id)["changes"]}
    # Recorded by target only: no size, no hash, nothing read through the link.
    assert changes["outputs/report.txt"] == {
        "path": "outputs/report.txt",
        "change": "added",
        "type": "symlink",
        "target": str(host_file),
    }
    assert changes["outputs/sub"]["type"] == "symlink"
    assert changes["work/notes.txt"]["type"] == "symlink"
    assert not any(p.startswith("outputs/sub/") for p in changes), "aido walked into the host directory"
    # Another run snapshots the planted links again (before and after) without following them.
    write(project / "quiet.py", "pass\n")
    assert aido("run", "quiet.py").code == 0
    assert summary(project, sandbox_id, "run-002")["changes"] == []
    assert_nowhere_under(project / ".aido", canary, sha256(f"{canary}\n"))

    destroyed = aido("sandbox", "destroy", sandbox_id)
    assert destroyed.code == 0, destroyed.stderr
    assert not sandbox_root(project, sandbox_id).exists()
    assert host_file.read_text() == f"{canary}\n"
    assert precious.read_text() == f"{canary} in a directory\n"
    assert sorted(p.name for p in host_dir.iterdir()) == ["precious.txt"]
    assert_no_containers(sandbox_id)


@pytest.mark.skipif(
    GVISOR,
    reason="under gVisor a fifo or socket made in a bind mount stays in the sandbox: none reaches the host",
)
def test_fifos_and_sockets_left_by_the_task_never_block_aido(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "outputs:\n  - result.json\n")
    sandbox_id = hostile_sandbox(aido)
    # A fifo where aido expects a declared output: opening it for reading would block forever.
    write(
        project / "fifo.py",
        "import os, socket\n"
        "os.mkfifo('/outputs/result.json')\n"
        "os.mkfifo('/work/pipe')\n"
        "socket.socket(socket.AF_UNIX).bind('/outputs/sock')\n"
        "print('made')\n",
    )
    started = time.monotonic()
    result = aido("run", "fifo.py", timeout=60)
    assert time.monotonic() - started < 20, "aido blocked on a fifo"
    assert result.code == 0, result.stderr
    outputs = sandbox_root(project, sandbox_id) / "outputs"
    assert stat.S_ISFIFO((outputs / "result.json").lstat().st_mode)
    assert stat.S_ISSOCK((outputs / "sock").lstat().st_mode)

    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    changes = {c["path"]: c for c in run_summary["changes"]}
    assert changes["outputs/result.json"] == {
        "path": "outputs/result.json",
        "change": "added",
        "type": "fifo",
    }
    assert changes["work/pipe"]["type"] == "fifo"
    assert changes["outputs/sock"]["type"] == "socket"
    # Another run walks the same tree (before and after) just as quickly.
    write(project / "quiet.py", "pass\n")
    started = time.monotonic()
    assert aido("run", "quiet.py", timeout=60).code == 0
    assert time.monotonic() - started < 20

    destroyed = aido("sandbox", "destroy", sandbox_id, timeout=60)
    assert destroyed.code == 0, destroyed.stderr
    assert not sandbox_root(project, sandbox_id).exists()


def test_no_setuid_bit_survives_a_copy_and_destroy_removes_locked_trees(aido: Aido, project: Path) -> None:
    # Setuid files in the project: an input (copied at `sandbox up`) and the task itself
    # (copied into work/ and into the run's evidence).
    tool = write(project / "data" / "tool.sh", "#!/bin/sh\necho tool\n")
    tool.chmod(0o6755)
    write(project / "sandbox.yaml", "inputs:\n  - data/*\n")
    sandbox_id = hostile_sandbox(aido)
    root = sandbox_root(project, sandbox_id)
    copied = root / "inputs" / "data" / "tool.sh"
    assert copied.read_text() == "#!/bin/sh\necho tool\n"
    assert stat.S_IMODE(copied.lstat().st_mode) & 0o7022 == 0, oct(copied.lstat().st_mode)

    task = write(
        project / "suid.py",
        "import os\n"
        "for base in ('/work', '/outputs'):\n"
        "    open(f'{base}/evil', 'w').write('x')\n"
        "    os.chmod(f'{base}/evil', 0o4777)\n"
        "    os.makedirs(f'{base}/locked/inner')\n"
        "    open(f'{base}/locked/inner/file', 'w').write('y')\n"
        "    os.chmod(f'{base}/locked/inner', 0)\n"
        "    os.chmod(f'{base}/locked', 0)\n"
        "print(oct(os.stat('/work/evil').st_mode))\n",
    )
    task.chmod(0o4755)
    result = aido("run", "suid.py")
    assert result.code == 0, result.stderr
    for copy in (run_dir(project, sandbox_id) / "task" / "suid.py", root / "work" / "suid.py"):
        assert stat.S_IMODE(copy.lstat().st_mode) & 0o7000 == 0, f"{copy}: {oct(copy.lstat().st_mode)}"
    for base in ("work", "outputs"):
        evil = root / base / "evil"
        # Whatever bits the task set, the file is the task's own: it can never run as root.
        if evil.lstat().st_mode & (stat.S_ISUID | stat.S_ISGID):
            assert evil.lstat().st_uid == TASK_UID != 0
        assert stat.S_IMODE((root / base / "locked").lstat().st_mode) == 0
    changes = {c["path"]: c for c in summary(project, sandbox_id)["changes"]}
    assert changes["work/evil"]["type"] == "file"
    assert changes["outputs/evil"]["sha256"] == sha256("x")
    if os.geteuid() == 0:  # root reads through mode bits: the locked files are listed
        assert changes["work/locked/inner/file"]["sha256"] == sha256("y")
    else:  # the locked directories could not be walked: said so, not crashed on
        assert any("locked" in note for note in summary(project, sandbox_id)["changes_notes"])

    destroyed = aido("sandbox", "destroy", sandbox_id)
    assert destroyed.code == 0, destroyed.stderr
    assert not root.exists()
    assert stat.S_IMODE(tool.lstat().st_mode) == 0o6755, "the project's own file was touched"
    assert_no_containers(sandbox_id)


def test_links_planted_at_evidence_names_redirect_no_write(aido: Aido, project: Path, tmp_path: Path) -> None:
    victim = write(tmp_path / "victim" / "bashrc", "original host file\n")
    victim_dir = victim.parent
    sandbox_id = hostile_sandbox(aido)
    names = [
        "second.py",  # the next task's name: aido copies it into work/
        "summary.json",
        "stdout.log",
        "stderr.log",
        "events.log",
        "changes.diff",
        "sandbox.json",
        "secrets.json",
        "run-002",
        "runs",
    ]
    write(
        project / "plant.py",
        "import os, sys\n"
        "victim = os.environ['VICTIM']\n"
        f"for name in {names!r}:\n"
        "    for base in ('/work', '/outputs'):\n"
        "        if not os.path.lexists(f'{base}/{name}'):\n"
        "            os.symlink(victim, f'{base}/{name}')\n"
        "os.symlink(os.path.dirname(victim), '/outputs/evidence')\n"
        "print('planted')\n",
    )
    first = aido("run", "-e", f"VICTIM={victim}", "plant.py")
    assert first.code == 0, first.stderr
    root = sandbox_root(project, sandbox_id)
    assert (root / "work" / "summary.json").is_symlink()

    write(project / "second.py", "print('second')\n")
    second = aido("run", "second.py")
    assert second.code == 0, second.stderr
    assert second.stdout == "second\n"

    assert victim.read_text() == "original host file\n"
    assert sorted(p.name for p in victim_dir.iterdir()) == ["bashrc"]
    # The planted link at the task's name was replaced by the task, not written through.
    assert not (root / "work" / "second.py").is_symlink()
    assert (root / "work" / "second.py").read_text() == "print('second')\n"
    # The evidence went to runs/run-002/, a real directory of regular files.
    evidence = run_dir(project, sandbox_id, "run-002")
    assert not evidence.is_symlink()
    assert evidence.is_dir()
    for name in ("summary.json", "stdout.log", "stderr.log"):
        assert stat.S_ISREG((evidence / name).lstat().st_mode), name
    assert (evidence / "stdout.log").read_text() == "second\n"
    run_summary = summary(project, sandbox_id, "run-002")
    assert_ran_isolated(run_summary)
    assert (run_summary["task"], run_summary["status"], run_summary["exit_code"]) == (
        "second.py",
        "success",
        0,
    )
    # runs/ itself is out of the task's reach: not mounted, and not writable by its user.
    runs = root / "runs"
    assert runs.lstat().st_uid != TASK_UID
    assert stat.S_IMODE(runs.lstat().st_mode) & 0o022 == 0


def test_a_swap_race_in_outputs_never_reads_the_host_canary(
    aido: Aido, project: Path, tmp_path: Path
) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    host_file = write(tmp_path / "secret.txt", f"{canary}\n")
    sandbox_id = hostile_sandbox(aido)
    # A background process flips /outputs/x between a regular file and a symlink to the
    # host file as fast as it can, ignores SIGTERM, and outlives the task's main process.
    loop = (
        "import os, signal\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "target = os.environ['CANARY_PATH']\n"
        "while True:\n"
        "    with open('/outputs/x.tmp', 'w') as f:\n"
        "        f.write('decoy\\n')\n"
        "    os.replace('/outputs/x.tmp', '/outputs/x')\n"
        "    if os.path.lexists('/outputs/l.tmp'):\n"
        "        os.remove('/outputs/l.tmp')\n"
        "    os.symlink(target, '/outputs/l.tmp')\n"
        "    os.replace('/outputs/l.tmp', '/outputs/x')\n"
    )
    # The main process stays until the test has run the others (it puts /work/release), or 60 s.
    write(
        project / "swap.py",
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {loop!r}])\n"
        "print('swapping', flush=True)\n"
        "deadline = time.monotonic() + 60\n"
        "while not os.path.exists('/work/release') and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print('leaving the loop running')\n",
    )
    write(project / "quick.py", "print('quick')\n")
    swapper = spawn(project, "run", "-e", f"CANARY_PATH={host_file}", "swap.py")
    try:
        wait_for(
            lambda: (
                (run_dir(project, sandbox_id) / "stdout.log").is_file()
                and b"swapping" in (run_dir(project, sandbox_id) / "stdout.log").read_bytes()
            ),
            timeout=30,
            what="the swapping task to start",
        )
        # Other runs of the sandbox end, and snapshot outputs/, in the middle of the race.
        for _ in range(2):
            quick = aido("run", "quick.py")
            assert quick.code == 0, quick.stderr
        write(sandbox_root(project, sandbox_id) / "work" / "release", "")
        _, stderr = swapper.communicate(timeout=60)
    finally:
        if swapper.poll() is None:
            swapper.kill()
    assert swapper.returncode == 0, stderr
    # The loop did not survive its run: outputs/x no longer changes.
    outputs = sandbox_root(project, sandbox_id) / "outputs"
    first = outputs.joinpath("x").lstat()
    time.sleep(0.5)
    later = outputs.joinpath("x").lstat()
    assert (first.st_ino, first.st_mode) == (later.st_ino, later.st_mode)
    assert_no_containers(sandbox_id)

    for rid in ("run-001", "run-002", "run-003"):
        run_summary = summary(project, sandbox_id, rid)
        assert_ran_isolated(run_summary)
        assert run_summary["status"] == "success", rid
        for change in run_summary["changes"]:
            if change["path"] == "outputs/x" and change["type"] == "symlink":
                assert change["target"] == str(host_file)
                assert "sha256" not in change
            elif change["path"] == "outputs/x" and change["type"] == "file":
                assert change["sha256"] == sha256("decoy\n")
    assert_nowhere_under(project / ".aido", canary, sha256(f"{canary}\n"))
    assert host_file.read_text() == f"{canary}\n"


ESCAPES = (
    "import sys, time\n"
    "out = sys.stdout\n"
    "out.write('before\\x1b]52;c;Q0xJUEJPQVJELVBBWUxPQUQ=\\x07clip\\n')\n"  # OSC 52: set the clipboard
    "out.write('\\x1b]0;PWNED-TITLE\\x07title\\n')\n"  # OSC 0: window title
    "out.write('\\x1b[2Jclear\\x1b[H\\n')\n"  # clear the screen, cursor home
    "out.write('\\x1b[31mred\\x1b[0m\\n')\n"  # colour: harmless, kept
    "out.write('split\\x1b]0;SPLIT-')\n"
    "out.flush()\n"
    "time.sleep(0.3)\n"
    "out.write('TITLE\\x07done\\x1b[')\n"  # a title split across two flushes, then a CSI split too
    "out.flush()\n"
    "time.sleep(0.3)\n"
    "out.write('2Jend\\n')\n"
    "out.flush()\n"
    "sys.stderr.write('err\\x1b]0;ERR-TITLE\\x07\\x1b[2Jerr-end\\n')\n"
)
RAW_MARKERS = [b"\x1b]52;c;", b"\x1b]0;PWNED-TITLE\x07", b"\x1b[2J", b"\x1b[31m"]


def assert_terminal_safe(data: bytes) -> None:
    """Only colour sequences carry an ESC; no BEL, no OSC payload, no title text."""
    assert b"\x1b" not in SGR.sub(b"", data), data
    assert b"\x07" not in data
    for leaked in (b"Q0xJUEJPQVJE", b"PWNED-TITLE", b"SPLIT-", b"ERR-TITLE"):
        assert leaked not in data, data


def test_terminal_escapes_are_dropped_on_a_terminal_and_kept_with_raw_output(
    aido: Aido, project: Path
) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "escapes.py", ESCAPES)

    code, stdout, stderr = on_terminal(project, "run", "escapes.py")
    assert code == 0, stderr
    assert_terminal_safe(stdout)
    assert_terminal_safe(stderr)
    for text in (b"before", b"clip", b"title", b"clear", b"split", b"done", b"end", b"err-end"):
        assert text in stdout + stderr
    assert b"\x1b[31mred\x1b[0m" in stdout

    # The evidence keeps exactly what the task wrote.
    log = (run_dir(project, sandbox_id) / "stdout.log").read_bytes()
    for marker in RAW_MARKERS:
        assert marker in log
    assert b"\x1b]0;SPLIT-TITLE\x07" in log

    # aido logs filters too, and --raw-output passes everything, on both commands.
    code, shown, _ = on_terminal(project, "logs")
    assert code == 0
    assert_terminal_safe(shown)
    assert b"before" in shown
    assert b"end" in shown
    code, shown, _ = on_terminal(project, "logs", "--raw-output")
    assert code == 0
    for marker in RAW_MARKERS:
        assert marker in shown
    code, raw, raw_err = on_terminal(project, "run", "--raw-output", "escapes.py")
    assert code == 0, raw_err
    for marker in RAW_MARKERS:
        assert marker in raw
    assert b"\x1b]0;ERR-TITLE\x07" in raw_err


def test_control_characters_in_file_names_keep_the_evidence_valid_json(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    names = ["new\nline", "esc\x1b]52;c;aGk=\x07", "clear\x1b[2J", "tab\tand\rcr", "x" * 255]
    write(
        project / "names.py",
        "import os\n"
        f"for name in {names!r}:\n"
        "    open('/outputs/' + name, 'w').write('hi\\n')\n"
        "os.symlink('/tmp/\\x1b]0;title\\x07', '/outputs/link')\n",
    )
    result = aido("--json", "run", "names.py")
    assert result.code == 0, result.stderr
    envelope = result.json  # strict JSON: raw control characters would not parse
    assert "\x1b" not in result.stdout
    assert "\x1b" not in result.stderr
    # Names the task chose are recorded with control characters escaped (\xNN): a newline in
    # a name must not forge lines in changes.diff, nor an escape reach a terminal that cats it.
    assert {c["path"] for c in envelope["changes"]} == {
        f"outputs/{display_name(n)}" for n in [*names, "link"]
    }
    assert "outputs/new\\x0aline" in {c["path"] for c in envelope["changes"]}

    text = (run_dir(project, sandbox_id) / "summary.json").read_text(encoding="utf-8")
    assert "\x1b" not in text
    run_summary = json.loads(text)
    assert_ran_isolated(run_summary)
    changes = {c["path"]: c for c in run_summary["changes"]}
    assert changes["outputs/new\\x0aline"]["sha256"] == sha256("hi\n")
    assert changes["outputs/link"]["target"] == "/tmp/\\x1b]0;title\\x07"
    assert record(project, sandbox_id)["runs"][0]["status"] == "success"


def test_non_utf8_file_names_keep_the_evidence_valid(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(
        project / "bytes.py",
        "import os\n"
        "open(b'/outputs/bad\\xff\\xfe', 'wb').write(b'hi\\n')\n"
        "os.symlink(b'/tmp/\\xff', b'/outputs/link\\xff')\n"
        "print('done')\n",
    )
    result = aido("run", "bytes.py")
    assert result.code == 0, result.stderr
    assert "internal error" not in result.stderr
    run_summary = json.loads((run_dir(project, sandbox_id) / "summary.json").read_bytes().decode("utf-8"))
    assert (run_summary["status"], run_summary["exit_code"]) == ("success", 0)
    assert len(run_summary["changes"]) == 2
    assert all(c["path"].startswith("outputs/") for c in run_summary["changes"])


def test_c1_control_characters_are_dropped_on_a_terminal(aido: Aido, project: Path) -> None:
    hostile_sandbox(aido)
    write(project / "c1.py", "print('a\\u009b2Jb\\u009d0;C1-TITLE\\u009cc\\u0085d')\n")
    code, stdout, stderr = on_terminal(project, "run", "c1.py")
    assert code == 0, stderr
    text = stdout.decode("utf-8", "replace")
    assert "a" in text
    assert "d" in text
    assert not [hex(ord(ch)) for ch in text if 0x80 <= ord(ch) <= 0x9F]
    assert "C1-TITLE" not in text
