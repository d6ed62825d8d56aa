"""Small formatting helpers several commands share: paths relative to here, times
relative to now."""

from __future__ import annotations

import os
from pathlib import Path


def relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def relative_time(moment: str) -> str:
    """'in 14m' / '3m ago': when a sandbox expires, at a glance."""
    if not moment:
        return "-"
    from aido.config.units import format_duration
    from aido.store.records import parse_time, utcnow

    delta = (parse_time(moment) - utcnow()).total_seconds()
    shown = format_duration(max(1, abs(int(delta))))
    return f"in {shown}" if delta > 0 else f"{shown} ago"
