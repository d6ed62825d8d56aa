"""The ``.aido/`` workspace: found like git finds ``.git`` (the current directory or
the nearest ancestor that has one), created by ``sandbox up`` when there is none.

Layout::

    .aido/
      .gitignore          # '*': sandboxes never pollute the project's git status
      active              # id of the active sandbox
      events.log          # workspace-level events (sandbox_destroyed)
      sandboxes/<id>/
        inputs/ work/ outputs/     # mounted into the container
        sandbox.json  events.log   # metadata, written only by aido
        runs.jsonl                 # the run index, append-only (see aido.store.runindex)
        .running/run-001           # one empty file per run marked running in runs.jsonl
        runs/run-001/              # per-run evidence; only the task file is mounted (read-only)
      archive/<id>/                # a destroyed sandbox's evidence (see aido.store.archive)
        sandbox.json  events.log  inputs.json  runs.jsonl  runs/run-001/
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from aido.errors import WorkspaceError
from aido.fs import atomic_write_bytes
from aido.store.ids import check_sandbox_id, is_sandbox_id
from aido.values import dataclass

DIRNAME = ".aido"
# Every file name of the layout, here and nowhere else (the CLI's readers and the output
# capture, which cannot import this module, spell the run files the same way).
METADATA = "sandbox.json"
EVENTS = "events.log"
INPUTS_MANIFEST = "inputs.json"
SECRETS = "secrets.json"
LOCK = ".lock"
DESTROYING = ".destroying"
REAPER_LOG = "reaper.log"
RUNS = "runs"
# The run index: one line per run start or close, the last line for a run id wins.
RUN_INDEX = "runs.jsonl"
# Runs the index marks running, one empty file each: what a sweep looks at on every command.
RUNNING = ".running"
# A destroyed sandbox's archive while it is being made, and while it is being purged.
PARTIAL = ".partial"
PURGE = ".purge"
# Inside runs/<run-id>/.
SUMMARY = "summary.json"
STDOUT = "stdout.log"
STDERR = "stderr.log"
CHANGES = "changes.diff"
NETWORK_LOG = "network.jsonl"  # an egress allowlist's requests, one JSON object each (evidence/network.py)
EGRESS_CONFIG = "egress-squid.conf"  # the egress proxy's configuration: the policy it enforced
ATTESTATION = "attestation.intoto.json"  # the run's seal (evidence/seal.py)
NODE_EVIDENCE = "node-evidence.tar"  # a cluster run: the node's own sealed bundle (aido.cluster)
WARM = "warm"  # the warm pool's bookkeeping (store/pool.py)
SEAL_PENDING = ".seal-pending"  # one empty file per run not sealed yet (run/seal.py)
TASK_DIR = "task"


def run_evidence(run_id: str, name: str | None = None) -> str:
    """Where a run's evidence (or one file of it) is, relative to its sandbox's directory,
    as sandbox.json records it: ``runs/run-001``."""
    return f"{RUNS}/{run_id}" if name is None else f"{RUNS}/{run_id}/{name}"


@dataclass(frozen=True)
class SandboxPaths:
    root: Path

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def runs(self) -> Path:
        return self.root / RUNS

    @property
    def metadata(self) -> Path:
        return self.root / METADATA

    @property
    def events(self) -> Path:
        return self.root / EVENTS

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def run_index(self) -> Path:
        return self.root / RUN_INDEX

    @property
    def running(self) -> Path:
        return self.root / RUNNING

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    @property
    def warm(self) -> Path:
        """The warm pool: which pre-started containers are starting, ready or claimed by a run."""
        return self.root / WARM

    @property
    def seal_pending(self) -> Path:
        return self.root / SEAL_PENDING

    @property
    def destroying(self) -> Path:
        """Present while the sandbox is being destroyed: running tasks stop, new runs are refused."""
        return self.root / DESTROYING

    def going(self) -> bool:
        """Being destroyed, or already gone: no run may start, a running one must stop."""
        return self.destroying.exists() or not self.metadata.exists()

    @property
    def secrets(self) -> Path:
        """Values of secret-looking env variables (mode 0600), kept out of sandbox.json."""
        return self.root / SECRETS

    @property
    def inputs_manifest(self) -> Path:
        """What `sandbox up` copied into inputs/ (path, size, SHA-256), written by aido."""
        return self.root / INPUTS_MANIFEST


@dataclass(frozen=True)
class Workspace:
    """A project directory's ``.aido`` folder. ``root`` is the project directory."""

    root: Path

    @property
    def dir(self) -> Path:
        return self.root / DIRNAME

    @property
    def sandboxes(self) -> Path:
        return self.dir / "sandboxes"

    @property
    def events(self) -> Path:
        return self.dir / EVENTS

    @property
    def archive(self) -> Path:
        """Destroyed sandboxes' evidence, one directory per sandbox (see aido.store.archive)."""
        return self.dir / "archive"

    @property
    def config_file(self) -> Path:
        return self.dir / "config.json"

    @property
    def server_lock(self) -> Path:
        """Held by the workspace's command server (cli/server.py) while it runs."""
        return self.dir / "server.lock"

    @property
    def server_socket(self) -> Path:
        """Where the command server listens (cli/client.py looks for this name)."""
        return self.dir / "run.sock"

    @property
    def reaper_lock(self) -> Path:
        """Held by the one TTL reaper process of this workspace while it runs."""
        return self.dir / "reaper.lock"

    @property
    def reaper_log(self) -> Path:
        return self.dir / REAPER_LOG

    @property
    def containers_left(self) -> Path:
        """Present while containers may remain that an aido process failed to remove
        (the engine was down): the next command's sweep looks for them by label."""
        return self.dir / "containers-left"

    @classmethod
    def find(cls, start: Path | None = None) -> Workspace | None:
        here = (start or Path.cwd()).resolve()
        for candidate in (here, *here.parents):
            if (candidate / DIRNAME / "sandboxes").is_dir():
                return cls(candidate)
        return None

    @classmethod
    def require(cls, start: Path | None = None) -> Workspace:
        found = cls.find(start)
        if found is None:
            raise WorkspaceError(
                "no aido workspace here or in any parent directory",
                hint="create one with a sandbox: `aido sandbox up`",
            )
        return found

    @classmethod
    def find_or_create(cls, start: Path | None = None) -> Workspace:
        found = cls.find(start)
        if found is not None:
            return found
        workspace = cls((start or Path.cwd()).resolve())
        try:
            workspace.sandboxes.mkdir(parents=True, exist_ok=True)
            gitignore = workspace.dir / ".gitignore"
            if not gitignore.exists():
                atomic_write_bytes(gitignore, b"# created by aido: sandboxes are local state\n*\n")
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the workspace {workspace.dir}: {exc.strerror}",
                hint="run aido in a directory you can write to",
            ) from None
        return workspace

    def sandbox(self, sandbox_id: str) -> SandboxPaths:
        """Paths of a sandbox; the id is validated and the path must stay inside the workspace."""
        check_sandbox_id(sandbox_id)
        root = self.sandboxes / sandbox_id
        if root.resolve().parent != self.sandboxes.resolve():
            raise WorkspaceError(f"sandbox path {root} escapes the workspace")
        return SandboxPaths(root)

    def archived(self, sandbox_id: str) -> SandboxPaths:
        """Paths of a destroyed sandbox's archived evidence (runs/, sandbox.json, events.log)."""
        check_sandbox_id(sandbox_id)
        return SandboxPaths(self.archive / sandbox_id)

    def archived_ids(self) -> list[str]:
        """Destroyed sandboxes whose evidence is archived (finished archives only)."""
        try:
            names = os.listdir(self.archive)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            n
            for n in names
            if is_sandbox_id(n) and (self.archive / n).is_dir() and not (self.archive / n).is_symlink()
        )

    def sandbox_ids(self) -> list[str]:
        try:
            names = os.listdir(self.sandboxes)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if is_sandbox_id(n) and (self.sandboxes / n / METADATA).is_file())

    # -- the active sandbox -------------------------------------------------------------

    @property
    def _active_file(self) -> Path:
        return self.dir / "active"

    def active_id(self, *, strict: bool = False) -> str | None:
        """The active sandbox's id. A pointer file that is there but holds no valid id is
        None, or, with ``strict`` (choosing where a task runs), an error."""
        try:
            value = self._active_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            value = "?"
        if not is_sandbox_id(value):
            if not strict:
                return None
            # A pointer that is there but unreadable must not silently mean "the newest sandbox".
            raise WorkspaceError(
                f"{self._active_file} does not hold a sandbox id",
                hint="name the sandbox (`--sandbox ID`; `aido sandbox destroy ID`), or remove that file",
            )
        return value

    def set_active(self, sandbox_id: str | None) -> None:
        if sandbox_id is None:
            with contextlib.suppress(FileNotFoundError):
                self._active_file.unlink()
            return
        atomic_write_bytes(self._active_file, f"{sandbox_id}\n".encode("ascii"))
