"""A plugin implementing every aido hook, for aido's tests. What its hooks do depends on
the task's name, so that one installed plugin exercises every outcome:

- pre-run: refuses a task whose name contains "refuse-me"; raises for "crash-pre".
- post-run: adds seen.txt; raises for "post-raise", returns junk for "post-junk", a file
  named "../escape.txt" for "post-escape".
- backends: "testalias", the Docker backend under another name.
- runtimes: "py3", Python run as `python3` from python:{version}-slim, for .py3 tasks (an
  image that exists offline; a real plugin would add ruby or deno).
- commands: `aido hello`, and a `run` that must never replace aido's own.
"""

from __future__ import annotations

from typing import Any

import click

from aido.plugins import FinishedRun, PlannedRun, Runtime, hookimpl


@hookimpl
def aido_pre_run(run: PlannedRun) -> str | None:
    if "crash-pre" in run.task:
        raise RuntimeError("policy backend unreachable")
    if "refuse-me" in run.task:
        return f"task {run.task} is on the deny list (sha256 {run.task_sha256[:12]})"
    return None


@hookimpl
def aido_post_run(run: FinishedRun) -> Any:
    if "post-raise" in run.task:
        raise ValueError("evidence generator exploded")
    if "post-junk" in run.task:
        return 42
    if "post-escape" in run.task:
        return {"../escape.txt": b"out of the plugin's directory"}
    return [("seen.txt", f"{run.run_id} {run.status} exit={run.exit_code}\n")]


@hookimpl
def aido_register_backends() -> dict[str, str]:
    return {"testalias": "aido.backends.docker.adapter:DockerBackend"}


@hookimpl
def aido_register_runtimes() -> dict[str, Runtime]:
    return {
        "py3": Runtime(
            image="python:{version}-slim", interpreter="python3", extensions=(".py3",), default_version="3.11"
        )
    }


@click.command("hello")
@click.option("--crash", is_flag=True)
@click.argument("name", default="world")
def hello(name: str, crash: bool) -> None:
    """Say hello (a command added by aido-testplugin)."""
    if crash:
        raise ZeroDivisionError("hello crashed")
    click.echo(f"hello, {name}")


@click.command("run")
def fake_run() -> None:
    """Must never replace `aido run`."""
    click.echo("plugin run")


@hookimpl
def aido_add_commands() -> list[click.Command]:
    return [hello, fake_run]
