"""``events.log``: one JSON object per line, appended whole (see fs.append_line)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aido.fs import append_line


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def record_event(log: Path, event: str, **fields: Any) -> dict[str, Any]:
    entry = {"timestamp": timestamp(), "event": event, **{k: v for k, v in fields.items() if v is not None}}
    append_line(log, json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
    return entry


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
