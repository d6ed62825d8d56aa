"""`aido completion bash|zsh|fish`: the shell completion script, from click's own
completion classes (the same script `_AIDO_COMPLETE=bash_source aido` prints), and the
completion of sandbox ids for the commands that take one."""

from __future__ import annotations

import os

import click

from aido.cli.options import CONTEXT

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_AIDO_COMPLETE"


@click.command("completion", context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    Load it in the current shell, or add that line to the shell's start-up file:
      bash (~/.bashrc):     eval "$(aido completion bash)"
      zsh  (~/.zshrc):      eval "$(aido completion zsh)"
      fish (config.fish):   aido completion fish | source

    Commands, options and sandbox ids complete (plugins' commands too).
    """
    from click.shell_completion import get_completion_class

    root = click.get_current_context().find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    script = cls(root.command, {}, "aido", COMPLETE_VAR).source()
    click.echo(script)


def complete_sandbox_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """The sandbox ids of the workspace here (a directory listing: no engine, no lock)."""
    from click.shell_completion import CompletionItem

    from aido.store.ids import is_sandbox_id
    from aido.store.workspace import Workspace

    try:
        workspace = Workspace.find()
        names = os.listdir(workspace.sandboxes) if workspace is not None else []
    except OSError:
        return []
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete) and is_sandbox_id(n)]
