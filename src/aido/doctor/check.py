"""A doctor check's value, and the report made of many (counts, verdict, rows, JSON)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from aido.errors import AidoError
from aido.values import dataclass

OK = "ok"
WARN = "warn"
FAIL = "fail"
SKIP = "skipped"  # not checked, because a check it depends on failed
STATUSES = (OK, WARN, FAIL, SKIP)
BUG_FIX = "this is a bug in aido doctor: please report it with this output"


_MARKS = {OK: "✓", WARN: "!", FAIL: "✗", SKIP: "-"}


@dataclass(frozen=True)
class Check:
    name: str  # stable id, e.g. "engine", "oci_runtime:runc", "image:python:3.11-slim"
    status: str  # "ok" | "warn" | "fail" | "skipped"
    detail: str  # one line: what was found
    fix: str | None  # one line: how to fix it; None when ok


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings are fine), else 1."""
    return 1 if any(check.status == FAIL for check in checks) else 0


def counts(checks: Sequence[Check]) -> dict[str, int]:
    """How many checks passed, warned, failed and were skipped (each status, even at 0)."""
    return {status: sum(check.status == status for check in checks) for status in STATUSES}


def summary_line(checks: Sequence[Check]) -> str:
    """The human verdict: ``ready`` or how many failed, then every non-zero count by status."""
    found = counts(checks)
    parts = [f"{found[OK]} passed"]
    if found[WARN]:
        parts.append(f"{found[WARN]} warning(s)")
    if found[SKIP]:
        parts.append(f"{found[SKIP]} skipped")
    if found[FAIL]:
        return f"{found[FAIL]} check(s) failed; " + ", ".join(parts)
    return f"ready ({', '.join(parts)})"


def render_rows(checks: Sequence[Check]) -> list[list[str]]:
    """Rows of [mark, name, detail] for a table (✓ ok, ! warn, ✗ fail, - skipped)."""
    return [[_MARKS.get(check.status, "?"), check.name, check.detail] for check in checks]


def as_json(checks: Sequence[Check]) -> list[dict[str, Any]]:
    """One plain dict per check: name, status, detail, fix."""
    return [asdict(check) for check in checks]


def guarded(name: str, check: Callable[[], Check], fix: str = BUG_FIX) -> Check:
    """Run one check; any error becomes that check's failure instead of ending the doctor."""
    try:
        return check()
    except Exception as exc:
        return failed(name, exc, fix)


def failed(name: str, exc: Exception, fix: str = BUG_FIX, prefix: str = "") -> Check:
    """A check that raised: aido's errors carry their own message and fix; others are named."""
    if isinstance(exc, AidoError):
        return Check(name, FAIL, one_line(prefix + exc.message), exc.hint or fix)
    message = getattr(exc, "message", None) or str(exc)  # e.g. the engine's EngineError
    return Check(name, FAIL, one_line(f"{prefix}{type(exc).__name__}: {message}"), fix)


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
