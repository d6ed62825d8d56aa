"""What a run (and `sandbox up`, which may pull an image) reports to the terminal while
it happens: image pull progress, the start line, the task's output, warnings, the y/N
confirmation of widened permissions, and the signal aido is exiting for.

The facade takes these as ``RunHooks`` and a ``Confirm`` callable; ``TerminalObserver``
is the one place the CLI builds them, so every command reports the same way."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from aido.cli.render import Renderer
    from aido.cli.state import AppState
    from aido.run.request import RunHooks

Confirm = Callable[[list[str]], bool]
OutputSink = Callable[[int, bytes], None]


class TerminalObserver:
    """Reports through ``out`` (human lines on stderr, or nothing with --json) and
    records on ``state`` what the error funnel needs (the run id once one started)."""

    def __init__(self, out: Renderer, state: AppState, *, yes: bool = False) -> None:
        self._out = out
        self._state = state
        self._yes = yes  # --yes: widened permissions are confirmed without asking

    # -- image pull ---------------------------------------------------------------------

    @property
    def on_pull(self) -> Callable[[str], None] | None:
        """Progress of an image pull on stderr; with --json, none (stdout is the document)."""
        return None if self._out.json_mode else self.pulling

    def pulling(self, line: str) -> None:
        self._out.progress(f"⬇ pulling {line}")

    def pulled(self) -> None:
        """Ends the progress line (also when the pull or the run failed)."""
        self._out.progress_done()

    # -- one run ------------------------------------------------------------------------

    def started(self, sandbox_id: str, run_id: str, task: str, image: str) -> None:
        self._state.context["run_id"] = run_id
        self._out.progress_done()
        self._out.say(f"⚡ Running task: {task} ({run_id} in sandbox {sandbox_id}, {image})")
        self._out.separator()

    def output(self, stream: int, chunk: bytes) -> None:
        self._out.task_output(stream, chunk)

    def warning(self, message: str) -> None:
        """A warning about the run (widened permissions, a short secret, ...), printed like
        the escape hatches' warnings."""
        self._out.warn(message)

    def signal_exit(self) -> int | None:
        """What aido exits with for the signal that interrupted it (None: Ctrl-C or none);
        read when a run ends, so it is recorded with the run's verdict."""
        return self._state.signal_exit

    def run_hooks(self, sandbox_id: str) -> RunHooks:
        """Hooks for `aido run` with one task: everything shown as it happens."""
        from aido.run.request import RunHooks

        def on_start(run_id: str, task: str, image: str) -> None:
            self.started(sandbox_id, run_id, task, image)

        return RunHooks(
            on_pull=self.on_pull,
            on_start=on_start,
            on_output=None if self._out.json_mode else self.output,
            on_warning=self.warning,
            signal_exit=self.signal_exit,
        )

    def batch_hooks(self, on_output: OutputSink | None) -> RunHooks:
        """Hooks for one run of a batch: its output goes to its own (prefixed) sink."""
        from aido.run.request import RunHooks

        return RunHooks(on_output=on_output, on_warning=self.warning, signal_exit=self.signal_exit)

    # -- confirmation -------------------------------------------------------------------

    def confirmer(self, question: str) -> Confirm:
        """Widened permissions (a sandbox.yaml's at `sandbox up`, escape hatches at `run`,
        the evidence --purge deletes): one warning each, then ``question`` as y/N on a
        terminal; without one, only --yes confirms."""

        def confirm(warnings: list[str]) -> bool:
            for warning in warnings:
                self._out.warn(warning)
            if self._yes:
                return True
            if not (sys.stdin.isatty() and sys.stderr.isatty()):
                return False
            return click.confirm(f"aido: {question}", default=False, err=True)

        return confirm
