"""Choosing how a task runs, and every way a run can fail before or while it starts."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import write
from tests.helpers.registry import empty_registry
from tests.helpers.sandbox import (
    TASK_UID,
    assert_no_run_consumed,
    record,
    run_dir,
    sandbox_root,
    sandbox_up,
    summary,
)

pytestmark = pytest.mark.docker

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent.sock"}


def test_js_task_runs_with_node(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(
        project / "hello.js",
        "console.log(`node ${process.version} uid ${process.getuid()}`);\nconsole.error('to stderr');\n",
    )
    result = aido("run", "hello.js")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("node v18.")
    assert result.stdout.endswith(f" uid {TASK_UID}\n")
    run_summary = summary(project, sandbox_id)
    assert run_summary["command"] == ["node", "/work/hello.js"]
    assert run_summary["runtime"] == "node:18"
    assert run_summary["image"] == "node:18-alpine"
    assert (run_dir(project, sandbox_id) / "stderr.log").read_text() == "to stderr\n"
    assert_no_containers(sandbox_id)


def test_mjs_task_runs_with_node_and_exit_code_passes_through(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "mod.mjs", "console.log(typeof import.meta);\nprocess.exit(7);\n")
    result = aido("run", "mod.mjs")
    assert result.code == 7
    assert result.stdout == "object\n"
    assert summary(project, sandbox_id)["command"] == ["node", "/work/mod.mjs"]


def test_sh_task_runs_with_sh(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "hello.sh", 'echo "sh as $(id -u) in $(pwd) with $# args: $*"\n')
    result = aido("run", "hello.sh", "--", "a", "b c")
    assert result.code == 0, result.stderr
    assert result.stdout == f"sh as {TASK_UID} in /work with 2 args: a b c\n"
    run_summary = summary(project, sandbox_id)
    assert run_summary["command"] == ["sh", "/work/hello.sh", "a", "b c"]
    assert run_summary["runtime"] == "sh"
    assert run_summary["image"] == "debian:bookworm-slim"
    assert_no_containers(sandbox_id)


def test_arguments_reach_the_task_verbatim(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "argv.py", "import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    # "--json" after "--" belongs to the task, not to aido.
    args = ["--flag", "two words", "$(id)", "; rm -rf /", "*", "", "--json"]
    result = aido("run", "argv.py", "--", *args)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == args
    assert "⚡ Running task" in result.stderr
    assert summary(project, sandbox_id)["args"] == args


def test_runtime_from_the_spec_overrides_the_extension(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "runtime: sh\n")
    sandbox_id = sandbox_up(aido)
    write(project / "script.txt", "echo from-sh\n")
    result = aido("run", "script.txt")
    assert result.code == 0, result.stderr
    assert result.stdout == "from-sh\n"
    assert summary(project, sandbox_id)["command"] == ["sh", "/work/script.txt"]


def test_custom_image_runs_an_executable_file_itself(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--runtime", "docker://debian:bookworm-slim")
    task = write(project / "job", "#!/bin/sh\necho direct\n")
    os.chmod(task, 0o755)
    result = aido("run", "job")
    assert result.code == 0, result.stderr
    assert result.stdout == "direct\n"
    run_summary = summary(project, sandbox_id)
    assert run_summary["command"] == ["/work/job"]
    assert run_summary["runtime"] == "docker://debian:bookworm-slim"


def test_custom_image_with_a_non_executable_file_exits_126(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--runtime", "docker://debian:bookworm-slim")
    task = write(project / "job", "#!/bin/sh\necho direct\n")
    os.chmod(task, 0o644)
    result = aido("run", "job")
    assert result.code == 126
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["status"] == "failed"  # the init process reports the failed exec, as with docker run --init
    assert ref["exit_code"] == 126
    assert_no_containers(sandbox_id)


def test_a_run_that_cannot_start_still_leaves_a_summary(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    # A first run leaves a directory where the next task file must go.
    write(project / "prep.py", "import os\nos.makedirs('/work/job.py')\n")
    assert aido("run", "prep.py").code == 0
    write(project / "job.py", "print('never runs')\n")
    result = aido("run", "job.py")
    assert result.code == 126
    assert "work/job.py is a directory" in result.stderr
    refs = record(project, sandbox_id)["runs"]
    assert [r["status"] for r in refs] == ["success", "error"]
    assert refs[1]["completed_at"] is not None
    run_summary = summary(project, sandbox_id, "run-002")
    assert run_summary["status"] == "error"
    assert run_summary["exit_code"] is None
    assert "is a directory" in run_summary["error"]
    assert_no_containers(sandbox_id)


def test_unknown_extension_without_a_runtime_is_a_usage_error_and_consumes_no_run(
    aido: Aido, project: Path
) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "task.rb", "puts 'hi'\n")
    result = aido("run", "task.rb")
    assert result.code == 2
    assert "cannot tell how to run 'task.rb'" in result.stderr
    assert "hint:" in result.stderr
    assert "runtime:" in result.stderr
    assert_no_run_consumed(project, sandbox_id)

    write(project / "ok.py", "print('ok')\n")
    assert aido("run", "ok.py").code == 0
    assert [r["run_id"] for r in record(project, sandbox_id)["runs"]] == ["run-001"]


def test_missing_task_file_exits_127_and_consumes_no_run(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    result = aido("run", "nowhere.py")
    assert result.code == 127
    assert "nowhere.py" in result.stderr
    assert "not found" in result.stderr
    assert_no_run_consumed(project, sandbox_id)


def test_a_directory_as_task_exits_126(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    (project / "folder.py").mkdir()
    result = aido("run", "folder.py")
    assert result.code == 126
    assert "directory" in result.stderr
    assert_no_run_consumed(project, sandbox_id)


def test_missing_image_exits_125_naming_the_image_and_the_fix(aido: Aido, project: Path) -> None:
    # `sandbox up` checks the image (tests/e2e/test_e2e_images.py); here it is removed after.
    # Named after an empty registry this test runs: the pull `run` then tries reaches only it.
    with empty_registry() as registry:
        missing = f"{registry}/gone-{os.getpid()}-{id(project)}:1"
        subprocess.run(["docker", "tag", "debian:bookworm-slim", missing], check=True)
        try:
            sandbox_id = sandbox_up(aido, "--runtime", f"docker://{missing}")
        finally:
            subprocess.run(["docker", "rmi", missing], check=True, capture_output=True)
        write(project / "hello.py", "print('hi')\n")
        result = aido("run", "hello.py")
    assert result.code == 125
    assert result.stdout == ""
    assert f"image {missing} is not available" in result.stderr
    assert f"docker build -t {missing}" in result.stderr
    assert "docker load" in result.stderr
    assert "✓" not in result.stderr
    assert_no_run_consumed(project, sandbox_id)
    assert not any(r["status"] == "running" for r in record(project, sandbox_id)["runs"])

    as_json = aido("run", "hello.py", "--json")
    assert as_json.code == 125
    doc = as_json.json
    assert doc["status"] == "error"
    assert doc["exit_code"] == 125
    assert doc["error"]["code"] == "image_unavailable"
    assert missing in doc["error"]["message"]
    assert doc["error"]["hint"]
    assert_no_containers(sandbox_id)


def test_unreachable_engine_exits_125_with_a_hint_and_consumes_no_run(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", "print('hi')\n")
    result = aido("run", "hello.py", env=NO_ENGINE)
    assert result.code == 125
    assert result.stdout == ""
    assert "Docker engine unreachable" in result.stderr
    assert "/nonexistent.sock" in result.stderr
    assert "hint:" in result.stderr
    assert "DOCKER_HOST" in result.stderr
    assert_no_run_consumed(project, sandbox_id)

    as_json = aido("run", "hello.py", "--json", env=NO_ENGINE)
    assert as_json.code == 125
    assert as_json.json["error"]["code"] == "runtime_unavailable"
    assert_no_run_consumed(project, sandbox_id)

    # With the engine back, the first run is run-001.
    assert aido("run", "hello.py").code == 0
    assert [r["run_id"] for r in record(project, sandbox_id)["runs"]] == ["run-001"]


def test_unsupported_docker_host_scheme_is_reported(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", "print('hi')\n")
    result = aido("run", "hello.py", env={"DOCKER_HOST": "ssh://someone@somewhere"})
    assert result.code == 125
    assert "unsupported DOCKER_HOST" in result.stderr
    assert_no_run_consumed(project, sandbox_id)


def test_destroy_without_an_engine_still_deletes_the_sandbox_and_warns(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    result = aido("sandbox", "destroy", env=NO_ENGINE)
    assert result.code == 0
    assert "warning: containers not checked" in result.stderr
    assert not sandbox_root(project, sandbox_id).exists()
