"""The real `aido` command on errors that need no engine: config is validated, ids and
workspaces are checked, before anything touches Docker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aido import __version__

Aido = Callable[..., Any]  # conftest's `aido` fixture: returns Result(code, stdout, stderr, .json)

BAD_MEMORY = (
    "name: demo\nruntime: python:3.11\nttl: 15m\npermissions:\n  network: false\nresources:\n  memory: lots\n"
)
MEMORY_PROBLEM = "sandbox.yaml:7: resources.memory: expected a size like 512M or 1G, got 'lots'"


def _as_lines(problems: list[dict[str, Any]]) -> list[str]:
    """`problems` objects of a --json error, back in their one-line human form."""
    lines = []
    for p in problems:
        where = f"{p['file']}:{p['line']}" if p["file"] and p["line"] else p["file"]
        lines.append(": ".join([part for part in (where, p["key"]) if part] + [p["message"]]))
    return lines


def _nothing_created(project: Path) -> None:
    assert not (project / ".aido").exists()
    assert sorted(p.name for p in project.iterdir()) == ["sandbox.yaml"]


# -- version and help ---------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(aido: Aido, flag: str) -> None:
    result = aido(flag)
    assert result.code == 0
    assert result.stdout == f"aido {__version__}\n"
    assert __version__ == "0.1.0"
    assert result.stderr == ""


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(aido: Aido, flag: str) -> None:
    result = aido(flag)
    assert result.code == 0
    assert result.stdout.startswith("Usage: aido ")
    for command in ("sandbox", "run", "logs"):
        assert command in result.stdout
    assert result.stderr == ""


def test_subcommand_help(aido: Aido) -> None:
    result = aido("sandbox", "up", "-h")
    assert result.code == 0
    assert result.stdout.startswith("Usage: aido sandbox up ")
    for option in ("--file", "--name", "--runtime", "--ttl", "--no-auto-cleanup", "--json"):
        assert option in result.stdout


def test_python_dash_m_help(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aido", "--help"], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: aido ")
    assert not (project / ".aido").exists()


# -- invalid sandbox.yaml -------------------------------------------------------------------------


def test_up_with_bad_spec_exits_2_and_creates_nothing(aido: Aido, project: Path) -> None:
    (project / "sandbox.yaml").write_text(BAD_MEMORY)
    result = aido("sandbox", "up")
    assert result.code == 2
    assert result.stdout == ""  # no sandbox id for a script to pick up
    assert result.stderr.splitlines()[0] == f"error: {MEMORY_PROBLEM}"
    _nothing_created(project)


def test_up_reports_every_problem_one_per_line(aido: Aido, project: Path) -> None:
    (project / "sandbox.yaml").write_text(
        "name: demo\nruntme: python:3.11\nttl: 15m\n"
        "permissions:\n  network: 'yes'\nresources:\n  memory: lots\n"
    )
    result = aido("sandbox", "up")
    assert result.code == 2
    assert result.stderr.splitlines()[:4] == [
        "error: 3 problems:",
        "sandbox.yaml:2: runtme: unknown key (allowed: name, runtime, ttl, inputs, outputs, permissions, "
        "env, resources, isolation, warm); did you mean 'runtime'?",
        "sandbox.yaml:5: permissions.network: expected true, false or "
        "an allowlist like {allow: [pypi.org]}, got 'yes'",
        MEMORY_PROBLEM,
    ]
    _nothing_created(project)


def test_up_with_bad_spec_json_envelope(aido: Aido, project: Path) -> None:
    (project / "sandbox.yaml").write_text(BAD_MEMORY)
    result = aido("sandbox", "up", "--json")
    assert result.code == 2
    assert result.stderr == ""  # stdout carries the one document; nothing else anywhere
    document = result.json
    assert list(document) == ["schema_version", "command", "status", "exit_code", "error"]
    assert list(document["error"]) == ["code", "message", "hint", "problems"]
    assert document["schema_version"] == 1
    assert document["command"] == "sandbox up"
    assert document["status"] == "error"
    assert document["exit_code"] == 2
    assert document["error"]["code"] == "config_invalid"
    assert document["error"]["message"] == MEMORY_PROBLEM
    assert document["error"]["hint"] is None or isinstance(document["error"]["hint"], str)
    assert document["error"]["problems"] == [
        {
            "file": "sandbox.yaml",
            "line": 7,
            "key": "resources.memory",
            "message": "expected a size like 512M or 1G, got 'lots'",
        }
    ]
    _nothing_created(project)


def test_json_flag_before_the_command(aido: Aido, project: Path) -> None:
    (project / "sandbox.yaml").write_text("ttl: soon\nresources:\n  cpu: .nan\n")
    result = aido("--json", "sandbox", "up")
    assert result.code == 2
    lines = [
        "sandbox.yaml:1: ttl: expected a duration like 90s, 15m or 2h, got 'soon'",
        "sandbox.yaml:3: resources.cpu: expected a number of CPUs like 1 or 0.5 (more than 0, at most 256), "
        "got nan",
    ]
    assert _as_lines(result.json["error"]["problems"]) == lines
    assert result.json["error"]["message"] == "2 problems:\n" + "\n".join(lines)
    _nothing_created(project)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            'name: !!python/object/apply:os.system ["id"]\n',
            "sandbox.yaml:1: invalid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object/apply:os.system'",
        ),
        ("- just\n- a list\n", "sandbox.yaml:1: (top level): expected a mapping of keys, got list"),
        ("name: [unclosed\n", "sandbox.yaml:2: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ],
)
def test_up_with_unsafe_or_malformed_yaml(aido: Aido, project: Path, text: str, problem: str) -> None:
    (project / "sandbox.yaml").write_text(text)
    result = aido("sandbox", "up", "--json")
    assert result.code == 2
    assert _as_lines(result.json["error"]["problems"]) == [problem]
    _nothing_created(project)


def test_up_with_aliases_is_refused(aido: Aido, project: Path) -> None:
    (project / "sandbox.yaml").write_text("outputs: &o [a]\ninputs: *o\n")
    result = aido("sandbox", "up")
    assert result.code == 2
    assert re.search(r"sandbox.yaml:2: YAML aliases \(\*o\) are not supported", result.stderr)
    _nothing_created(project)


def test_up_with_deeply_nested_yaml_is_a_config_error(aido: Aido, project: Path, tmp_path: Path) -> None:
    # Must be a usage error (2), not an internal error (70) from a RecursionError.
    (project / "sandbox.yaml").write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    result = aido("sandbox", "up", env={"TMPDIR": str(tmp_path)})  # any crash log lands in tmp_path
    assert result.code == 2, result.stderr
    _nothing_created(project)


def test_up_bad_flag_value_names_the_flag(aido: Aido, project: Path) -> None:
    result = aido("sandbox", "up", "--ttl", "bogus")
    assert result.code == 2
    assert (
        result.stderr.splitlines()[0] == "error: --ttl: expected a duration like 90s, 15m or 2h, got 'bogus'"
    )
    assert not (project / ".aido").exists()


def test_up_bad_runtime_flag_json(aido: Aido, project: Path) -> None:
    result = aido("sandbox", "up", "--runtime", "docker://--privileged", "--json")
    assert result.code == 2
    assert _as_lines(result.json["error"]["problems"]) == [
        "--runtime: invalid image reference '--privileged': expected something like 'python:3.12-slim'"
    ]
    assert not (project / ".aido").exists()


def test_up_with_missing_spec_file(aido: Aido, project: Path) -> None:
    result = aido("sandbox", "up", "-f", "nope.yaml")
    assert result.code == 2
    assert result.stderr.splitlines() == [
        "error: nope.yaml: no such file",
        "hint: pass an existing file with -f",
    ]
    assert not (project / ".aido").exists()


# -- no workspace, bad ids, bad options ----------------------------------------------------------


def test_run_without_workspace_exits_3(aido: Aido, project: Path) -> None:
    (project / "x.py").write_text("print('hi')\n")
    result = aido("run", "x.py")
    assert result.code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: no aido workspace here or in any parent directory",
        "hint: create one with a sandbox: `aido sandbox up`",
    ]
    assert not (project / ".aido").exists()


def test_run_without_workspace_json(aido: Aido, project: Path) -> None:
    result = aido("run", "x.py", "--json")
    assert result.code == 3
    assert result.json == {
        "schema_version": 1,
        "command": "run",
        "status": "error",
        "exit_code": 3,
        "error": {
            "code": "workspace",
            "message": "no aido workspace here or in any parent directory",
            "hint": "create one with a sandbox: `aido sandbox up`",
        },
    }


def test_logs_without_workspace_exits_3(aido: Aido, project: Path) -> None:
    result = aido("logs")
    assert result.code == 3
    assert result.stderr.splitlines()[0] == "error: no aido workspace here or in any parent directory"
    assert not (project / ".aido").exists()


@pytest.mark.parametrize("bad", ["../../etc", "ABCDEFABCDEF", "abc"])
def test_destroy_bad_id_in_a_workspace_exits_2(aido: Aido, project: Path, bad: str) -> None:
    (project / ".aido" / "sandboxes").mkdir(parents=True)
    result = aido("sandbox", "destroy", bad)
    assert result.code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: invalid sandbox id {bad!r}: expected 12 lowercase letters or digits"
    assert lines[1:] == ["hint: list sandboxes with `aido sandbox list`"]
    assert sorted(p.name for p in (project / ".aido").rglob("*")) == ["sandboxes"]


def test_destroy_bad_id_json(aido: Aido, project: Path) -> None:
    (project / ".aido" / "sandboxes").mkdir(parents=True)
    result = aido("sandbox", "destroy", "../../etc", "--json")
    assert result.code == 2
    assert result.json["command"] == "sandbox destroy"
    assert result.json["error"]["code"] == "usage"
    assert "\n" not in result.json["error"]["message"]


def test_destroy_bad_id_without_workspace_exits_2(aido: Aido, project: Path) -> None:
    # A malformed id is a usage error (exit 2) whatever the state of the directory.
    result = aido("sandbox", "destroy", "../../etc")
    assert result.code == 2, result.stderr
    assert result.stderr.splitlines()[0].startswith("error: invalid sandbox id '../../etc'")


@pytest.mark.parametrize(
    "args",
    [("--bogus",), ("sandbox", "up", "--bogus"), ("run",), ("sandbox", "nope"), ("frobnicate",)],
)
def test_usage_errors_exit_2(aido: Aido, project: Path, args: tuple[str, ...]) -> None:
    result = aido(*args)
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "hint: see `aido" in result.stderr
    assert not (project / ".aido").exists()


def test_unknown_option_json_envelope(aido: Aido) -> None:
    result = aido("sandbox", "up", "--bogus", "--json")
    assert result.code == 2
    document = json.loads(result.stdout)
    assert list(document) == ["schema_version", "command", "status", "exit_code", "error"]
    assert document["status"] == "error"
    assert document["exit_code"] == 2
    assert list(document["error"]) == ["code", "message", "hint"]
    assert document["error"]["code"] == "usage"
    assert document["error"]["message"].startswith("No such option")
    assert "--bogus" in document["error"]["message"]
    assert document["error"]["hint"] == "see --help"


def test_destroy_ids_and_all_together(aido: Aido, project: Path) -> None:
    (project / ".aido" / "sandboxes").mkdir(parents=True)
    result = aido("sandbox", "destroy", "abcdefabcdef", "--all")
    assert result.code == 2
    assert "give sandbox IDs or --all, not both" in result.stderr


def test_up_with_inputs_matching_nothing_creates_nothing(aido: Aido, project: Path) -> None:
    # Checked before the workspace exists: no half-made sandbox or .aido folder remains.
    (project / "sandbox.yaml").write_text("inputs:\n  - data/*.csv\n")
    result = aido("sandbox", "up")
    assert result.code == 2
    assert result.stderr.startswith("error: sandbox.yaml:2: inputs[0]: 'data/*.csv' matched no files under ")
    assert not (project / ".aido").exists()


def test_up_with_inputs_escaping_the_project_creates_nothing(aido: Aido, project: Path) -> None:
    (project / "sandbox.yaml").write_text("inputs:\n  - ../secret/*\n")
    result = aido("sandbox", "up")
    assert result.code == 2
    assert "sandbox.yaml:2: inputs[0]: expected a file pattern inside " in result.stderr
    assert "got '../secret/*'" in result.stderr
    assert not (project / ".aido").exists()


@pytest.mark.parametrize("args", [(), ("sandbox",)])
def test_a_bare_command_prints_its_help_and_succeeds(aido: Aido, args: tuple[str, ...]) -> None:
    result = aido(*args)
    assert result.code == 0
    assert result.stdout.startswith(f"Usage: aido {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND")
    assert "Commands:" in result.stdout
    assert result.stderr == ""
