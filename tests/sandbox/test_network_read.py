"""Reading a run's network evidence back (lifecycle/logs.py ``read_network``): every run
has an answer, whether it had an allowlist, is in progress, predates the network section,
or has damaged evidence. Pure: files written here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aido.lifecycle import logs
from aido.lifecycle.logs import read_network

SECTION = {"mode": "allowlist", "allow": ["pypi.org"], "log": "network.jsonl"}


def run_dir(tmp_path: Path, summary: object, log: bytes | None = None) -> Path:
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    if log is not None:
        (tmp_path / "network.jsonl").write_bytes(log)
    return tmp_path


def test_an_allowlisted_runs_entries_in_order(tmp_path: Path) -> None:
    entries = [{"seq": 1, "host": "pypi.org"}, {"unparsed": "x"}, {"seq": 2, "host": "a.test"}]
    found = read_network(
        run_dir(tmp_path, {"network": SECTION}, b"".join(json.dumps(e).encode() + b"\n" for e in entries))
    )
    assert (found.section, found.entries, found.missing) == (SECTION, entries, None)


def test_a_damaged_line_is_shown_as_unparsed(tmp_path: Path) -> None:
    found = read_network(run_dir(tmp_path, {"network": SECTION}, b'{"seq": 1}\nnot json \xff\n[1]\n'))
    assert found.entries == [{"seq": 1}, {"unparsed": "not json \ufffd\n"}, {"unparsed": "[1]\n"}]


def test_reading_stops_at_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aido.evidence.network as network

    monkeypatch.setattr(network, "MAX_ENTRIES", 2)
    found = read_network(run_dir(tmp_path, {"network": SECTION}, b'{"seq": 1}\n{"seq": 2}\n{"seq": 3}\n'))
    assert found.entries == [{"seq": 1}, {"seq": 2}]


@pytest.mark.parametrize(
    ("summary", "missing"),
    [
        ({"network": {"mode": "none"}}, "it had no egress allowlist (network: none)"),
        ({"network": {"mode": "full"}}, "it had no egress allowlist (network: full)"),
        # Written before summaries had the section: what the run asked for.
        ({"security": {"requested": {"network": True}}}, "it had no egress allowlist (network: full)"),
        ({}, "it had no egress allowlist (network: none)"),
        ({"network": {**SECTION, "log": None, "note": "why"}}, "why"),
    ],
)
def test_a_run_without_a_log_says_why(tmp_path: Path, summary: object, missing: str) -> None:
    found = read_network(run_dir(tmp_path, summary))
    assert (found.entries, found.missing) == ([], missing)


def test_a_run_in_progress_or_without_a_summary(tmp_path: Path) -> None:
    assert read_network(tmp_path, running=True).missing == (
        "the run is in progress: its network log is written when it ends"
    )
    assert read_network(tmp_path).missing == "it has no summary.json (it never completed)"
    (tmp_path / "summary.json").write_text("{")
    assert read_network(tmp_path).missing == "its summary.json is unreadable (JSONDecodeError)"


def test_a_missing_or_linked_log_is_said_not_followed(tmp_path: Path) -> None:
    where = run_dir(tmp_path, {"network": SECTION})
    assert read_network(where).missing == "its network.jsonl cannot be read (FileNotFoundError)"
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jsonl"
    outside.write_text('{"seq": 1, "host": "planted"}\n')
    os.symlink(outside, where / "network.jsonl")
    found = read_network(where)
    assert found.entries == [] and found.missing == "its network.jsonl cannot be read (OSError)"
    assert logs.NETWORK_LOG == "network.jsonl"
