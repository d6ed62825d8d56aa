"""What every stage of a run and every lifecycle operation works against: the workspace,
the engine backend and the settings of one aido process, each created on first use.

The facade (``aido.manager.SandboxManager``) is this plus its public methods; the reaper
uses it bare. Nothing here decides policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Self

from aido.config.settings import DEFAULT_EVIDENCE_RETENTION
from aido.errors import RuntimeUnavailable
from aido.store.store import SandboxStore
from aido.store.workspace import Workspace

if TYPE_CHECKING:
    from aido.backends.base import Backend


class Context:
    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        backend: Backend | None = None,
        output_limit: int | None = None,
        evidence_retention: float | None = DEFAULT_EVIDENCE_RETENTION,
    ) -> None:
        self._workspace = workspace
        self._backend = backend
        self.output_limit = output_limit
        # How long a destroyed sandbox's archived evidence is kept (seconds); None: forever.
        self.evidence_retention = evidence_retention
        # Set by each sweep from the metadata it read anyway: whether a sandbox it left has
        # auto-cleanup or a running run, i.e. whether the TTL reaper has work here.
        self.reaper_needed = False

    def fork(self) -> Self:
        """One for another thread: same workspace and settings, its own engine connection
        (adapters are not thread-safe)."""
        backend = type(self._backend)() if self._backend is not None else None
        return type(self)(
            self.workspace,
            backend=backend,
            output_limit=self.output_limit,
            evidence_retention=self.evidence_retention,
        )

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace.require()
        return self._workspace

    @property
    def workspace_if_any(self) -> Workspace | None:
        """The workspace, or None when there is none (where `workspace` would raise)."""
        return self._workspace

    def find_workspace(self) -> Workspace | None:
        """The workspace, found (and kept) if there is one; None where `workspace` would raise."""
        if self._workspace is None:
            self._workspace = Workspace.find()
        return self._workspace

    def open_workspace(self, start: Path | None) -> Workspace:
        """The workspace, created at ``start`` (or the current directory) if there is none."""
        if self._workspace is None:
            self._workspace = Workspace.find_or_create(start)
        return self._workspace

    @property
    def store(self) -> SandboxStore:
        return SandboxStore(self.workspace)

    @property
    def backend(self) -> Backend:
        """The engine adapter runs go through (the spec's "runtime" is the task's image)."""
        if self._backend is None:
            from aido.backends.registry import get_backend

            self._backend = get_backend()
        return self._backend

    def remove_containers(self, labels: dict[str, str]) -> list[str]:
        """Remove containers by label, then the networks with those labels (a run's egress
        network, whose proxy must go first); if any may remain, mark the workspace and re-raise."""
        try:
            removed = self.backend.remove_labelled(labels)
            # Networks only of this workspace: another's runs may have the same ids.
            self.backend.remove_networks({**labels, "aido.workspace": self.store.workspace_label()})
            return removed
        except RuntimeUnavailable:
            self.store.mark_containers_left()
            raise
