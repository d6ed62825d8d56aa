"""Every hook of a real, pip-installed plugin, through the real ``aido`` command and engine:
pre-run refusals (recorded, failing closed), post-run evidence (sealed with the run),
backends, commands, the listing, and broken plugins never corrupting a run."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido, aido_env, loaded_modules
from tests.helpers.sandbox import events, sandbox_root
from tests.plugins.conftest import plugin_env

pytestmark = pytest.mark.docker

# Outputs of every kind, links planted to the host's /etc among them: the census must
# count the links as links, never follow them.
OUTPUTS_TASK = """\
import os
os.makedirs("/outputs/d", exist_ok=True)
open("/outputs/a.txt", "w").write("hello")
open("/outputs/d/b.CSV", "w").write("1,2\\n")
open("/outputs/noext", "w").write("x")
os.symlink("/etc", "/outputs/etc-link")
os.symlink("/etc/passwd", "/outputs/passwd.txt")
print("done")
"""


def _run(plugged: Aido, task: str, source: str = "print('hi')\n", *args: str) -> tuple[Any, str]:
    project: Path = plugged.project  # type: ignore[attr-defined]
    (project / task).write_text(source)
    result = plugged("run", "--json", *args, task)
    return result, result.stderr


def _sandbox(plugged: Aido) -> Path:
    return sandbox_root(plugged.project, plugged.sandbox)  # type: ignore[attr-defined]


def _events(plugged: Aido, kind: str) -> list[dict[str, Any]]:
    return [e for e in events(_sandbox(plugged) / "events.log") if e["event"] == kind]


def test_post_run_files_are_evidence_sealed_with_the_run(plugged: Aido) -> None:
    result, _ = _run(plugged, "outputs.py", OUTPUTS_TASK)
    assert result.code == 0, result.stderr
    run_id = result.json["run_id"]
    run_dir = _sandbox(plugged) / "runs" / run_id
    census = json.loads((run_dir / "plugins" / "census" / "census.json").read_text())
    assert census == {
        "run_id": run_id,
        "outputs": {
            "files": 3,
            "bytes": 10,
            "directories": 1,
            "links": 2,
            "other": 0,
            "by_extension": {
                "(none)": {"files": 1, "bytes": 1},
                ".csv": {"files": 1, "bytes": 4},
                ".txt": {"files": 1, "bytes": 5},
            },
            "truncated": False,
        },
    }
    seen = (run_dir / "plugins" / "testplugin" / "seen.txt").read_text()
    assert seen == f"{run_id} success exit=0\n"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["plugins"] == [
        {"plugin": "census", "files": ["census.json"]},
        {"plugin": "testplugin", "files": ["seen.txt"]},
    ]
    assert f"runs/{run_id}/plugins/census/census.json" in summary["artifacts"]
    added = [e for e in _events(plugged, "plugin_evidence") if e["run_id"] == run_id]
    assert [(e["plugin"], e["files"]) for e in added] == [
        ("census", ["census.json"]),
        ("testplugin", ["seen.txt"]),
    ]

    # The seal covers the plugins' files: verified as they are, tampered once edited.
    verified = plugged("verify", run_id)
    assert verified.code == 0, verified.stderr
    path = run_dir / "plugins" / "census" / "census.json"
    original = path.read_bytes()
    path.write_bytes(original.replace(b'"files": 3', b'"files": 2'))
    try:
        tampered = plugged("verify", run_id)
        assert tampered.code == 1, tampered.stderr
        assert "census.json" in tampered.stdout + tampered.stderr
    finally:
        path.write_bytes(original)


def test_a_pre_run_refusal_is_recorded_and_starts_nothing(plugged: Aido) -> None:
    runs = sorted(p.name for p in (_sandbox(plugged) / "runs").iterdir())
    result, _ = _run(plugged, "refuse-me.py")
    assert result.code == 126
    assert result.json["error"]["code"] == "run_refused"
    message = result.json["error"]["message"]
    assert message.startswith(
        "plugin 'testplugin' (aido-testplugin 1.2.3) refused the run: task refuse-me.py"
    )
    human = plugged("run", "refuse-me.py")
    assert human.code == 126
    assert human.stderr.splitlines()[0] == f"error: {message}"
    refused = _events(plugged, "run_refused")[-1]
    assert refused["plugin"] == "testplugin" and refused["task"] == "refuse-me.py"
    assert "deny list" in refused["reason"] and "plugin_failed" not in refused
    assert refused["task_sha256"].startswith("sha256:")
    assert sorted(p.name for p in (_sandbox(plugged) / "runs").iterdir()) == runs, "no run directory"


def test_a_crashing_pre_run_hook_refuses_the_run(plugged: Aido) -> None:
    """A policy plugin that fails must not let the run through: it fails closed."""
    result, _ = _run(plugged, "crash-pre.py")
    assert result.code == 126
    message = result.json["error"]["message"]
    assert "plugin 'testplugin'" in message and "fail closed" in message
    assert "RuntimeError: policy backend unreachable" in message
    refused = _events(plugged, "run_refused")[-1]
    assert refused["task"] == "crash-pre.py" and refused["plugin_failed"] is True


@pytest.mark.parametrize(
    ("task", "why"),
    [
        ("post-raise.py", "ValueError: evidence generator exploded"),
        ("post-junk.py", "aido_post_run returned int"),
        ("post-escape.py", "file name '../escape.txt' is not a plain file name"),
    ],
)
def test_a_failing_post_run_hook_adds_nothing_and_the_run_stands(plugged: Aido, task: str, why: str) -> None:
    result, stderr = _run(plugged, task, "print('ok')\n")
    assert result.code == 0 and result.json["status"] == "success", stderr
    run_id = result.json["run_id"]
    assert "plugin 'testplugin' (aido-testplugin 1.2.3): aido_post_run failed" in stderr and why in stderr
    run_dir = _sandbox(plugged) / "runs" / run_id
    assert not (run_dir / "plugins" / "testplugin").exists()
    assert (run_dir / "plugins" / "census" / "census.json").is_file(), "another plugin is unaffected"
    assert not (run_dir / "plugins" / "escape.txt").exists() and not (run_dir / "escape.txt").exists()
    failed = [e for e in _events(plugged, "plugin_failed") if e["run_id"] == run_id]
    assert len(failed) == 1 and failed[0]["plugin"] == "testplugin" and why in failed[0]["error"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"plugin": "testplugin", "files": [], "error": failed[0]["error"]} in summary["plugins"]
    verified = plugged("verify", run_id)
    assert verified.code == 0, verified.stderr


def test_a_plugin_that_cannot_be_imported_is_listed_broken_and_runs_fail_closed(
    plugged: Aido, broken_dir: Path
) -> None:
    env = plugin_env(broken_dir)
    listed = plugged("plugins", "--json", env=env)
    assert listed.code == 0, listed.stderr
    broken = {p["name"]: p for p in listed.json["plugins"]}["broken"]
    assert broken["status"] == "broken" and broken["distribution"] == "aido-brokenplugin"
    assert (
        broken["error"]
        == "cannot be imported: ImportError: aido_brokenplugin needs libfoo, which is not installed"
    )
    (plugged.project / "fine.py").write_text("print(1)\n")  # type: ignore[attr-defined]
    result = plugged("run", "fine.py", env=env)
    assert result.code == 126
    assert result.stderr.startswith(
        "error: plugin 'broken' (aido-brokenplugin 0.0.1) failed, so the run is refused"
    )
    assert _events(plugged, "run_refused")[-1]["plugin"] == "broken"


def test_plugins_lists_every_plugin_with_its_hooks(plugged: Aido) -> None:
    listed = plugged("plugins", "--json")
    assert listed.code == 0, listed.stderr
    assert listed.json["plugins"] == [
        {
            "name": "census",
            "value": "aido_census",
            "distribution": "aido-census",
            "version": "0.1.0",
            "hooks": ["aido_post_run"],
            "status": "ok",
            "error": None,
            "commands": [],
            "backends": [],
            "runtimes": [],
            "problems": [],
        },
        {
            "name": "testplugin",
            "value": "aido_testplugin",
            "distribution": "aido-testplugin",
            "version": "1.2.3",
            "hooks": [
                "aido_pre_run",
                "aido_post_run",
                "aido_register_backends",
                "aido_register_runtimes",
                "aido_add_commands",
            ],
            "status": "ok",
            "error": None,
            "commands": ["hello"],
            "backends": ["testalias"],
            "runtimes": [
                {
                    "name": "py3",
                    "image": "python:{version}-slim",
                    "default_version": "3.11",
                    "interpreter": "python3",
                    "extensions": [".py3"],
                }
            ],
            "problems": ["its command 'run' is a built-in aido command: not added"],
        },
    ]
    human = plugged("plugins")
    assert "testplugin: its command 'run' is a built-in aido command: not added" in human.stdout


def test_plugin_commands_are_added_and_never_replace_built_ins(plugged: Aido) -> None:
    hello = plugged("hello", "bob")
    assert (hello.code, hello.stdout) == (0, "hello, bob\n")
    assert "plugin 'testplugin': its command 'run' is a built-in aido command: not added" in hello.stderr
    assert "hello" in plugged("--help").stdout
    crashed = plugged("hello", "--crash")
    assert crashed.code == 70
    assert crashed.stderr.splitlines()[1].startswith(  # after the warning about `run`
        "error: plugin 'testplugin' (aido-testplugin 1.2.3): its command 'hello' failed: ZeroDivisionError"
    )
    assert "bug in the plugin, not in aido" in crashed.stderr
    assert "Run TASK in a fresh container" in plugged("run", "--help").stdout


def test_a_plugin_backend_is_found_by_name(plugins_dir: Path, tmp_path: Path) -> None:
    probe = (
        "from aido.backends.registry import available, get_backend\n"
        "print(available()); print(type(get_backend('testalias')).__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=aido_env(plugin_env(plugins_dir)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['docker', 'testalias']", "DockerBackend"]


@pytest.mark.parametrize("argv", [["--version"], ["run", "t.py"]])
def test_without_plugins_neither_pluggy_nor_metadata_is_imported(
    sandbox: str, project: Path, argv: list[str]
) -> None:
    (project / "t.py").write_text("print(1)\n")
    done = loaded_modules(*argv, watch=["pluggy", "importlib.metadata"], cwd=project)
    assert done.code == 0, done.stderr
    assert done.modules == [], done.stderr


def test_without_plugins_sandbox_up_does_not_import_pluggy(engine: None, project: Path) -> None:
    """Creating a sandbox asks for the plugins' runtimes: only when a plugin is declared.
    (pydantic imports importlib.metadata for its own plugins: only pluggy is checked.)"""
    done = loaded_modules("sandbox", "up", "--runtime", "python", watch=["pluggy"], cwd=project)
    try:
        assert done.code == 0, done.stderr
        assert done.modules == [], done.stderr
    finally:
        subprocess.run([sys.executable, "-m", "aido", "sandbox", "destroy", "--all"], cwd=project,
                       env=aido_env(), capture_output=True, timeout=60)  # fmt: skip


def test_the_census_example_never_follows_links(tmp_path: Path, plugins_dir: Path) -> None:
    """Pure logic, in-process: a link to a directory full of files counts once, as a link."""
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "x.md").write_text("12")
    (tmp_path / "outputs" / "host").symlink_to(Path(sys.prefix))
    done = run_aido_python(
        plugins_dir, f"import aido_census; print(aido_census.census({str(tmp_path / 'outputs')!r}))"
    )
    counted = ast.literal_eval(done)  # the dict the plugin made, printed
    assert (
        counted["links"] == 1
        and counted["files"] == 1
        and counted["by_extension"] == {".md": {"files": 1, "bytes": 2}}
    )


def run_aido_python(plugins_dir: Path, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=aido_env(plugin_env(plugins_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
