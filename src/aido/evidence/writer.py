"""Writing a run's evidence files: ``summary.json``, ``changes.diff``, and the summary
that closes a run without an outcome. The caller names the paths (the store owns the
layout); every file is written whole (atomically, or created exclusively), never by the
task and never through a link it planted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aido import fs


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    fs.atomic_write_json(path, summary)


def write_changes(path: Path, diff_text: str) -> None:
    """The run's text diff; created exclusively, as nothing may have been there before."""
    fs.write_new(path, diff_text.encode("utf-8"))


def write_closing_summary(path: Path, summary: dict[str, Any]) -> bool:
    """Write the summary of a run closed without an outcome, unless the run already has
    one (it got far enough to write its own): True if it was written."""
    if path.exists():
        return False
    fs.atomic_write_json(path, summary)
    return True
