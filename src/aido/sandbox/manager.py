"""The sandbox manager: the public Python API behind every ``aido`` command.

It owns lifecycle and policy (ids, directories, metadata, limits, evidence) and
delegates container work to a runtime adapter. It never prints: callers pass
hooks for progress and output, and get structured results back.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import __version__
from aido.errors import (
    AidoError,
    RunNotFound,
    RuntimeUnavailable,
    SandboxExpired,
    SandboxNotFound,
    TaskNotFound,
    TaskNotRunnable,
    UsageError,
)
from aido.evidence.events import record_event
from aido.exit_codes import ExitCode
from aido.sandbox import fsutil
from aido.sandbox.ids import check_run_id, new_sandbox_id, run_id, run_number
from aido.sandbox.records import (
    RunRef,
    RunSettings,
    SandboxRecord,
    isoformat,
    utcnow,
)
from aido.sandbox.workspace import SandboxPaths, Workspace

if TYPE_CHECKING:
    from aido.runtimes.base import ExecOutcome, ExecRequest, RuntimeAdapter
    from aido.runtimes.resolve import RuntimeChoice

log = logging.getLogger("aido")

UNPRIVILEGED_UID = 10001  # the task's uid when aido itself runs as root
MAX_TASK_BYTES = 64 << 20
ORPHAN_CHECK_SECONDS = 2.0  # how often `logs --follow` checks that a running run still has a container

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


@dataclass
class RunHooks:
    """Callbacks the caller (the CLI, a test, an agent) uses to watch a run."""

    on_pull: Callable[[str], None] | None = None
    on_start: Callable[[str, str, str], None] | None = None  # (run_id, task, image)
    on_output: Callable[[int, bytes], None] | None = None


@dataclass
class RunResult:
    sandbox_id: str
    run_id: str
    task: str
    status: str
    exit_code: int | None
    duration_ms: int
    timed_out: bool
    oom_killed: bool
    evidence_dir: Path
    outputs_dir: Path
    artifacts: list[str]
    summary: dict[str, Any] = field(repr=False)
    error: str | None = None
    signal_exit: int | None = None

    @property
    def process_exit_code(self) -> int:
        """What ``aido run`` exits with: the task's own code, or aido's documented codes."""
        if self.status == "timed_out":
            return ExitCode.TIMED_OUT
        if self.status == "interrupted":
            return self.signal_exit or ExitCode.INTERRUPTED
        if self.status == "error" or self.exit_code is None:
            return ExitCode.RUNTIME
        return self.exit_code


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


@dataclass
class SandboxSummary:
    id: str
    name: str | None
    status: str
    created_at: str
    expires_at: str
    runs: int
    active: bool


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
        runtime: RuntimeAdapter | None = None,
        output_limit: int | None = None,
    ) -> None:
        self._workspace = workspace
        self._runtime = runtime
        self.output_limit = output_limit

    # -- collaborators, created on first use ---------------------------------------------

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace.require()
        return self._workspace

    @property
    def runtime(self) -> RuntimeAdapter:
        if self._runtime is None:
            from aido.runtimes.registry import get_runtime

            self._runtime = get_runtime()
        return self._runtime

    # -- metadata -----------------------------------------------------------------------

    def load(self, sandbox_id: str) -> SandboxRecord:
        paths = self.workspace.sandbox(sandbox_id)
        try:
            data = fsutil.read_json(paths.metadata)
        except FileNotFoundError:
            raise SandboxNotFound(
                f"no sandbox {sandbox_id} in {self.workspace.dir}",
                hint="list sandboxes with `aido sandbox list`",
            ) from None
        except (OSError, ValueError) as exc:
            from aido.errors import MetadataError

            raise MetadataError(f"{paths.metadata} is unreadable: {exc}") from None
        return SandboxRecord.from_json(data, source=str(paths.metadata))

    def _save(self, record: SandboxRecord) -> None:
        fsutil.atomic_write_json(self.workspace.sandbox(record.id).metadata, record.to_json())

    def resolve_id(self, sandbox_id: str | None) -> str:
        """The given sandbox, or the active one, or the newest one."""
        if sandbox_id:
            from aido.sandbox.ids import check_sandbox_id

            return check_sandbox_id(sandbox_id)
        active = self.workspace.active_id()
        if active and (self.workspace.sandboxes / active / "sandbox.json").is_file():
            return active
        ids = self.workspace.sandbox_ids()
        if not ids:
            raise SandboxNotFound("no sandbox in this workspace", hint="create one with `aido sandbox up`")
        return max(ids, key=lambda i: (self.workspace.sandboxes / i / "sandbox.json").stat().st_mtime)

    # -- sandbox up -----------------------------------------------------------------------

    def create(
        self,
        *,
        spec_file: Path | None = None,
        name: str | None = None,
        runtime: str | None = None,
        ttl: str | None = None,
        auto_cleanup: bool = True,
        start: Path | None = None,
    ) -> SandboxRecord:
        from aido.config.loader import load_spec

        overrides = {k: v for k, v in (("name", name), ("runtime", runtime), ("ttl", ttl)) if v is not None}
        spec = load_spec(spec_file, overrides=overrides)
        matches: list[tuple[Path, Path]] = []
        if spec.inputs:
            if spec_file is None:
                raise UsageError("inputs need a sandbox.yaml to be relative to")
            from aido.sandbox.inputs import match_inputs

            matches = match_inputs(spec.inputs, spec_file.parent, source=spec_file.name)
        for warning in widened_permissions(spec.model_dump(mode="json")):
            log.warning("%s", warning)
        if self._workspace is None:
            self._workspace = Workspace.find_or_create(start)
        workspace = self.workspace
        sandbox_id = new_sandbox_id()
        while (workspace.sandboxes / sandbox_id).exists():  # 36^12: a collision is astronomically rare
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
            from aido.sandbox.inputs import copy_inputs

            inputs = copy_inputs(matches, paths.inputs)
            if spec.permissions.filesystem == "readwrite":
                _hand_over(paths.inputs, uid, gid)
            created = utcnow()
            config = spec.model_dump(mode="json")
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
                fsutil.atomic_write_json(paths.root / "inputs.json", inputs)
            record_event(
                paths.events,
                "sandbox_created",
                sandbox_id=sandbox_id,
                name=spec.name,
                expires_at=record.expires_at,
                spec_file=str(spec_file) if spec_file else None,
            )
        except BaseException:
            fsutil.remove_tree(paths.root)  # no half-created sandbox stays behind
            raise
        workspace.set_active(sandbox_id)
        return record

    # -- sandbox list / destroy -----------------------------------------------------------

    def list_sandboxes(self) -> list[SandboxSummary]:
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
        return sorted(out, key=lambda s: s.created_at)

    def destroy(
        self, sandbox_ids: list[str] | None = None, *, all_sandboxes: bool = False
    ) -> list[dict[str, Any]]:
        from aido.sandbox.ids import check_sandbox_id

        for given in sandbox_ids or []:
            check_sandbox_id(given)  # a malformed id is a usage error, workspace or not
        workspace = self.workspace
        if all_sandboxes:
            targets = workspace.sandbox_ids()
        elif sandbox_ids:
            targets = [self.resolve_id(i) for i in sandbox_ids]
        else:
            targets = [self.resolve_id(None)]
        results = []
        for sandbox_id in targets:
            paths = workspace.sandbox(sandbox_id)
            if not paths.root.is_dir():
                raise SandboxNotFound(
                    f"no sandbox {sandbox_id} in {workspace.dir}",
                    hint="list sandboxes with `aido sandbox list`",
                )
            warning = None
            try:
                removed = self.runtime.remove_labelled({"aido.sandbox": sandbox_id})
            except RuntimeUnavailable as exc:
                removed, warning = [], f"containers not checked: {exc.message}"
            fsutil.remove_tree(paths.root)
            record_event(
                workspace.events,
                "sandbox_destroyed",
                sandbox_id=sandbox_id,
                containers_removed=len(removed),
                warning=warning,
            )
            if workspace.active_id() == sandbox_id:
                workspace.set_active(None)
            results.append({"sandbox_id": sandbox_id, "containers_removed": len(removed), "warning": warning})
        return results

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
    ) -> RunResult:
        from aido.config.units import parse_duration
        from aido.runtimes.resolve import parse_runtime, runtime_for_task

        hooks = hooks or RunHooks()
        args = list(args or [])
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
        for warning in widened_permissions(record.config):
            log.warning("%s", warning)
        timeout_seconds = settings.timeout_seconds
        if timeout is not None:
            try:
                timeout_seconds = parse_duration(timeout, maximum=24 * 3600)
            except ValueError as exc:
                raise UsageError(f"--timeout: {exc}") from None
        extra_env = parse_env_flags(env or [])
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
        # Engine and image before a run id exists: a missing engine leaves no trace.
        runtime = self.runtime
        runtime.info()
        image_id = runtime.ensure_image(choice.image, hooks.on_pull)

        plan = _Plan(
            record, paths, task, source, args, choice, image_id, settings, timeout_seconds, extra_env
        )
        rid, run_dir = self._begin_run(record, paths, task.name)
        try:
            return self._execute(plan, rid, run_dir, hooks)
        except BaseException as exc:
            # Whatever failed, the run's record must not stay "running".
            self._abandon_run(plan, rid, run_dir, exc)
            raise

    def _begin_run(self, record: SandboxRecord, paths: SandboxPaths, task: str) -> tuple[str, Path]:
        """Allocate the next run id under the sandbox lock and mark the run as running."""
        with fsutil.locked(paths.lock):
            current = self.load(record.id)
            taken = [run_number(r.run_id) or 0 for r in current.runs]
            taken += [run_number(p.name) or 0 for p in paths.runs.iterdir()]
            number = max(taken, default=0) + 1
            rid = run_id(number)
            run_dir = paths.run_dir(rid)
            run_dir.mkdir(mode=0o755)  # exclusive: fails rather than share a directory
            started = isoformat(utcnow())
            current.runs.append(
                RunRef(run_id=rid, task=task, status="running", started_at=started, evidence=f"runs/{rid}")
            )
            self._save(current)
        record_event(paths.events, "run_started", sandbox_id=record.id, run_id=rid, task=task)
        return rid, run_dir

    def _finish_run(self, sandbox_id: str, paths: SandboxPaths, ref: RunRef) -> None:
        with fsutil.locked(paths.lock):
            current = self.load(sandbox_id)
            current.runs = [ref if r.run_id == ref.run_id else r for r in current.runs]
            self._save(current)

    def _abandon_run(self, plan: _Plan, rid: str, run_dir: Path, exc: BaseException) -> None:
        """Close the record of a run that failed before it produced an outcome."""
        from aido.evidence.summary import SUMMARY_VERSION

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
                fsutil.atomic_write_json(
                    summary_path,
                    {
                        "schema_version": SUMMARY_VERSION,
                        "sandbox_id": sandbox_id,
                        "run_id": rid,
                        "task": plan.task.name,
                        "status": status,
                        "exit_code": None,
                        "started_at": ref.started_at,
                        "completed_at": ref.completed_at,
                        "error": message,
                        "image": plan.choice.image,
                    },
                )
                ref.artifacts = [f"runs/{rid}/summary.json"]
            self._finish_run(sandbox_id, paths, ref)
            record_event(
                paths.events, "run_completed", sandbox_id=sandbox_id, run_id=rid, status=status, error=message
            )
        except (AidoError, OSError):
            pass

    def _request(self, plan: _Plan, rid: str) -> ExecRequest:
        """The container request: the sandbox's policy, made explicit."""
        from aido.runtimes.base import ExecRequest, Limits, Mount
        from aido.runtimes.resolve import task_command

        record, paths, settings = plan.record, plan.paths, plan.settings
        env = {**BASE_ENV, **settings.env, **plan.env, "AIDO_SANDBOX_ID": record.id, "AIDO_RUN_ID": rid}
        mounts = [
            Mount(str(paths.work.resolve()), "/work", read_only=False),
            Mount(str(paths.outputs.resolve()), "/outputs", read_only=False),
        ]
        if settings.filesystem != "none":
            mounts.insert(
                0, Mount(str(paths.inputs.resolve()), "/inputs", read_only=settings.filesystem != "readwrite")
            )
        # The task file itself comes from the run's evidence, read-only: what ran is exactly
        # what task_sha256 describes, even if a concurrent run rewrites work/ meanwhile.
        evidence_copy = paths.run_dir(rid) / "task" / plan.task.name
        mounts.append(Mount(str(evidence_copy.resolve()), f"/work/{plan.task.name}", read_only=True))
        return ExecRequest(
            image=plan.choice.image,
            argv=task_command(plan.choice, f"/work/{plan.task.name}", plan.args),
            env=env,
            mounts=mounts,
            limits=Limits(cpus=settings.cpus, memory_bytes=settings.memory_bytes),
            timeout_seconds=plan.timeout_seconds,
            labels={
                "aido.managed": "true",
                "aido.sandbox": record.id,
                "aido.run": rid,
                "aido.workspace": str(self.workspace.root)[:1024],
                "aido.version": __version__,
            },
            name=f"aido-{record.id}-{rid}",
            user=record.task_user,
            network=settings.network,
        )

    def _execute(self, plan: _Plan, rid: str, run_dir: Path, hooks: RunHooks) -> RunResult:
        from aido.evidence.capture import DEFAULT_LIMIT, OutputCapture
        from aido.evidence.gitinfo import git_context
        from aido.evidence.snapshot import compare, snapshot
        from aido.evidence.summary import build_summary

        record, paths, task, settings = plan.record, plan.paths, plan.task, plan.settings
        uid, _, gid = record.task_user.partition(":")
        _install_task(
            paths.work / task.name, run_dir / "task" / task.name, plan.source, task, int(uid), int(gid)
        )
        git = git_context(self.workspace.root)
        before = {name: snapshot(getattr(paths, name)) for name in ("work", "outputs")}
        request = self._request(plan, rid)
        log.debug("container %s: image %s, argv %s", request.name, request.image, request.argv)
        log.debug(
            "limits %s, user %s, network %s, mounts %s",
            request.limits,
            request.user,
            request.network,
            [(m.source, m.target, "ro" if m.read_only else "rw") for m in request.mounts],
        )
        capture = OutputCapture(run_dir, limit=self.output_limit or DEFAULT_LIMIT, echo=hooks.on_output)
        if hooks.on_start:
            hooks.on_start(rid, task.name, request.image)
        try:
            outcome = self.runtime.run(request, capture.write)
        finally:
            streams = capture.close()
        after = {name: snapshot(getattr(paths, name)) for name in ("work", "outputs")}
        changes: list[dict[str, object]] = []
        diffs = []
        for name in ("work", "outputs"):
            found, diff = compare(before[name], after[name], prefix=name)
            changes.extend(found)
            diffs.append(diff)
        diff_text = "".join(diffs)
        artifacts = [
            f"{run_dir.name}/task/{task.name}",
            f"{run_dir.name}/stdout.log",
            f"{run_dir.name}/stderr.log",
            f"{run_dir.name}/summary.json",
        ]
        if diff_text:
            fsutil.write_new(run_dir / "changes.diff", diff_text.encode("utf-8"))
            artifacts.insert(3, f"{run_dir.name}/changes.diff")
        status = _status(outcome)
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
            snapshot_notes=[f"work: {n}" for n in after["work"].notes]
            + [f"outputs: {n}" for n in after["outputs"].notes],
            # From the snapshot, which never follows a link the task planted.
            declared_outputs=[
                {"path": p, "present": p in after["outputs"].entries} for p in settings.outputs
            ],
            git=git,
            inputs=_read_inputs_manifest(paths),
            aido_version=__version__,
            artifacts=[f"runs/{a}" for a in artifacts],
        )
        fsutil.atomic_write_json(run_dir / "summary.json", summary)
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
            artifacts=[str(Path(".aido/sandboxes") / record.id / "runs" / a) for a in artifacts],
            summary=summary,
            error=outcome.error,
        )

    # -- aido logs ------------------------------------------------------------------------

    def run_ref(self, sandbox_id: str | None, run: str | None) -> tuple[SandboxRecord, RunRef]:
        record = self.load(self.resolve_id(sandbox_id))
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
        return self.workspace.sandbox(sandbox_id).run_dir(check_run_id(run))

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
        run_dir = self.run_dir(sandbox_id, run)
        names = {1: "stdout.log", 2: "stderr.log"}
        offsets = dict.fromkeys(streams, 0)
        next_check, orphaned = time.monotonic() + ORPHAN_CHECK_SECONDS, 0
        while True:
            ended = (
                not follow
                or (self.load(sandbox_id).run(run) or RunRef(run, "", "error", "")).status != "running"
            )
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
            found = self.runtime.list_labelled({"aido.sandbox": sandbox_id, "aido.run": run})
        except AidoError:
            return True  # cannot tell without the engine: keep following
        return any(c.get("state") == "running" for c in found)


