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
import threading
from typing import Any

ENVELOPE_VERSION = 1
SEPARATOR = "━" * 40

_SGR = re.compile(rb"\x1b\[[0-9;]*m")  # colours and text attributes: harmless, kept
_STRING_INTRODUCERS = b"]PX^_"  # OSC (title, clipboard via OSC 52, hyperlinks), DCS, SOS, PM, APC
_KEEP_CONTROLS = (0x09, 0x0A, 0x0D)  # tab, newline, carriage return
MAX_PENDING = 4096
_C1_AS_ESC = [(b"\xc2" + bytes([0x80 + ord(final) - 0x40]), b"\x1b" + final.encode()) for final in "[]PX^_\\"]


class TerminalFilter:
    """Strip what a task could use against the user's terminal from its output.

    Only complete colour sequences (CSI ... m) and ordinary text, tabs and newlines
    pass; every other escape sequence (screen clearing, cursor moves, window titles,
    clipboard writes) and control character is dropped. The filter is stateful: a
    sequence split across two writes is still recognised, and since no ESC byte is
    ever emitted except as part of a complete colour sequence, removing one sequence
    cannot assemble another.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._in_string = False  # inside an over-long OSC/DCS string: swallow to its end

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        self._pending = b""
        if b"\xc2" in data:
            # The 8-bit (C1) forms of CSI, OSC, DCS, ST, ... as UTF-8: handled as their ESC forms.
            for c1, seven_bit in _C1_AS_ESC:
                data = data.replace(c1, seven_bit)
        out = bytearray()
        i, n = 0, len(data)
        if self._in_string:
            end = _string_end(data, 0)
            if end < 0:
                return b""
            self._in_string = False
            i = end
        while i < n:
            byte = data[i]
            if byte == 0x1B:
                end = _sequence_end(data, i)
                if end < 0:  # incomplete: wait for the rest
                    rest = data[i:]
                    if len(rest) <= MAX_PENDING:
                        self._pending = rest
                    elif rest[1:2] and rest[1] in _STRING_INTRODUCERS:
                        self._in_string = True
                    break
                if _SGR.fullmatch(data, i, end):
                    out += data[i:end]
                i = end
            elif (byte < 0x20 and byte not in _KEEP_CONTROLS) or byte == 0x7F:
                i += 1
            elif byte == 0xC2 and i + 1 == n:  # maybe the start of a C1 control: wait for the rest
                self._pending = data[i:]
                break
            elif byte == 0xC2 and 0x80 <= data[i + 1] <= 0x9F:
                # U+0080-U+009F, the C1 controls: U+009B is CSI and U+009D is OSC on terminals
                # that honour them, so they are dropped like the ESC forms.
                i += 2
            else:
                out.append(byte)
                i += 1
        return bytes(out)


def _string_end(data: bytes, start: int) -> int:
    """Index just past the BEL or ST (ESC \\) that ends a control string, or -1."""
    for j in range(start, len(data)):
        if data[j] == 0x07:
            return j + 1
        if data[j] == 0x1B and j + 1 < len(data) and data[j + 1] == 0x5C:
            return j + 2
    return -1


def _sequence_end(data: bytes, i: int) -> int:
    """Index just past the escape sequence starting at ``data[i]`` (ESC), or -1 if incomplete."""
    n = len(data)
    if i + 1 >= n:
        return -1
    kind = data[i + 1]
    if kind == 0x5B:  # CSI: parameters 0x30-0x3F, intermediates 0x20-0x2F, one final byte 0x40-0x7E
        j = i + 2
        while j < n and 0x30 <= data[j] <= 0x3F:
            j += 1
        while j < n and 0x20 <= data[j] <= 0x2F:
            j += 1
        if j >= n:
            return -1
        return j + 1 if 0x40 <= data[j] <= 0x7E else j  # malformed: drop what came before
    if kind in _STRING_INTRODUCERS:
        return _string_end(data, i + 2)
    if kind == 0x1B:
        return i + 1  # a lone ESC before another: drop it alone
    return i + 2  # two-byte sequences (ESC c resets the terminal, ESC 7/8, ...)


def sanitize_for_terminal(data: bytes) -> bytes:
    """One-shot filtering of a complete buffer (an incomplete trailing sequence is dropped)."""
    return TerminalFilter().feed(data)


class Renderer:
    def __init__(self, *, json_mode: bool = False, raw_output: bool = False) -> None:
        self.json_mode = json_mode
        self.raw_output = raw_output
        self._closed: set[int] = set()  # streams whose reader went away (`aido run x.py | head`)
        self._filters = {1: TerminalFilter(), 2: TerminalFilter()}
        self._progress_shown = False
        self._lock = threading.Lock()  # a batch's tasks write from several threads
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

    def say_result(self, message: str, *, ok: bool) -> None:
        if ok:
            self.success(message)
        else:
            self.failure(message)

    def warn(self, message: str) -> None:
        # Warnings reach the user even in JSON mode: stderr never carries the JSON document.
        print(f"{self._style('warning:', '33')} {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """Something worth knowing that needs no action (stderr; in the envelope with --json)."""
        if not self.json_mode:
            print(f"{self._style('note:', '36')} {message}", file=sys.stderr, flush=True)

    def error(self, message: str, hint: str | None = None) -> None:
        print(f"{self._style('error:', '31;1')} {message}", file=sys.stderr)
        if hint:
            print(f"{self._style('hint:', '36')} {hint}", file=sys.stderr)
        sys.stderr.flush()

    def progress(self, line: str) -> None:
        """A transient status line (image pulls): rewritten in place on a terminal; elsewhere
        only lines without a progress bar, so logs get each step once, not every tick."""
        if self.json_mode:
            return
        if sys.stderr.isatty():
            import shutil  # here: it imports bz2, lzma and zlib, and only a pull on a terminal needs it

            width = shutil.get_terminal_size().columns - 1
            sys.stderr.write("\r\x1b[K" + line[:width])
            sys.stderr.flush()
            self._progress_shown = True
        elif "[" not in line:
            self.say(line)

    def progress_done(self) -> None:
        if self._progress_shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._progress_shown = False

    def separator(self) -> None:
        self.say(self._style(SEPARATOR, "2"))

    def task_output(self, kind: int, data: bytes) -> None:
        """Echo a chunk of the task's output to the matching stream of ours."""
        stream = sys.stdout if kind == 1 else sys.stderr
        if not self.raw_output and stream.isatty():
            data = self._filters[kind].feed(data)
        self._write(kind, data)

    def prefixed(self, label: str, width: int, index: int = 0) -> PrefixedOutput:
        """An output sink for one task of a batch: each line shown as ``label | line``."""
        return PrefixedOutput(self, label.ljust(width), index)

    def _write(self, kind: int, data: bytes) -> None:
        if kind in self._closed:
            return  # still captured as evidence; just no longer shown
        stream = sys.stdout if kind == 1 else sys.stderr
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
        self,
        command: str,
        status: str,
        data: dict[str, Any],
        error: dict[str, Any] | None = None,
        *,
        exit_code: int = 0,
    ) -> None:
        """``exit_code`` is the process's exit code, in every envelope; a command whose data
        already has one (``run``: the task's own) keeps it."""
        document: dict[str, Any] = {"schema_version": ENVELOPE_VERSION, "command": command, "status": status}
        if "exit_code" not in data:
            document["exit_code"] = exit_code
        document.update(data)
        document["error"] = error
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()


