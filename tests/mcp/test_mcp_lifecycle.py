"""What happens to an agent's sandboxes when its client goes: destroyed (their evidence
archived), unless the operator keeps them; and an agent never sees the operator's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.mcp.client import mcp_session

pytestmark = pytest.mark.docker


def test_kept_sandboxes_outlive_the_server_and_others_are_not_seen(
    engine: None, aido: Aido, project: Path
) -> None:
    mine = aido("sandbox", "up", "--json").json["sandbox_id"]  # the operator's, active
    with mcp_session(project, "--keep-sandboxes") as s:
        assert s.ok("list_sandboxes")["sandboxes"] == []  # the operator's sandbox is not the agent's
        assert "no sandbox" in s.error("run_code", {"sandbox_id": mine, "code": "print(1)"})
        assert "no sandbox" in s.error("destroy_sandbox", {"sandbox_id": mine})
        kept = s.ok("create_sandbox", {})["sandbox_id"]
    assert (project / ".aido" / "active").read_text().strip() == mine  # still the operator's active one
    assert sorted(p.name for p in (project / ".aido" / "sandboxes").iterdir()) == sorted([mine, kept])
    assert aido("sandbox", "destroy", "--all").code == 0


def test_runs_beyond_the_concurrency_limit_wait_their_turn(engine: None, project: Path) -> None:
    code = "import time\nprint(time.time())\ntime.sleep(1)\nprint(time.time())"
    with mcp_session(project, "--max-concurrent-runs", "1") as s:
        sid = s.ok("create_sandbox", {})["sandbox_id"]
        calls = [
            s.portal.start_task_soon(
                lambda: s.session.call_tool("run_code", {"sandbox_id": sid, "code": code})
            )
            for _ in range(2)
        ]
        spans = sorted(
            tuple(float(x) for x in call.result(timeout=60).structured_content["stdout"]["text"].split())
            for call in calls
        )
    assert spans[1][0] >= spans[0][1]  # the second started after the first ended


def test_images_and_isolation_are_the_operators_choice(engine: None, project: Path) -> None:
    # By default an agent gets aido's runtimes only: naming an image could make the engine
    # pull anything from a registry and run it. Nothing is created by a refusal.
    with mcp_session(project) as s:
        refused = s.error("create_sandbox", {"runtime": "docker://python:3.11-slim"})
        assert "image python:3.11-slim is not allowed by the operator" in refused
        assert "--allow-image" in refused
        assert not (project / ".aido" / "sandboxes").is_dir() or not any(
            (project / ".aido" / "sandboxes").iterdir()
        )
    with mcp_session(project, "--allow-image", "python:3.11-*", "--require-gvisor") as s:
        assert "is not allowed" in s.error("create_sandbox", {"runtime": "docker://node:18-alpine"})
        image = s.ok("create_sandbox", {"runtime": "docker://python:3.11-slim", "isolation": "default"})
        assert image["runtime"] == "docker://python:3.11-slim"
        sid = s.ok("create_sandbox", {"isolation": "default"})["sandbox_id"]
        ran = s.ok("run_code", {"sandbox_id": sid, "code": "print(1)"})
        assert ran["status"] == "success"
        summary = s.ok("get_evidence", {"sandbox_id": sid, "run_id": ran["run_id"]})["summary"]
        assert summary["security"]["applied"]["runtime"] == "runsc", "--require-gvisor wins over the ask"
