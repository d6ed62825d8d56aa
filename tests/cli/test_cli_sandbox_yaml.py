"""`aido sandbox up` with a sandbox.yaml, through the real CLI: duplicate keys refused,
`--json` problems as objects, the inputs it copied, the `aws` stub as a note (never a
question), and one shape for every widening warning and confirm prompt."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aido.run.request import Widening, unenforced_permissions, widened_permissions
from tests.helpers.cli import answer_on_terminal
from tests.helpers.files import write

Aido = Callable[..., Any]  # conftest's `aido` fixture


def _nothing_created(project: Path) -> None:
    assert not (project / ".aido").exists()


def _events(project: Path, sandbox_id: str) -> list[dict[str, Any]]:
    log = project / ".aido" / "sandboxes" / sandbox_id / "events.log"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


# -- duplicate keys and --json problems ----------------------------------------------------------


def test_up_refuses_a_duplicate_nested_key(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "name: demo\nresources:\n  memory: 1G\n  cpu: 1\n  memory: 64M\n")
    result = aido("sandbox", "up")
    assert result.code == 2
    assert result.stderr == "error: sandbox.yaml:5: resources.memory: duplicate key (first at line 3)\n"
    assert result.stdout == ""
    _nothing_created(project)


def test_up_refuses_a_duplicate_top_level_key_json(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "ttl: 1h\nname: demo\nttl: 2h\n")
    result = aido("sandbox", "up", "--json")
    assert result.code == 2
    assert result.json["error"]["code"] == "config_invalid"
    assert result.json["error"]["problems"] == [
        {"file": "sandbox.yaml", "line": 3, "key": "ttl", "message": "duplicate key (first at line 1)"}
    ]
    _nothing_created(project)


def test_json_problems_are_objects_in_line_order_with_flags_first(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "ttl: 15\nresources:\n  cpu: lots\n")
    result = aido("sandbox", "up", "--json", "--runtime", "ruby:3")
    assert result.code == 2
    assert result.json["error"]["problems"] == [
        {
            "file": None,
            "line": None,
            "key": "--runtime",
            "message": "unknown runtime 'ruby:3': expected python:VERSION, node:VERSION, sh or docker://IMAGE",
        },
        {
            "file": "sandbox.yaml",
            "line": 1,
            "key": "ttl",
            "message": "expected a duration like 90s, 15m or 2h, got 15",
        },
        {
            "file": "sandbox.yaml",
            "line": 3,
            "key": "resources.cpu",
            "message": "expected a number of CPUs like 1 or 0.5 (more than 0, at most 256), got 'lots'",
        },
    ]
    # The human form, one line per problem, is still the message.
    assert result.json["error"]["message"].splitlines()[1:] == [
        "--runtime: unknown runtime 'ruby:3': expected python:VERSION, node:VERSION, sh or docker://IMAGE",
        "sandbox.yaml:1: ttl: expected a duration like 90s, 15m or 2h, got 15",
        "sandbox.yaml:3: resources.cpu: expected a number of CPUs like 1 or 0.5 (more than 0, at most 256), "
        "got 'lots'",
    ]
    _nothing_created(project)


def test_an_inputs_problem_has_its_line_in_human_and_json_output(aido: Aido, project: Path) -> None:
    write(project / "data" / "a.csv", "x\n")
    write(project / "sandbox.yaml", "name: demo\ninputs:\n  - data/*.csv\n  - missing/*.json\n")
    human = aido("sandbox", "up")
    assert human.code == 2
    assert human.stderr.startswith(
        "error: sandbox.yaml:4: inputs[1]: 'missing/*.json' matched no files under "
    )
    result = aido("sandbox", "up", "--json")
    assert result.code == 2
    [problem] = result.json["error"]["problems"]
    assert (problem["file"], problem["line"], problem["key"]) == ("sandbox.yaml", 4, "inputs[1]")
    _nothing_created(project)


def test_a_hard_quota_this_machine_cannot_give_is_a_problem_at_its_line(
    aido: Aido, project: Path, tmp_path: Path
) -> None:
    write(project / "sandbox.yaml", "resources:\n  disk: 20M\n  disk_quota: hard\n")
    no_tools = tmp_path / "empty-bin"  # no mkfs.ext4, mount or umount on this PATH
    no_tools.mkdir()
    result = aido("sandbox", "up", "--json", env={"PATH": str(no_tools)})
    assert result.code == 2
    assert result.json["error"]["problems"] == [
        {
            "file": "sandbox.yaml",
            "line": 3,
            "key": "resources.disk_quota",
            "message": "hard needs mkfs.ext4, mount, umount on this machine",
        }
    ]
    _nothing_created(project)


# -- what `sandbox up` copied --------------------------------------------------------------------


def test_up_says_which_inputs_it_copied_and_keeps_folders(aido: Aido, project: Path) -> None:
    write(project / "data" / "a.csv", "1,2\n")  # 4 bytes
    write(project / "data" / "sub" / "b.csv", "3,4,5\n")  # 6 bytes
    write(project / "data" / "notes.txt", "not a csv\n")
    write(project / "sandbox.yaml", "inputs:\n  - data/**/*.csv\n")
    result = aido("sandbox", "up")
    assert result.code == 0, result.stderr
    sandbox_id = result.stdout.strip()
    assert "  inputs: 2 files, 10 bytes copied to /inputs (read-only)\n" in result.stderr
    inputs = project / ".aido" / "sandboxes" / sandbox_id / "inputs"
    # Folders are kept: data/sub/b.csv is /inputs/data/sub/b.csv.
    assert sorted(str(p.relative_to(inputs)) for p in inputs.rglob("*") if p.is_file()) == [
        "data/a.csv",
        "data/sub/b.csv",
    ]


def test_up_json_has_an_inputs_object(aido: Aido, project: Path) -> None:
    write(project / "data" / "big.bin", "x" * (3 << 20))
    write(project / "sandbox.yaml", "inputs:\n  - data\npermissions:\n  filesystem: none\n")
    result = aido("sandbox", "up", "--json")
    assert result.code == 0, result.stderr
    assert result.json["inputs"] == {"files": 1, "bytes": 3 << 20, "mounted_at": None, "writable": False}
    human = aido("sandbox", "up")
    assert "  inputs: 1 file, 3 MiB copied, not mounted (permissions.filesystem: none)\n" in human.stderr


def test_up_without_inputs_reports_none(aido: Aido, project: Path) -> None:
    result = aido("sandbox", "up", "--json")
    assert result.code == 0, result.stderr
    assert result.json["inputs"] == {"files": 0, "bytes": 0, "mounted_at": "/inputs", "writable": False}
    assert "inputs:" not in aido("sandbox", "up").stderr


# -- the aws stub: a note, not a question ------------------------------------------------------

AWS = "permissions:\n  aws:\n    role: readonly\n    services: [s3]\n"
AWS_NOTE = "permissions.aws: recorded only, not enforced: tasks get no AWS access or credentials from it"


def test_aws_stub_is_not_asked_about_but_noted_once_and_recorded(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", AWS)
    result = aido("sandbox", "up", input="")  # no terminal, no --yes: nothing to confirm
    assert result.code == 0, result.stderr
    assert f"note: {AWS_NOTE}\n" in result.stderr
    assert "warning" not in result.stderr
    sandbox_id = result.stdout.strip()
    events = _events(project, sandbox_id)
    assert [e["event"] for e in events] == ["sandbox_created"]
    assert events[0]["notes"] == [AWS_NOTE]

    as_json = aido("sandbox", "up", "--json", input="")
    assert as_json.code == 0
    assert as_json.json["notes"] == [AWS_NOTE]
    assert as_json.stderr == ""


@pytest.mark.docker
def test_aws_note_is_in_each_run_summary_not_in_its_warnings(engine: None, aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", AWS)
    sandbox_id = aido("sandbox", "up").stdout.strip()
    write(project / "hello.sh", "echo hi\n")
    try:
        result = aido("run", "hello.sh", input="")
        assert result.code == 0, result.stderr
        assert "aws" not in result.stderr  # said once, at `sandbox up`
        summary = json.loads(
            (project / ".aido" / "sandboxes" / sandbox_id / "runs" / "run-001" / "summary.json").read_text()
        )
        assert summary["notes"] == [AWS_NOTE]
        assert summary["warnings"] == []
        assert summary["permissions"]["aws"] == {"role": "readonly", "services": ["s3"]}
    finally:
        aido("sandbox", "destroy", sandbox_id)


# -- one shape for every widening warning -------------------------------------------------------

SHAPE = re.compile(r"(--[a-z-]+|permissions\.[a-z]+): (the|every) task can [a-z]")


def test_every_widening_warning_has_one_shape() -> None:
    warnings = Widening(network=True, host_filesystem=True, mutations=True).warnings()
    warnings += widened_permissions({"permissions": {"network": True, "filesystem": "readwrite"}})
    assert len(warnings) == 5
    for warning in warnings:
        assert SHAPE.match(warning), warning
    assert warnings[3:] == [
        "permissions.network: every task can reach the network, including your local network",
        "permissions.filesystem: every task can modify the sandbox inputs (/inputs)",
    ]


def test_aws_is_a_note_not_a_widening() -> None:
    config = {"permissions": {"aws": {"role": "readwrite", "services": []}}}
    assert widened_permissions(config) == []
    assert unenforced_permissions(config) == [AWS_NOTE]


def test_sandbox_up_and_run_ask_the_same_question(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "permissions:\n  filesystem: readwrite\n")
    code, shown = answer_on_terminal(project, "sandbox", "up", answer=b"n")
    assert code == 2, shown
    assert "warning: permissions.filesystem: every task can modify the sandbox inputs (/inputs)\n" in shown
    assert "aido: create the sandbox with the permissions above? [y/N]" in shown
    assert "refusing to widen the sandbox without confirmation" in shown
    _nothing_created(project)

    (project / "sandbox.yaml").unlink()
    assert aido("sandbox", "up").code == 0
    write(project / "task.sh", "echo hi\n")
    code, shown = answer_on_terminal(project, "run", "--host-filesystem", "task.sh", answer=b"n")
    assert code == 2, shown
    assert "warning: --host-filesystem: the task can read the project directory (/project)\n" in shown
    assert "aido: run the task with the permissions above? [y/N]" in shown
    assert "refusing to widen the sandbox without confirmation" in shown


@pytest.mark.docker
def test_run_repeats_the_sandbox_warnings_like_its_own(engine: None, aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "permissions:\n  filesystem: readwrite\n")
    sandbox_id = aido("sandbox", "up", "--yes").stdout.strip()
    write(project / "task.sh", "echo hi\n")
    try:
        result = aido("run", "task.sh", input="")
        assert result.code == 0, result.stderr
        # The same "warning: <option>: ..." line as an escape hatch's, not a log record.
        assert "\nwarning: permissions.filesystem: every task can modify the sandbox inputs (/inputs)\n" in (
            "\n" + result.stderr
        )
        assert "aido: warning" not in result.stderr
    finally:
        aido("sandbox", "destroy", sandbox_id)
