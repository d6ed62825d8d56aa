"""`aido --version --json` and the batch's prefixed output (pure logic: the e2e tests in
tests/e2e/test_e2e_run_cli.py run it for real)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from aido import __version__
from aido.cli import render
from aido.cli.render import MAX_LINE, Renderer
from tests.helpers.cli import Result

Aido = Callable[..., Result]


@pytest.mark.parametrize("args", [("--version", "--json"), ("--json", "--version"), ("--json", "-v")])
def test_version_as_a_json_envelope(aido: Aido, args: tuple[str, ...]) -> None:
    result = aido(*args)
    assert result.code == 0
    assert result.stderr == ""
    assert result.json == {
        "schema_version": 1,
        "command": "version",
        "status": "success",
        "exit_code": 0,
        "version": __version__,
        "error": None,
    }


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.buffer = io.BytesIO()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        raise io.UnsupportedOperation

    def flush(self) -> None:
        pass


def _capture(monkeypatch: pytest.MonkeyPatch, tty: bool) -> tuple[_Stream, _Stream]:
    out, err = _Stream(tty), _Stream(tty)
    monkeypatch.setattr(render.sys, "stdout", out)
    monkeypatch.setattr(render.sys, "stderr", err)
    monkeypatch.setenv("NO_COLOR", "1")
    return out, err


def test_prefixed_output_cuts_lines_and_keeps_streams_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _capture(monkeypatch, tty=False)
    sink = Renderer().prefixed("a.py", 8)
    sink(1, b"one\ntw")
    sink(2, b"oops\n")
    assert out.buffer.getvalue() == b"a.py     | one\n"
    sink(1, b"o\nthree")
    sink.close()
    assert out.buffer.getvalue() == b"a.py     | one\na.py     | two\na.py     | three\n"
    assert err.buffer.getvalue() == b"a.py     | oops\n"


def test_prefixed_output_is_sanitised_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = _capture(monkeypatch, tty=True)
    sink = Renderer().prefixed("t", 1)
    # A screen clear split across two chunks, a title, and a carriage-return-free colour.
    sink(1, b"a\x1b[2")
    sink(1, b"Jb\x1b]0;pwned\x07 \x1b[31mred\x1b[0m\n")
    assert out.buffer.getvalue() == b"t | ab \x1b[31mred\x1b[0m\n"


def test_a_carriage_return_cannot_forge_another_tasks_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = _capture(monkeypatch, tty=True)
    sink = Renderer().prefixed("a.py", 4)
    sink(1, b"x\rb.py | fake\r\nok\n")
    # Each piece is a line of a.py's own: nothing can overwrite its prefix on a terminal.
    assert out.buffer.getvalue() == b"a.py | x\na.py | b.py | fake\na.py | ok\n"


def test_prefixed_output_cuts_a_flood_without_newlines_outside_colour_sequences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, _ = _capture(monkeypatch, tty=True)
    sink = Renderer().prefixed("t", 1)
    colour = b"\x1b[31m"
    sink(1, b"x" * (MAX_LINE - 2) + colour + b"y" * 10)
    sink.close()
    lines = out.buffer.getvalue().split(b"\n")
    assert lines[0] == b"t | " + b"x" * (MAX_LINE - 2)
    assert lines[1] == b"t | " + colour + b"y" * 10


def test_prefixed_output_with_raw_output_is_unfiltered(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = _capture(monkeypatch, tty=True)
    sink = Renderer(raw_output=True).prefixed("t", 1)
    sink(1, b"\x1b[2Jraw\n")
    assert out.buffer.getvalue() == b"t | \x1b[2Jraw\n"
