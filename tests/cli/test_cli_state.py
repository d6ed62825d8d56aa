"""The invocation's state lives on the click context, not in a module global: each
`main()` call starts from a fresh one, whatever an earlier call in the same process set."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from aido.cli.app import main
from aido.cli.observer import TerminalObserver
from aido.cli.render import Renderer
from aido.cli.state import AppState


@pytest.fixture(autouse=True)
def signal_handlers() -> Iterator[None]:
    """main() installs aido's handlers for SIGTERM, SIGHUP and SIGINT: give pytest its own back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize("argv", [["--json", "sandbox", "list"], ["sandbox", "list", "--json"]])
def test_a_global_option_before_or_after_the_command_name(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no workspace: nothing to list, no engine needed
    code, out, _ = invoke(argv, capsys)
    assert code == 0
    assert json.loads(out) == {
        "schema_version": 1,
        "command": "sandbox list",
        "status": "success",
        "exit_code": 0,
        "sandboxes": [],
        "error": None,
    }


def test_no_state_leaks_from_one_invocation_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    invoke(["sandbox", "list", "--json"], capsys)
    code, out, err = invoke(["sandbox", "list"], capsys)
    assert (code, out) == (0, "")
    assert err == "No sandboxes. Create one with `aido sandbox up`.\n"
    # A usage error before any command ran is reported as "aido", not as the last command.
    code, out, _ = invoke(["--json", "bogus"], capsys)
    assert code == 2
    assert json.loads(out)["command"] == "aido"


def test_the_observer_confirms_with_yes_and_refuses_without_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = AppState()
    warnings = ["--network: the task can reach the network, including your local network"]
    assert TerminalObserver(Renderer(), state, yes=True).confirmer("go?")(warnings) is True
    assert TerminalObserver(Renderer(), state).confirmer("go?")(warnings) is False  # stdin is no tty
    assert capsys.readouterr().err.count("warning: --network") == 2


def test_the_observer_records_the_run_and_reads_the_signal_when_asked() -> None:
    state = AppState()
    observer = TerminalObserver(Renderer(json_mode=True), state)
    hooks = observer.run_hooks("abcdefghijkl")
    assert hooks.on_pull is None and hooks.on_output is None  # stdout is the JSON document
    assert hooks.on_start is not None and hooks.signal_exit is not None
    hooks.on_start("run-001", "t.py", "python:3.11-slim")
    assert state.context == {"run_id": "run-001"}
    assert hooks.signal_exit() is None
    state.signal_exit = 143  # as SIGTERM's handler sets it, after the hooks were made
    assert hooks.signal_exit() == 143
