"""Everything aido prints goes through here: the human format and the JSON envelope.

Human output: aido's own lines (✓, ⚡, separators, 📦) go to stderr so that stdout
carries only the task's own stdout and can be piped. With ``--json``, stdout
carries exactly one JSON document per command, with the same envelope for every
command::

    {"schema_version": 1, "command": "run", "status": "success", ..., "error": null}
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

ENVELOPE_VERSION = 1
SEPARATOR = "━" * 40

# Terminal control sequences a task could use against the user's terminal: OSC
# (window title, clipboard via OSC 52, hyperlinks), DCS/APC/PM strings, and CSI
# sequences other than colours (cursor moves, screen clearing). Colours (CSI ... m)
# are kept; everything else is dropped when echoing to a terminal.
_OSC = re.compile(rb"\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?")
_CSI_NOT_SGR = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-ln-~]")
_OTHER_ESC = re.compile(rb"\x1b[^\[]")
_C0 = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")


def sanitize_for_terminal(data: bytes) -> bytes:
    data = _OSC.sub(b"", data)
    data = _CSI_NOT_SGR.sub(b"", data)
    data = _OTHER_ESC.sub(b"", data)
    return _C0.sub(b"", data)


class Renderer:
    def __init__(self, *, json_mode: bool = False, raw_output: bool = False) -> None:
        self.json_mode = json_mode
        self.raw_output = raw_output
        self._closed: set[int] = set()  # streams whose reader went away (`aido run x.py | head`)
        self.color = "NO_COLOR" not in os.environ and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"

    # -- human --------------------------------------------------------------------------

    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def say(self, message: str = "") -> None:
        """A line of aido's own output (stderr; suppressed with --json)."""
        if not self.json_mode:
            print(message, file=sys.stderr, flush=True)

    def success(self, message: str) -> None:
        self.say(f"{self._style('✓', '32')} {message}")

    def failure(self, message: str) -> None:
        self.say(f"{self._style('✗', '31')} {message}")

    def warn(self, message: str) -> None:
        # Warnings reach the user even in JSON mode: stderr never carries the JSON document.
        print(f"{self._style('warning:', '33')} {message}", file=sys.stderr, flush=True)

    def error(self, message: str, hint: str | None = None) -> None:
        print(f"{self._style('error:', '31;1')} {message}", file=sys.stderr)
        if hint:
            print(f"{self._style('hint:', '36')} {hint}", file=sys.stderr)
        sys.stderr.flush()

    def separator(self) -> None:
        self.say(self._style(SEPARATOR, "2"))

    def task_output(self, kind: int, data: bytes) -> None:
        """Echo a chunk of the task's output to the matching stream of ours."""
        if kind in self._closed:
            return  # still captured as evidence; just no longer shown
        stream = sys.stdout if kind == 1 else sys.stderr
        if not self.raw_output and stream.isatty():
            data = sanitize_for_terminal(data)
        try:
            stream.buffer.write(data)
            stream.buffer.flush()
        except BrokenPipeError:
            self._closed.add(kind)
            # Point the stream at /dev/null so the interpreter's final flush stays quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)

    def table(self, columns: list[str], rows: list[list[str]]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        Console(no_color="NO_COLOR" in os.environ, width=200 if not sys.stdout.isatty() else None).print(
            table
        )

    # -- JSON -----------------------------------------------------------------------------

    def envelope(
        self, command: str, status: str, data: dict[str, Any], error: dict[str, Any] | None = None
    ) -> None:
        document = {
            "schema_version": ENVELOPE_VERSION,
            "command": command,
            "status": status,
            **data,
            "error": error,
        }
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()
