"""Pure logic of ``aido show``: escaping for the terminal and reading limits from a summary."""

from __future__ import annotations

from aido.cli.show import clean, limits_hit


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
