"""An agent over MCP gives its sandbox, or one run, an egress allowlist: the real MCP SDK
client drives `aido mcp`, whose operator allowed some hosts, and the runs go through the
real proxy to the test's "internet" (tests/helpers/internet.py); nothing leaves the machine.

The test origins live at Docker's private addresses, and an agent cannot opt into IP ranges,
so even an allowed name ends at the proxy's private-address rule (deny:blocked_dst): that it
got that far, and not deny:not_allowlisted, is what shows the name was on the run's list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.internet import Internet, internet
from tests.helpers.sandbox import events
from tests.mcp.client import mcp_session  # skips this module without the MCP SDK

pytestmark = pytest.mark.usefixtures("engine")

PROBE = """
import json, urllib.error, urllib.request
def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=8) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except Exception as exc:
        return type(exc).__name__
print(json.dumps({h: fetch(f"http://{h}/") for h in ("allowed.test", "files.wild.test", "denied.test")}))
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Internet]:
    with internet(tmp_path_factory.mktemp("internet")) as made:
        yield made


def reasons(project: Path, sid: str, run_id: str) -> dict[str, str]:
    text = (project / ".aido" / "sandboxes" / sid / "runs" / run_id / "network.jsonl").read_text()
    return {entry["host"]: entry["reason"] for entry in map(json.loads, text.splitlines())}


def test_an_agent_allowlists_hosts_the_operator_allowed(project: Path, net: Internet) -> None:
    flags = ("--allow-host", "allowed.test", "--allow-host", "*.wild.test")
    with mcp_session(project, *flags, env=net.env) as s:
        # Refused before anything is created: a host the operator did not allow, an IP range.
        refused = s.error("create_sandbox", {"allowed_hosts": ["denied.test"]})
        assert "host denied.test is not allowed by the operator of this server" in refused
        assert "aido mcp --allow-host denied.test" in refused
        assert "not offered to agents" in s.error(
            "create_sandbox", {"allowed_hosts": [f"{net.allowed_ip}/32"]}
        )
        assert not (project / ".aido" / "sandboxes").exists() or not any(
            (project / ".aido" / "sandboxes").iterdir()
        )

        info = s.ok("create_sandbox", {"allowed_hosts": ["allowed.test"]})
        sid = info["sandbox_id"]
        assert (info["network"], info["allowed_hosts"]) == (False, ["allowed.test"])
        first = s.ok("run_code", {"sandbox_id": sid, "code": PROBE})
        assert first["status"] == "success", first
        assert (first["network"], first["requests_allowed"], first["requests_denied"]) == ("allowlist", 0, 3)
        assert json.loads(first["stdout"]["text"]) == {
            "allowed.test": 403,
            "files.wild.test": 403,
            "denied.test": 403,
        }
        assert reasons(project, sid, first["run_id"]) == {
            "allowed.test": "deny:blocked_dst",  # on the list; its address is private
            "files.wild.test": "deny:not_allowlisted",
            "denied.test": "deny:not_allowlisted",
        }

        # One run may add a host the operator covers (*.wild.test), recorded as a widening.
        second = s.ok("run_code", {"sandbox_id": sid, "code": PROBE, "allowed_hosts": ["files.wild.test"]})
        assert second["status"] == "success", second
        assert reasons(project, sid, second["run_id"])["files.wild.test"] == "deny:blocked_dst"
        summary: dict[str, Any] = s.ok("get_evidence", {"sandbox_id": sid, "run_id": second["run_id"]})[
            "summary"
        ]
        assert summary["network"]["allow"] == ["allowed.test", "files.wild.test"]
        assert summary["network"]["requests"] == {"allowed": 0, "denied": 3, "unparsed": 0}
        widened = [
            e
            for e in events(project / ".aido" / "sandboxes" / sid / "events.log")
            if e.get("event") == "permissions_widened"
        ]
        assert any("files.wild.test" in json.dumps(e) for e in widened), widened

        # ... but not one it does not, nor an IP address.
        runs_before = sorted(p.name for p in (project / ".aido" / "sandboxes" / sid / "runs").iterdir())
        assert "host denied.test is not allowed" in s.error(
            "run_code", {"sandbox_id": sid, "code": PROBE, "allowed_hosts": ["denied.test"]}
        )
        assert "not offered to agents" in s.error(
            "run_code", {"sandbox_id": sid, "code": PROBE, "allowed_hosts": [net.allowed_ip]}
        )
        assert (
            sorted(p.name for p in (project / ".aido" / "sandboxes" / sid / "runs").iterdir()) == runs_before
        )
    # Nothing reached an origin: every request ended at the proxy.
    assert net.hits("allowed") == [] and net.hits("denied") == []
