"""Durations (``90s``, ``15m``, ``2h``, ``1h30m``) and sizes (``512M``, ``1G``).

Pure functions with bounds: a value that parses but is absurd (zero memory, a
ten-year timeout) is as wrong as one that does not parse, so both raise
ValueError with a message that says what was expected.
"""

from __future__ import annotations

import math
import re

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_DURATION_FULL = re.compile(r"(?:\d+(?:ms|s|m|h|d))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_SIZE_FACTOR = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(value: object, *, minimum: float = 1, maximum: float = 30 * 86400) -> float:
    """Return seconds. Strings only: a bare number is ambiguous (seconds? minutes?)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration like 90s, 15m or 2h, got {value!r}")
    text = value.strip().lower()
    if not _DURATION_FULL.fullmatch(text):
        raise ValueError(f"expected a duration like 90s, 15m or 2h, got {value!r}")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds < minimum:
        raise ValueError(f"duration {value!r} is too short: the minimum is {format_duration(minimum)}")
    if seconds > maximum:
        raise ValueError(f"duration {value!r} is too long: the maximum is {format_duration(maximum)}")
    return float(seconds)


def format_duration(seconds: float) -> str:
    """The shortest exact form: 900 -> '15m', 5400 -> '1h30m', 0.5 -> '500ms'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def parse_size(value: object, *, minimum: int = 1, maximum: int = 1 << 40) -> int:
    """Return bytes. Binary multiples, as docker reads ``--memory 512m``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 512M or 1G, got {value!r}")
    if isinstance(value, int):
        size = value  # never through float(): a 400-digit int would overflow it
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if not match:
            raise ValueError(f"expected a size like 512M or 1G, got {value!r}")
        number = float(match.group(1))
        if not math.isfinite(number):
            raise ValueError(f"expected a size like 512M or 1G, got {value!r}")
        size = int(number * _SIZE_FACTOR[match.group(2).lower()])
    else:
        raise ValueError(f"expected a size like 512M or 1G, got {value!r}")
    if size < minimum:
        raise ValueError(f"size {value!r} is too small: the minimum is {format_size(minimum)}")
    if size > maximum:
        raise ValueError(f"size {value!r} is too large: the maximum is {format_size(maximum)}")
    return size


def format_size(size: int) -> str:
    """Exact when possible (``512M``), else one decimal in the largest unit (``1.5K``)."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= factor:
            if size % factor == 0:
                return f"{size // factor}{unit}"
            return f"{size / factor:.1f}{unit}"
    return f"{size}B"
