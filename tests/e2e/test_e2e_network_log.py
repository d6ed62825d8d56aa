"""``aido logs --network`` and ``aido show``'s network line: a run's network evidence read
back. The allowlisted run's evidence is written by the test into a real run's directory
(the proxy that writes it is tested with the backend): these tests are about the reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_e2e_show import field
from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.sandbox import run_dir, sandbox_up, summary

pytestmark = pytest.mark.docker

# The --json data is a contract: add keys, never rename or drop them.
DATA_KEYS = {"schema_version", "command", "status", "exit_code", "sandbox_id", "run", "network", "entries"}
DATA_KEYS |= {"missing", "error"}
HOSTILE = "evil\x1b[2J.test"


def entry(seq: int, host: str, allowed: bool, **more: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": f"2026-12-02T21:30:0{seq}.465Z",
        "client": "10.213.0.2",
        "method": "CONNECT" if allowed else "GET",
        "host": host,
        "port": 443 if allowed else 80,
        "decision": "allowed" if allowed else "denied",
        "reason": "allow:*.pythonhosted.org" if allowed else "deny:not_allowlisted",
        "result": "TCP_TUNNEL" if allowed else "TCP_DENIED",
        "status": 200 if allowed else 403,
        "bytes_sent": 772 if allowed else 133,
        "bytes_received": 2150 if allowed else 3395,
        "server": "198.18.0.10:443" if allowed else None,
        **more,
    }


ENTRIES = [
    entry(1, "files.pythonhosted.org", True),
    entry(2, HOSTILE, False),
    {"unparsed": "odd \x07 line"},
]


def allowlisted(project: Path, sandbox_id: str) -> None:
    """Make run-001's evidence that of an allowlisted run, as collect writes it."""
    where = run_dir(project, sandbox_id)
    (where / "network.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ENTRIES))
    (where / "egress-squid.conf").write_text("http_port 3128\n")
    recorded = summary(project, sandbox_id)
    recorded["network"] = {
        "mode": "allowlist",
        "allow": ["pypi.org", "*.pythonhosted.org"],
        "proxy": {"image": "aido/egress-squid:bookworm"},
        "config": "egress-squid.conf",
        "log": "network.jsonl",
        "requests": {"allowed": 1, "denied": 1, "unparsed": 1},
        "lost_lines": 2,
        "lost_ranges": [[3, 4]],
        "truncated": None,
    }
    (where / "summary.json").write_text(json.dumps(recorded))


@pytest.fixture
def one_run(aido: Aido, project: Path) -> str:
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", 'print("hello")\n')
    assert aido("run", "hello.py").code == 0
    return sandbox_id


def test_a_run_without_an_allowlist_says_so_in_one_line(aido: Aido, project: Path, one_run: str) -> None:
    result = aido("logs", "--network")
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        f"(run-001 of sandbox {one_run} has no network log: it had no egress allowlist (network: none))\n"
    )
    document = aido("logs", "--network", "--json").json
    assert set(document) == DATA_KEYS
    assert (document["network"], document["entries"]) == ({"mode": "none"}, [])
    assert document["missing"] == "it had no egress allowlist (network: none)"
    assert field(aido("show").stdout, "network") == ["none"]
    assert aido("show", "--json").json["run"]["network"] == {"mode": "none"}


def test_the_network_log_is_a_table_with_the_counts(aido: Aido, project: Path, one_run: str) -> None:
    allowlisted(project, one_run)
    result = aido("logs", "--network")
    assert result.code == 0, result.stderr
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[0].split() == [
        "TIME",
        "DECISION",
        "METHOD",
        "HOST:PORT",
        "STATUS",
        "SENT",
        "RECEIVED",
        "REASON",
    ]
    assert lines[1].split() == [
        *(
            "2026-12-02",
            "21:30:01.465",
            "ALLOW",
            "CONNECT",
            "files.pythonhosted.org:443",
            "200",
            "772",
            "2150",
        ),
        *("allowlist:", "*.pythonhosted.org"),
    ]
    assert lines[2].split()[2:9] == ["DENY", "GET", r"evil\x1b[2J.test:80", "403", "133", "3395", "not"]
    assert lines[2].endswith("not in the allowlist")
    assert lines[3].split()[:4] == ["-", "?", "-", "odd"] and r"\x07" in lines[3]
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout  # the task's bytes, escaped
    assert lines[4:] == [
        "1 allowed, 1 denied, 1 unparsed line (allowlist: pypi.org, *.pythonhosted.org)",
        "2 lines the proxy logged never reached aido",
    ]
    shown = aido("show").stdout
    assert field(shown, "network") == ["allowlist (2 entries): 1 allowed, 1 denied — aido logs --network"]
    assert field(shown, "evidence")[0].endswith("(summary.json, stdout.log, stderr.log, network.jsonl)")
    evidence = aido("show", "--json").json["run"]["evidence"]
    assert evidence["network_log"] == f".aido/sandboxes/{one_run}/runs/run-001/network.jsonl"


def test_the_network_log_as_json(aido: Aido, project: Path, one_run: str) -> None:
    allowlisted(project, one_run)
    result = aido("logs", "--network", "--json")
    assert result.code == 0, result.stderr
    document = result.json
    assert set(document) == DATA_KEYS
    assert (document["command"], document["status"], document["missing"]) == ("logs", "success", None)
    assert document["run"]["run_id"] == "run-001" and document["sandbox_id"] == one_run
    assert document["entries"] == ENTRIES  # exactly the evidence file's objects
    assert document["network"]["requests"] == {"allowed": 1, "denied": 1, "unparsed": 1}


def test_the_same_run_selection_as_logs(aido: Aido, project: Path, one_run: str) -> None:
    allowlisted(project, one_run)
    assert aido("run", "hello.py").code == 0  # run-002: no allowlist
    assert "run-002 of sandbox" in aido("logs", "--network").stderr
    assert aido("logs", "--network", "--run", "1", "--json").json["entries"] == ENTRIES
    by_sandbox = aido("logs", "--network", "--sandbox", one_run, "--run", "run-001", "--json")
    assert by_sandbox.json["entries"] == ENTRIES


def test_network_with_follow_is_a_usage_error(aido: Aido, one_run: str) -> None:
    result = aido("logs", "--network", "--follow")
    assert result.code == 2
    assert result.stderr.splitlines()[0] == (
        "error: --network cannot be combined with --follow, --stderr or --raw-output"
    )


def test_an_allowlisted_run_without_its_log_says_why(aido: Aido, project: Path, one_run: str) -> None:
    recorded = summary(project, one_run)
    recorded["network"] = {
        "mode": "allowlist",
        "allow": ["pypi.org"],
        "log": None,
        "note": "the run ended without aido; the proxy's log was not collected",
    }
    (run_dir(project, one_run) / "summary.json").write_text(json.dumps(recorded))
    result = aido("logs", "--network")
    assert result.code == 0
    assert result.stderr.endswith(
        "has no network log: the run ended without aido; the proxy's log was not collected)\n"
    )
    assert field(aido("show").stdout, "network") == [
        "allowlist (1 entry): no log (the run ended without aido; the proxy's log was not collected)"
    ]
