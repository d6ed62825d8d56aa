"""`aido run -c CODE`: a code string runs like a task file and is kept in the evidence
like one; every way of asking for it wrongly is refused before a run exists."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aido.errors import UsageError
from aido.manager import SandboxManager
from aido.run.plan import MAX_TASK_BYTES
from aido.store.workspace import Workspace
from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.sandbox import (
    assert_no_run_consumed,
    events,
    run_dir,
    sandbox_root,
    sandbox_up,
    summary,
)

pytestmark = pytest.mark.docker

CODE = "import sys\nprint(6 * 7, sys.argv[1:])\n"


def test_code_string_runs_and_is_sealed_as_its_task(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--runtime", "python:3.11")
    result = aido("run", "-c", CODE, "--", "a", "b")
    assert result.code == 0, result.stderr
    assert result.stdout == "42 ['a', 'b']\n"
    digest = hashlib.sha256(CODE.encode()).hexdigest()
    name = f"snippet-{digest[:12]}.py"
    run_summary = summary(project, sandbox_id)
    assert run_summary["task"] == name
    assert run_summary["task_sha256"] == digest
    assert run_summary["task_source"] == "code"
    assert run_summary["command"] == ["python", f"/work/{name}", "a", "b"]
    kept = run_dir(project, sandbox_id) / "task" / name
    assert kept.read_text() == CODE
    assert kept.stat().st_mode & 0o777 == 0o644
    assert (sandbox_root(project, sandbox_id) / "work" / name).read_text() == CODE
    started = [
        e for e in events(sandbox_root(project, sandbox_id) / "events.log") if e["event"] == "run_started"
    ]
    assert started[-1]["task"] == name and started[-1]["task_source"] == "code"
    shown = aido("show", "run-001")
    assert f"task       {name} -- a b  (a code string)" in shown.stdout
    verified = aido("verify", "run-001")
    assert verified.code == 0, verified.stderr
    # A task file in the same sandbox says it came from a file.
    write(project / "t.py", "print('file')\n")
    assert aido("run", "t.py").code == 0
    assert summary(project, sandbox_id, "run-002")["task_source"] == "file"


def test_runtime_flag_picks_the_interpreter_of_a_sandbox_without_one(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    result = aido(
        "run", "-c", "console.log(process.argv.slice(2).join(','))", "--runtime", "node", "--", "x", "y"
    )
    assert result.code == 0, result.stderr
    assert result.stdout == "x,y\n"
    node_run = summary(project, sandbox_id)
    assert node_run["runtime"] == "node:18"
    assert node_run["task"].endswith(".js") and node_run["command"][0] == "node"
    result = aido("run", "--json", "-c", 'echo "sh says $1"', "--runtime", "sh", "--", "hi")
    assert result.code == 0, result.stderr
    assert result.json["task"].startswith("snippet-") and result.json["task"].endswith(".sh")
    assert result.json["task_source"] == "code"
    assert (run_dir(project, sandbox_id, "run-002") / "stdout.log").read_text() == "sh says hi\n"
    # Without --runtime nothing says which interpreter: refused, naming the fix.
    refused = aido("run", "-c", "print(1)")
    assert refused.code == 2
    assert "a code string needs a runtime" in refused.stderr
    assert "--runtime python|node|sh" in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-c", ""), "the code string is empty"),
        (("-c", "  \n"), "the code string is empty"),
        (("-c", "print(1)", "t.py"), "give either a task file or -c CODE, not both"),
        (("-c", "print(1)", "--parallel", "2"), "--parallel needs task files"),
        (("-c", "print(1)", "--runtime", "node"), "runs everything with python:3.11"),
        (("-c", "print(1)", "--runtime", "ruby"), "--runtime: unknown runtime 'ruby'"),
        (("--runtime", "sh", "t.py"), "use it with -c CODE"),
    ],
)
def test_bad_code_requests_are_refused_before_a_run(
    aido: Aido, project: Path, args: tuple[str, ...], message: str
) -> None:
    sandbox_id = sandbox_up(aido, "--runtime", "python:3.11")
    write(project / "t.py", "print('file')\n")
    result = aido("run", *args)
    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("error:") == 1 and "hint:" in result.stderr
    assert_no_run_consumed(project, sandbox_id)


def test_image_runtime_and_oversized_code_are_refused(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--runtime", "docker://debian:bookworm-slim")
    result = aido("run", "-c", "echo hi")
    assert result.code == 2
    assert "cannot run with runtime docker://debian:bookworm-slim" in result.stderr
    assert "aido run FILE" in result.stderr
    # Too big for a command line: through the API, which has the same check.
    manager = SandboxManager(Workspace(project))
    with pytest.raises(UsageError, match="larger than 64 MiB"):
        manager.run_code("#" * (MAX_TASK_BYTES + 1), runtime="sh")
    with pytest.raises(UsageError, match="not valid UTF-8"):
        manager.run_code("print('\udc80')")
    assert_no_run_consumed(project, sandbox_id)
