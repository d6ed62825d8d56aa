"""events.log: JSON lines appended whole (evidence/events.py)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from aido.evidence.events import read_events, record_event, timestamp


def test_timestamp_format() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", timestamp())


def test_record_event_writes_one_compact_line(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    entry = record_event(log, "run_started", sandbox_id="abcdefabcdef", run_id="run-001", task="t.py")
    # The spec's keys, then the chain's two, last (evidence/events.py).
    assert list(entry) == ["timestamp", "event", "sandbox_id", "run_id", "task", "seq", "prev"]
    assert entry["seq"] == 1 and entry["prev"] is None
    assert entry["event"] == "run_started"
    text = log.read_text(encoding="utf-8")
    assert text.count("\n") == 1
    assert text.endswith("\n")
    assert ", " not in text and ": " not in text  # compact separators
    assert json.loads(text) == entry


def test_none_fields_are_dropped(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    entry = record_event(log, "sandbox_created", sandbox_id="abcdefabcdef", name=None, spec_file=None)
    assert "name" not in entry and "spec_file" not in entry
    assert read_events(log) == [entry]


def test_newlines_in_values_stay_inside_one_line(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    record_event(log, "run_started", task="evil\nname.py")
    record_event(log, "run_completed", task="ünïcode")
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert [e["task"] for e in read_events(log)] == ["evil\nname.py", "ünïcode"]


def test_read_events_skips_garbage(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    record_event(log, "one")
    with open(log, "ab") as handle:
        handle.write(b'not json\n[1, 2]\n\xff\xfe\n{"truncated": \n')
    record_event(log, "two")
    assert [e["event"] for e in read_events(log)] == ["one", "two"]


def test_read_events_missing_file(tmp_path: Path) -> None:
    assert read_events(tmp_path / "missing.log") == []


def test_concurrent_events_are_all_readable(tmp_path: Path) -> None:
    log = tmp_path / "events.log"

    def work(n: int) -> None:
        for i in range(100):
            record_event(log, "tick", writer=n, i=i, pad="x" * 2000)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    events = read_events(log)
    assert len(events) == 800
    assert {(e["writer"], e["i"]) for e in events} == {(n, i) for n in range(8) for i in range(100)}
