"""Runtime families from a real, pip-installed plugin (aido_register_runtimes), through the
real ``aido`` command and engine: aido-testplugin adds "py3" (python3 in python:3.11-slim,
for .py3 tasks); aido-wonkyplugin tries to replace python and names bad interpreters and
images, which are refused naming it while built-in runtimes and its one sound family work.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.sandbox import run_dir, sandbox_up, summary
from tests.plugins.conftest import plugin_env

pytestmark = pytest.mark.docker

TASK = "import sys\nprint(sys.version_info[0], sys.argv[1:])\n"
WONKY = "plugin 'wonky' (aido-wonkyplugin 0.3.0)"
WONKY_PROBLEMS = [
    "runtime 'python' is built in: not replaced",
    "runtime 'spacey': interpreter 'python3 -c' is not a plain command name (no path, no spaces: "
    "it is looked up on the image's PATH)",
    "runtime 'pathy': interpreter '/tmp/planted' is not a plain command name (no path, no spaces: "
    "it is looked up on the image's PATH)",
    "runtime 'badimage': invalid image reference 'Python:3.11; rm -rf /': expected something like "
    "'python:3.12-slim'",
    "runtime 'py3' is provided by plugin 'testplugin' too: not added",
    "runtime 'thief': extension '.py3' belongs to runtime 'py3' (plugin 'testplugin'): not added",
]


def test_a_plugin_runtime_named_at_sandbox_up_runs_every_task(
    aido: Aido, project: Path, plugins_dir: Path, engine: None
) -> None:
    env = plugin_env(plugins_dir)
    sandbox_id = sandbox_up(aido, "--runtime", "py3", env=env)
    write(project / "task.txt", TASK)  # any file: the sandbox's runtime runs it
    result = aido("run", "task.txt", "--", "a", "b", env=env)
    assert (result.code, result.stdout) == (0, "3 ['a', 'b']\n"), result.stderr
    recorded = summary(project, sandbox_id)
    assert recorded["runtime"] == "py3:3.11" and recorded["runtime_plugin"] == "testplugin"
    assert recorded["image"] == "python:3.11-slim"
    assert recorded["command"] == ["python3", "/work/task.txt", "a", "b"]
    assert aido("verify", "run-001", env=env).code == 0

    # The same in sandbox.yaml, with a version.
    other = project.parent / "other"  # another workspace: destroy --all there spares this one
    write(other / "sandbox.yaml", "runtime: py3:3.11\n")
    up = aido("sandbox", "up", "--json", cwd=other, env=env)
    assert up.code == 0, up.stderr
    assert up.json["sandbox"]["config"]["runtime"] == "py3:3.11"
    aido("sandbox", "destroy", "--all", cwd=other, env=env)

    # Without the plugin, its runtime is unknown: a sandbox using it says why it cannot run.
    gone = aido("run", "task.txt")
    assert gone.code == 2
    assert gone.stderr.startswith(
        f"error: sandbox {sandbox_id}'s runtime 'py3' is not available: unknown runtime"
    )
    assert "install the plugin that provides it again" in gone.stderr
    refused = aido("sandbox", "up", "--runtime", "py3", cwd=other)
    assert refused.code == 2 and "unknown runtime 'py3'" in refused.stderr


def test_a_plugin_extension_and_code_string_in_a_sandbox_without_runtime(
    plugged: Aido, plugins_dir: Path
) -> None:
    project: Path = plugged.project  # type: ignore[attr-defined]
    sandbox_id: str = plugged.sandbox  # type: ignore[attr-defined]
    write(project / "hello.py3", TASK)
    result = plugged("run", "--json", "hello.py3", "--", "x")
    assert result.code == 0, result.stderr
    run_id = result.json["run_id"]
    recorded = summary(project, sandbox_id, run_id)
    assert recorded["runtime"] == "py3:3.11" and recorded["runtime_plugin"] == "testplugin"
    assert recorded["command"] == ["python3", "/work/hello.py3", "x"]
    assert (run_dir(project, sandbox_id, run_id) / "stdout.log").read_text() == "3 ['x']\n"

    code = "import sys; print('snippet', sys.argv[1:])"
    snippet = plugged("run", "-c", code, "--runtime", "py3:3.11", "--", "y")
    assert (snippet.code, snippet.stdout) == (0, "snippet ['y']\n"), snippet.stderr
    name = f"snippet-{hashlib.sha256(code.encode()).hexdigest()[:12]}.py3"
    latest = summary(project, sandbox_id, _latest(project, sandbox_id))
    assert (latest["task"], latest["task_source"], latest["runtime"]) == (name, "code", "py3:3.11")
    assert latest["command"] == ["python3", f"/work/{name}", "y"]

    # Built-in runtimes are untouched, and record no plugin.
    write(project / "plain.py", "print('plain')\n")
    plain = plugged("run", "plain.py")
    assert (plain.code, plain.stdout) == (0, "plain\n"), plain.stderr
    builtin = summary(project, sandbox_id, _latest(project, sandbox_id))
    assert builtin["runtime"] == "python:3.11" and "runtime_plugin" not in builtin


def test_refused_runtimes_name_their_plugin_and_break_nothing(
    aido: Aido, project: Path, wonky_dir: Path, engine: None
) -> None:
    env = plugin_env(wonky_dir)
    listed = aido("plugins", "--json", env=env)
    assert listed.code == 0, listed.stderr
    rows = {p["name"]: p for p in listed.json["plugins"]}
    assert rows["wonky"]["status"] == "ok" and rows["wonky"]["hooks"] == ["aido_register_runtimes"]
    assert rows["wonky"]["problems"] == WONKY_PROBLEMS
    assert rows["wonky"]["runtimes"] == [
        {"name": "shy", "image": "debian:bookworm-slim", "default_version": None, "interpreter": "sh",
         "extensions": [".shy"]}
    ]  # fmt: skip
    assert [r["name"] for r in rows["testplugin"]["runtimes"]] == ["py3"]
    human = aido("plugins", env=env)
    assert "runtime shy (.shy)" in human.stdout and "runtime py3:3.11 (.py3)" in human.stdout
    assert "wonky: runtime 'python' is built in: not replaced" in human.stdout

    sandbox_id = sandbox_up(aido, env=env)
    write(project / "t.py", "print('built in')\n")
    result = aido("run", "t.py", env=env)
    assert (result.code, result.stdout) == (0, "built in\n"), result.stderr
    for problem in WONKY_PROBLEMS:  # warned about on stderr, naming the plugin
        assert f"aido: warning: {WONKY}: {problem}\n" in result.stderr
    recorded = summary(project, sandbox_id)
    assert (recorded["runtime"], recorded["image"]) == ("python:3.11", "python:3.11-slim")
    assert recorded["command"] == ["python", "/work/t.py"]

    write(project / "t.shy", 'echo "shy $0"\n')
    shy = aido("run", "t.shy", env=env)
    assert (shy.code, shy.stdout) == (0, "shy /work/t.shy\n"), shy.stderr
    for name in ("spacey", "pathy", "badimage", "thief"):
        refused = aido("run", "-c", "print(1)", "--runtime", name, env=env)
        assert refused.code == 2 and f"--runtime: unknown runtime {name!r}" in refused.stderr
    write(project / "t.spc", "print(1)\n")
    unknown = aido("run", "t.spc", env=env)
    assert unknown.code == 2 and "cannot tell how to run 't.spc'" in unknown.stderr
    assert ".py3 or .shy file" in unknown.stderr


def _latest(project: Path, sandbox_id: str) -> str:
    from tests.helpers.sandbox import sandbox_root

    return sorted(p.name for p in (sandbox_root(project, sandbox_id) / "runs").iterdir())[-1]
