"""The run pipeline through the public facade, ``SandboxManager(workspace, backend=...)``,
with a scripted backend instead of the engine: each way a run can end, and what it
leaves on disk. No Docker (DOCKER_HOST points at a socket that does not exist), so the
whole file runs in well under a second.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aido import RunResult, SandboxManager, Workspace
from aido.errors import ImageUnavailable, RuntimeUnavailable
from aido.exit_codes import ExitCode
from tests.helpers.fake_backend import FakeBackend, Script, Step
from tests.helpers.files import load, write
from tests.helpers.sandbox import events, indexed_runs

NO_ENGINE = "unix:///nonexistent/aido-fast-tests.sock"


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything that reached for the real engine would fail here: the engine's address is
    a socket that does not exist, and asking the registry for a backend is an error."""
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)

    def no_backend(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fast tests must only use the FakeBackend they pass in")

    monkeypatch.setattr("aido.backends.registry.get_backend", no_backend)


class Setup:
    def __init__(self, project: Path, script: Script, spec: str | None = None) -> None:
        if spec is not None:
            write(project / "sandbox.yaml", spec)
        self.project = project
        self.backend = FakeBackend(script)
        self.manager = SandboxManager(Workspace.find_or_create(project), backend=self.backend)
        spec_file = project / "sandbox.yaml" if spec is not None else None
        self.sandbox_id = self.manager.create(spec_file=spec_file, start=project).id
        self.task = write(project / "task.py", "print('hello')\n")

    def run(self, *args: str, **kwargs: Any) -> RunResult:
        return self.manager.run(self.task, list(args), sandbox_id=self.sandbox_id, **kwargs)

    def summary(self, result: RunResult) -> dict[str, Any]:
        data = load(result.evidence_dir / "summary.json")
        assert isinstance(data, dict)
        return data

    def recorded_runs(self) -> list[dict[str, Any]]:
        runs = indexed_runs(self.manager.workspace.sandbox(self.sandbox_id).root)
        assert isinstance(runs, list)
        return runs


def setup(project: Path, step: Step | None = None, spec: str | None = None, **script: Any) -> Setup:
    return Setup(project, Script(default=step or Step(), **script), spec)


def assert_agrees(result: RunResult, summary: dict[str, Any], status: str, exit_code: int) -> None:
    """Status, flags and exit code say the same thing in the result, summary.json and the
    sandbox's record of the run."""
    assert result.status == summary["status"] == status
    assert result.process_exit_code == summary["exit_code_of_run"] == exit_code
    assert result.exit_code == summary["exit_code"]
    assert result.timed_out == summary["timed_out"]
    assert result.oom_killed == summary["oom_killed"]
    assert result.stop_reason == summary["stop_reason"]
    assert result.error == summary["error"]
    assert result.outcome == summary["outcome"]
    assert result.duration_ms == summary["duration_ms"]


def test_success_writes_the_evidence(project: Path) -> None:
    s = setup(project, Step(stdout=b"hello\n", stderr=b"note\n", files={"/outputs/report.txt": b"done\n"}))
    result = s.run("--flag", "x")
    summary = s.summary(result)
    assert_agrees(result, summary, "success", 0)
    assert result.exit_code == 0 and result.run_id == "run-001" and result.task == "task.py"
    assert (result.evidence_dir / "stdout.log").read_bytes() == b"hello\n"
    assert (result.evidence_dir / "stderr.log").read_bytes() == b"note\n"
    assert summary["output"]["stdout"]["bytes_total"] == 6
    assert summary["sandbox_id"] == s.sandbox_id and summary["run_id"] == "run-001"
    assert summary["args"] == ["--flag", "x"]
    assert summary["command"][-2:] == ["--flag", "x"]
    assert summary["security"]["applied"]["runtime"] == "runc"
    assert summary["security"]["requested"]["network"] is False
    assert (result.outputs_dir / "report.txt").read_bytes() == b"done\n"
    assert any(c["path"].endswith("report.txt") for c in summary["changes"]), summary["changes"]
    # What the backend was asked for: the task, its args, the sandbox's trees as mounts.
    (request,) = s.backend.requests
    assert request.argv[-2:] == ["--flag", "x"]
    targets = {m.target: m.read_only for m in request.mounts}
    assert targets["/work"] is False and targets["/outputs"] is False and targets["/inputs"] is True
    assert request.user != "0:0" and not request.user.startswith("0:")
    assert request.labels.get("aido.sandbox") == s.sandbox_id
    # The sandbox's record: one run, closed, with the same status.
    (ref,) = s.recorded_runs()
    assert ref["run_id"] == "run-001" and ref["status"] == "success" and ref["exit_code"] == 0
    kinds = [e["event"] for e in events(s.manager.workspace.sandbox(s.sandbox_id).events)]
    assert "run_started" in kinds and "run_completed" in kinds, kinds


def test_a_failing_exit_code_is_the_tasks_own(project: Path) -> None:
    s = setup(project, Step(exit_code=3, stderr=b"boom\n"))
    result = s.run()
    summary = s.summary(result)
    assert_agrees(result, summary, "failed", 3)
    assert result.exit_code == 3
    assert s.recorded_runs()[0]["status"] == "failed"


def test_a_timeout(project: Path) -> None:
    s = setup(project, Step(timed_out=True, stdout=b"partial"))
    result = s.run(timeout="2s")
    summary = s.summary(result)
    assert_agrees(result, summary, "timed_out", ExitCode.TIMED_OUT)
    assert result.timed_out and result.exit_code is None and result.stop_reason == "timeout"
    assert s.backend.requests[0].timeout_seconds == 2
    assert [b["kind"] for b in summary["limits_exceeded"]] == ["timeout"]
    assert (result.evidence_dir / "stdout.log").read_bytes() == b"partial"


def test_an_oom_kill(project: Path) -> None:
    s = setup(project, Step(exit_code=137, oom_killed=True))
    result = s.run()
    summary = s.summary(result)
    assert_agrees(result, summary, "failed", ExitCode.KILLED)
    assert result.oom_killed
    assert [b["kind"] for b in summary["limits_exceeded"]] == ["memory"]
    assert "out of memory" in (result.message or "")


def test_the_pids_limit_reached_is_recorded(project: Path) -> None:
    s = setup(project, Step(exit_code=1, pids_limit_hit=True))
    result = s.run()
    summary = s.summary(result)
    assert_agrees(result, summary, "failed", 1)
    assert result.pids_limit_reached is True and summary["pids_limit_reached"] is True
    assert "pids" in [b["kind"] for b in summary["limits_exceeded"]]


def test_an_interrupted_run(project: Path) -> None:
    s = setup(project, Step(interrupted=True, stdout=b"so far\n"))
    result = s.run()
    summary = s.summary(result)
    assert_agrees(result, summary, "interrupted", ExitCode.INTERRUPTED)
    assert summary["interrupted"] is True and result.stop_reason == "interrupted"
    assert (result.evidence_dir / "stdout.log").read_bytes() == b"so far\n"


def test_an_engine_error_in_the_outcome_is_an_error(project: Path) -> None:
    s = setup(project, Step(exit_code=1, error="lost the container while the task ran: gone"))
    result = s.run()
    summary = s.summary(result)
    assert_agrees(result, summary, "error", ExitCode.RUNTIME)
    assert result.exit_code is None and "lost the container" in (result.error or "")


def test_an_engine_failure_raised_mid_run_closes_the_run(project: Path) -> None:
    s = setup(
        project, Step(stdout=b"before\n", raises=RuntimeUnavailable("engine went away", hint="restart"))
    )
    with pytest.raises(RuntimeUnavailable):
        s.run()
    (ref,) = s.recorded_runs()
    assert ref["status"] == "error"  # never left "running"
    run_dir = s.manager.workspace.sandbox(s.sandbox_id).runs / "run-001"
    summary = load(run_dir / "summary.json")
    assert summary["status"] == "error" and summary["exit_code"] is None
    assert "engine went away" in json.dumps(summary)
    assert (run_dir / "stdout.log").read_bytes() == b"before\n"


def test_the_disk_guard_stops_a_task_that_fills_its_trees(project: Path) -> None:
    big = b"x" * ((1 << 20) + 1)
    s = setup(
        project, Step(files={"/outputs/big.bin": big}, wait_for_guard=5), spec="resources:\n  disk: 1M\n"
    )
    started = time.monotonic()
    result = s.run()
    assert time.monotonic() - started < 5, "the guard never stopped it"
    summary = s.summary(result)
    assert_agrees(result, summary, "disk_limit", ExitCode.KILLED)
    assert result.stop_reason == "disk_limit" and summary["disk_limit_exceeded"] is True
    assert summary["disk"]["exceeded"]


def test_a_cancelled_run_is_interrupted(project: Path) -> None:
    cancel = threading.Event()
    s = setup(project, Step(during=lambda request: cancel.set(), wait_for_guard=5))
    result = s.run(cancel=cancel)
    summary = s.summary(result)
    assert_agrees(result, summary, "interrupted", ExitCode.INTERRUPTED)
    assert result.stop_reason == "cancelled"


def test_a_guard_that_never_fires_lets_the_task_finish(project: Path) -> None:
    s = setup(project, Step(exit_code=0, wait_for_guard=0.05))
    result = s.run()
    assert_agrees(result, s.summary(result), "success", 0)


def test_a_sandbox_destroyed_mid_run(project: Path) -> None:
    destroyer: list[threading.Thread] = []

    def destroy(request: object) -> None:
        other = SandboxManager(Workspace.find_or_create(project), backend=FakeBackend())
        thread = threading.Thread(target=other.destroy, args=([s.sandbox_id],))
        thread.start()
        destroyer.append(thread)

    s = setup(project, Step(during=destroy, wait_for_guard=5))
    result = s.run()
    destroyer[0].join(timeout=30)
    assert result.status == "interrupted" and result.stop_reason == "destroyed"
    assert result.process_exit_code == ExitCode.SANDBOX_STATE
    archived = [r for r in s.manager.list_runs(include_archived=True) if r.sandbox_id == s.sandbox_id]
    assert [(r.run_id, r.status, r.archived) for r in archived] == [("run-001", "interrupted", True)]


def test_a_batch_keeps_the_order_of_its_tasks(project: Path) -> None:
    steps = {f"t{i}.py": Step(exit_code=i, stdout=f"task {i}\n".encode()) for i in range(4)}
    s = setup(project, by_task=steps)
    tasks = [write(project / name, "pass\n") for name in ["t2.py", "t0.py", "t3.py", "t1.py"]]
    batch = s.manager.run_batch(tasks, ["same"], parallel=3, sandbox_id=s.sandbox_id)
    assert [item.task.name for item in batch.items] == ["t2.py", "t0.py", "t3.py", "t1.py"]
    results = [item.result for item in batch.items]
    assert all(r is not None for r in results)
    assert [r.exit_code for r in results if r] == [2, 0, 3, 1]
    # Run ids are numbered in the order the tasks were given, whatever order they ran in.
    assert [r.run_id for r in results if r] == ["run-001", "run-002", "run-003", "run-004"]
    for r in results:
        assert r is not None
        assert (r.evidence_dir / "stdout.log").read_text() == f"task {r.exit_code}\n"
    assert len(s.backend.requests) == 4  # the batch threads' backends share the script


def test_a_missing_image_leaves_no_run(project: Path) -> None:
    s = setup(project)
    s.backend.images = set()
    with pytest.raises(ImageUnavailable, match="not available"):
        s.run()
    assert s.recorded_runs() == []
    assert s.backend.requests == []


def test_an_isolation_the_backend_lacks_refuses_the_run_before_it_exists(project: Path) -> None:
    s = setup(project, spec="isolation: gvisor\n")
    with pytest.raises(RuntimeUnavailable, match="gvisor"):
        s.run()
    assert s.recorded_runs() == []
    assert s.backend.requests == []


def test_the_backend_is_asked_for_the_isolation_it_offers(project: Path) -> None:
    s = Setup(project, Script(), "isolation: gvisor\n")
    s.backend.isolation = ("default", "gvisor")
    result = s.run()
    assert result.status == "success"
    assert s.backend.requests[0].isolation == "gvisor"
    assert s.summary(result)["security"]["requested"]["isolation"] == "gvisor"
