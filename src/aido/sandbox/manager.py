"""The sandbox manager: the public Python API behind every ``aido`` command.

It owns lifecycle and policy (ids, directories, metadata, limits, evidence) and
delegates container work to a runtime adapter. It never prints: callers pass
hooks for progress and output, and get structured results back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import __version__, fs
from aido.config.settings import DEFAULT_EVIDENCE_RETENTION
from aido.errors import (
    AidoError,
    ConfigError,
    ImageUnavailable,
    MetadataError,
    NoActiveSandbox,
    NotConfirmed,
    Problem,
    RunNotFound,
    RuntimeUnavailable,
    SandboxBusy,
    SandboxExpired,
    SandboxNotFound,
    TaskNotFound,
    TaskNotRunnable,
    UsageError,
    WorkspaceError,
)
from aido.evidence.events import record_event
from aido.run.result import RunResult, declared_from_summary, streams_from_summary
from aido.store.ids import check_run_id, new_sandbox_id, run_id, run_number
from aido.store.records import (
    RunRef,
    RunSettings,
    SandboxRecord,
    isoformat,
    utcnow,
)
from aido.store.workspace import SandboxPaths, Workspace

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from aido.backends.base import Backend, ExecOutcome, ExecRequest
    from aido.config.runtimes import RuntimeChoice
    from aido.run.batch import BatchResult
    from aido.run.verdict import Breach, Verdict

log = logging.getLogger("aido")

# How to pick another image: a flag of `sandbox up` or a key of sandbox.yaml (`run` has neither).
UP_RUNTIME_HINT = (
    "`aido sandbox up --runtime python:VERSION|node:VERSION|sh|docker://IMAGE`, or `runtime:` in sandbox.yaml"
)

UNPRIVILEGED_UID = 10001  # the task's uid when aido itself runs as root
MAX_TASK_BYTES = 64 << 20
ORPHAN_CHECK_SECONDS = 2.0  # how often `logs --follow` checks that a running run still has a container
DESTROY_WAIT_SECONDS = 15.0  # how long destroy waits for a stopped run to write its evidence
DISK_CHECK_SECONDS = 0.05  # the shortest interval between two disk-usage checks of a running task
HOST_FILESYSTEM_TARGET = "/project"  # where --host-filesystem shows the project directory
GVISOR_PIDS = 1024
CHOICES_SHOWN = 10  # sandboxes named in a "no active sandbox" error; JSON lists them all

# Environment every task gets. The host environment is never passed implicitly.
BASE_ENV = {
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",  # output streams live instead of arriving at exit
    "PYTHONDONTWRITEBYTECODE": "1",  # the root filesystem is read-only
    "XDG_CACHE_HOME": "/tmp/.cache",
    "npm_config_cache": "/tmp/.npm",
    "MPLCONFIGDIR": "/tmp/.mpl",
}


@dataclass(frozen=True)
class Widening:
    """Escape hatches asked for on one run. Each needs confirmation and is recorded."""

    network: bool = False
    host_filesystem: bool = False
    mutations: bool = False

    def warnings(self) -> list[str]:
        """One line per hatch, shaped like widened_permissions': `<option>: <what the task can do>`."""
        found = []
        if self.network:
            found.append("--network: the task can reach the network, including your local network")
        if self.host_filesystem:
            found.append(
                f"--host-filesystem: the task can read the project directory ({HOST_FILESYSTEM_TARGET})"
            )
        if self.mutations:
            found.append(
                "--dangerous-allow-mutations: the task can modify the sandbox inputs (/inputs)"
                + (f" and the project directory ({HOST_FILESYSTEM_TARGET})" if self.host_filesystem else "")
            )
        return found

    def as_dict(self) -> dict[str, bool]:
        return {
            "network": self.network,
            "host_filesystem": self.host_filesystem,
            "dangerous_allow_mutations": self.mutations,
        }


Confirm = Callable[[list[str]], bool]


@dataclass
class RunHooks:
    """Callbacks the caller (the CLI, a test, an agent) uses to watch a run."""

    on_pull: Callable[[str], None] | None = None
    on_start: Callable[[str, str, str], None] | None = None  # (run_id, task, image)
    on_output: Callable[[int, bytes], None] | None = None
    # The sandbox's own widened permissions, repeated before each run (confirmed at `up`);
    # without it they go to the log.
    on_warning: Callable[[str], None] | None = None
    # What aido exits with when a signal (SIGTERM 143, SIGHUP 129; None for Ctrl-C)
    # interrupted the run: recorded with the run's verdict.
    signal_exit: Callable[[], int | None] | None = None


@dataclass(frozen=True)
class _Plan:
    """Everything a run needs, checked before a run id is allocated."""

    record: SandboxRecord
    paths: SandboxPaths
    task: Path
    source: bytes
    args: list[str]
    choice: RuntimeChoice
    image_id: str
    settings: RunSettings
    timeout_seconds: float
    env: dict[str, str]  # from -e flags; the sandbox's own env is in settings
    widen: Widening
    warnings: list[str]  # every permission wider than the default, from the sandbox or the flags
    notes: list[str] = field(default_factory=list)  # other warnings for the run's evidence
    stdin: int | None = None  # host descriptor forwarded to the task (`run -i`); None: closed


@dataclass
class DestroyResult:
    """What `destroy` did, per sandbox: destroyed (the dicts `_destroy_one` returns),
    already removed by another process meanwhile, or failed midway (with the error)."""

    destroyed: list[dict[str, Any]] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)
    failed: list[tuple[str, AidoError]] = field(default_factory=list)


class DestroyFailed(AidoError):
    """Some sandboxes could not be destroyed; ``result`` says what happened to each one
    (the others were destroyed). Exits like the first failure."""

    code = "destroy_failed"

    def __init__(self, result: DestroyResult) -> None:
        first = result.failed[0][1]
        count = len(result.failed)
        total = count + len(result.destroyed) + len(result.already_gone)
        super().__init__(
            f"{count} of {total} sandbox{'es' if total != 1 else ''} could not be destroyed: "
            + "; ".join(f"{sid}: {exc.message}" for sid, exc in result.failed),
            hint=first.hint or "fix the cause, then run `aido sandbox destroy` again for those",
        )
        self.exit_code = first.exit_code
        self.result = result


@dataclass
class SandboxSummary:
    id: str
    name: str | None
    status: str
    created_at: str
    expires_at: str
    runs: int
    active: bool
    archived: bool = False  # destroyed; its evidence is in .aido/archive/<id>/
    destroyed_at: str | None = None
    destroy_reason: str | None = None  # "destroyed" (by a command) or "expired" (its ttl)


@dataclass
class RunSummary:
    """One run, as `aido runs` lists it (its sandbox live or destroyed)."""

    sandbox_id: str
    archived: bool
    run_id: str
    task: str
    status: str
    exit_code: int | None
    started_at: str
    completed_at: str | None
    duration_ms: int | None
    evidence_dir: Path


def task_user() -> tuple[int, int]:
    uid = os.getuid()
    if uid == 0:
        return UNPRIVILEGED_UID, UNPRIVILEGED_UID
    return uid, os.getgid()


