"""The sandbox store: the one owner of a workspace's records on disk.

Every change to a ``sandbox.json`` goes through ``transaction`` (lock, load, change,
save), run ids are allocated here in order and runs recorded in the append-only run index
(``runs.jsonl``, aido.store.runindex), and the small readers of aido-written files
(secrets, the inputs manifest, a quick unvalidated peek) live here so that nothing else
opens the layout by hand. File names come from ``aido.store.workspace`` only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from aido import fs
from aido.errors import MetadataError, SandboxNotFound
from aido.log import log
from aido.store import runindex
from aido.store.ids import run_id, run_number
from aido.store.records import RunRef, SandboxRecord, isoformat, parse_time, utcnow
from aido.store.workspace import SandboxPaths, Workspace, run_evidence
from aido.values import dataclass


def peek(paths: SandboxPaths) -> Any:
    """sandbox.json parsed but not validated, or None if it cannot be read or parsed."""
    try:
        return fs.read_json(paths.metadata)
    except (OSError, ValueError):
        return None


def wants_reaper(data: object, marked: Collection[str] = ()) -> bool:
    """Whether a sandbox, from its parsed sandbox.json and the runs marked running
    (``marked_running``), may need the reaper: it has auto-cleanup (to destroy at expiry)
    or a run marked running (to recover)."""
    if not isinstance(data, dict):
        return False
    if data.get("auto_cleanup", True) or marked or keeps_pool(data):
        return True
    runs = data.get("runs")  # a schema-1 file not migrated yet
    return isinstance(runs, list) and any(isinstance(r, dict) and r.get("status") == "running" for r in runs)


def keeps_pool(data: dict[str, Any]) -> bool:
    """A live sandbox with a warm pool (``warm: N``): the reaper keeps the pool filled."""
    config = data.get("config")
    if not isinstance(config, dict) or not config.get("warm") or data.get("status") == "destroyed":
        return False
    try:
        return utcnow() < parse_time(str(data.get("expires_at")))
    except ValueError:
        return False


def marked_running(paths: SandboxPaths) -> list[str]:
    """Runs marked running in the index, from their ``.running`` markers (one listdir, not
    a read of the index): what a sweep on every command looks at."""
    return runindex.marked(paths.running)


def subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def live_runs(paths: SandboxPaths) -> list[str]:
    """Runs whose aido process is alive (it holds the run directory's lock), from the run
    directories, not sandbox.json: a sandbox whose metadata is corrupt or from a newer aido
    must still be seen as busy."""
    return sorted(p.name for p in subdirs(paths.runs) if fs.is_locked(p))


def read_secrets(paths: SandboxPaths) -> dict[str, str]:
    try:
        data = fs.read_json(paths.secrets)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MetadataError(f"{paths.secrets} is unreadable: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise MetadataError(f"{paths.secrets} is invalid: expected names mapped to strings")
    return {str(k): v for k, v in data.items()}


def read_inputs_manifest(paths: SandboxPaths) -> list[dict[str, Any]]:
    """What was copied into inputs/ at `sandbox up` (path, size, SHA-256), written by aido."""
    try:
        data = fs.read_json(paths.inputs_manifest)
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def refuse_going(paths: SandboxPaths, sandbox_id: str) -> None:
    """No run may start (nor a sandbox be used) once its destroy has begun."""
    if paths.going():
        raise SandboxNotFound(
            f"sandbox {sandbox_id} is being destroyed",
            hint="create a new sandbox with `aido sandbox up`",
        )


@dataclass(frozen=True)
class SandboxStore:
    workspace: Workspace

    def paths(self, sandbox_id: str) -> SandboxPaths:
        return self.workspace.sandbox(sandbox_id)

    def load(self, sandbox_id: str) -> SandboxRecord:
        return self.load_at(self.workspace.sandbox(sandbox_id), sandbox_id)

    def load_at(self, paths: SandboxPaths, sandbox_id: str) -> SandboxRecord:
        try:
            data = fs.read_json(paths.metadata)
        except FileNotFoundError:
            raise SandboxNotFound(
                f"no sandbox {sandbox_id} in {self.workspace.dir}",
                hint="list sandboxes with `aido sandbox list`",
            ) from None
        except (OSError, ValueError) as exc:
            raise MetadataError(f"{paths.metadata} is unreadable: {exc}") from None
        return SandboxRecord.from_json(data, source=str(paths.metadata), run_index=paths.run_index)

    def save(self, record: SandboxRecord) -> None:
        fs.atomic_write_bytes(self.workspace.sandbox(record.id).metadata, record.to_bytes())

    @staticmethod
    def migrate_runs(paths: SandboxPaths, record: SandboxRecord, *, live: bool = True) -> None:
        """Move a schema-1 record's runs list into the run index (the caller holds the
        sandbox's lock): the runs are appended first, then sandbox.json is rewritten without
        them, atomically. A crash between the two leaves both; the index then wins, and the
        next migration appends the same runs again, which changes nothing (last line wins).
        Runs it marks running get their ``.running`` markers first (``live``: not in an
        archive, whose runs are all closed)."""
        if record.legacy_runs is None:
            return
        runs = record.runs  # the list with the index over it: the index wins
        for ref in runs:
            if live and ref.status == "running":
                runindex.mark(paths.running, ref.run_id)
        runindex.append(paths.run_index, runs)
        record.legacy_runs = None
        fs.atomic_write_bytes(paths.metadata, record.to_bytes())

    def put_run(self, paths: SandboxPaths, ref: RunRef) -> None:
        """Record a run's current entry (the caller holds the sandbox's lock): one appended
        line; a run no longer running loses its ``.running`` marker after it."""
        runindex.append(paths.run_index, [ref])
        if ref.status != "running":
            runindex.unmark(paths.running, ref.run_id)

    def drop_stale_mark(self, paths: SandboxPaths, rid: str) -> None:
        """Under the sandbox's lock, a marker whose run the index does not mark running
        was left by a crash between the index line and the marker: remove it."""
        runindex.unmark(paths.running, rid)

    @contextlib.contextmanager
    def transaction(
        self, sandbox_id: str, *, check: Callable[[SandboxPaths], None] | None = None
    ) -> Iterator[SandboxRecord]:
        """The sandbox's record under its lock, saved when the block leaves it changed (and
        did not raise). ``check`` runs under the lock before the load (e.g. refuse a sandbox
        being destroyed). FileNotFoundError: the sandbox directory is gone."""
        paths = self.workspace.sandbox(sandbox_id)
        with fs.locked(paths.lock):
            if check is not None:
                check(paths)
            record = self.load(sandbox_id)
            self.migrate_runs(paths, record)
            before = record.to_bytes()
            yield record
            after = record.to_bytes()
            if after != before:
                fs.atomic_write_bytes(paths.metadata, after)

    # -- evidence of live and destroyed sandboxes -------------------------------------

    def evidence_paths(self, sandbox_id: str) -> SandboxPaths:
        live = self.workspace.sandbox(sandbox_id)
        if live.metadata.exists():
            return live
        archived = self.workspace.archived(sandbox_id)
        return archived if archived.root.is_dir() else live

    def load_evidence(self, sandbox_id: str) -> tuple[SandboxRecord, SandboxPaths]:
        """A sandbox's record and paths for reading its runs: the live sandbox, or else its
        archive once it was destroyed. Never for starting a run."""
        paths = self.evidence_paths(sandbox_id)
        try:
            return self.load_at(paths, sandbox_id), paths
        except SandboxNotFound:
            archived = self.workspace.archived(sandbox_id)
            if paths == archived or not archived.root.is_dir():
                raise
            return self.load_at(archived, sandbox_id), archived  # archived just now

    # -- runs --------------------------------------------------------------------------

    def begin_run(self, sandbox_id: str, task: str, number: int | None = None) -> tuple[str, Path, int]:
        """Allocate the next run id under the sandbox lock and mark the run as running.
        The returned descriptor holds a lock on the run directory for as long as this
        process runs the task: a running run whose lock is free was orphaned.

        The next id comes from the names in runs/ (one listdir, no read of the index):
        every run id ever taken has its directory, made here under this lock before its
        index line is written, and aido removes none of them while the sandbox lives."""
        paths = self.workspace.sandbox(sandbox_id)
        lock_fd = -1
        try:
            with self.transaction(sandbox_id, check=lambda p: refuse_going(p, sandbox_id)) as current:
                taken = [run_number(name) or 0 for name in os.listdir(paths.runs)]
                taken += [run_number(r.run_id) or 0 for r in current.runs_read()]  # just migrated
                # A cluster node takes the number its driver gave (its sandbox is new).
                rid = run_id(max(max(taken, default=0) + 1, number or 0))
                run_dir = paths.run_dir(rid)
                run_dir.mkdir(mode=0o755)  # exclusive: fails rather than share a directory
                held = fs.hold_lock(run_dir)
                assert held is not None
                lock_fd = held
                # The marker first: a crash before the index line leaves a marker the next
                # sweep drops, never a run marked running that no sweep would look at.
                runindex.mark(paths.running, rid)
                started = RunRef(
                    run_id=rid,
                    task=task,
                    status="running",
                    started_at=isoformat(utcnow()),
                    evidence=run_evidence(rid),
                )
                self.put_run(paths, started)
        except FileNotFoundError:
            if lock_fd >= 0:
                os.close(lock_fd)
            raise SandboxNotFound(
                f"sandbox {sandbox_id} was destroyed", hint="create a new sandbox with `aido sandbox up`"
            ) from None
        except BaseException:
            if lock_fd >= 0:
                os.close(lock_fd)
            raise
        return rid, run_dir, lock_fd

    def close_run(self, sandbox_id: str, ref: RunRef) -> None:
        """Record a run's closed entry: one line appended to the index (sandbox.json is
        not rewritten)."""
        with self.transaction(sandbox_id):
            self.put_run(self.workspace.sandbox(sandbox_id), ref)

    # -- containers --------------------------------------------------------------------

    def mark_containers_left(self) -> None:
        """Make the next command's sweep look for containers that could not be removed."""
        try:
            self.workspace.containers_left.touch()
        except OSError as exc:
            log.debug("could not mark containers left: %s", exc)

    def workspace_label(self) -> str:
        """The `aido.workspace` label on every container: how a sweep finds this workspace's."""
        return str(self.workspace.root)[:1024]
