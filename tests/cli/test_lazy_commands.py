"""A command's module is imported only when that command runs (issue 12: start-up cost):
`aido run` does not import cluster, mcp, plugins and the other commands, while `aido --help`
still lists every command, in order, with its short help."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from aido.cli.app import COMMANDS, cli
from aido.cli.plugged import AidoGroup
from tests.helpers.cli import loaded_modules


def test_a_run_imports_only_its_own_command(sandbox: str, project: Path) -> None:
    (project / "t.py").write_text("print(1)\n")
    done = loaded_modules("run", "t.py", watch=["aido.cli.commands"], cwd=project)
    assert done.code == 0, done.stderr
    # completion: run's --sandbox completes sandbox ids.
    assert done.modules == ["aido.cli.commands", "aido.cli.commands.completion", "aido.cli.commands.run"]


def test_a_run_imports_no_http_client_logging_or_shutil(sandbox: str, project: Path) -> None:
    """The engine client speaks HTTP itself (http.client would import email, ssl and
    random), aido's logger imports logging only to show something, and shutil (with bz2 and
    lzma) is imported only where it is used: ~16 ms of a start."""
    (project / "t.py").write_text("print(1)\n")
    watch = ["http", "ssl", "email", "logging", "random", "shutil"]
    done = loaded_modules("run", "t.py", watch=watch, cwd=project)
    assert done.code == 0, done.stderr
    assert done.stdout == "1\n"
    assert done.modules == []


def test_help_lists_every_command_by_its_own_name() -> None:
    shown = CliRunner().invoke(cli, ["--help"]).output
    for name in COMMANDS:
        command = cli.commands[name]  # imported here
        assert isinstance(command, click.Command) and command.name == name
        assert f"  {name} " in shown
    assert list(cli.list_commands(click.Context(cli))) == sorted(COMMANDS)


def test_the_lazy_map_behaves_as_a_mapping() -> None:
    group = AidoGroup(name="g")
    group.add_lazy_command("doctor", "aido.cli.commands.doctor:doctor")
    assert "doctor" in group.commands and "nope" not in group.commands
    assert list(group.commands) == ["doctor"] and len(group.commands) == 1
    assert group.commands.get("nope") is None
    assert group.get_command(click.Context(group), "doctor") is group.commands["doctor"]
    extra = click.Command("extra")
    group.add_command(extra)  # eager commands mix with lazy ones
    assert sorted(group.commands) == ["doctor", "extra"]
    del group.commands["doctor"]
    assert list(group.commands) == ["extra"]