class SandboxManager:
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

    def fork(self) -> SandboxManager:
        """A manager for another thread: same workspace and settings, its own engine
        connection (adapters are not thread-safe)."""
        backend = type(self._backend)() if self._backend is not None else None
        return SandboxManager(
            self.workspace,
            backend=backend,
            output_limit=self.output_limit,
            evidence_retention=self.evidence_retention,
        )

    def run_batch(self, tasks: list[Path], args: list[str] | None = None, **kwargs: Any) -> BatchResult:
        """Run several tasks concurrently (see aido.run.batch.run_batch)."""
        from aido.run.batch import run_batch

        return run_batch(self, tasks, list(args or []), **kwargs)

    # -- collaborators, created on first use ---------------------------------------------

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace.require()
        return self._workspace

    @property
    def workspace_if_any(self) -> Workspace | None:
        """The workspace, or None when there is none (where `workspace` would raise)."""
        return self._workspace

    @property
    def backend(self) -> Backend:
        """The engine adapter runs go through (the spec's "runtime" is the task's image)."""
        if self._backend is None:
            from aido.backends.registry import get_backend

            self._backend = get_backend()
        return self._backend

    # -- metadata -----------------------------------------------------------------------

    def load(self, sandbox_id: str) -> SandboxRecord:
        return self._load_at(self.workspace.sandbox(sandbox_id), sandbox_id)

    def load_evidence(self, sandbox_id: str) -> tuple[SandboxRecord, SandboxPaths]:
        """A sandbox's record and paths for reading its runs: the live sandbox, or else its
        archive once it was destroyed. Never for starting a run."""
        paths = self._evidence_paths(sandbox_id)
        try:
            return self._load_at(paths, sandbox_id), paths
        except SandboxNotFound:
            archived = self.workspace.archived(sandbox_id)
            if paths == archived or not archived.root.is_dir():
                raise
            return self._load_at(archived, sandbox_id), archived  # archived just now

    def _evidence_paths(self, sandbox_id: str) -> SandboxPaths:
        live = self.workspace.sandbox(sandbox_id)
        if live.metadata.exists():
            return live
        archived = self.workspace.archived(sandbox_id)
        return archived if archived.root.is_dir() else live

    def _load_at(self, paths: SandboxPaths, sandbox_id: str) -> SandboxRecord:
        try:
            data = fs.read_json(paths.metadata)
        except FileNotFoundError:
            raise SandboxNotFound(
                f"no sandbox {sandbox_id} in {self.workspace.dir}",
                hint="list sandboxes with `aido sandbox list`",
            ) from None
        except (OSError, ValueError) as exc:
            raise MetadataError(f"{paths.metadata} is unreadable: {exc}") from None
        return SandboxRecord.from_json(data, source=str(paths.metadata))

    def _save(self, record: SandboxRecord) -> None:
        fs.atomic_write_bytes(self.workspace.sandbox(record.id).metadata, record.to_bytes())

    def resolve_id(self, sandbox_id: str | None, *, choose: str = "give --sandbox ID") -> str:
        """The given sandbox, or the active one; never another. With no active sandbox (it
        was destroyed, or expired and was removed) the user chooses: the error lists the
        sandboxes there are. ``choose`` says how the calling command takes an id."""
        if sandbox_id:
            from aido.store.ids import check_sandbox_id

            return check_sandbox_id(sandbox_id)
        active = self.workspace.active_id(strict=True)
        if active and (self.workspace.sandboxes / active / "sandbox.json").is_file():
            return active
        problem = (
            f"the active sandbox {active} no longer exists (it expired and was removed, or was deleted)"
            if active
            else "no active sandbox"
        )
        # Never fall back silently to another sandbox: it has other inputs, env and limits.
        choices = self.list_sandboxes()
        if not choices:
            if active:
                raise SandboxNotFound(problem, hint="create a new one with `aido sandbox up`")
            raise SandboxNotFound("no sandbox in this workspace", hint="create one with `aido sandbox up`")
        shown = [_choice(s) for s in choices[-CHOICES_SHOWN:]]
        more = len(choices) - len(shown)
        listing = ", ".join(shown) + (f" and {more} older (`aido sandbox list`)" if more else "")
        raise NoActiveSandbox(
            f"{problem}; this workspace has {len(choices)}: {listing}",
            hint=f"choose one with `aido sandbox use ID`, or {choose}",
            sandboxes=[{"id": s.id, "name": s.name, "status": s.status} for s in choices],
        )

    # -- sandbox up -----------------------------------------------------------------------

    def create(
        self,
        *,
        spec_file: Path | None = None,
        name: str | None = None,
        runtime: str | None = None,
        ttl: str | None = None,
        auto_cleanup: bool = True,
        isolation: str | None = None,
        start: Path | None = None,
        confirm: Confirm | None = None,
        on_pull: Callable[[str], None] | None = None,
    ) -> SandboxRecord:
        """Create a sandbox. A spec that widens permissions (network, writable inputs) must be
        confirmed: ``confirm`` gets the warnings and returns True to go ahead. A spec that names
        a runtime has its image checked (and pulled, reporting to ``on_pull``) first: a sandbox
        whose every run would fail is not created."""
        from aido.config.loader import load_spec_and_lines
        from aido.evidence.redact import REDACTED, is_secret_name, short_secret_warnings

        overrides = {
            k: v
            for k, v in (("name", name), ("runtime", runtime), ("ttl", ttl), ("isolation", isolation))
            if v is not None
        }
        spec, lines = load_spec_and_lines(spec_file, overrides=overrides)
        matches: list[tuple[Path, Path]] = []
        if spec.inputs:
            if spec_file is None:
                raise UsageError("inputs need a sandbox.yaml to be relative to")
            from aido.host.inputs import match_inputs

            matches = match_inputs(spec.inputs, spec_file.parent, source=spec_file.name, lines=lines)
        if spec.isolation == "gvisor" and spec.permissions.network:
            message = (
                "true cannot be combined with isolation: gvisor (runsc is registered with --network=none)"
            )
            where = spec_file.name if spec_file else "sandbox.yaml"
            line = lines.get(("permissions", "network"))
            raise ConfigError([Problem(message, where, line, "permissions.network")])
        if spec.resources.disk_quota == "hard":
            from aido.host import volume

            try:
                volume.check_possible()
            except ConfigError as exc:  # at the line that asked for it
                from dataclasses import replace

                where = spec_file.name if spec_file else "sandbox.yaml"
                line = lines.get(("resources", "disk_quota"))
                raise ConfigError(
                    [replace(p, file=where, line=line) for p in exc.details], hint=exc.hint
                ) from None
        if spec.runtime:
            from aido.config.runtimes import parse_runtime

            image = parse_runtime(spec.runtime).image
            _ensure_image(self.backend, image, on_pull, other=f"or choose another runtime: {UP_RUNTIME_HINT}")
        for warning in short_secret_warnings(spec.env):
            log.warning("%s", warning)
        widened = widened_permissions(spec.model_dump(mode="json"))
        _confirm(widened, confirm)
        if self._workspace is None:
            self._workspace = Workspace.find_or_create(start)
        workspace = self.workspace
        sandbox_id = new_sandbox_id()
        # 36^12: a collision is astronomically rare; an archived id is taken too.
        while (workspace.sandboxes / sandbox_id).exists() or (workspace.archive / sandbox_id).exists():
            sandbox_id = new_sandbox_id()
        paths = workspace.sandbox(sandbox_id)
        uid, gid = task_user()
        paths.root.mkdir(mode=0o755)
        try:
            for sub in (paths.inputs, paths.work, paths.outputs, paths.runs):
                sub.mkdir(mode=0o755)
            if os.getuid() == 0:
                # The task runs unprivileged; it may write only these two trees.
                for writable in (paths.work, paths.outputs):
                    os.chown(writable, uid, gid)
            if spec.resources.disk_quota == "hard":
                from aido.host import volume

                volume.create(
                    paths,
                    size_bytes=spec.resources.disk_bytes,
                    max_files=spec.resources.files,
                    uid=uid,
                    gid=gid,
                )
            from aido.host.inputs import copy_inputs

            inputs = copy_inputs(matches, paths.inputs)
            if spec.permissions.filesystem == "readwrite":
                _hand_over(paths.inputs, uid, gid)
            created = utcnow()
            config = spec.model_dump(mode="json")
            # Secret-looking values live in a 0600 file of their own, never in sandbox.json.
            secrets = {k: v for k, v in config["env"].items() if is_secret_name(k)}
            if secrets:
                fs.atomic_write_json(paths.secrets, secrets, mode=0o600)
                config["env"] = {k: (REDACTED if k in secrets else v) for k, v in config["env"].items()}
            record = SandboxRecord(
                id=sandbox_id,
                name=spec.name,
                created_at=isoformat(created),
                expires_at=isoformat(created + timedelta(seconds=spec.ttl_seconds)),
                config=config,
                task_user=f"{uid}:{gid}",
                auto_cleanup=auto_cleanup,
            )
            self._save(record)
            if inputs:
                fs.atomic_write_json(paths.root / "inputs.json", inputs)
            record_event(
                paths.events,
                "sandbox_created",
                sandbox_id=sandbox_id,
                name=spec.name,
                expires_at=record.expires_at,
                spec_file=str(spec_file) if spec_file else None,
                isolation=spec.isolation,
                auto_cleanup=auto_cleanup,
                notes=unenforced_permissions(config) or None,
            )
            if widened:
                record_event(paths.events, "permissions_widened", sandbox_id=sandbox_id, warnings=widened)
        except BaseException:
            _delete_sandbox_tree(paths)  # no half-created sandbox stays behind
            raise
        workspace.set_active(sandbox_id)
        return record

    def copied_inputs(self, sandbox_id: str) -> list[dict[str, Any]]:
        """What `sandbox up` copied into the sandbox's inputs/ (path, size, SHA-256)."""
        return _read_inputs_manifest(self.workspace.sandbox(sandbox_id))

    # -- sandbox list / destroy -----------------------------------------------------------

    def list_sandboxes(self, *, include_archived: bool = False) -> list[SandboxSummary]:
        """The live sandboxes; with ``include_archived``, destroyed ones whose evidence is kept too."""
        workspace = Workspace.find() if self._workspace is None else self._workspace
        if workspace is None:
            return []
        self._workspace = workspace
        active = workspace.active_id()
        now = utcnow()
        out = []
        for sandbox_id in workspace.sandbox_ids():
            try:
                record = self.load(sandbox_id)
            except AidoError:
                out.append(SandboxSummary(sandbox_id, None, "invalid", "", "", 0, sandbox_id == active))
                continue
            status = record.status
            if record.expired(now):
                status = "expired"
            elif any(r.status == "running" for r in record.runs):
                status = "running"
            out.append(
                SandboxSummary(
                    id=record.id,
                    name=record.name,
                    status=status,
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                    runs=len(record.runs),
                    active=record.id == active,
                )
            )
        if include_archived:
            out.extend(self._archived_summary(i) for i in workspace.archived_ids())
        return sorted(out, key=lambda s: s.created_at)

    def _archived_summary(self, sandbox_id: str) -> SandboxSummary:
        from aido.store import archive

        paths = self.workspace.archived(sandbox_id)
        try:
            record = self._load_at(paths, sandbox_id)
        except AidoError:
            return SandboxSummary(sandbox_id, None, "invalid", "", "", archive.run_count(paths), False, True)
        return SandboxSummary(
            id=record.id,
            name=record.name,
            status=record.status,
            created_at=record.created_at,
            expires_at=record.expires_at,
            runs=len(record.runs),
            active=False,
            archived=True,
            destroyed_at=record.destroyed_at,
            destroy_reason=record.destroy_reason,
        )

    def list_runs(self, sandbox_id: str | None = None, *, include_archived: bool = False) -> list[RunSummary]:
        """Runs of one sandbox (live or archived), or of every live sandbox (and, with
        ``include_archived``, of every destroyed one whose evidence is kept)."""
        from aido.store.ids import check_sandbox_id

        found: list[tuple[SandboxRecord, SandboxPaths, bool]] = []
        if sandbox_id is not None:
            record, paths = self.load_evidence(check_sandbox_id(sandbox_id))
            found.append((record, paths, paths.root.parent == self.workspace.archive))
        else:
            workspace = Workspace.find() if self._workspace is None else self._workspace
            if workspace is None:
                return []
            self._workspace = workspace
            ids = [(i, False) for i in workspace.sandbox_ids()]
            if include_archived:
                ids += [(i, True) for i in workspace.archived_ids()]
            for sid, archived in ids:
                paths = workspace.archived(sid) if archived else workspace.sandbox(sid)
                try:
                    found.append((self._load_at(paths, sid), paths, archived))
                except AidoError as exc:
                    log.debug("runs of %s not listed: %s", sid, exc)
        out = []
        for record, paths, archived in sorted(found, key=lambda f: f[0].created_at):
            for ref in sorted(record.runs, key=lambda r: run_number(r.run_id) or 0):
                out.append(
                    RunSummary(
                        sandbox_id=record.id,
                        archived=archived,
                        run_id=ref.run_id,
                        task=ref.task,
                        status=ref.status,
                        exit_code=ref.exit_code,
                        started_at=ref.started_at,
                        completed_at=ref.completed_at,
                        duration_ms=ref.duration_ms,
                        evidence_dir=paths.run_dir(ref.run_id),
                    )
                )
        return out

    def destroy(
        self,
        sandbox_ids: list[str] | None = None,
        *,
        all_sandboxes: bool = False,
        purge: bool = False,
        confirm: Confirm | None = None,
    ) -> DestroyResult:
        """Destroy the given sandboxes (or the active one, or with ``all_sandboxes`` every
        one), keeping each one's evidence in the workspace's archive. Every id is checked
        first: if any is malformed or unknown, nothing is destroyed. One that fails midway
        does not stop the others; each id's outcome is in the result. ``purge`` deletes the
        evidence too (of live or already destroyed sandboxes; with ``all_sandboxes``, every
        archive as well) once ``confirm`` returns True."""
        from aido.store.ids import check_sandbox_id

        given = list(dict.fromkeys(sandbox_ids or []))  # in order, each once
        for item in given:
            check_sandbox_id(item)  # a malformed id is a usage error, workspace or not
        if all_sandboxes and self._workspace is None:
            workspace = Workspace.find()
            if workspace is None:
                return DestroyResult()  # no workspace, so nothing to destroy: as `list` shows
            self._workspace = workspace
        workspace = self.workspace
        if all_sandboxes:
            targets = workspace.sandbox_ids()
            if purge:
                targets += [i for i in workspace.archived_ids() if i not in targets]
        elif given:
            targets = given
            unknown = [
                i
                for i in given
                if not workspace.sandbox(i).root.is_dir() and not self._archive_destroyable(i, purge=purge)
            ]
            if len(unknown) == 1:
                raise self._not_found(unknown[0], nothing_done=len(given) > 1)
            if unknown:
                raise SandboxNotFound(
                    f"no sandboxes {', '.join(unknown)} in {workspace.dir}; nothing was destroyed",
                    hint="list sandboxes with `aido sandbox list`",
                )
        else:
            targets = [
                self.resolve_id(None, choose="name it: `aido sandbox destroy ID` (or --all for every one)")
            ]
        if purge:
            self._confirm_purge(targets, confirm)
        result = DestroyResult()
        for sandbox_id in targets:
            try:
                done = self._destroy_one(sandbox_id, reason="destroyed", purge=purge)
            except (AidoError, OSError) as exc:
                error = exc if isinstance(exc, AidoError) else WorkspaceError(str(exc))
                result.failed.append((sandbox_id, error))
                continue
            if done is None:
                result.already_gone.append(sandbox_id)  # another aido process destroyed it meanwhile
            else:
                result.destroyed.append(done)
        if result.failed:
            raise DestroyFailed(result)
        return result

    # -- sandbox use / extend -------------------------------------------------------------

    def use(self, sandbox_id: str) -> tuple[SandboxRecord, str | None]:
        """Make a sandbox the active one (what `run`, `logs` and `destroy` use without an
        id). Returns its record and the id that was active before, if any."""
        from aido.store.ids import check_sandbox_id

        check_sandbox_id(sandbox_id)
        workspace = self.workspace
        previous = workspace.active_id()
        # Under the sandbox's lock: a destroy cannot slip in between the check and the pointer
        # (one that starts afterwards clears the pointer again).
        with self._live(sandbox_id) as record:
            workspace.set_active(sandbox_id)
        return record, previous

    def extend(self, sandbox_id: str | None, ttl: str) -> tuple[SandboxRecord, str]:
        """Set a sandbox's expiry to ``ttl`` from now (longer or shorter than it was),
        within sandbox.yaml's bounds. Returns the record and the previous expiry."""
        from aido.config.limits import MAX_TTL_SECONDS
        from aido.config.units import format_duration, parse_duration

        if sandbox_id:
            from aido.store.ids import check_sandbox_id

            check_sandbox_id(sandbox_id)
        try:
            seconds = parse_duration(ttl, maximum=MAX_TTL_SECONDS)
        except ValueError as exc:
            raise UsageError(
                f"--ttl: {exc}",
                hint=f"give a duration like 30m or 2h, at most {format_duration(MAX_TTL_SECONDS)}",
            ) from None
        sid = self.resolve_id(sandbox_id, choose="give its id: `aido sandbox extend ID --ttl D`")
        paths = self.workspace.sandbox(sid)
        with self._live(sid) as record:
            previous = record.expires_at
            record.expires_at = isoformat(utcnow() + timedelta(seconds=seconds))
            self._save(record)
            record_event(
                paths.events,
                "sandbox_extended",
                sandbox_id=sid,
                ttl=format_duration(seconds),
                previous_expires_at=previous,
                expires_at=record.expires_at,
            )
        return record, previous

    @contextlib.contextmanager
    def _live(self, sandbox_id: str) -> Iterator[SandboxRecord]:
        """The record of a sandbox that exists, is not being destroyed and has not expired,
        with its lock held for the block; SandboxNotFound or SandboxExpired otherwise."""
        workspace = self.workspace
        paths = workspace.sandbox(sandbox_id)
        missing = SandboxNotFound(
            f"no sandbox {sandbox_id} in {workspace.dir}", hint="list sandboxes with `aido sandbox list`"
        )
        if not paths.root.is_dir():
            raise missing
        try:
            with fs.locked(paths.lock):
                if paths.destroying.exists():
                    raise SandboxNotFound(
                        f"sandbox {sandbox_id} is being destroyed",
                        hint="create a new sandbox with `aido sandbox up`",
                    )
                record = self.load(sandbox_id)
                if record.expired():
                    raise SandboxExpired(
                        f"sandbox {sandbox_id} expired at {record.expires_at}",
                        hint="create a new sandbox with `aido sandbox up`",
                    )
                yield record
        except FileNotFoundError:
            raise missing from None  # destroyed meanwhile

    def clean(self, sandbox_id: str | None = None, *, trees: list[str] | None = None) -> dict[str, Any]:
        """Empty a sandbox's work/ and outputs/ (or the ``trees`` named), e.g. after a run
        left them over the sandbox's limits. Refused (exit 3) while a run is in progress;
        never follows a link the task planted; recorded as a ``sandbox_cleaned`` event."""
        from aido.host import trees as task_trees

        names = list(trees or task_trees.TREES)
        sid = self.resolve_id(sandbox_id)
        record = self.load(sid)
        paths = self.workspace.sandbox(sid)
        try:
            with fs.locked(paths.lock):  # no run can start meanwhile: it allocates under this lock
                if paths.going():
                    raise SandboxNotFound(f"sandbox {sid} is being destroyed")
                live = sorted(p.name for p in _subdirs(paths.runs) if fs.is_locked(p))
                if live:
                    raise SandboxBusy(
                        f"sandbox {sid} has a run in progress ({', '.join(live)}): "
                        "its task may be writing to the trees being cleaned",
                        hint=f"wait for it to end (`aido logs --follow --sandbox {sid}`), then clean again",
                    )
                settings = RunSettings.from_config(record.config)
                if settings.disk_quota == "hard":
                    from aido.host import volume

                    uid, _, gid = record.task_user.partition(":")
                    volume.ensure_mounted(paths, uid=int(uid), gid=int(gid))  # the trees live there
                cleared = task_trees.clear(paths, names)
        except FileNotFoundError:
            raise SandboxNotFound(
                f"sandbox {sid} was destroyed", hint="create a new sandbox with `aido sandbox up`"
            ) from None
        record_event(paths.events, "sandbox_cleaned", sandbox_id=sid, cleared=cleared)
        return {"sandbox_id": sid, "cleared": cleared}

    def _archive_destroyable(self, sandbox_id: str, *, purge: bool) -> bool:
        """Whether destroy has work on a sandbox that is no longer live: an archive a crash
        left unfinished, or (with purge) a finished one."""
        from aido.store.archive import PARTIAL

        archive = self.workspace.archive
        return (archive / f"{sandbox_id}{PARTIAL}").is_dir() or (purge and (archive / sandbox_id).is_dir())

    def _not_found(self, sandbox_id: str, *, nothing_done: bool = False) -> SandboxNotFound:
        """The error for an id that names no live sandbox (``nothing_done``: others were
        named too, and none of them was destroyed)."""
        archived = self.workspace.archived(sandbox_id).root
        tail = "; nothing was destroyed" if nothing_done else ""
        if archived.is_dir():
            return SandboxNotFound(
                f"sandbox {sandbox_id} was already destroyed; its evidence is kept in {archived}{tail}",
                hint=f"read it with `aido runs --sandbox {sandbox_id}` and "
                f"`aido logs --sandbox {sandbox_id}`; "
                f"delete it with `aido sandbox destroy --purge {sandbox_id}`",
            )
        return SandboxNotFound(
            f"no sandbox {sandbox_id} in {self.workspace.dir}{tail}",
            hint="list sandboxes with `aido sandbox list`",
        )

    def _confirm_purge(self, targets: list[str], confirm: Confirm | None) -> None:
        """--purge deletes evidence for good: every id must exist (else nothing is deleted),
        and the caller must say yes to the list of what goes."""
        from aido.store import archive

        warnings = []
        for sandbox_id in targets:
            live = self.workspace.sandbox(sandbox_id)
            archived = self.workspace.archived(sandbox_id)
            if live.root.is_dir():
                runs, state = archive.run_count(live), ""
            elif self._archive_destroyable(sandbox_id, purge=True):
                runs, state = archive.run_count(archived), " (already destroyed)"
            else:
                raise self._not_found(sandbox_id)
            warnings.append(
                f"--purge deletes the evidence of sandbox {sandbox_id}{state}: {runs} run(s), "
                "irreversibly (it is not kept in .aido/archive/)"
            )
        if warnings and (confirm is None or not confirm(warnings)):
            raise NotConfirmed(
                "refusing to delete evidence without confirmation",
                hint="answer y at the prompt, or pass --yes to confirm without a terminal",
            )

    def _destroy_one(
        self, sandbox_id: str, *, reason: str, purge: bool = False, wait: bool = True, **event: Any
    ) -> dict[str, Any] | None:
        """Stop a sandbox's runs and containers, delete its working trees and keep its runs'
        evidence in the archive (with ``purge``, delete that too); see aido.store.archive.
        Runs in progress (in any process) see the marker, stop their task and write their
        evidence first. Returns None if another process destroyed the sandbox meanwhile, or,
        without ``wait``, is destroying it now."""
        from aido.store import archive

        workspace = self.workspace
        paths = workspace.sandbox(sandbox_id)
        if not paths.root.is_dir():
            return self._destroy_archived(sandbox_id, purge=purge, wait=wait)
        # One destroyer at a time: this lock follows the directory into the archive, and is
        # held until the archive is finished (a sweep never finishes a destroy in progress).
        with archive.holding(paths.root, wait=wait) as held:
            if not held:
                return None
            try:
                with fs.locked(paths.lock):
                    if not paths.root.is_dir():
                        return None  # destroyed by the process we waited for
                    marker = archive.mark(paths, reason=reason, purge=purge)
                    # From the run directories' locks, not sandbox.json: a sandbox whose metadata
                    # is corrupt or from a newer aido must still be destroyable.
                    live = sorted(p.name for p in _subdirs(paths.runs) if fs.is_locked(p))
            except FileNotFoundError:
                return None  # removed by a concurrent destroy
            # The runs' own processes notice the marker within a fraction of a second, stop
            # their task and close their records; wait for them so that each ends cleanly and
            # nothing writes into a tree being moved. Containers go afterwards (and at once
            # for runs whose aido process is gone, or one that does not finish in time).
            deadline = time.monotonic() + DESTROY_WAIT_SECONDS
            while any(fs.is_locked(paths.run_dir(r)) for r in live) and time.monotonic() < deadline:
                time.sleep(0.05)
            warning = None
            removed: list[str] = []
            try:
                removed = self._remove_containers({"aido.sandbox": sandbox_id})
            except RuntimeUnavailable as exc:
                warning = f"containers not checked: {exc.message}"
            purging = bool(marker["purge"])
            runs = archive.run_count(paths)
            try:
                with fs.locked(paths.lock):
                    if not paths.root.is_dir():
                        return None
                    if not purging:
                        record_event(
                            paths.events,
                            "sandbox_destroyed",
                            sandbox_id=sandbox_id,
                            reason=marker["reason"],
                            containers_removed=len(removed),
                            runs_stopped=live or None,
                            **event,
                        )
                    staging = archive.move_out(workspace, paths, sandbox_id, purge=purging)
            except FileNotFoundError:
                return None
            kept = archive.finish(workspace, staging)
        record_event(
            workspace.events,
            "sandbox_destroyed",
            sandbox_id=sandbox_id,
            reason=marker["reason"],
            containers_removed=len(removed),
            runs_stopped=live or None,
            warning=warning,
            evidence=None if kept is None else str(kept.relative_to(workspace.dir)),
            **event,
        )
        if purging:
            record_event(
                workspace.events, "evidence_purged", sandbox_id=sandbox_id, reason="purge", runs=runs
            )
        if reason == "destroyed" and workspace.active_id() == sandbox_id:
            workspace.set_active(None)
        return {
            "sandbox_id": sandbox_id,
            "containers_removed": len(removed),
            "runs_stopped": live,
            "warning": warning,
            "runs": runs,
            "evidence_dir": None if kept is None else str(kept),
            "purged": purging,
            "already_destroyed": False,
        }

    def _destroy_archived(self, sandbox_id: str, *, purge: bool, wait: bool) -> dict[str, Any] | None:
        """A sandbox that is no longer live: finish an archive that a crash left unfinished,
        and with ``purge`` delete the archive."""
        from aido.store import archive

        workspace = self.workspace
        staging = workspace.archive / f"{sandbox_id}{archive.PARTIAL}"
        kept = None
        with archive.holding(staging, wait=wait) as held:
            if held and staging.is_dir():
                kept = archive.finish(workspace, staging)
                record_event(
                    workspace.events,
                    "sandbox_destroyed",
                    sandbox_id=sandbox_id,
                    reason="destroyed",
                    evidence=str(kept.relative_to(workspace.dir)) if kept else None,
                    recovered=True,
                )
        paths = workspace.archived(sandbox_id)
        runs = archive.run_count(paths)
        purged = purge and archive.purge(workspace, sandbox_id, wait=wait)
        if purged:
            record_event(
                workspace.events, "evidence_purged", sandbox_id=sandbox_id, reason="purge", runs=runs
            )
        if kept is None and not purged:
            return None
        return {
            "sandbox_id": sandbox_id,
            "containers_removed": 0,
            "runs_stopped": [],
            "warning": None,
            "runs": runs,
            "evidence_dir": None if purged or kept is None else str(kept),
            "purged": purged,
            "already_destroyed": True,
        }

    # -- lifecycle: TTL sweep and crash recovery ----------------------------------------

    def sweep(self, *, containers: bool = False) -> list[dict[str, Any]]:
        """Destroy expired auto-cleanup sandboxes and close the records of orphaned runs
        (marked running, but the aido process that ran them is gone: killed, crashed, or
        the machine restarted). With ``containers`` (the reaper), or when an aido process
        marked the workspace because the engine failed to remove a container, also remove
        containers of this workspace that no live run owns. Every aido command calls this
        on its way, and the reaper every interval. Returns what it did; never raises for one
        bad sandbox. Also sets ``reaper_needed``."""
        from aido.lifecycle.reaper import wants_reaper

        self.reaper_needed = False
        workspace = Workspace.find() if self._workspace is None else self._workspace
        if workspace is None:
            return []
        self._workspace = workspace
        actions: list[dict[str, Any]] = []
        now = utcnow()
        for sandbox_id in workspace.sandbox_ids():
            try:
                paths = workspace.sandbox(sandbox_id)
                if paths.destroying.exists():
                    if self._finish_abandoned_destroy(sandbox_id, paths):
                        actions.append({"action": "finished_destroy", "sandbox_id": sandbox_id})
                    continue
                data = _peek(paths)
                if data is not None and not _may_need_sweeping(data, now):
                    self.reaper_needed = self.reaper_needed or wants_reaper(data)
                    continue
                if data is None:
                    record = self.load(sandbox_id)  # raises the error that says what is wrong
                else:
                    record = SandboxRecord.from_json(data, source=str(paths.metadata))
                running = [r for r in record.runs if r.status == "running"]
                live = [r for r in running if fs.is_locked(paths.run_dir(r.run_id))]
                for ref in running:
                    if ref not in live and self._recover_run(sandbox_id, ref.run_id):
                        actions.append(
                            {"action": "recovered_run", "sandbox_id": sandbox_id, "run_id": ref.run_id}
                        )
                # A live run stops itself at expiry; destroy only once it has closed its record.
                if (
                    record.auto_cleanup
                    and record.expired(now)
                    and not live
                    and self._destroy_one(
                        sandbox_id, reason="expired", wait=False, expired_at=record.expires_at
                    )
                ):
                    log.info(
                        "removed expired sandbox %s (expired at %s); its runs are kept in .aido/archive/%s/",
                        sandbox_id,
                        record.expires_at,
                        sandbox_id,
                    )
                    actions.append({"action": "destroyed_expired", "sandbox_id": sandbox_id})
                else:
                    # It stays, perhaps with runs recovered just now: its metadata as it is now.
                    after = _peek(paths)
                    self.reaper_needed = self.reaper_needed or (after is not None and wants_reaper(after))
            except (AidoError, OSError) as exc:
                log.debug("sweep skipped %s: %s", sandbox_id, exc)
        actions.extend(self._sweep_archive(now))
        if containers or workspace.containers_left.exists():
            actions.extend(self.reap_containers())
        return actions

    def _finish_abandoned_destroy(self, sandbox_id: str, paths: SandboxPaths) -> bool:
        """A sandbox marked ``.destroying`` whose destroyer died (nobody holds its directory):
        destroy it again, once its runs have closed their records (they stop at the marker)."""
        from aido.store import archive

        if fs.is_locked(paths.root) or any(fs.is_locked(p) for p in _subdirs(paths.runs)):
            return False
        reason = archive.read_marker(paths.destroying).get("reason")
        return (
            self._destroy_one(
                sandbox_id, reason=reason if isinstance(reason, str) else "destroyed", wait=False
            )
            is not None
        )

    def _sweep_archive(self, now: Any) -> list[dict[str, Any]]:
        """Finish archives (and purges) a crash left halfway, and delete archives whose
        sandbox was destroyed longer than ``evidence_retention`` ago."""
        from aido.config.units import format_duration
        from aido.store import archive

        workspace = self.workspace
        actions: list[dict[str, Any]] = []
        finished, left = archive.scan(workspace)
        for staging in left:
            sandbox_id = staging.name.split(".")[0]
            try:
                with archive.holding(staging, wait=False) as held:
                    if not held:
                        continue  # its destroyer is at work
                    kept = archive.finish(workspace, staging)
                record_event(
                    workspace.events,
                    "sandbox_destroyed" if kept is not None else "evidence_purged",
                    sandbox_id=sandbox_id,
                    reason="destroyed" if kept is not None else "purge",
                    evidence=None if kept is None else str(kept.relative_to(workspace.dir)),
                    recovered=True,
                )
                actions.append({"action": "finished_archive", "sandbox_id": sandbox_id})
            except (AidoError, OSError) as exc:
                log.debug("sweep could not finish %s: %s", staging, exc)
        if self.evidence_retention is None:
            return actions
        for sandbox_id in finished:
            try:
                destroyed_at = archive.older_than(workspace, sandbox_id, self.evidence_retention, now)
                if destroyed_at is None:
                    continue
                runs = archive.run_count(workspace.archived(sandbox_id))
                if archive.purge(workspace, sandbox_id, wait=False):
                    record_event(
                        workspace.events,
                        "evidence_purged",
                        sandbox_id=sandbox_id,
                        reason="retention",
                        destroyed_at=destroyed_at,
                        retention=format_duration(self.evidence_retention),
                        runs=runs,
                    )
                    actions.append({"action": "pruned_evidence", "sandbox_id": sandbox_id})
            except (AidoError, OSError) as exc:
                log.debug("sweep could not prune %s: %s", sandbox_id, exc)
        return actions

    def reap_containers(self) -> list[dict[str, Any]]:
        """Remove this workspace's containers that no live aido run owns."""
        workspace = self.workspace
        actions: list[dict[str, Any]] = []
        # Cleared before looking, so that a container left while this sweep runs re-marks it.
        workspace.containers_left.unlink(missing_ok=True)
        try:
            found = self.backend.list_labelled(
                {"aido.managed": "true", "aido.workspace": self._workspace_label()}
            )
        except AidoError as exc:
            log.debug("container sweep skipped: %s", exc)
            self._mark_containers_left()
            return actions
        for container in found:
            labels = container.get("labels") or {}
            sandbox_id, rid = labels.get("aido.sandbox", ""), labels.get("aido.run", "")
            try:
                run_dir = workspace.sandbox(sandbox_id).run_dir(check_run_id(rid))
            except AidoError:
                run_dir = None
            if run_dir is not None and fs.is_locked(run_dir):
                continue  # its aido process is alive and will remove it
            if run_dir is not None and run_dir.is_dir():
                self._recover_run(sandbox_id, rid)
            try:
                self._remove_containers({"aido.sandbox": sandbox_id, "aido.run": rid})
            except AidoError as exc:
                log.debug("container of %s/%s not removed: %s", sandbox_id, rid, exc)
                continue
            actions.append({"action": "removed_container", "sandbox_id": sandbox_id, "run_id": rid})
        return actions

    def _remove_containers(self, labels: dict[str, str]) -> list[str]:
        """Remove containers by label; if any may remain, mark the workspace and re-raise."""
        try:
            return self.backend.remove_labelled(labels)
        except RuntimeUnavailable:
            self._mark_containers_left()
            raise

    def _mark_containers_left(self) -> None:
        """Make the next command's sweep look for containers that could not be removed."""
        try:
            self.workspace.containers_left.touch()
        except OSError as exc:
            log.debug("could not mark containers left: %s", exc)

    def _workspace_label(self) -> str:
        """The `aido.workspace` label on every container: how a sweep finds this workspace's."""
        return str(self.workspace.root)[:1024]

    def _recover_run(self, sandbox_id: str, rid: str) -> bool:
        """Close the record of a run whose aido process died: stop its container, write a
        summary from what was captured, mark it interrupted. False if it was not orphaned."""
        from aido.evidence.summary import closing_summary

        paths = self.workspace.sandbox(sandbox_id)
        run_dir = paths.run_dir(rid)
        with fs.locked(paths.lock):
            record = self.load(sandbox_id)
            ref = record.run(rid)
            if ref is None or ref.status != "running":
                return False
            lock_fd = fs.hold_lock(run_dir, wait=False) if run_dir.is_dir() else -1
            if lock_fd is None:
                return False  # alive after all
            try:
                containers: list[dict[str, Any]] = []
                try:
                    labels = {"aido.sandbox": sandbox_id, "aido.run": rid}
                    containers = self.backend.list_labelled(labels)
                    self._remove_containers(labels)
                except AidoError as exc:
                    log.warning("could not check %s's container: %s", rid, exc.message)
                recovered_at = isoformat(utcnow())
                output = {}
                for name in ("stdout", "stderr"):
                    try:
                        size = (run_dir / f"{name}.log").lstat().st_size
                    except OSError:
                        size = 0
                    output[name] = {"path": f"{name}.log", "bytes_captured": size, "complete": False}
                message = (
                    "aido stopped while the task ran (killed, crashed, or the machine restarted); "
                    f"the run was recovered at {recovered_at}: output after that point was not captured"
                )
                summary_path = run_dir / "summary.json"
                if run_dir.is_dir() and not summary_path.exists():
                    fs.atomic_write_json(
                        summary_path,
                        closing_summary(
                            sandbox_id=sandbox_id,
                            run_id=rid,
                            task=ref.task,
                            status="interrupted",
                            started_at=ref.started_at,
                            completed_at=None,
                            stop_reason="aido_lost",
                            recovered_at=recovered_at,
                            message=message,
                            containers=[
                                {"name": c.get("name"), "state": c.get("state"), "status": c.get("status")}
                                for c in containers
                            ],
                            output=output,
                        ),
                    )
                ref.status = "interrupted"
                ref.completed_at = recovered_at
                ref.artifacts = (
                    [f"runs/{rid}/{p.name}" for p in sorted(run_dir.iterdir()) if not p.name.startswith(".")]
                    if run_dir.is_dir()
                    else []
                )
                self._save(record)  # ref is the record's own entry, changed in place
            finally:
                if lock_fd >= 0:
                    os.close(lock_fd)
        record_event(
            paths.events,
            "run_recovered",
            sandbox_id=sandbox_id,
            run_id=rid,
            status="interrupted",
            message=message,
        )
        return True

    # -- aido run -------------------------------------------------------------------------

    def run(
        self,
        task: Path,
        args: list[str] | None = None,
        *,
        sandbox_id: str | None = None,
        timeout: str | None = None,
        env: list[str] | None = None,
        hooks: RunHooks | None = None,
        widen: Widening | None = None,
        confirm: Confirm | None = None,
        cancel: threading.Event | None = None,
        stdin: int | None = None,
    ) -> RunResult:
        """Run one task in a fresh container of the sandbox and record its evidence.

        ``widen`` asks for escape hatches; they need ``confirm`` to return True for their
        warnings. Setting ``cancel`` (from another thread) stops the task as interrupted.
        ``stdin``, a file descriptor, is forwarded to the task's stdin (else it is closed).
        """
        plan = self.prepare(
            task,
            args,
            sandbox_id=sandbox_id,
            timeout=timeout,
            env=env,
            widen=widen,
            confirm=confirm,
            hooks=hooks,
        )
        if stdin is not None:
            from dataclasses import replace

            plan = replace(plan, stdin=stdin)
        return self.execute(plan, hooks, cancel=cancel)

    def prepare(
        self,
        task: Path,
        args: list[str] | None = None,
        *,
        sandbox_id: str | None = None,
        timeout: str | None = None,
        env: list[str] | None = None,
        widen: Widening | None = None,
        confirm: Confirm | None = None,
        hooks: RunHooks | None = None,
    ) -> _Plan:
        """Check everything a run needs (sandbox, task, engine, image, confirmation)
        before a run id exists: a run that cannot start leaves no trace."""
        from dataclasses import replace

        from aido.config.runtimes import interpreter_for_task, parse_runtime, runtime_for_task
        from aido.config.units import parse_duration

        args = list(args or [])
        widen = widen or Widening()
        sid = self.resolve_id(sandbox_id)
        record = self.load(sid)
        paths = self.workspace.sandbox(sid)
        if record.expired():
            raise SandboxExpired(
                f"sandbox {sid} expired at {record.expires_at} (its ttl was {record.config.get('ttl')})",
                hint=f"create a new sandbox with `aido sandbox up`, or remove this one with "
                f"`aido sandbox destroy {sid}`",
            )
        settings = RunSettings.from_config(record.config)
        settings = replace(settings, env={**settings.env, **_read_secrets(paths)})
        from aido.host.trees import check_room

        # What an earlier run left over a limit would stop this one at once: refuse it now.
        check_room(paths, settings, sid)
        # Widened by the sandbox's spec: confirmed at `sandbox up`, repeated here so it is seen.
        spec_warnings = widened_permissions(record.config)
        for warning in spec_warnings:
            if hooks is not None and hooks.on_warning is not None:
                hooks.on_warning(warning)
            else:
                log.warning("%s", warning)
        if settings.isolation == "gvisor" and widen.network:
            raise UsageError(
                "--network is not available with isolation gvisor: runsc is registered with "
                "--network=none, so the task could not reach the network anyway",
                hint="use a sandbox with the default isolation for tasks that need the network",
            )
        hatch_warnings = widen.warnings()
        _confirm(hatch_warnings, confirm)
        timeout_seconds = settings.timeout_seconds
        if timeout is not None:
            try:
                timeout_seconds = parse_duration(timeout, maximum=24 * 3600)
            except ValueError as exc:
                raise UsageError(f"--timeout: {exc}") from None
        extra_env = parse_env_flags(env or [])
        from aido.evidence.redact import short_secret_warnings

        env_warnings = short_secret_warnings({**settings.env, **extra_env})
        for warning in env_warnings:
            log.warning("%s", warning)
        source = _check_task(task)
        if settings.runtime:
            choice = parse_runtime(settings.runtime)
        else:
            found = runtime_for_task(task.name)
            if found is None:
                raise UsageError(
                    f"cannot tell how to run {task.name!r} from its extension",
                    hint="use a .py, .js, .mjs, .cjs or .sh file, or set `runtime:` in sandbox.yaml "
                    "(e.g. docker://IMAGE to run the file itself)",
                )
            choice = found
        notes = []
        by_extension = interpreter_for_task(task.name)
        if choice.interpreter and by_extension and by_extension != choice.interpreter:
            # The sandbox's runtime wins; a .js file fed to python is almost always a mistake.
            notes.append(
                f"{str(task)!r} looks like a {by_extension} task but the sandbox's runtime is "
                f"{choice.runtime}: it runs with {choice.interpreter}"
            )
            log.warning("%s", notes[-1])
        # Engine, isolation and image before a run id exists: a missing engine leaves no trace.
        backend = self.backend  # its first call reports an unreachable engine
        backend.check_isolation(settings.isolation)
        # Checked at `sandbox up` too, but the image may have been removed since.
        image_id = _ensure_image(
            backend,
            choice.image,
            (hooks or RunHooks()).on_pull,
            other=f"or create a sandbox with another runtime: {UP_RUNTIME_HINT}",
        )
        return _Plan(
            record,
            paths,
            task,
            source,
            args,
            choice,
            image_id,
            settings,
            timeout_seconds,
            extra_env,
            widen,
            spec_warnings + hatch_warnings,
            env_warnings + notes,
        )

    def execute(
        self,
        plan: _Plan,
        hooks: RunHooks | None = None,
        *,
        cancel: threading.Event | None = None,
        turn: AbstractContextManager[object] | None = None,
    ) -> RunResult:
        """Run a prepared plan: allocate the run id, run the task, write the evidence.
        ``turn`` is held while the run id is allocated (a batch uses it to number runs in
        the order the tasks were given)."""
        with turn or contextlib.nullcontext():
            rid, run_dir, lock_fd = self._begin_run(plan.record, plan.paths, plan.task.name)
        try:
            return self._execute(plan, rid, run_dir, hooks or RunHooks(), cancel)
        except BaseException as exc:
            # Whatever failed, the run's record must not stay "running".
            self._abandon_run(plan, rid, run_dir, exc)
            if not plan.paths.metadata.exists() and isinstance(exc, OSError):
                raise SandboxNotFound(
                    f"sandbox {plan.record.id} was destroyed while {rid} ran",
                    hint=f"its output so far is archived unless purged (`aido logs --sandbox "
                    f"{plan.record.id} --run {rid}`); create a new sandbox with `aido sandbox up`",
                ) from None
            raise
        finally:
            os.close(lock_fd)

    def _begin_run(self, record: SandboxRecord, paths: SandboxPaths, task: str) -> tuple[str, Path, int]:
        """Allocate the next run id under the sandbox lock and mark the run as running.
        The returned descriptor holds a lock on the run directory for as long as this
        process runs the task: a running run whose lock is free was orphaned."""
        try:
            with fs.locked(paths.lock):
                if paths.going():
                    raise SandboxNotFound(
                        f"sandbox {record.id} is being destroyed",
                        hint="create a new sandbox with `aido sandbox up`",
                    )
                current = self.load(record.id)
                taken = [run_number(r.run_id) or 0 for r in current.runs]
                taken += [run_number(p.name) or 0 for p in paths.runs.iterdir()]
                number = max(taken, default=0) + 1
                rid = run_id(number)
                run_dir = paths.run_dir(rid)
                run_dir.mkdir(mode=0o755)  # exclusive: fails rather than share a directory
                lock_fd = fs.hold_lock(run_dir)
                assert lock_fd is not None
                started = isoformat(utcnow())
                current.runs.append(
                    RunRef(
                        run_id=rid, task=task, status="running", started_at=started, evidence=f"runs/{rid}"
                    )
                )
                try:
                    self._save(current)
                except BaseException:
                    os.close(lock_fd)
                    raise
        except FileNotFoundError:
            raise SandboxNotFound(
                f"sandbox {record.id} was destroyed", hint="create a new sandbox with `aido sandbox up`"
            ) from None
        record_event(paths.events, "run_started", sandbox_id=record.id, run_id=rid, task=task)
        return rid, run_dir, lock_fd

    def _finish_run(self, sandbox_id: str, paths: SandboxPaths, ref: RunRef) -> None:
        with fs.locked(paths.lock):
            current = self.load(sandbox_id)
            current.runs = [ref if r.run_id == ref.run_id else r for r in current.runs]
            self._save(current)

    def _abandon_run(self, plan: _Plan, rid: str, run_dir: Path, exc: BaseException) -> None:
        """Close the record of a run that failed before it produced an outcome."""
        from aido.evidence.summary import closing_summary

        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
        message = str(exc)[:500] or type(exc).__name__
        sandbox_id, paths = plan.record.id, plan.paths
        try:
            current = self.load(sandbox_id)
            ref = current.run(rid)
            if ref is None or ref.status != "running":
                return
            ref.status = status
            ref.completed_at = isoformat(utcnow())
            summary_path = run_dir / "summary.json"
            if not summary_path.exists():
                # Every run directory gets a summary, even one that never started a task.
                fs.atomic_write_json(
                    summary_path,
                    closing_summary(
                        sandbox_id=sandbox_id,
                        run_id=rid,
                        task=plan.task.name,
                        status=status,
                        started_at=ref.started_at,
                        completed_at=ref.completed_at,
                        error=message,
                        image=plan.choice.image,
                    ),
                )
                ref.artifacts = [f"runs/{rid}/summary.json"]
            self._finish_run(sandbox_id, paths, ref)
            record_event(
                paths.events, "run_completed", sandbox_id=sandbox_id, run_id=rid, status=status, error=message
            )
        except (AidoError, OSError):
            pass

    def _writable_trees(self, plan: _Plan) -> dict[str, tuple[Path, frozenset[str]]]:
        """Every host directory the task can write, by the name its changes are reported
        under, with the top-level names not to walk: what a run changed is recorded wherever
        it could change something, including what an escape hatch opened."""
        paths, settings = plan.paths, plan.settings
        trees = {"work": (paths.work, frozenset[str]()), "outputs": (paths.outputs, frozenset[str]())}
        if settings.filesystem != "none" and (settings.filesystem == "readwrite" or plan.widen.mutations):
            trees["inputs"] = (paths.inputs, frozenset())
        if plan.widen.host_filesystem and plan.widen.mutations:
            # aido's own state is hidden from the task (see _request): not the task's change.
            trees["project"] = (self.workspace.root, frozenset({self.workspace.dir.name}))
        return trees

    def _request(
        self, plan: _Plan, rid: str, writable: dict[str, tuple[Path, frozenset[str]]]
    ) -> ExecRequest:
        """The container request: the sandbox's policy, made explicit. ``writable`` is
        ``_writable_trees(plan)``: what it names is mounted writable, the rest read-only."""
        from aido.backends.base import ExecRequest, Limits, Mount
        from aido.config.runtimes import task_command

        record, paths, settings = plan.record, plan.paths, plan.settings
        env = {**BASE_ENV, **settings.env, **plan.env, "AIDO_SANDBOX_ID": record.id, "AIDO_RUN_ID": rid}
        mounts = [
            Mount(str(paths.work.resolve()), "/work", read_only=False),
            Mount(str(paths.outputs.resolve()), "/outputs", read_only=False),
        ]
        if settings.filesystem != "none":
            inputs = Mount(str(paths.inputs.resolve()), "/inputs", read_only="inputs" not in writable)
            mounts.insert(0, inputs)
        masked = []
        if plan.widen.host_filesystem:
            # The project directory, but never aido's own state inside it: other sandboxes'
            # evidence and secrets.json stay hidden under an empty read-only tmpfs.
            mounts.append(
                Mount(str(self.workspace.root), HOST_FILESYSTEM_TARGET, read_only="project" not in writable)
            )
            masked.append(f"{HOST_FILESYSTEM_TARGET}/{self.workspace.dir.name}")
        # The task file itself comes from the run's evidence, read-only: what ran is exactly
        # what task_sha256 describes, even if a concurrent run rewrites work/ meanwhile.
        evidence_copy = paths.run_dir(rid) / "task" / plan.task.name
        mounts.append(Mount(str(evidence_copy.resolve()), f"/work/{plan.task.name}", read_only=True))
        return ExecRequest(
            image=plan.choice.image,
            argv=task_command(plan.choice, f"/work/{plan.task.name}", plan.args),
            env=env,
            mounts=mounts,
            limits=Limits(
                cpus=settings.cpus,
                memory_bytes=settings.memory_bytes,
                fsize_bytes=settings.disk_bytes,
                pids=_pids_limit(settings),
            ),
            timeout_seconds=plan.timeout_seconds,
            labels={
                "aido.managed": "true",
                "aido.sandbox": record.id,
                "aido.run": rid,
                "aido.workspace": self._workspace_label(),
                "aido.version": __version__,
            },
            name=f"aido-{record.id}-{rid}",
            user=record.task_user,
            network=settings.network or plan.widen.network,
            isolation=settings.isolation,
            masked_paths=masked,
            stdin=plan.stdin,
        )

    def _execute(
        self, plan: _Plan, rid: str, run_dir: Path, hooks: RunHooks, cancel: threading.Event | None
    ) -> RunResult:
        from aido.evidence.capture import DEFAULT_LIMIT, OutputCapture
        from aido.evidence.gitinfo import git_context
        from aido.evidence.redact import mask_text, secret_values
        from aido.evidence.snapshot import compare, snapshot
        from aido.evidence.summary import build_summary

        record, paths, task, settings = plan.record, plan.paths, plan.task, plan.settings
        uid, _, gid = record.task_user.partition(":")
        if settings.disk_quota == "hard":
            from aido.host import volume

            volume.ensure_mounted(paths, uid=int(uid), gid=int(gid))  # after a reboot, nothing is
        _install_task(
            paths.work / task.name, run_dir / "task" / task.name, plan.source, task, int(uid), int(gid)
        )
        if plan.widen.mutations and settings.filesystem != "readwrite":
            _hand_over(paths.inputs, int(uid), int(gid))
        if plan.warnings:
            record_event(
                paths.events,
                "permissions_widened",
                sandbox_id=record.id,
                run_id=rid,
                escape_hatches=plan.widen.as_dict(),
                warnings=plan.warnings,
            )
        git = git_context(self.workspace.root)
        watched = self._writable_trees(plan)
        before = {name: snapshot(root, exclude=skip) for name, (root, skip) in watched.items()}
        request = self._request(plan, rid, watched)
        log.debug("container %s: image %s, argv %s", request.name, request.image, request.argv)
        log.debug(
            "limits %s, user %s, network %s, mounts %s",
            request.limits,
            request.user,
            request.network,
            [(m.source, m.target, "ro" if m.read_only else "rw") for m in request.mounts],
        )
        secrets = secret_values({**settings.env, **plan.env})
        capture = OutputCapture(
            run_dir, limit=self.output_limit or DEFAULT_LIMIT, echo=hooks.on_output, secrets=secrets
        )
        guard = _RunGuard(plan, cancel)
        if hooks.on_start:
            hooks.on_start(rid, task.name, request.image)
        try:
            outcome = self.backend.run(request, capture.write, guard)
        except RuntimeUnavailable:
            self._mark_containers_left()  # it may have created the container before failing
            raise
        finally:
            streams = capture.close()
        if outcome.container_left:
            self._mark_containers_left()
        if outcome.stop_reason is None and outcome.exit_code != 0 and paths.destroying.exists():
            # Destroyed under us before the guard noticed: that, not an engine error, is why.
            outcome.stop_reason, outcome.error, outcome.exit_code = "destroyed", None, None
        after = {name: snapshot(root, exclude=skip) for name, (root, skip) in watched.items()}
        changes: list[dict[str, object]] = []
        diffs = []
        for name in watched:
            found, diff = compare(before[name], after[name], prefix=name)
            changes.extend(found)
            diffs.append(diff)
        # A task may write a secret it was given into a text file: the diff masks it too.
        diff_text = mask_text("".join(diffs), secrets)
        artifacts = [
            f"{run_dir.name}/task/{task.name}",
            f"{run_dir.name}/stdout.log",
            f"{run_dir.name}/stderr.log",
            f"{run_dir.name}/summary.json",
        ]
        if diff_text:
            fs.write_new(run_dir / "changes.diff", diff_text.encode("utf-8"))
            artifacts.insert(3, f"{run_dir.name}/changes.diff")
        disk = guard.disk_report()
        signal_exit = hooks.signal_exit() if hooks.signal_exit else None
        verdict = guard.verdict(outcome, signal_exit)
        status, message = verdict.status, verdict.message
        summary = build_summary(
            record=record,
            run_id=rid,
            task=task.name,
            task_source=plan.source,
            args=plan.args,
            runtime=plan.choice.runtime,
            request=request,
            outcome=outcome,
            status=status,
            image_id=plan.image_id,
            streams=streams,
            changes=changes,
            snapshot_notes=[f"{name}: {n}" for name, taken in after.items() for n in taken.notes],
            # From the snapshot, which never follows a link the task planted.
            declared_outputs=[
                {"path": p, "present": p in after["outputs"].entries} for p in settings.outputs
            ],
            git=git,
            inputs=_read_inputs_manifest(paths),
            aido_version=__version__,
            artifacts=[f"runs/{a}" for a in artifacts],
            escape_hatches=plan.widen.as_dict(),
            warnings=plan.warnings + plan.notes,
            stop_reason=outcome.stop_reason,
            message=message,
            disk=disk,
            limits_exceeded=verdict.limits_exceeded,
            outcome_line=verdict.line,
            exit_code_of_run=verdict.exit_code,
        )
        summary["notes"] = unenforced_permissions(record.config)  # not enforced, so not in `warnings`
        fs.atomic_write_json(run_dir / "summary.json", summary)
        ref = RunRef(
            run_id=rid,
            task=task.name,
            status=status,
            started_at=summary["started_at"],
            completed_at=summary["completed_at"],
            duration_ms=outcome.duration_ms,
            exit_code=outcome.exit_code,
            evidence=f"runs/{rid}",
            artifacts=[f"runs/{a}" for a in artifacts],
        )
        self._finish_run(record.id, paths, ref)
        record_event(
            paths.events,
            "run_completed",
            sandbox_id=record.id,
            run_id=rid,
            exit_code=outcome.exit_code,
            status=status,
            duration_ms=outcome.duration_ms,
            timed_out=outcome.timed_out or None,
            oom_killed=outcome.oom_killed or None,
            stop_reason=outcome.stop_reason,
            limits_exceeded=[b["kind"] for b in verdict.limits_exceeded] or None,
        )
        return RunResult(
            sandbox_id=record.id,
            run_id=rid,
            task=task.name,
            status=status,
            exit_code=outcome.exit_code,
            duration_ms=outcome.duration_ms,
            timed_out=outcome.timed_out,
            oom_killed=outcome.oom_killed,
            evidence_dir=run_dir,
            outputs_dir=paths.outputs,
            artifacts=tuple(str(Path(".aido/sandboxes") / record.id / "runs" / a) for a in artifacts),
            summary=summary,
            error=outcome.error,
            signal_exit=signal_exit,
            stop_reason=outcome.stop_reason,
            message=message,
            outcome=verdict.line,
            pids_limit_reached=outcome.pids_limit_hit,
            limits_exceeded=tuple(verdict.limits_exceeded),
            output=streams_from_summary(summary.get("output")),
            changes=tuple(summary.get("changes") or ()),
            declared_outputs=declared_from_summary(summary.get("declared_outputs")),
        )

    # -- aido logs ------------------------------------------------------------------------

    def run_ref(self, sandbox_id: str | None, run: str | None) -> tuple[SandboxRecord, RunRef]:
        """A run of the given (live or destroyed) sandbox, or of the active one; the latest
        run without ``run``."""
        record, _ = self.load_evidence(self.resolve_id(sandbox_id))
        if not record.runs:
            raise RunNotFound(f"sandbox {record.id} has no runs yet", hint="run a task with `aido run TASK`")
        if run is None:
            return record, max(record.runs, key=lambda r: run_number(r.run_id) or 0)
        wanted = check_run_id(run)
        ref = record.run(wanted)
        if ref is None:
            raise RunNotFound(
                f"sandbox {record.id} has no run {wanted}",
                hint=f"its runs: {', '.join(r.run_id for r in record.runs)}",
            )
        return record, ref

    def run_dir(self, sandbox_id: str, run: str) -> Path:
        """Where a run's evidence is: in the sandbox, or in the archive once it was destroyed."""
        return self._evidence_paths(sandbox_id).run_dir(check_run_id(run))

    def stream_logs(
        self,
        sandbox_id: str,
        run: str,
        *,
        streams: tuple[int, ...] = (1,),
        follow: bool = False,
        poll: float = 0.1,
    ) -> Iterator[tuple[int, bytes]]:
        """Yield (stream, bytes) from a run's logs; with ``follow``, keep going as they grow
        until the run has ended (the run may be in progress in another process)."""
        names = {1: "stdout.log", 2: "stderr.log"}
        offsets = dict.fromkeys(streams, 0)
        next_check, orphaned = time.monotonic() + ORPHAN_CHECK_SECONDS, 0
        while True:
            ended = (
                not follow
                or (self.load_evidence(sandbox_id)[0].run(run) or RunRef(run, "", "error", "")).status
                != "running"
            )
            run_dir = self.run_dir(sandbox_id, run)  # again each time: it moves when archived
            for kind in streams:
                try:
                    fd = os.open(run_dir / names[kind], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                with os.fdopen(fd, "rb") as handle:
                    handle.seek(offsets[kind])
                    while chunk := handle.read(65536):
                        offsets[kind] += len(chunk)
                        yield kind, chunk
            if ended:
                return
            if time.monotonic() >= next_check:
                # A run marked running whose container is gone (or stopped) was left by an
                # aido process that died: following it would wait forever.
                next_check = time.monotonic() + ORPHAN_CHECK_SECONDS
                orphaned = orphaned + 1 if not self._run_container_alive(sandbox_id, run) else 0
                if orphaned >= 2:
                    log.warning(
                        "%s is marked running but has no running container: the aido process "
                        "that ran it was killed; showing what it captured",
                        run,
                    )
                    return
            time.sleep(poll)

    def _run_container_alive(self, sandbox_id: str, run: str) -> bool:
        try:
            found = self.backend.list_labelled({"aido.sandbox": sandbox_id, "aido.run": run})
        except AidoError:
            return True  # cannot tell without the engine: keep following
        return any(c.get("state") == "running" for c in found)


def widened_permissions(config: dict[str, Any]) -> list[str]:
    """Warnings for every permission wider than the default, shaped like Widening.warnings:
    `<option>: <what the task can do>`. Each needs confirmation; recorded in the evidence too."""
    permissions = config.get("permissions") or {}
    warnings = []
    if permissions.get("network") is True:
        warnings.append("permissions.network: every task can reach the network, including your local network")
    if permissions.get("filesystem") == "readwrite":
        warnings.append("permissions.filesystem: every task can modify the sandbox inputs (/inputs)")
    return warnings


def _ensure_image(backend: Backend, image: str, on_pull: Callable[[str], None] | None, *, other: str) -> str:
    """The image's id, pulled if need be; when it cannot be had, the runtime's hint (how to
    provide it) plus ``other``: how to choose another image from the command at hand."""
    try:
        return backend.ensure_image(image, on_pull)
    except ImageUnavailable as exc:
        raise ImageUnavailable(exc.message, hint=f"{exc.hint}, {other}" if exc.hint else other) from None


def unenforced_permissions(config: dict[str, Any]) -> list[str]:
    """Notes on permissions the spec accepts but aido does not enforce. They widen nothing,
    so they are not asked about: said once at `sandbox up`, and recorded in the evidence
    (the sandbox_created event and each run's summary) so that nobody reads them as granted."""
    permissions = config.get("permissions") or {}
    notes = []
    if permissions.get("aws"):
        notes.append(
            "permissions.aws: recorded only, not enforced: tasks get no AWS access or credentials from it"
        )
    return notes


def _confirm(warnings: list[str], confirm: Confirm | None) -> None:
    """Widening the sandbox needs a yes: from a prompt, ``--yes``, or the API caller."""
    if not warnings:
        return
    if confirm is None or not confirm(warnings):
        raise NotConfirmed(
            f"refusing to widen the sandbox without confirmation: {'; '.join(warnings)}",
            hint="answer y at the prompt, or pass --yes to confirm without a terminal",
        )


def _choice(summary: SandboxSummary) -> str:
    """A sandbox as named in a "choose one" error: its id, name and status if not plain."""
    notes = [n for n in (summary.name, summary.status if summary.status != "created" else None) if n]
    return f"{summary.id} ({', '.join(notes)})" if notes else summary.id


def _peek(paths: SandboxPaths) -> Any:
    """sandbox.json parsed but not validated, or None if it cannot be read or parsed."""
    try:
        return fs.read_json(paths.metadata)
    except (OSError, ValueError):
        return None


def _may_need_sweeping(data: Any, now: Any) -> bool:
    """A cheap look at sandbox.json, without validating every run (sweeps happen on every
    command): whether it has a run marked running, or is an expired auto-cleanup sandbox.
    Anything unexpected means yes, and the full load decides."""
    from aido.store.records import parse_time

    try:
        if any(run.get("status") == "running" for run in data["runs"]):
            return True
        return bool(data.get("auto_cleanup", True)) and now >= parse_time(data["expires_at"])
    except Exception:
        return True


def _delete_sandbox_tree(paths: SandboxPaths) -> None:
    from aido.host import volume

    if volume.is_hard(paths) or os.path.ismount(paths.work) or os.path.ismount(paths.outputs):
        volume.release(paths)  # never delete through a mounted filesystem
    fs.remove_tree(paths.root)


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _read_secrets(paths: SandboxPaths) -> dict[str, str]:
    try:
        data = fs.read_json(paths.secrets)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MetadataError(f"{paths.secrets} is unreadable: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise MetadataError(f"{paths.secrets} is invalid: expected names mapped to strings")
    return {str(k): v for k, v in data.items()}


def parse_env_flags(values: list[str]) -> dict[str, str]:
    """``-e KEY=VALUE`` sets a value; ``-e KEY`` copies that one host variable, explicitly."""
    import re

    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", key):
            raise UsageError(f"-e {item!r}: expected KEY=VALUE with a name of letters, digits and '_'")
        if not sep:
            if key not in os.environ:
                raise UsageError(
                    f"-e {key}: no such variable in your environment", hint=f"use -e {key}=VALUE"
                )
            value = os.environ[key]
        if "\0" in value:
            raise UsageError(f"-e {key}: values cannot contain NUL bytes")
        env[key] = value
    return env


def _check_task(task: Path) -> bytes:
    try:
        fd = os.open(task, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TaskNotFound(f"task file {str(task)!r} not found", hint="check the path") from None
    except PermissionError:
        raise TaskNotRunnable(f"task file {str(task)!r} is not readable") from None
    try:
        # Checked on the descriptor: on Linux a directory opens fine with O_RDONLY.
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise TaskNotRunnable(f"task {str(task)!r} is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise TaskNotRunnable(f"task {str(task)!r} is not a regular file")
        if st.st_size > MAX_TASK_BYTES:
            raise TaskNotRunnable(f"task file {str(task)!r} is larger than {MAX_TASK_BYTES >> 20} MiB")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_inputs_manifest(paths: SandboxPaths) -> list[dict[str, Any]]:
    """What was copied into inputs/ at `sandbox up` (path, size, SHA-256), written by aido."""
    try:
        data = fs.read_json(paths.root / "inputs.json")
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def _hand_over(root: Path, uid: int, gid: int) -> None:
    """Make the inputs tree writable by the task's user (``filesystem: readwrite`` or
    ``--dangerous-allow-mutations``). A task of this sandbox may have written it already,
    and may be swapping entries for links right now: the walk goes by directory
    descriptors, every entry is opened with O_NOFOLLOW and changed through that
    descriptor, and links are only ever re-owned themselves, never followed."""
    as_root = os.getuid() == 0

    def adopt(name: str, dir_fd: int | None) -> None:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            # A symlink (ELOOP), or gone: re-own the link itself at most, never its target.
            if as_root:
                with contextlib.suppress(OSError):
                    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            return
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                # Never setuid/setgid, whoever made it.
                os.fchmod(fd, (stat.S_IMODE(st.st_mode) | stat.S_IWUSR) & ~(stat.S_ISUID | stat.S_ISGID))
                if as_root:
                    os.fchown(fd, uid, gid)
        finally:
            os.close(fd)

    for _, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in [*dirs, *files]:
            adopt(name, dir_fd)
    adopt(str(root), None)


def _install_task(dest: Path, evidence: Path, source: bytes, task: Path, uid: int, gid: int) -> None:
    """Write the task twice: into the run's evidence (mounted read-only over the task's path),
    and into work/ as the spec says, by write-then-rename so that a symlink or file a task
    left at that name in an earlier run is replaced, never followed."""
    if dest.is_dir() and not dest.is_symlink():
        raise TaskNotRunnable(
            f"cannot copy the task: work/{dest.name} is a directory (left by an earlier run)",
            hint="rename the task file, or start a new sandbox",
        )
    mode = 0o755 if os.stat(task).st_mode & 0o111 else 0o644
    evidence.parent.mkdir(mode=0o755)
    fs.write_new(evidence, source, mode=mode)
    if _same_file_content(dest, source, mode):
        # Concurrent runs of one task: replacing the file would pull the mount point
        # (/work/<task>) from under a container another run is starting.
        return
    fs.atomic_write_bytes(dest, source, mode=mode)
    if os.getuid() == 0:
        os.chown(dest, uid, gid, follow_symlinks=False)


def _same_file_content(path: Path, data: bytes, mode: int) -> bool:
    """Whether path is a regular file (not a link) holding exactly data with that mode."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data) or stat.S_IMODE(st.st_mode) != mode:
            return False
        return os.read(fd, len(data) + 1) == data
    finally:
        os.close(fd)


def _pids_limit(settings: RunSettings) -> int:
    """The task's pids limit. Under gVisor the pids cgroup also counts the sandbox kernel's
    own threads: 256 would leave a task about 30 processes. Memory still bounds a fork bomb."""
    from aido.backends.base import Limits

    return GVISOR_PIDS if settings.isolation == "gvisor" else Limits.pids


class _RunGuard:
    """Polled by the runtime adapter while a task runs: says when aido must stop it."""

    def __init__(self, plan: _Plan, cancel: threading.Event | None) -> None:
        from aido.store.records import parse_time

        self.plan = plan
        self.paths = plan.paths
        self.cancel = cancel
        self.expires = parse_time(plan.record.expires_at).timestamp()
        self.expires_at = plan.record.expires_at
        self.next_disk_check = 0.0
        self.usage: Any = None
        self.exceeded: str | None = None
        self.breaches: tuple[Breach, ...] = ()

    def __call__(self) -> str | None:
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.paths.going():
            return "destroyed"
        if time.time() >= self.expires and not self._extended():
            return "expired"
        now = time.monotonic()
        if self.plan.settings.disk_quota == "hard":
            return None  # the sandbox's own filesystem enforces the limit: writes fail with ENOSPC
        if now >= self.next_disk_check:
            self.check_disk()
            # A big tree costs more to walk: check it less often rather than load the host.
            self.next_disk_check = time.monotonic() + max(DISK_CHECK_SECONDS, 4 * (time.monotonic() - now))
            if self.exceeded:
                return "disk_limit"
        return None

    def _extended(self) -> bool:
        """At the expiry the run started with: whether `aido sandbox extend` has moved it
        later since (read once, at that moment, not on every poll)."""
        from aido.store.records import parse_time

        data = _peek(self.paths)
        try:
            later = parse_time(data["expires_at"]).timestamp()
        except (TypeError, KeyError, ValueError, AttributeError):
            return False
        if later <= self.expires:
            return False
        self.expires, self.expires_at = later, data["expires_at"]
        return time.time() < later

    def check_disk(self, *, final: bool = False) -> None:
        from aido.host.diskusage import exceeded, measure

        settings = self.plan.settings
        self.usage = measure(
            [self.paths.work, self.paths.outputs],
            # While the task runs, stop at the limit; at the end, measure all it left
            # (still bounded by the file count, so a million files cost little).
            stop_bytes=None if final else settings.disk_bytes,
            stop_files=settings.max_files,
        )
        self.exceeded = exceeded(self.usage, max_bytes=settings.disk_bytes, max_files=settings.max_files)

    def disk_report(self) -> dict[str, Any]:
        """Disk use at the end (what the task left), and every disk or file-count limit
        breached: while it ran (why the guard killed it) or by what it left."""
        from aido.host.trees import breaches

        settings = self.plan.settings
        while_running = (
            breaches(self.paths, settings, self.usage) if self.exceeded and self.usage is not None else []
        )
        self.check_disk(final=True)  # once more, after the task ended: what it left behind
        found = breaches(self.paths, settings, self.usage)
        kinds = {b.kind for b in found}
        self.breaches = tuple(found + [b for b in while_running if b.kind not in kinds])
        self.exceeded = "; ".join(b.text for b in self.breaches) or None
        return {
            "quota": settings.disk_quota,
            "limit_bytes": settings.disk_bytes,
            "limit_files": settings.max_files,
            "bytes_used": self.usage.bytes_used,
            "files": self.usage.files,
            "measured_completely": self.usage.complete,
            "exceeded": self.exceeded,
        }

    def verdict(self, outcome: ExecOutcome, signal_exit: int | None) -> Verdict:
        """The run's one verdict (status, message, exit code, line): see verdict.py."""
        from aido.run.verdict import Facts, decide

        plan = self.plan
        return decide(
            Facts(
                exit_code=outcome.exit_code,
                duration_ms=outcome.duration_ms,
                stop_reason=outcome.stop_reason,
                timed_out=outcome.timed_out,
                oom_killed=outcome.oom_killed,
                pids_limit_hit=outcome.pids_limit_hit,
                interrupted=outcome.interrupted,
                error=outcome.error,
                disk=self.breaches,
                memory_bytes=plan.settings.memory_bytes,
                pids_limit=_pids_limit(plan.settings),
                timeout_seconds=plan.timeout_seconds,
                isolation=plan.settings.isolation,
                sandbox_id=plan.record.id,
                expires_at=self.expires_at,
                signal_exit=signal_exit,
            )
        )


__all__ = [
    "DestroyFailed",
    "DestroyResult",
    "RunHooks",
    "RunResult",
    "RunSummary",
    "SandboxManager",
    "SandboxSummary",
    "Widening",
]
