"""Pure logic of ``aido show``: escaping for the terminal and reading limits from a summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aido.cli.show import build_view, clean, limits_hit, render
from aido.store.records import RunRef


def test_clean_escapes_every_control_and_format_character() -> None:
    assert clean("plain text, é ü 名前 🙂") == "plain text, é ü 名前 🙂"
    assert clean("a\x1b[2Jb\x07") == r"a\x1b[2Jb\x07"
    assert clean("\x9b31m\x7f") == r"\x9b31m\x7f"  # C1 CSI and DEL
    assert clean("left\u202eright\u2028next") == r"left\u202eright\u2028next"
    assert clean("one\ntwo\ttab\r") == r"one\x0atwo\x09tab\x0d"
    assert clean(None) == "None"


def test_limits_hit_reads_flags_defensively() -> None:
    assert limits_hit({}) == []
    assert limits_hit({"limits": "garbage", "disk": 3, "output": []}) == []
    hits = limits_hit(
        {
            "status": "failed",
            "exit_code": 1,
            "duration_ms": 5,
            "oom_killed": True,
            "pids_limit_reached": True,
            "limits": {"memory_bytes": 64 << 20, "pids": 32},
            "output": {"stdout": {"truncated": True, "limit": 1 << 20, "bytes_total": 3 << 20}},
        }
    )
    # Decided again by the run's verdict for a summary written without limits_exceeded.
    assert [(h["kind"], h["message"]) for h in hits] == [
        ("memory", "out of memory (limit 64M)"),
        ("pids", "it reached its limit of 32 processes and threads"),
        ("output:stdout", "stdout truncated at 1M (3M written)"),
    ]
    assert hits[-1] == {
        "kind": "output:stdout",
        "limit": 1 << 20,
        "measured": 3 << 20,
        "unit": "bytes",
        "message": "stdout truncated at 1M (3M written)",
    }


def test_limits_hit_shows_what_the_runs_verdict_recorded() -> None:
    """A summary with limits_exceeded is shown as recorded: show decides nothing itself."""
    recorded = {
        "kind": "files",
        "limit": 100,
        "measured": 500,
        "unit": "files",
        "message": "file limit exceeded",
    }
    summary = {"status": "disk_limit", "oom_killed": True, "limits_exceeded": [recorded, "not an object"]}
    assert limits_hit(summary) == [recorded]


ODD_VALUES: list[object] = [None, True, -1, 10**400, 1e308, "x\x1b[2J", [], {}, [1, None, "a"], {"a": {}}]


@pytest.mark.parametrize("odd", ODD_VALUES, ids=lambda v: repr(v)[:20])
def test_any_value_in_any_key_renders_without_crashing(
    tmp_path: Path, odd: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """summary.json may be older, newer or damaged: show prints what it can, never a traceback."""
    keys = [
        "status", "message", "error", "exit_code", "started_at", "duration_ms", "task", "args",
        "image", "image_id", "limits", "disk", "output", "security", "escape_hatches",
        "permissions", "warnings", "changes", "changes_notes", "declared_outputs",
        "timed_out", "oom_killed", "pids_limit_reached", "limit_breaches",
    ]  # fmt: skip
    ref = RunRef("run-001", "t.py", "success", "2026-01-01T00:00:00Z")
    nested = {"memory_bytes": odd, "timeout_seconds": odd, "pids": odd, "limit_bytes": odd}
    for summary in (
        dict.fromkeys(keys, odd),
        {"limits": nested, "disk": nested, "oom_killed": True, "timed_out": True},
        {"output": {"stdout": {"truncated": True, "limit": odd, "bytes_total": odd}}},
        {"security": {"applied": {k: odd for k in ("mounts", "cap_drop", "security_opt", "user")}}},
        {"changes": [odd, {"path": odd, "change": odd}], "declared_outputs": [odd, {"present": False}]},
    ):
        (tmp_path / "summary.json").write_text(json.dumps(summary))
        view = build_view("abc", ref, tmp_path)
        json.dumps(view)  # the --json document is always serialisable
        render(view)
    assert "\x1b" not in capsys.readouterr().out
