"""``events.log``: one JSON object per line, hash-chained.

Every line ends with ``"seq":N,"prev":"sha256:<hex>"}``: N is the line's number in the
file and prev the SHA-256 of the previous line's bytes (without its newline), ``null`` on
line 1. Editing, deleting, swapping or inserting a line therefore breaks the chain at
that point, and a run's seal (evidence/seal.py) signs the digest of every line up to it.
Lines written before the chain existed may precede it; the first chained line chains
onto them. Only stored bytes are hashed, so nothing needs canonical JSON.

Appends take an exclusive flock on the file, read the tail, then write one line, so 20
concurrent runs never fork the chain. A torn tail (a writer died mid-line) is finished
with a newline and followed by a ``chain_repair`` event naming the digest of the
skipped bytes, so the log stays appendable and the damage stays visible.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aido.values import dataclass

SEALED = "run_sealed"
REPAIR = "chain_repair"
_TAIL_CHUNK = 8192


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def line_hash(line: bytes) -> str:
    """How a line is named by the next one: ``sha256:<hex>`` of its bytes, newline excluded."""
    return "sha256:" + hashlib.sha256(line).hexdigest()


@dataclass(frozen=True)
class EventsHead:
    """The log as a seal signs it: lines 1..N and the last seal among them."""

    lines: int
    last_line: str | None  # line_hash of line N
    prefix_sha256: str  # hex digest of lines 1..N, newlines included
    last_sealed: tuple[str, str] | None  # (run id, "sha256:<hex>" of its envelope)


def _seq_of(line: bytes) -> int | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    seq = value.get("seq") if isinstance(value, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None


class Appender:
    """The log held under its lock: read its head, append chained lines."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lines: int | None = None
        self._last: bytes | None = None
        self._load_tail()

    def _load_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            self._lines, self._last = 0, None
            return
        data, pos = b"", size
        while True:
            start = max(0, pos - _TAIL_CHUNK)
            data = os.pread(self._fd, pos - start, start) + data
            pos = start
            body = data[:-1] if data.endswith(b"\n") else data
            if b"\n" in body or pos == 0:
                break
        if not data.endswith(b"\n"):
            self._repair(data[data.rfind(b"\n") + 1 :])
            return
        last = data[:-1].rsplit(b"\n", 1)[-1]
        seq = _seq_of(last)
        self._last = last
        self._lines = seq if seq is not None else self._count()

    def _count(self) -> int:
        """Lines in the file, read whole: only for a log whose last line is not chained."""
        count, offset = 0, 0
        while chunk := os.pread(self._fd, 1 << 20, offset):
            count += chunk.count(b"\n")
            offset += len(chunk)
        return count

    def _repair(self, torn: bytes) -> None:
        os.write(self._fd, b"\n")
        self._last = torn
        self._lines = self._count()
        self.append(REPAIR, skipped_sha256=line_hash(torn), skipped_bytes=len(torn))

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        assert self._lines is not None
        entry = {
            "timestamp": timestamp(),
            "event": event,
            **{k: v for k, v in fields.items() if v is not None},
        }
        entry.pop("seq", None)
        entry.pop("prev", None)
        seq = self._lines + 1
        chained = {**entry, "seq": seq, "prev": line_hash(self._last) if self._last is not None else None}
        line = json.dumps(chained, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace"
        )
        os.write(self._fd, line + b"\n")  # one write(2) on an O_APPEND descriptor
        self._lines, self._last = seq, line
        return chained

    def head(self) -> EventsHead:
        """Lines 1..N as they are now (the whole file: the lock keeps it still). The digest
        is one pass in C; the last seal is looked for from the end, so neither cost grows
        with Python work per line."""
        digest = hashlib.sha256()
        offset = 0
        while chunk := os.pread(self._fd, 1 << 20, offset):
            offset += len(chunk)
            digest.update(chunk)
        assert self._lines is not None
        return EventsHead(
            lines=self._lines,
            last_line=line_hash(self._last) if self._last is not None else None,
            prefix_sha256=digest.hexdigest(),
            last_sealed=self._last_sealed(offset),
        )

    def _last_sealed(self, size: int) -> tuple[str, str] | None:
        marker = b'"event":"' + SEALED.encode() + b'"'
        data, pos = b"", size
        while pos > 0:
            start = max(0, pos - (64 << 10))
            data = os.pread(self._fd, pos - start, start) + data
            pos = start
            # Only whole lines: the first one is partial unless the read reached the start.
            lines = data.split(b"\n")
            complete = lines if pos == 0 else lines[1:]
            for line in reversed(complete):
                if marker in line:
                    found = _sealed(line)
                    if found is not None:
                        return found
            data = lines[0] if pos > 0 else b""
        return None


def _sealed(line: bytes) -> tuple[str, str] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("event") != SEALED:
        return None
    rid, record = value.get("run_id"), value.get("record")
    return (rid, record) if isinstance(rid, str) and isinstance(record, str) else None


@contextlib.contextmanager
def events_locked(log: Path) -> Iterator[Appender]:
    fd = os.open(log, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield Appender(fd)
    finally:
        os.close(fd)


def record_event(log: Path, event: str, **fields: Any) -> dict[str, Any]:
    with events_locked(log) as appender:
        return appender.append(event, **fields)


def read_events(log: Path) -> list[dict[str, Any]]:
    events = []
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


@dataclass(frozen=True)
class ChainProblem:
    line: int  # 1-based
    what: str
    expected: str | None = None
    actual: str | None = None


def chain_problems(data: bytes) -> list[ChainProblem]:
    """Every break in the chain of ``data``, a whole log. Unchained
    lines may only precede the first chained one; a line that is not JSON is accepted only
    when the next line is the ``chain_repair`` that names its digest."""
    problems: list[ChainProblem] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        problems.append(ChainProblem(len(lines), "not ended by a newline (torn)"))
    chained = False
    previous: bytes | None = None
    for index, line in enumerate(lines):
        number = index + 1
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            following = lines[index + 1] if index + 1 < len(lines) else b""
            repaired = _repairs(following) == line_hash(line)
            if not repaired:
                problems.append(ChainProblem(number, "not a JSON object"))
        elif "seq" not in value and "prev" not in value:
            if chained:
                problems.append(ChainProblem(number, "unchained line after the chain began"))
        else:
            chained = True
            if value.get("seq") != number:
                problems.append(ChainProblem(number, "out of sequence", str(number), str(value.get("seq"))))
            expected = line_hash(previous) if previous is not None else None
            if value.get("prev") != expected:
                problems.append(
                    ChainProblem(
                        number, "does not follow the line before it", expected, str(value.get("prev"))
                    )
                )
        previous = line
    return problems


def _repairs(line: bytes) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict) and value.get("event") == REPAIR:
        skipped = value.get("skipped_sha256")
        return skipped if isinstance(skipped, str) else None
    return None
