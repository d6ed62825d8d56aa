"""events.log as ``aido verify`` reads it: its lines, parsed once, with what the checks ask
of every run (where it started and ended, its run_sealed lines, the sealing order) indexed,
and the digest of any prefix without rehashing the log for each run."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aido.evidence.events import SEALED

RUN_ENDS = ("run_completed", "run_recovered")


def split_lines(data: bytes) -> list[bytes]:
    """The log's lines, without their "\\n"; a torn last line (no "\\n") is kept."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


class EventLog:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.lines = split_lines(data)
        self.events: list[dict[str, Any]] = []
        self.starts: dict[str, int] = {}  # run id → line number of its first run_started
        self.ends: dict[str, int] = {}  # run id → line number of its first run_completed/run_recovered
        self.sealed: list[tuple[int, str, str]] = []  # (line number, run id, record), in order
        self.seal_failed: set[str] = set()
        self.cleaned: list[int] = []  # line numbers of `sandbox clean` events that emptied outputs/
        for number, line in enumerate(self.lines, 1):
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            event = value if isinstance(value, dict) else {}
            self.events.append(event)
            kind, run = event.get("event"), event.get("run_id")
            if kind == "run_started" and isinstance(run, str):
                self.starts.setdefault(run, number)
            elif kind in RUN_ENDS and isinstance(run, str):
                self.ends.setdefault(run, number)
            elif kind == SEALED:
                self.sealed.append((number, str(run), str(event.get("record"))))
            elif kind == "seal_failed" and isinstance(run, str):
                self.seal_failed.add(run)
            elif kind == "sandbox_cleaned" and "outputs" in (event.get("cleared") or []):
                self.cleaned.append(number)
        self.order = [run for _, run, _ in self.sealed]  # sealing order
        self._hashed, self._digest = 0, hashlib.sha256()

    def seals_of(self, run_id: str) -> list[tuple[int, str]]:
        return [(number, record) for number, run, record in self.sealed if run == run_id]

    def prefix_sha256(self, lines: int) -> str:
        """sha256 of lines 1..``lines``, each with its "\\n". Runs are mostly checked in the
        order they were sealed, so the digest so far is extended rather than recomputed."""
        if lines < self._hashed:
            self._hashed, self._digest = 0, hashlib.sha256()
        for line in self.lines[self._hashed : lines]:
            self._digest.update(line + b"\n")
        self._hashed = lines
        return self._digest.copy().hexdigest()
