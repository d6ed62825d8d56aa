"""The command server of a workspace with a warm pool (cli/server.py, cli/client.py):
``aido run`` handed to a process that has aido loaded already, with the same result as
running it in place, and only for the same user running the same code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, aido_argv, aido_env, loaded_modules, wait_for
from tests.helpers.sandbox import sandbox_root

LONG_TASK = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"


def _server_up(project: Path) -> bool:
    return (project / ".aido" / "run.sock").exists()


@pytest.fixture
def warm_sandbox(engine: None, aido: Aido, project: Path) -> str:
    result = aido("sandbox", "up", "--runtime", "python:3.11", "--warm", "1", "--json")
    assert result.code == 0, result.stderr
    wait_for(lambda: _server_up(project), timeout=20, what="the workspace's command server")
    return str(result.json["sandbox_id"])


def _summary(project: Path, sandbox_id: str, run: str) -> dict[str, object]:
    path = sandbox_root(project, sandbox_id) / "runs" / run / "summary.json"
    return dict(json.loads(path.read_text()))


def test_a_run_is_served_with_the_same_result(warm_sandbox: str, project: Path) -> None:
    (project / "task.py").write_text("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n")
    served = loaded_modules(
        "run", "task.py", watch=["click", "aido.manager"], cwd=project, entry="aido.cli.main"
    )
    # The client loaded neither the CLI nor the manager: the server's child ran the command,
    # on the client's own stdout and stderr, and its exit code came back.
    assert served.modules == [], served.stderr
    assert served.code == 3
    assert "out" in served.stdout and "err" not in served.stdout
    assert "err" in served.stderr
    # The same command in place (AIDO_SERVER=off) loads the CLI and ends the same way.
    here = subprocess.run(
        aido_argv("run", "task.py"),
        cwd=project,
        env=aido_env({"AIDO_SERVER": "off"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert here.returncode == 3 and "out" in here.stdout and "err" in here.stderr
    assert _summary(project, warm_sandbox, "run-001")["exit_code"] == 3
    assert _summary(project, warm_sandbox, "run-002")["exit_code"] == 3


def test_stdin_environment_and_directory_are_the_clients(
    warm_sandbox: str, project: Path, aido: Aido
) -> None:
    (project / "sub").mkdir()
    (project / "task.py").write_text(
        "import os, sys\nprint(sys.stdin.read().strip(), os.environ['GREETING'])\n"
    )
    done = subprocess.run(
        aido_argv("run", "-i", "-e", "GREETING", "../task.py"),
        cwd=project / "sub",  # a relative task path, resolved from the client's directory
        env=aido_env({"GREETING": "hello from the client"}),
        input="piped in",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "piped in hello from the client" in done.stdout
    # --json goes through too: the envelope on the client's stdout.
    result = aido("run", "--json", "-i", "-e", "GREETING=hi", "task.py", input="x")
    assert result.code == 0, result.stderr
    assert result.json["status"] == "success"
    assert result.json["output"]["stdout"]["bytes_total"] == len("x hi\n")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_reach_the_served_run(warm_sandbox: str, project: Path, sig: int, code: int) -> None:
    (project / "long.py").write_text(LONG_TASK)
    process = subprocess.Popen(
        aido_argv("run", "long.py"),
        cwd=project,
        env=aido_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The test's own SIGINT disposition must not be inherited as "ignored".
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    summary = _summary(project, warm_sandbox, "run-001")
    assert summary["status"] == "interrupted"


def test_a_killed_client_stops_its_run(warm_sandbox: str, project: Path) -> None:
    (project / "long.py").write_text(LONG_TASK)
    process = subprocess.Popen(
        aido_argv("run", "long.py"), cwd=project, env=aido_env(), stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    process.kill()
    process.wait(timeout=10)
    run_dir = sandbox_root(project, warm_sandbox) / "runs" / "run-001"
    # The served command sees its client gone (as a hang-up) and closes the run itself.
    wait_for(lambda: (run_dir / "summary.json").exists(), timeout=30, what="the run's summary")
    assert _summary(project, warm_sandbox, "run-001")["status"] == "interrupted"


def test_another_interpreter_path_is_not_served(warm_sandbox: str, project: Path, tmp_path: Path) -> None:
    (project / "task.py").write_text("print('ran')\n")
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    env = aido_env({"PYTHONPATH": os.pathsep.join(filter(None, [str(extra), os.environ.get("PYTHONPATH")]))})
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from aido.cli.client import delegate; print(delegate(sys.argv[1:]))",
            "run",
            "task.py",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Refused (another import path could mean other code): the client runs it itself.
    assert probe.stdout.strip().splitlines()[-1] == "None", probe.stderr
    done = subprocess.run(
        aido_argv("run", "task.py"), cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "ran" in done.stdout


def test_another_user_cannot_connect(warm_sandbox: str, project: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    socket_path = project / ".aido" / "run.sock"
    assert socket_path.stat().st_mode & 0o777 == 0o600
    probe = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('refused')\n"
        "else:\n    print('connected')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(socket_path)], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "refused", done.stderr


def test_the_server_goes_with_the_last_pool(warm_sandbox: str, project: Path, aido: Aido) -> None:
    lock = project / ".aido" / "server.lock"
    assert _server_up(project)
    assert aido("sandbox", "destroy", "--all").code == 0
    wait_for(lambda: not _server_up(project), timeout=20, what="the command server to stop")
    # Its lock is free again: no server process is left.
    import fcntl

    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    time.sleep(0)
