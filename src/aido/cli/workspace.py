"""The manager each command works through, opened on this directory's workspace with
aido's settings, and the sweep every command does on its way. Imports are local so that
`aido --version` and `--help` load none of this."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aido.errors import AidoError
from aido.log import log

if TYPE_CHECKING:
    from aido.cli.state import AppState
    from aido.config.settings import Settings
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace


def open_manager(state: AppState) -> SandboxManager:
    """The manager for this directory's workspace. A missing workspace is reported by the
    manager when a command needs one, after the command has checked its own arguments."""
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace

    workspace = Workspace.find()
    settings = load_settings(state, workspace)
    manager = SandboxManager(
        workspace, output_limit=settings.output_limit, evidence_retention=settings.evidence_retention
    )
    sweep(manager)
    return manager


def manager_for_up(state: AppState) -> SandboxManager:
    """`sandbox up`'s manager: there may be no workspace yet (create makes one here), so
    it sweeps only an existing one."""
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace

    existing = Workspace.find()
    manager = SandboxManager(existing, evidence_retention=load_settings(state, existing).evidence_retention)
    if existing is not None:
        sweep(manager)
    return manager


def load_settings(state: AppState, workspace: Workspace | None) -> Settings:
    """aido's settings: --config, else the workspace's .aido/config.json, else the defaults."""
    from aido.config.settings import load_settings as load

    config = state.config
    if config is None and workspace is not None and workspace.config_file.is_file():
        config = workspace.config_file
    return load(config)


def sweep(manager: SandboxManager) -> None:
    """Every command sweeps on its way: expired sandboxes go, orphaned runs are closed."""
    try:
        for action in manager.sweep():
            if action["action"] == "recovered_run":
                log.warning(
                    "recovered %s of sandbox %s: the aido process that ran it had stopped; "
                    "it is recorded as interrupted",
                    action["run_id"],
                    action["sandbox_id"],
                )
        # After a reboot (or a killed reaper) the next command brings the reaper back, so
        # TTLs keep applying even if nobody runs `sandbox up` again.
        from aido.lifecycle.reaper import ensure_running

        workspace = manager.workspace_if_any
        if workspace is not None and manager.reaper_needed:
            ensure_running(workspace)  # does nothing while one runs
    except (AidoError, OSError) as exc:  # cleanup must never stop the command the user asked for
        log.debug("sweep failed: %s", exc)