def widened_permissions(config: dict[str, Any]) -> list[str]:
    """Warnings for every permission wider than the default; recorded in the evidence too."""
    permissions = config.get("permissions") or {}
    warnings = []
    if permissions.get("network") is True:
        warnings.append("sandbox has network access (permissions.network: true): tasks can reach the network")
    if permissions.get("filesystem") == "readwrite":
        warnings.append("sandbox inputs are writable (permissions.filesystem: readwrite)")
    if permissions.get("aws"):
        warnings.append("permissions.aws is recorded but not enforced by the docker runtime")
    return warnings


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
        data = fsutil.read_json(paths.root / "inputs.json")
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def _hand_over(root: Path, uid: int, gid: int) -> None:
    """Make a tree aido just created writable by the task's user (``filesystem: readwrite``)."""
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            st = path.lstat()
            if not stat.S_ISLNK(st.st_mode):
                path.chmod(stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
            if os.getuid() == 0:
                os.lchown(path, uid, gid)
    if os.getuid() == 0:
        os.lchown(root, uid, gid)


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
    fsutil.write_new(evidence, source, mode=mode)
    fsutil.atomic_write_bytes(dest, source, mode=mode)
    if os.getuid() == 0:
        os.chown(dest, uid, gid, follow_symlinks=False)


def _status(outcome: ExecOutcome) -> str:
    if outcome.interrupted:
        return "interrupted"
    if outcome.timed_out:
        return "timed_out"
    if outcome.error is not None or outcome.exit_code is None:
        return "error"
    return "success" if outcome.exit_code == 0 else "failed"


__all__ = ["RunHooks", "RunResult", "SandboxManager", "SandboxSummary"]
