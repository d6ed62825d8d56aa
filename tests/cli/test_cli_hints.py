"""Every `aido ...` command that aido's messages and hints quote exists, with its options."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

import aido
from aido.cli.app import cli

SRC = Path(aido.__file__).parent
QUOTED = re.compile(r"`aido ([^`]*)`")


def quoted_commands() -> list[tuple[str, str]]:
    """(file, the text after `aido `) for every backticked aido command in a string literal."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [(path.name, m) for m in QUOTED.findall(node.value)]
            elif isinstance(node, ast.JoinedStr):  # an f-string: each {value} stands for a word
                text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
                found += [(path.name, m) for m in QUOTED.findall(text) if "X" in m]
    return found


def problem(words: list[str]) -> str | None:
    command: click.Command = cli
    options: set[str] = set()
    for i, word in enumerate(words):
        if word == "--":  # what follows is the task's own arguments
            return None
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            continue
        params = command.get_params(click.Context(command))  # with --help
        options |= {o for p in params for o in (*p.opts, *p.secondary_opts)}
        if word.startswith("-") and word.split("=", 1)[0] not in options:
            return f"{' '.join(words[:i])} has no option {word}"
    return None


def test_quoted_commands_exist() -> None:
    quoted = quoted_commands()
    assert len(quoted) > 5  # the scan finds them
    wrong = [(f, text, problem(text.split())) for f, text in quoted if problem(text.split())]
    assert wrong == []


def test_the_check_catches_an_option_of_another_command() -> None:
    assert problem(["run", "--ttl", "1h"]) == "run has no option --ttl"
    assert problem(["run", "task.py", "--", "--ttl", "1h"]) is None  # the task's arguments
    assert problem(["sandbox", "up", "--runtime", "python:3.12"]) is None
    assert problem(["sandbox", "destroy", "--sandbox", "ID"]) == "sandbox destroy has no option --sandbox"
