"""The run's network evidence (evidence/network.py) from the egress proxy's record: the
network log, the proxy's configuration and the summary's ``network`` section. Pure: the
entries are built here in parse_log's documented shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aido.backends.base import EgressRecord
from aido.evidence import network
from aido.evidence.network import lost_ranges, planned_section, write_network

CONFIG = "http_port 3128\nacl e0 dstdomain -n allowed.test\nhttp_access deny all\n"
FACTS = {
    "image": "aido/egress-squid:bookworm",
    "image_id": "sha256:" + "ab" * 32,
    "network": "aido-egress-x",
    "subnet": "10.213.0.0/24",
    "proxy": "10.213.0.3:3128",
}


def entry(seq: int, host: str = "allowed.test", *, allowed: bool = True, **more: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": f"2026-12-02T21:30:{seq % 60:02d}.465Z",
        "client": "10.213.0.2",
        "method": "CONNECT",
        "host": host,
        "port": 443,
        "decision": "allowed" if allowed else "denied",
        "reason": "allow:allowed.test" if allowed else "deny:not_allowlisted",
        "result": "TCP_TUNNEL" if allowed else "TCP_DENIED",
        "status": 200 if allowed else 403,
        "bytes_sent": 772,
        "bytes_received": 2150 if allowed else 3399,
        "server": "198.18.0.10:443" if allowed else None,
        **more,
    }


def write(tmp_path: Path, entries: list[dict[str, Any]], **kwargs: Any) -> tuple[dict[str, Any], list[Any]]:
    record = EgressRecord(
        config=CONFIG, log="(parsed by the test)", facts=dict(FACTS, **kwargs.pop("facts", {}))
    )
    section = write_network(
        record,
        entries,
        ["allowed.test", "*.cdn.test"],
        log_path=tmp_path / "network.jsonl",
        config_path=tmp_path / "egress-squid.conf",
        **kwargs,
    )
    lines = [json.loads(line) for line in (tmp_path / "network.jsonl").read_text().splitlines()]
    return section, lines


def test_every_request_is_a_line_and_the_summary_counts_them(tmp_path: Path) -> None:
    entries = [
        entry(0),
        entry(1, "denied.test", allowed=False),
        {"unparsed": "garbage \x1b[2J line"},
        entry(2),
    ]
    section, lines = write(tmp_path, entries)
    assert section == {
        "mode": "allowlist",
        "allow": ["allowed.test", "*.cdn.test"],
        "proxy": FACTS,
        "config": "egress-squid.conf",
        "log": "network.jsonl",
        "requests": {"allowed": 2, "denied": 1, "unparsed": 1},
        "lost_lines": 0,
        "lost_ranges": [],
        "truncated": None,
    }
    assert lines[0] == entry(0) and list(lines[0]) == list(network.KEYS)
    assert lines[1]["host"] == "denied.test" and lines[1]["decision"] == "denied"
    assert lines[2] == {"unparsed": "garbage \x1b[2J line"}  # kept as it was, never guessed at
    assert (tmp_path / "egress-squid.conf").read_text() == CONFIG  # the exact policy enforced


def test_an_entry_that_is_not_an_allow_counts_as_denied(tmp_path: Path) -> None:
    section, _ = write(tmp_path, [entry(1, decision="odd")])
    assert section["requests"] == {"allowed": 0, "denied": 1, "unparsed": 0}


def test_a_flood_keeps_the_first_entries_and_counts_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(network, "MAX_ENTRIES", 3)
    entries = [entry(n, allowed=n % 2 == 1) for n in range(7)]
    section, lines = write(tmp_path, entries)
    assert [line["seq"] for line in lines] == [0, 1, 2]
    assert section["requests"] == {"allowed": 3, "denied": 4, "unparsed": 0}
    truncated = section["truncated"]
    assert (truncated["entries_kept"], truncated["entries_dropped"]) == (3, 4)
    assert truncated["note"] == "only the first 3 of 7 requests are in the log; all are counted"


def test_bytes_the_backend_dropped_are_said(tmp_path: Path) -> None:
    section, _ = write(tmp_path, [entry(0)], facts={"log_truncated": 4096})
    assert section["truncated"]["log_bytes_dropped"] == 4096
    assert "4096 bytes dropped" in section["truncated"]["note"]
    assert section["proxy"]["log_truncated"] == 4096


def test_gaps_in_the_sequence_are_lost_lines(tmp_path: Path) -> None:
    # Squid numbers its log lines from 0.
    section, _ = write(tmp_path, [entry(n) for n in (1, 2, 3, 7, 8, 12)])
    assert section["lost_ranges"] == [[0, 0], [4, 6], [9, 11]]
    assert section["lost_lines"] == 7
    assert lost_ranges([3, 1, 0, 2, 2]) == []  # out of order and repeated: no gap


def test_a_line_read_but_not_parsed_is_not_lost(tmp_path: Path) -> None:
    # It stands for one missing number (which one is unknown: the ranges keep all of them).
    section, _ = write(tmp_path, [entry(0), {"unparsed": "x"}, entry(2), entry(5)])
    assert section["requests"]["unparsed"] == 1
    assert section["lost_ranges"] == [[1, 1], [3, 4]]
    assert section["lost_lines"] == 2


def test_secret_values_are_masked_in_the_log(tmp_path: Path) -> None:
    leak = entry(1, "s3cr3tvalue.exfil.test", allowed=False)
    _, lines = write(tmp_path, [leak, {"unparsed": "x s3cr3tvalue y"}], secrets=["s3cr3tvalue"])
    assert lines[0]["host"] == "***.exfil.test"
    assert lines[1] == {"unparsed": "x *** y"}
    assert "s3cr3tvalue" not in (tmp_path / "network.jsonl").read_text()


def test_a_proxy_error_is_in_the_section(tmp_path: Path) -> None:
    section, lines = write(tmp_path, [], facts={"error": "the proxy exited with code 1"})
    assert lines == [] and (tmp_path / "network.jsonl").read_bytes() == b""
    assert section["error"] == "the proxy exited with code 1"


def test_files_are_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "network.jsonl").write_text("planted\n")
    with pytest.raises(FileExistsError):
        write(tmp_path, [entry(1)])
    assert (tmp_path / "network.jsonl").read_text() == "planted\n"


def test_without_a_log_the_section_says_the_mode() -> None:
    assert planned_section("none") == {"mode": "none"}
    assert planned_section("full", ["ignored"]) == {"mode": "full"}
    assert planned_section("allowlist", ("a.test",), "why") == {
        "mode": "allowlist",
        "allow": ["a.test"],
        "log": None,
        "note": "why",
    }
