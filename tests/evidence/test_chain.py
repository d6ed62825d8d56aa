"""The hash chain of events.log (evidence/events.py): every line names the one before it."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import pytest

from aido.evidence.events import chain_problems, events_locked, line_hash, record_event


def _log(tmp_path: Path, count: int = 5) -> Path:
    log = tmp_path / "events.log"
    for i in range(count):
        record_event(log, "tick", i=i)
    return log


def test_each_line_names_the_one_before(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.read_bytes().splitlines()
    values = [json.loads(line) for line in lines]
    assert [v["seq"] for v in values] == [1, 2, 3, 4, 5]
    assert values[0]["prev"] is None
    for before, value in zip(lines, values[1:], strict=False):
        assert value["prev"] == "sha256:" + hashlib.sha256(before).hexdigest()
    assert chain_problems(log.read_bytes()) == []


@pytest.mark.parametrize("damage", ["edit", "delete", "swap", "insert", "truncate"])
def test_any_change_to_a_middle_line_breaks_the_chain(tmp_path: Path, damage: str) -> None:
    log = _log(tmp_path)
    lines = log.read_bytes().splitlines(keepends=True)
    if damage == "edit":
        lines[2] = lines[2].replace(b'"i":2', b'"i":9')
    elif damage == "delete":
        del lines[2]
    elif damage == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif damage == "insert":
        lines.insert(2, b'{"timestamp":"x","event":"forged"}\n')
    else:
        lines[-1] = lines[-1][:10]
    problems = chain_problems(b"".join(lines))
    assert problems, damage
    assert problems[0].line in (2, 3, 4, 5)  # the edited line, or the one that no longer follows it


def test_legacy_lines_are_chained_onto(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    legacy = b'{"timestamp":"2026-01-01T00:00:00Z","event":"run_started"}'
    log.write_bytes(legacy + b"\n")
    entry = record_event(log, "run_completed")
    assert entry["seq"] == 2 and entry["prev"] == line_hash(legacy)
    assert chain_problems(log.read_bytes()) == []
    # ...but an unchained line after the chain began is a problem.
    log.write_bytes(log.read_bytes() + legacy + b"\n")
    assert [p.what for p in chain_problems(log.read_bytes())] == ["unchained line after the chain began"]


def test_a_torn_tail_is_repaired_visibly(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with open(log, "ab") as handle:
        handle.write(b'{"timestamp":"x","ev')  # a writer died mid-line
    entry = record_event(log, "next")
    lines = log.read_bytes().splitlines()
    repair = json.loads(lines[3])
    assert repair["event"] == "chain_repair"
    assert repair["skipped_sha256"] == line_hash(b'{"timestamp":"x","ev') and repair["skipped_bytes"] == 20
    assert entry["seq"] == 5
    assert chain_problems(log.read_bytes()) == []
    # Without the repair line, the torn line is a problem.
    del lines[3]
    assert chain_problems(b"\n".join(lines) + b"\n")


def test_head_is_what_a_seal_signs(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    record_event(log, "run_sealed", run_id="run-001", record="sha256:" + "a" * 64)
    record_event(log, "tick")
    with events_locked(log) as events:
        head = events.head()
    data = log.read_bytes()
    assert head.lines == 5
    assert head.prefix_sha256 == hashlib.sha256(data).hexdigest()
    assert head.last_line == line_hash(data.splitlines()[-1])
    assert head.last_sealed == ("run-001", "sha256:" + "a" * 64)


def _writer(log: str, n: int) -> None:
    for i in range(25):
        record_event(Path(log), "tick", writer=n, i=i)


def test_twenty_processes_never_fork_the_chain(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(log), n)) for n in range(20)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    data = log.read_bytes()
    assert data.count(b"\n") == 500
    assert chain_problems(data) == []
