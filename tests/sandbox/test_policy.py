"""Pure policy logic of the manager: escape-hatch warnings and confirmation, how a run's
outcome becomes a status and an exit code, and how a batch combines them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aido.errors import NotConfirmed, SandboxNotFound
from aido.exit_codes import ExitCode
from aido.run.batch import BatchItem, BatchResult
from aido.run.request import Widening, widened_permissions
from aido.run.request import require_confirmation as _confirm
from aido.run.result import RunResult
from aido.run.verdict import Facts, decide


def outcome(**fields: object) -> Facts:
    base: dict[str, object] = {"exit_code": 0, "duration_ms": 1}
    base.update(fields)
    return Facts(**base)  # type: ignore[arg-type]


def result(status: str, exit_code: int | None = 0, stop_reason: str | None = None) -> RunResult:
    return RunResult(
        sandbox_id="s",
        run_id="run-001",
        task="t.py",
        status=status,
        exit_code=exit_code,
        duration_ms=1,
        timed_out=status == "timed_out",
        oom_killed=False,
        evidence_dir=Path("e"),
        outputs_dir=Path("o"),
        artifacts=(),
        summary={},
        stop_reason=stop_reason,
    )


def test_no_escape_hatch_means_no_warning() -> None:
    assert Widening().warnings() == []
    assert Widening().as_dict() == {
        "network": False,
        "host_filesystem": False,
        "dangerous_allow_mutations": False,
        "allow_hosts": [],
    }


def test_each_escape_hatch_is_named_in_its_warning() -> None:
    warnings = Widening(network=True, host_filesystem=True, mutations=True).warnings()
    assert [w.split(":")[0] for w in warnings] == [
        "--network",
        "--host-filesystem",
        "--dangerous-allow-mutations",
    ]
    assert "project directory" in warnings[2]  # mutations reach /project too


def test_allow_host_is_warned_and_recorded_with_its_hosts() -> None:
    widen = Widening(allow_hosts=("pypi.org", "*.pythonhosted.org"))
    assert widen.warnings() == [
        "--allow-host: the task can reach pypi.org, *.pythonhosted.org (through aido's egress proxy)"
    ]
    assert widen.as_dict()["allow_hosts"] == ["pypi.org", "*.pythonhosted.org"]
    assert Widening(network=True, allow_hosts=("a.org",)).warnings()[0].startswith("--network:")
    assert "project directory" not in Widening(mutations=True).warnings()[0]


def test_widened_spec_permissions_are_warned_about() -> None:
    assert widened_permissions({"permissions": {"network": False, "filesystem": "readonly"}}) == []
    found = widened_permissions({"permissions": {"network": True, "filesystem": "readwrite"}})
    assert len(found) == 2
    assert found[0].startswith("permissions.network: ") and found[1].startswith("permissions.filesystem: ")
    assert "modify the sandbox inputs" in found[1]


def test_nothing_to_confirm_needs_no_answer() -> None:
    _confirm([], None)  # no callback needed when nothing widens the sandbox


@pytest.mark.parametrize("confirm", [None, lambda warnings: False])
def test_widening_without_a_yes_is_refused_with_the_fix(confirm: object) -> None:
    with pytest.raises(NotConfirmed) as caught:
        _confirm(["--network: reach"], confirm)  # type: ignore[arg-type]
    assert "--network" in caught.value.message
    assert caught.value.hint is not None and "--yes" in caught.value.hint
    assert caught.value.exit_code == ExitCode.USAGE


def test_confirm_sees_every_warning() -> None:
    seen: list[list[str]] = []
    _confirm(["a", "b"], lambda warnings: seen.append(warnings) is None)
    assert seen == [["a", "b"]]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"exit_code": 0}, "success"),
        ({"exit_code": 3}, "failed"),
        ({"exit_code": None, "timed_out": True, "stop_reason": "timeout"}, "timed_out"),
        ({"exit_code": None, "interrupted": True, "stop_reason": "interrupted"}, "interrupted"),
        ({"exit_code": None, "stop_reason": "cancelled"}, "interrupted"),
        ({"exit_code": None, "stop_reason": "destroyed"}, "interrupted"),
        ({"exit_code": None, "stop_reason": "expired"}, "expired"),
        ({"exit_code": None, "stop_reason": "disk_limit"}, "disk_limit"),
        ({"exit_code": None, "stop_reason": "guard_failed: boom"}, "error"),
        ({"exit_code": None, "error": "lost the container"}, "error"),
    ],
)
def test_outcome_to_status(fields: dict[str, object], status: str) -> None:
    assert decide(outcome(**fields)).status == status


@pytest.mark.parametrize(
    ("run", "code"),
    [
        (result("success"), 0),
        (result("failed", 4), 4),
        (result("timed_out", None, "timeout"), ExitCode.TIMED_OUT),
        (result("expired", None, "expired"), ExitCode.SANDBOX_STATE),
        (result("interrupted", None, "destroyed"), ExitCode.SANDBOX_STATE),
        (result("disk_limit", None, "disk_limit"), ExitCode.KILLED),
        (result("disk_limit", 1), 1),  # stopped by EFBIG: the task's own code
        (result("interrupted", None, "interrupted"), ExitCode.INTERRUPTED),
        (result("error", None), ExitCode.RUNTIME),
    ],
)
def test_status_to_exit_code(run: RunResult, code: int) -> None:
    assert run.process_exit_code == code


def test_a_signal_sets_the_interrupted_exit_code() -> None:
    run = dataclasses.replace(result("interrupted", None, "interrupted"), signal_exit=143)
    assert run.process_exit_code == 143


def test_batch_succeeds_only_when_every_run_did() -> None:
    items = [BatchItem(0, Path("a.py"), result("success")), BatchItem(1, Path("b.py"), result("success"))]
    assert BatchResult(items, 2).status == "success"
    assert BatchResult(items, 2).process_exit_code == 0


def test_batch_exit_code_is_the_first_failure_in_task_order() -> None:
    items = [
        BatchItem(0, Path("a.py"), result("success")),
        BatchItem(1, Path("b.py"), result("failed", 4)),
        BatchItem(2, Path("c.py"), result("timed_out", None, "timeout")),
    ]
    batch = BatchResult(items, 3)
    assert batch.status == "failed"
    assert batch.process_exit_code == 4


def test_an_interrupted_batch_exits_as_an_interrupted_run_and_counts_by_status() -> None:
    items = [
        BatchItem(0, Path("a.py"), result("success")),
        BatchItem(1, Path("b.py"), result("interrupted", None, "interrupted")),
        BatchItem(2, Path("c.py"), result("success")),
    ]
    batch = BatchResult(items, 3, interrupted=True)
    assert batch.status == "interrupted"
    assert batch.process_exit_code == ExitCode.INTERRUPTED
    batch.signal_exit = 143
    assert batch.process_exit_code == 143
    assert batch.counts == {"success": 2, "interrupted": 1}


def test_a_batch_item_that_never_ran_reports_its_error() -> None:
    item = BatchItem(0, Path("a.py"), error=SandboxNotFound("gone"))
    assert item.status == "error"
    assert item.exit_code == ExitCode.SANDBOX_STATE
    assert BatchItem(1, Path("b.py")).status == "not_started"
    assert BatchResult([item], 1, interrupted=True).status == "interrupted"
