"""Reads of the workspace's evidence that the CLI still does itself, past the manager.

They belong behind the manager (the store owns the files' layout); they are kept here,
together, so the facade can take them over without touching any command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aido.log import log

if TYPE_CHECKING:
    from aido.manager import SandboxManager
    from aido.store.records import RunRef


def captured_output(manager: SandboxManager, sandbox_id: str, run_id: str) -> dict[str, str]:
    """A run's stdout.log and stderr.log as text ("" for a stream it never wrote)."""
    from aido.store.workspace import STDERR, STDOUT

    run_dir = manager.run_dir(sandbox_id, run_id)
    texts = {}
    for name, file in (("stdout", STDOUT), ("stderr", STDERR)):
        try:
            texts[name] = (run_dir / file).read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            texts[name] = ""
    return texts


def run_ending(manager: SandboxManager, sandbox_id: str, ref: RunRef) -> tuple[str, int, bool] | None:
    """(outcome line, exit code, ok) of an ended run, from its summary.json; None while
    it has none (still running in another process)."""
    from aido import fs
    from aido.run.verdict import outcome_of_summary
    from aido.store.workspace import SUMMARY

    if ref.status == "running":
        log.warning("%s is still marked running; it has no outcome yet", ref.run_id)
        return None
    try:
        summary = fs.read_json(manager.run_dir(sandbox_id, ref.run_id) / SUMMARY)
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict):
        # No summary (lost or unreadable): the record's status is all there is to go on.
        summary = {"status": ref.status, "exit_code": ref.exit_code, "duration_ms": ref.duration_ms}
    return outcome_of_summary(summary)


def archived_count(manager: SandboxManager) -> int:
    """How many destroyed sandboxes have archived evidence (0 without a workspace)."""
    workspace = manager.find_workspace()
    return 0 if workspace is None else len(workspace.archived_ids())
