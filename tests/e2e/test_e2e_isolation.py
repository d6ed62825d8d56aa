"""What a task can and cannot do, and how aido reports it, through the real CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import load, sha256, write
from tests.helpers.sandbox import (
    TASK_GID,
    TASK_UID,
    events,
    record,
    run_dir,
    sandbox_root,
    sandbox_up,
    summary,
)

pytestmark = pytest.mark.docker

REDACTED = "***REDACTED***"


def test_task_exit_code_becomes_aido_exit_code_and_stderr_is_captured(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(
        project / "three.py",
        'import sys\nprint("some output")\nprint("something went wrong", file=sys.stderr)\nsys.exit(3)\n',
    )
    result = aido("run", "three.py")
    assert result.code == 3
    assert result.stdout == "some output\n"
    assert "something went wrong" in result.stderr
    assert "✗ Task failed (exit code: 3)" in result.stderr

    evidence = run_dir(project, sandbox_id)
    assert (evidence / "stderr.log").read_text() == "something went wrong\n"
    assert (evidence / "stdout.log").read_text() == "some output\n"
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "failed"
    assert run_summary["exit_code"] == 3
    assert run_summary["timed_out"] is False
    assert run_summary["error"] is None
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["status"] == "failed"
    assert ref["exit_code"] == 3
    assert_no_containers(sandbox_id)


@pytest.mark.parametrize("code", [1, 42, 255])
def test_other_exit_codes_pass_through_unchanged(aido: Aido, project: Path, code: int) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "code.sh", f"exit {code}\n")
    result = aido("run", "code.sh")
    assert result.code == code
    assert summary(project, sandbox_id)["exit_code"] == code


def test_timeout_kills_the_task_and_exits_124(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(
        project / "sleepy.py", 'import time\nprint("started", flush=True)\ntime.sleep(30)\nprint("never")\n'
    )
    started = time.monotonic()
    result = aido("run", "--timeout", "2s", "sleepy.py")
    elapsed = time.monotonic() - started
    assert result.code == 124
    assert elapsed < 15, f"aido took {elapsed:.1f}s to enforce a 2s timeout"
    assert result.stdout == "started\n"
    assert "timed out after 2s" in result.stderr

    run_summary = summary(project, sandbox_id)
    assert run_summary["timed_out"] is True
    assert run_summary["status"] == "timed_out"
    assert run_summary["exit_code"] is None
    assert run_summary["limits"]["timeout_seconds"] == 2.0
    assert 1500 <= run_summary["duration_ms"] < 15000
    assert (run_dir(project, sandbox_id) / "stdout.log").read_text() == "started\n"
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["status"] == "timed_out"
    completed = [
        e for e in events(sandbox_root(project, sandbox_id) / "events.log") if e["event"] == "run_completed"
    ]
    assert completed[-1]["timed_out"] is True
    assert_no_containers(sandbox_id)


def test_timeout_from_sandbox_yaml_applies_and_json_reports_it(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  timeout: 1s\n")
    sandbox_id = sandbox_up(aido)
    write(project / "forever.sh", "sleep 30\n")
    result = aido("run", "forever.sh", "--json")
    assert result.code == 124
    doc = result.json
    assert doc["status"] == "timed_out"
    assert doc["timed_out"] is True
    assert doc["exit_code"] is None
    assert summary(project, sandbox_id)["limits"]["timeout_seconds"] == 1.0
    assert_no_containers(sandbox_id)


def test_memory_limit_from_sandbox_yaml_oom_kills_the_task(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "resources:\n  memory: 32M\n")
    sandbox_id = sandbox_up(aido)
    write(project / "hog.py", "data = b'x' * (256 << 20)\nprint(len(data))\n")
    result = aido("run", "hog.py")
    assert result.code == 137
    assert "out of memory" in result.stderr
    assert "32M" in result.stderr
    run_summary = summary(project, sandbox_id)
    assert run_summary["oom_killed"] is True
    assert run_summary["status"] == "failed"
    assert run_summary["limits"]["memory_bytes"] == 32 << 20
    assert run_summary["security"]["applied"]["memory_bytes"] == 32 << 20
    assert run_summary["security"]["applied"]["memory_swap_bytes"] == 32 << 20
    assert_no_containers(sandbox_id)


def test_inputs_are_mounted_read_only(aido: Aido, project: Path) -> None:
    write(project / "data" / "a.txt", "alpha\n")
    write(project / "data" / "b.txt", "beta\n")
    write(project / "data" / "skip.csv", "not,an,input\n")
    write(project / "sandbox.yaml", "inputs:\n  - data/*.txt\n")
    sandbox_id = sandbox_up(aido)
    root = sandbox_root(project, sandbox_id)
    copied = load(root / "inputs.json")
    assert [(c["path"], c["sha256"]) for c in copied] == [
        ("data/a.txt", sha256("alpha\n")),
        ("data/b.txt", sha256("beta\n")),
    ]

    write(
        project / "probe.py",
        "import os\n"
        "for base, dirs, files in os.walk('/inputs'):\n"
        "    for f in sorted(files):\n"
        "        print('found', os.path.join(base, f))\n"
        "print('read', open('/inputs/data/a.txt').read().strip())\n"
        "targets = (('/inputs/data/a.txt', 'w'), ('/inputs/data/new.txt', 'w'), ('/inputs/x', 'a'))\n"
        "for path, mode in targets:\n"
        "    try:\n"
        "        open(path, mode).write('tampered')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n"
        "try:\n"
        "    os.remove('/inputs/data/b.txt')\n"
        "    print('REMOVED')\n"
        "except OSError as exc:\n"
        "    print('refused remove', exc.errno)\n",
    )
    result = aido("run", "probe.py")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "found /inputs/data/a.txt" in lines
    assert "found /inputs/data/b.txt" in lines
    assert not any("skip.csv" in line for line in lines)
    assert "read alpha" in lines
    assert "WROTE" not in result.stdout
    assert "REMOVED" not in result.stdout
    erofs = 30
    assert f"refused /inputs/data/a.txt {erofs}" in lines
    assert f"refused /inputs/data/new.txt {erofs}" in lines
    assert f"refused remove {erofs}" in lines

    # Neither the project's files nor the sandbox's copy changed.
    assert (project / "data" / "a.txt").read_text() == "alpha\n"
    assert (root / "inputs" / "data" / "a.txt").read_text() == "alpha\n"
    assert (root / "inputs" / "data" / "b.txt").read_text() == "beta\n"
    assert sorted(p.name for p in (root / "inputs" / "data").iterdir()) == ["a.txt", "b.txt"]
    run_summary = summary(project, sandbox_id)
    # The run's evidence names exactly what the task was given.
    assert [(c["path"], c["sha256"]) for c in run_summary["inputs"]] == [
        ("data/a.txt", sha256("alpha\n")),
        ("data/b.txt", sha256("beta\n")),
    ]
    mounts = {m["target"]: m for m in run_summary["security"]["applied"]["mounts"]}
    assert mounts["/inputs"]["read_only"] is True
    assert mounts["/work"]["read_only"] is False
    assert mounts["/outputs"]["read_only"] is False
    assert_no_containers(sandbox_id)


def test_readwrite_filesystem_lets_the_task_write_to_inputs(aido: Aido, project: Path) -> None:
    """``permissions.filesystem: readwrite`` mounts /inputs writable: the task can add files there."""
    write(project / "data" / "a.txt", "alpha\n")
    write(
        project / "sandbox.yaml",
        "inputs:\n  - data/*.txt\npermissions:\n  filesystem: readwrite\n",
    )
    sandbox_id = sandbox_up(aido, "--yes")
    write(
        project / "add.py",
        "for path in ('/inputs/created.txt', '/inputs/data/created.txt'):\n"
        "    try:\n"
        "        open(path, 'w').write('new')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc)\n",
    )
    result = aido("run", "add.py")
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == ["wrote /inputs/created.txt", "wrote /inputs/data/created.txt"]
    inputs = sandbox_root(project, sandbox_id) / "inputs"
    assert (inputs / "created.txt").read_text() == "new"
    assert (project / "data" / "a.txt").read_text() == "alpha\n"  # the project's own copy is untouched
    mounts = {m["target"]: m for m in summary(project, sandbox_id)["security"]["applied"]["mounts"]}
    assert mounts["/inputs"]["read_only"] is False


def test_filesystem_none_mounts_no_inputs(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "permissions:\n  filesystem: none\n")
    sandbox_id = sandbox_up(aido)
    write(project / "look.py", "import os\nprint(os.path.exists('/inputs'))\n")
    result = aido("run", "look.py")
    assert result.code == 0, result.stderr
    assert result.stdout == "False\n"
    targets = [m["target"] for m in summary(project, sandbox_id)["security"]["applied"]["mounts"]]
    assert sorted(targets) == ["/outputs", "/work", "/work/look.py"]


def test_task_has_no_network(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(
        project / "net.py",
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('BLOCKED', exc.errno)\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 80)\n"
        "    print('RESOLVED')\n"
        "except OSError:\n"
        "    print('NO-DNS')\n"
        "names = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]\n"
        "print('interfaces', ','.join(names))\n",
    )
    result = aido("run", "net.py")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("BLOCKED")
    assert lines[1] == "NO-DNS"
    assert lines[2] == "interfaces lo"
    security = summary(project, sandbox_id)["security"]
    assert security["requested"]["network"] is False
    assert security["applied"]["network_mode"] == "none"
    assert_no_containers(sandbox_id)


def test_task_runs_unprivileged_and_hardened(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(
        project / "who.py",
        "import os\n"
        "print(os.getuid(), os.getgid(), os.geteuid())\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "open('/outputs/mine.txt', 'w').write('x')\n"
        "try:\n"
        "    open('/etc/evil', 'w')\n"
        "    print('ROOTFS-WRITABLE')\n"
        "except OSError as exc:\n"
        "    print('rootfs', exc.errno)\n",
    )
    result = aido("run", "who.py")
    assert result.code == 0, result.stderr
    ids, caps, rootfs = result.stdout.splitlines()
    uid, gid, euid = (int(part) for part in ids.split())
    assert uid == euid == TASK_UID
    assert gid == TASK_GID
    assert uid != 0
    assert int(caps, 16) == 0  # no effective capabilities at all
    assert rootfs == "rootfs 30"  # EROFS
    assert (sandbox_root(project, sandbox_id) / "outputs" / "mine.txt").stat().st_uid == TASK_UID

    run_summary = summary(project, sandbox_id)
    applied = run_summary["security"]["applied"]
    expected_user = f"{TASK_UID}:{TASK_GID}"
    assert run_summary["security"]["requested"]["user"] == expected_user
    assert applied["user"] == expected_user
    assert applied["cap_drop"] == ["ALL"]
    assert applied["privileged"] is False
    assert applied["readonly_rootfs"] is True
    assert "no-new-privileges:true" in applied["security_opt"]
    assert applied["init"] is True
    assert applied["pids_limit"] == run_summary["limits"]["pids"]
    assert applied["memory_bytes"] == applied["memory_swap_bytes"] == 512 << 20
    assert record(project, sandbox_id)["task_user"] == expected_user
    assert_no_containers(sandbox_id)


ENV_DUMP = "import json, os\nprint(json.dumps(dict(os.environ), sort_keys=True))\n"


def test_env_comes_from_sandbox_yaml_and_flags_never_from_the_host(aido: Aido, project: Path) -> None:
    write(
        project / "sandbox.yaml",
        "env:\n  FROM_SPEC: spec-value\n  PORT: 8080\n  OVERRIDDEN: from-spec\n",
    )
    host = {"AIDO_CANARY": "s3cr3t", "SOME_CANARY": "s3cr3t", "PASS_ME": "passed-explicitly"}
    sandbox_id = sandbox_up(aido, env=host)
    write(project / "env.py", ENV_DUMP)
    result = aido(
        "run",
        "-e",
        "FROM_FLAG=flag value with spaces",
        "-e",
        "OVERRIDDEN=from-flag",
        "-e",
        "PASS_ME",
        "env.py",
        env=host,
    )
    assert result.code == 0, result.stderr
    task_env = json.loads(result.stdout)
    assert task_env["FROM_SPEC"] == "spec-value"
    assert task_env["PORT"] == "8080"
    assert task_env["FROM_FLAG"] == "flag value with spaces"
    assert task_env["OVERRIDDEN"] == "from-flag"  # flags win over the spec
    assert task_env["PASS_ME"] == "passed-explicitly"  # -e NAME copies that one variable, on request
    assert task_env["AIDO_SANDBOX_ID"] == sandbox_id
    assert task_env["AIDO_RUN_ID"] == "run-001"
    assert task_env["HOME"] == "/tmp"
    # Nothing else from the host leaks in.
    assert "AIDO_CANARY" not in task_env
    assert "SOME_CANARY" not in task_env
    assert "s3cr3t" not in result.stdout
    for name in ("USER", "SSH_AUTH_SOCK", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST", "NO_COLOR"):
        assert name not in task_env, name
    recorded = summary(project, sandbox_id)["env"]
    assert recorded["FROM_FLAG"] == "flag value with spaces"
    assert "AIDO_CANARY" not in recorded
    assert_no_containers(sandbox_id)


def test_env_flag_for_a_missing_host_variable_is_a_usage_error(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "env.py", ENV_DUMP)
    result = aido("run", "-e", "AIDO_TEST_NOT_SET_ANYWHERE", "env.py")
    assert result.code == 2
    assert "AIDO_TEST_NOT_SET_ANYWHERE" in result.stderr
    assert record(project, sandbox_id)["runs"] == []


def test_secret_looking_env_values_are_redacted_in_the_evidence(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "env:\n  GITHUB_TOKEN: gh-789-secret\n  COLOR: blue\n")
    sandbox_id = sandbox_up(aido)
    # The task proves it received the real values without printing them literally.
    write(
        project / "show_secrets.py",
        "import os\n"
        "for name in ('API_TOKEN', 'DB_PASSWORD', 'GITHUB_TOKEN', 'PLAIN'):\n"
        "    print(name, os.environ[name][::-1])\n",
    )
    result = aido(
        "run",
        "-e",
        "API_TOKEN=tok-123-secret",
        "-e",
        "DB_PASSWORD=pw-456-secret",
        "-e",
        "PLAIN=visible",
        "show_secrets.py",
        "--json",
    )
    assert result.code == 0, result.stderr
    received = (run_dir(project, sandbox_id) / "stdout.log").read_text().splitlines()
    assert received == [
        "API_TOKEN " + "tok-123-secret"[::-1],
        "DB_PASSWORD " + "pw-456-secret"[::-1],
        "GITHUB_TOKEN " + "gh-789-secret"[::-1],
        "PLAIN " + "visible"[::-1],
    ]
    recorded = summary(project, sandbox_id)["env"]
    assert recorded["API_TOKEN"] == REDACTED
    assert recorded["DB_PASSWORD"] == REDACTED
    assert recorded["GITHUB_TOKEN"] == REDACTED
    assert recorded["PLAIN"] == "visible"
    assert recorded["COLOR"] == "blue"
    summary_text = (run_dir(project, sandbox_id) / "summary.json").read_text()
    events_text = (sandbox_root(project, sandbox_id) / "events.log").read_text()
    for secret in ("tok-123-secret", "pw-456-secret", "gh-789-secret"):
        assert secret not in summary_text
        assert secret not in events_text
        assert secret not in result.stdout  # the --json envelope
    assert_no_containers(sandbox_id)


def test_task_named_like_a_stdlib_module_never_runs_on_the_host(aido: Aido, project: Path) -> None:
    """aido imports stdlib modules lazily; a task file in the current directory that shares
    a module's name (secrets.py, as AI agents do name them) must not be imported by aido
    itself on the host instead of running in the sandbox."""
    sandbox_id = sandbox_up(aido)
    write(
        project / "secrets.py",
        "import os\nopen('RAN_HERE', 'w').write(os.getcwd())\nprint('task ran in', os.getcwd())\n",
    )
    result = aido("run", "secrets.py")
    assert not (project / "RAN_HERE").exists(), "the untrusted task ran on the host, outside the sandbox"
    assert result.code == 0, result.stderr
    assert result.stdout == "task ran in /work\n"
    assert (sandbox_root(project, sandbox_id) / "work" / "RAN_HERE").read_text() == "/work"
