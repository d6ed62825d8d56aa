"""Terminal sanitising and the JSON envelope (cli/render.py)."""

from __future__ import annotations

import json
import re

import pytest

from aido.cli.render import ENVELOPE_VERSION, Renderer, TerminalFilter, sanitize_for_terminal

ESC = b"\x1b"

# Any escape sequence left after sanitising must be a colour (SGR: CSI params 'm').
_ANY_ESC = re.compile(rb"\x1b(\[[0-9;]*m)?")


def _only_colours_left(data: bytes) -> bool:
    return all(match.group(1) is not None for match in _ANY_ESC.finditer(data))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        # OSC 52: write to the user's clipboard, BEL- or ST-terminated.
        (b"a\x1b]52;c;ZWNobyBwd25lZA==\x07b", b"ab"),
        (b"a\x1b]52;c;ZWNobyBwd25lZA==\x1b\\b", b"ab"),
        # Window / icon title.
        (b"\x1b]0;I am your terminal now\x07ok", b"ok"),
        (b"\x1b]2;title\x1b\\ok", b"ok"),
        # Hyperlinks (OSC 8) are dropped with their target, the text is kept.
        (b"\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\", b"click"),
        # Screen and line clearing, cursor moves, scrolling regions.
        (b"before\x1b[2Jafter", b"beforeafter"),
        (b"\x1b[3J\x1b[H\x1b[2Jx", b"x"),
        (b"\x1b[10;5Hx", b"x"),
        (b"\x1b[Ax\x1b[2Ky", b"xy"),
        (b"\x1b[1;24rx", b"x"),
        (b"\x1b[?1049hx\x1b[?1049l", b"x"),  # alternate screen
        (b"\x1b[?25lhidden cursor", b"hidden cursor"),
        (b"\x1b[6n", b""),  # cursor position report request (answers into the tty input)
        # DCS, APC, PM strings; single-character escapes (RIS reset, save/restore cursor).
        (b"\x1bP1$r0m\x1b\\x", b"x"),
        (b"\x1b_apc payload\x1b\\x", b"x"),
        (b"\x1b^pm payload\x1b\\x", b"x"),
        (b"\x1bcx", b"x"),
        (b"\x1b7x\x1b8", b"x"),
        # Other C0 controls: bell, backspace (overwrite tricks), form feed, vertical tab, DEL.
        (b"a\x07b\x08c\x0cd\x0be\x7ff\x00g", b"abcdefg"),
    ],
)
def test_dangerous_sequences_removed(raw: bytes, clean: bytes) -> None:
    assert sanitize_for_terminal(raw) == clean


@pytest.mark.parametrize(
    "kept",
    [
        b"\x1b[31mred\x1b[0m",
        b"\x1b[1;32mbold green\x1b[m",
        b"\x1b[38;5;208morange\x1b[39m",
        b"\x1b[38;2;255;0;0mtruecolor\x1b[0m",
        b"line one\nline two\n",
        b"col1\tcol2\r\n",
        b"progress 10%\rprogress 20%\r",
        "unicode ✓ 📦 ünïcode".encode(),
        b"",
    ],
)
def test_colours_and_whitespace_kept(kept: bytes) -> None:
    assert sanitize_for_terminal(kept) == kept


def test_mixed_output() -> None:
    raw = b"\x1b]0;pwned\x07\x1b[2J\x1b[H\x1b[31mERROR\x1b[0m: failed\n\tdetail\x1b]52;c;eA==\x07\n"
    assert sanitize_for_terminal(raw) == b"\x1b[31mERROR\x1b[0m: failed\n\tdetail\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x1b\x1b[A[2J",  # removing the inner CSI must not assemble a new one
        b"\x1b\x1b[1;1H[1;1H",
        b"\x1b\x1b[A]52;c;QUFB\x07",
        b"\x1b\x1b\x1b[A[A[2J",
    ],
)
def test_removal_never_assembles_a_new_sequence(raw: bytes) -> None:
    cleaned = sanitize_for_terminal(raw)
    assert _only_colours_left(cleaned), cleaned


def test_idempotent_on_typical_output() -> None:
    raw = b"\x1b[31mred\x1b[0m\x1b[2J\x1b]0;t\x07text\n"
    once = sanitize_for_terminal(raw)
    assert sanitize_for_terminal(once) == once


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (b"ok\x1b", b"[2J"),
        (b"ok\x1b[", b"2J"),
        (b"ok\x1b[1;1", b"H"),
        (b"ok\x1b", b"]52;c;QUFB\x07"),
    ],
)
def test_sequence_split_across_chunks_is_not_passed_through(first: bytes, second: bytes) -> None:
    # Output arrives in arbitrary chunks and each is sanitised on its own (Renderer.task_output):
    # a task that flushes between "\x1b" and "[2J" must not get a screen clear through.
    echoed = sanitize_for_terminal(first) + sanitize_for_terminal(second)
    assert _only_colours_left(echoed), echoed


# -- Renderer ---------------------------------------------------------------------------------


def test_envelope_shape(capsys: pytest.CaptureFixture[str]) -> None:
    Renderer(json_mode=True).envelope("sandbox list", "success", {"sandboxes": []})
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert list(document) == ["schema_version", "command", "status", "exit_code", "sandboxes", "error"]
    assert document == {
        "schema_version": ENVELOPE_VERSION,
        "command": "sandbox list",
        "status": "success",
        "exit_code": 0,
        "sandboxes": [],
        "error": None,
    }
    assert ENVELOPE_VERSION == 1
    assert out.endswith("}\n")
    assert err == ""


def test_json_mode_silences_chatter_but_not_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    out = Renderer(json_mode=True)
    out.say("chatter")
    out.success("done")
    out.separator()
    out.warn("careful")
    stdout, stderr = capsys.readouterr()
    assert stdout == ""
    assert stderr == "warning: careful\n"


def test_human_mode_writes_to_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    out = Renderer()
    out.success("Sandbox created")
    out.error("it broke", "try again")
    stdout, stderr = capsys.readouterr()
    assert stdout == ""
    assert stderr.splitlines() == ["✓ Sandbox created", "error: it broke", "hint: try again"]


def test_task_output_to_a_pipe_is_exact(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    # Not a terminal: bytes go through untouched (pipes and files get what the task wrote).
    out = Renderer()
    out.task_output(1, b"\x1b[2Jraw\x00bytes")
    out.task_output(2, b"err\x1b]0;t\x07")
    stdout, stderr = capsysbinary.readouterr()
    assert stdout == b"\x1b[2Jraw\x00bytes"
    assert stderr == b"err\x1b]0;t\x07"


def test_c1_control_sequences_are_filtered_like_their_escape_forms() -> None:
    terminal = TerminalFilter()
    data = "a\u009b2Jb\u009d0;TITLE\u009cc\u0085d \u009b31mred\u009b0m".encode()
    shown = b"".join(terminal.feed(data[i : i + 3]) for i in range(0, len(data), 3))
    assert shown == b"abcd \x1b[31mred\x1b[0m"