MAX_LINE = 16384  # a task that never prints a newline still gets its output shown, in pieces
_LABEL_COLOURS = ("36", "33", "32", "35", "34")


class PrefixedOutput:
    """One task's output in a batch, shown line by line with a ``label | `` prefix (as
    docker compose does) so that concurrent tasks stay readable. Sanitised like a single
    task's output (on a terminal, unless --raw-output), before it is cut into lines, so a
    sequence split across chunks is still recognised."""

    def __init__(self, renderer: Renderer, label: str, index: int) -> None:
        self._out = renderer
        self._label = label
        self._colour = _LABEL_COLOURS[index % len(_LABEL_COLOURS)]
        self._partial = {1: b"", 2: b""}
        self._filters = {1: TerminalFilter(), 2: TerminalFilter()}

    def _prefix(self, kind: int) -> bytes:
        stream = sys.stdout if kind == 1 else sys.stderr
        text = f"{self._label} | "
        if "NO_COLOR" not in os.environ and stream.isatty() and os.environ.get("TERM") != "dumb":
            text = f"\x1b[{self._colour}m{self._label}\x1b[0m | "
        return text.encode()

    def __call__(self, kind: int, data: bytes) -> None:
        stream = sys.stdout if kind == 1 else sys.stderr
        if not self._out.raw_output:
            if stream.isatty():
                data = self._filters[kind].feed(data)
            # A bare carriage return would let a task's line overwrite the prefix on a terminal
            # and pass as another task's output: it ends a line here instead.
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = (self._partial[kind] + data).split(b"\n")
        rest = lines.pop()
        while len(rest) > MAX_LINE:
            cut = MAX_LINE
            esc = rest.rfind(b"\x1b", 0, cut)
            if esc > 0 and b"m" not in rest[esc:cut]:
                cut = esc  # never put a prefix inside a colour sequence: it could form another
            lines.append(rest[:cut])
            rest = rest[cut:]
        self._partial[kind] = rest
        self._emit(kind, lines)

    def close(self) -> None:
        """Show what is left of an unterminated last line."""
        for kind in (1, 2):
            if self._partial[kind]:
                self._emit(kind, [self._partial[kind]])
                self._partial[kind] = b""

    def _emit(self, kind: int, lines: list[bytes]) -> None:
        if not lines:
            return
        prefix = self._prefix(kind)
        with self._out._lock:  # whole lines only: two tasks' lines never interleave mid-line
            self._out._write(kind, b"".join(prefix + line + b"\n" for line in lines))
