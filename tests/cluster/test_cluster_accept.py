"""The driver never trusts what a node sends back. A genuine node result is made by the
node's real code (``node.execute``: the rebuilt sandbox, the real pipeline, the real
engine, the node's seal), in this process, for the run id the driver took; then it is
tampered with the ways a hostile or broken node could, and ``accept`` must keep each one
aside and merge nothing. (A real cluster is not needed to make a node's result; the
cluster tests send real ones.)"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aido.cluster import accept, node
from aido.cluster.dispatch import Cluster, Dispatcher, pack_inputs
from aido.cluster.driver import _spec
from aido.cluster.spec import DONE, NodeResult
from aido.evidence.keys import trusted_keys
from aido.manager import SandboxManager
from aido.run.close import abandon_run
from aido.run.plan import plan_run
from aido.run.prepare import begin
from tests.helpers.cli import Aido

pytestmark = pytest.mark.docker

NODE = {"id": "f" * 56, "hostname": "node-under-test", "engine_version": "test"}
TASK = "import os\nopen('/outputs/r.txt', 'w').write(os.environ['AIDO_RUN_ID'])\nprint('hi')\n"


def _run(
    project: Path, sandbox: str, monkeypatch: pytest.MonkeyPatch, change: Callable[[Any, str], Any]
) -> Any:
    """Take a run id as a driver does, get a real node result for it, pass it through
    ``change``, then accept it (or close the run as the driver does when accept refuses)."""
    monkeypatch.setattr(node, "identity", lambda: dict(NODE))
    (project / "t.py").write_text(TASK)
    manager = SandboxManager()
    plan = plan_run(manager, sandbox, Path("t.py"), [], remote=True)
    start = begin(manager, plan)
    try:
        spec = _spec(manager, plan, start.run_id, Dispatcher(Cluster("test"), 0), None)
        items = list(node.execute(spec, pack_inputs(plan.paths.inputs)))
        kind, result = items[-1]
        assert kind == DONE and isinstance(result, NodeResult), items[-1]
        (start.run_dir / "task").mkdir()
        (start.run_dir / "task" / "t.py").write_text(TASK)
        return accept.accept(manager, plan, start, change(result, start.run_id), NODE, dict(trusted_keys()))
    except BaseException as exc:
        abandon_run(manager.store, plan, start.run_id, exc)
        raise
    finally:
        import os

        os.close(start.lock_fd)


def _edit_member(bundle: bytes, name: str, edit: Callable[[bytes], bytes]) -> bytes:
    """The bundle with one member's bytes changed (sizes fixed up: a well-formed tar)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(bundle)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            data = src.extractfile(member).read() if member.isreg() else b""  # type: ignore[union-attr]
            if member.name == name:
                data = edit(data)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out.getvalue()


def _assert_kept_aside(project: Path, sandbox: str, rid: str) -> None:
    kept = project / ".aido" / "rejected" / f"{sandbox}-{rid}"
    assert (kept / "node-evidence.tar").is_file()
    assert json.loads((kept / "why.json").read_text())["problems"]
    run_dir = project / ".aido" / "sandboxes" / sandbox / "runs" / rid
    assert not (run_dir / "node-evidence.tar").exists(), "never merged"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "error"
    assert not (project / ".aido" / "sandboxes" / sandbox / "outputs" / rid).exists()


def test_a_genuine_node_result_is_stored_as_an_ordinary_run(
    aido: Aido, sandbox: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(project, sandbox, monkeypatch, lambda r, rid: r)
    assert result.status == "success" and result.summary["node"] == NODE
    assert (
        project / ".aido" / "sandboxes" / sandbox / "outputs" / "run-001" / "r.txt"
    ).read_text() == "run-001"
    assert aido("verify", "--strict").code == 0


def _flip_stdout(result: NodeResult, rid: str) -> NodeResult:
    return replace(
        result, bundle=_edit_member(result.bundle, f"runs/{rid}/stdout.log", lambda b: b"forged\n")
    )


def _forge_summary(result: NodeResult, rid: str) -> NodeResult:
    def success(data: bytes) -> bytes:
        summary = json.loads(data)
        summary["exit_code"] = 0 if summary["exit_code"] else 1
        return json.dumps(summary).encode()

    return replace(result, bundle=_edit_member(result.bundle, f"runs/{rid}/summary.json", success))


def _other_output(result: NodeResult, rid: str) -> NodeResult:
    return replace(result, outputs=[(name, b"not what was sealed") for name, _ in result.outputs])


def _extra_output(result: NodeResult, rid: str) -> NodeResult:
    planted = (f"outputs/{rid}/planted.sh", b"#!/bin/sh\n")
    return replace(result, outputs=[*result.outputs, planted])


def _escaping_output(result: NodeResult, rid: str) -> NodeResult:
    return replace(result, outputs=[("outputs/../../../../tmp/escape", b"x")])


def _truncated(result: NodeResult, rid: str) -> NodeResult:
    return replace(result, bundle=result.bundle[: len(result.bundle) // 2])


@pytest.mark.parametrize(
    "change",
    [_flip_stdout, _forge_summary, _other_output, _extra_output, _escaping_output, _truncated],
    ids=["log-edited", "summary-forged", "output-changed", "output-planted", "output-escaping", "truncated"],
)
def test_a_tampered_node_result_is_kept_aside_never_merged(
    aido: Aido,
    sandbox: str,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[NodeResult, str], NodeResult],
) -> None:
    with pytest.raises(accept.EvidenceRejected) as caught:
        _run(project, sandbox, monkeypatch, change)
    assert "failed verification" in caught.value.message
    _assert_kept_aside(project, sandbox, "run-001")
    assert not Path("/tmp/escape").exists()
    # The run closed as an error is sealed by the driver: the sandbox still verifies.
    assert aido("verify", "--strict").code == 0


def test_another_runs_record_is_refused(
    aido: Aido, sandbox: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first: dict[str, NodeResult] = {}

    def keep(result: NodeResult, rid: str) -> NodeResult:
        first["result"] = result
        return result

    _run(project, sandbox, monkeypatch, keep)  # run-001, genuine, stored
    with pytest.raises(accept.EvidenceRejected, match="not the run that was sent"):
        _run(project, sandbox, monkeypatch, lambda r, rid: first["result"])  # replayed for run-002
    _assert_kept_aside(project, sandbox, "run-002")


def test_a_record_signed_by_an_untrusted_key_is_refused(
    sandbox: str, project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "node-config"))  # the node's own key

    def untrusted(result: NodeResult, rid: str) -> NodeResult:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "driver-config"))  # the driver's, another
        return result

    with pytest.raises(accept.EvidenceRejected, match="does not trust"):
        _run(project, sandbox, monkeypatch, untrusted)
    _assert_kept_aside(project, sandbox, "run-001")
