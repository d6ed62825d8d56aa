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
            "oom_killed": True,
            "pids_limit_reached": True,
            "limits": {"memory_bytes": 64 << 20, "pids": 32},
            "output": {"stdout": {"truncated": True, "limit": 1 << 20, "bytes_total": 3 << 20}},
        }
    )
    assert hits == [
        {"limit": "memory", "message": "out of memory (limit 64M): killed"},
        {"limit": "pids", "message": "reached its limit of 32 processes"},
        {"limit": "output:stdout", "message": "stdout truncated at 1M (3M written)"},
    ]


def test_limits_hit_keeps_a_newer_summarys_own_breaches_once() -> None:
    summary = {
        "disk": {"exceeded": "file limit exceeded: 500 files of 100"},
        "limit_breaches": [
            {"limit": "files", "message": "duplicate of the disk flag"},
            {"limit": "cpu_time", "message": "used all its CPU time"},
            "something_new",
        ],
    }
    assert limits_hit(summary) == [
        {"limit": "files", "message": "file limit exceeded: 500 files of 100"},
        {"limit": "cpu_time", "message": "used all its CPU time"},
        {"limit": "something_new", "message": "something_new"},
    ]


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
