"""``aido.Sandbox``: one sandbox, as a Python program or an agent loop drives it.

    with aido.Sandbox(ttl="30m", runtime="python:3.11") as sb:
        r = sb.run_code("print(1)")
        r.exit_code, r.stdout, r.changes

A thin layer over ``SandboxManager``: the same checks and the same error messages as the
CLI (aido.errors exceptions), typed results (aido.api.results) instead of dicts. Each run
gets its own engine connection, so one Sandbox may be used from several threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from aido.api import support
from aido.api.results import (
    Code,
    FileInfo,
    RunInfo,
    RunLogs,
    RunOutcome,
    Verification,
    outcome_from,
    read_logs,
)
from aido.errors import AidoError, UsageError

if TYPE_CHECKING:
    from aido.manager import RunKeywords, SandboxManager
    from aido.run.request import Confirm, Widening
    from aido.run.result import RunResult
    from aido.store.records import SandboxRecord
    from aido.store.workspace import SandboxPaths

TextSink = Callable[[str], None]
MAX_GET_BYTES = 64 << 20


class Sandbox:
    """A sandbox created for this program (destroyed on leaving ``with`` unless ``keep``),
    or one that exists already (``Sandbox.open(id)``, kept on exit).

    Keywords take the values sandbox.yaml takes: ``ttl``/``timeout`` durations like "30m",
    ``memory``/``disk`` sizes like "512M", ``cpus`` a number, ``runtime`` python:3.11,
    node:18, sh or docker://IMAGE, ``inputs`` file patterns relative to ``workspace`` (the
    project directory; default the current one), ``env`` variables for every task.
    ``network=True`` (full network), ``network=["pypi.org", "*.pythonhosted.org"]`` (an
    egress allowlist: only those hosts, through aido's egress proxy; or the mapping
    sandbox.yaml takes, ``{"allow": [...], "allow_ip_ranges": True}``) or
    ``filesystem="readwrite"`` widen the sandbox: ``confirm`` gets the warnings and must
    return True, as at the CLI's prompt. ``warm=N`` keeps N containers
    started in advance (needs ``runtime``): each run then starts in about half the time.
    """

    def __init__(
        self,
        *,
        ttl: str | None = None,
        runtime: str | None = None,
        name: str | None = None,
        memory: str | None = None,
        cpus: float | None = None,
        timeout: str | None = None,
        disk: str | None = None,
        isolation: str | None = None,
        warm: int | None = None,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        network: bool | Sequence[str] | Mapping[str, object] = False,
        filesystem: str | None = None,
        workspace: str | os.PathLike[str] | None = None,
        keep: bool = False,
        auto_cleanup: bool = True,
        confirm: Confirm | None = None,
        on_pull: TextSink | None = None,
    ) -> None:
        spec = support.spec_from_keywords(
            name=name,
            runtime=runtime,
            ttl=ttl,
            isolation=isolation,
            warm=warm,
            resources={"memory": memory, "cpu": cpus, "timeout": timeout, "disk": disk},
            permissions={"network": support.network_keyword(network), "filesystem": filesystem},
            inputs=inputs,
            outputs=outputs,
            env=env,
        )
        start = Path(workspace) if workspace is not None else Path.cwd()
        manager = support.manager_for(start, create=True)
        record = support.create(manager, spec, start, auto_cleanup, confirm, on_pull)
        self._attach(manager, record, keep=keep)

    def _attach(self, manager: SandboxManager, record: SandboxRecord, *, keep: bool) -> None:
        self._manager = manager
        self._id = record.id
        self._record = record
        self._keep = keep
        self._destroyed = False

    @classmethod
    def open(cls, sandbox_id: str, *, workspace: str | os.PathLike[str] | None = None) -> Self:
        """An existing sandbox of the workspace (found from ``workspace``, default the current
        directory); not destroyed on leaving ``with`` unless ``keep(False)``."""
        from aido.store.ids import check_sandbox_id

        manager = support.manager_for(Path(workspace) if workspace is not None else Path.cwd(), create=False)
        return cls._attached(manager, manager.load(check_sandbox_id(sandbox_id)))

    @classmethod
    def _attached(cls, manager: SandboxManager, record: SandboxRecord) -> Self:
        """A sandbox of a manager its caller already has (the MCP server's), kept on exit."""
        sandbox = cls.__new__(cls)
        sandbox._attach(manager, record, keep=True)
        return sandbox

    # -- what it is --------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def workspace(self) -> Path:
        """The project directory (the one holding .aido/)."""
        return self._manager.workspace.root

    @property
    def path(self) -> Path:
        """The sandbox's directory: inputs/, work/, outputs/, runs/ (the evidence)."""
        return self._paths().root

    @property
    def outputs_path(self) -> Path:
        return self._paths().outputs

    @property
    def runtime(self) -> str | None:
        value = self._record.config.get("runtime")
        return value if isinstance(value, str) else None

    @property
    def expires_at(self) -> str:
        return self._manager.load(self._id).expires_at

    # -- runs ----------------------------------------------------------------------------

    def run_code(
        self,
        code: str,
        args: Sequence[str] | None = None,
        *,
        timeout: str | None = None,
        env: Mapping[str, str] | None = None,
        on_stdout: TextSink | None = None,
        on_stderr: TextSink | None = None,
        runtime: str | None = None,
        widen: Widening | None = None,
        allow_hosts: Sequence[str] | None = None,
        confirm: Confirm | None = None,
        cancel: threading.Event | None = None,
    ) -> RunOutcome:
        """Run a code string with the sandbox's runtime (``runtime``: python, node or sh for
        a sandbox without one). It is kept in the run's evidence as its task file.
        ``on_stdout``/``on_stderr`` get the output as text while the task writes it;
        setting ``cancel`` stops the task (recorded as interrupted). ``allow_hosts`` (as
        ``aido run --allow-host``) lets this run reach those hosts too, through aido's
        egress proxy; like ``widen``'s escape hatches it needs ``confirm``."""
        widen = support.with_hosts(widen, allow_hosts)
        options: RunKeywords = {"timeout": timeout, "widen": widen, "confirm": confirm, "cancel": cancel}
        return self._run(
            lambda manager, args, options: manager.run_code(code, args, runtime=runtime, **options),
            args,
            env,
            options,
            on_stdout,
            on_stderr,
        )

    def run(
        self,
        path: str | os.PathLike[str],
        args: Sequence[str] | None = None,
        *,
        timeout: str | None = None,
        env: Mapping[str, str] | None = None,
        on_stdout: TextSink | None = None,
        on_stderr: TextSink | None = None,
        widen: Widening | None = None,
        allow_hosts: Sequence[str] | None = None,
        confirm: Confirm | None = None,
        cancel: threading.Event | None = None,
    ) -> RunOutcome:
        """Run a task file (on this machine; relative to the current directory) as
        ``aido run PATH -- ARGS`` does (``allow_hosts``: see run_code)."""
        widen = support.with_hosts(widen, allow_hosts)
        options: RunKeywords = {"timeout": timeout, "widen": widen, "confirm": confirm, "cancel": cancel}
        return self._run(
            lambda manager, args, options: manager.run(Path(path), args, **options),
            args,
            env,
            options,
            on_stdout,
            on_stderr,
        )

    def _run(
        self,
        start: Callable[[SandboxManager, list[str], RunKeywords], RunResult],
        args: Sequence[str] | None,
        env: Mapping[str, str] | None,
        options: RunKeywords,
        on_stdout: TextSink | None,
        on_stderr: TextSink | None,
    ) -> RunOutcome:
        """A run of this sandbox, its arguments checked as the CLI's are, its output
        streamed to the callbacks as text."""
        checked = support.check_args(args)
        hooks, flush = support.stream_hooks(on_stdout, on_stderr)
        options["sandbox_id"], options["env"], options["hooks"] = self._id, support.env_flags(env), hooks
        with support.api_hints():
            result = start(self._manager.fork(), checked, options)
        flush()
        return outcome_from(result)

    def run_many(
        self,
        tasks: Sequence[str | os.PathLike[str] | Code],
        args: Sequence[str] | None = None,
        *,
        parallel: int = 4,
        timeout: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> list[RunOutcome]:
        """Run several tasks at once, up to ``parallel`` at a time, each in its own
        container with its own run (ids in the order given); results in that order.
        ``str`` and ``Path`` items are task files, ``aido.Code(...)`` items code strings.
        Every task is checked before any starts; a run aido could not finish raises its
        error once the others are done."""
        from aido.run.plan import CodeTask

        if isinstance(tasks, str | os.PathLike):
            raise UsageError("run_many takes a list of tasks", hint="use run() or run_code() for one task")
        items = [CodeTask(t.code, t.runtime) if isinstance(t, Code) else Path(t) for t in tasks]
        with support.api_hints():
            batch = self._manager.fork().run_batch(
                items,
                support.check_args(args),
                parallel=parallel,
                sandbox_id=self._id,
                timeout=timeout,
                env=support.env_flags(env),
            )
        errors = [item.error for item in batch.items if item.error is not None]
        if errors:
            raise errors[0]
        return [outcome_from(item.result) for item in batch.items if item.result is not None]

    def get_run(self, run: str) -> RunOutcome:
        """A finished run of this sandbox (``run-003`` or ``3``), read back from its evidence."""
        from aido.run.result import result_from_summary
        from aido.store.workspace import SUMMARY

        run_id = support.run_id(run)
        run_dir = self._manager.run_dir(self._id, run_id)
        try:
            summary = support.read_json(run_dir / SUMMARY)
        except FileNotFoundError:
            self._manager.run_ref(self._id, run_id)  # RunNotFound when there is no such run
            raise AidoError(
                f"{run_id} of sandbox {self._id} has not finished yet",
                hint="wait for it, or read its output so far with logs()",
            ) from None
        result = result_from_summary(
            summary, evidence_dir=run_dir, outputs_dir=self._paths().outputs, artifacts=()
        )
        return outcome_from(result)

    def logs(self, run: str | RunOutcome | None = None) -> RunLogs:
        """A run's captured stdout and stderr (the latest run without ``run``); a running
        run's output so far."""
        record, ref = self._manager.run_ref(self._id, support.run_name(run))
        run_dir = self._manager.run_dir(record.id, ref.run_id)
        return support.logs_with_truncation(run_dir, read_logs(run_dir))

    def runs(self) -> list[RunInfo]:
        """Every run of this sandbox, oldest first."""
        return [
            RunInfo(
                run_id=r.run_id,
                task=r.task,
                status=r.status,
                exit_code=r.exit_code,
                started_at=r.started_at,
                completed_at=r.completed_at,
                duration=r.duration_ms / 1000 if r.duration_ms is not None else None,
                evidence_path=r.evidence_dir,
            )
            for r in self._manager.list_runs(self._id)
        ]

    def verify(self, run: str | RunOutcome | None = None) -> Verification:
        """Check a run's (or, without ``run``, every run's) sealed evidence, as ``aido
        verify`` does with the keys you trust; ``.ok`` when it is intact."""
        from aido.lifecycle.verify import trusted

        found = self._manager.verify(self._id, support.run_name(run), keys=trusted())
        return Verification(found.verdict, tuple(f.line() for f in found.findings))

    # -- files -----------------------------------------------------------------------------

    def put_file(self, path: str, data: bytes | str | os.PathLike[str]) -> FileInfo:
        """Write a file into the sandbox's inputs, seen by later tasks at /inputs/PATH
        (read-only unless the sandbox's filesystem is readwrite). ``data``: bytes, text
        (written as UTF-8) or a Path (that file's content). Recorded in events.log."""
        return support.put_input(self._manager, self._id, path, data)

    def get_file(self, path: str, *, max_bytes: int = MAX_GET_BYTES) -> bytes:
        """A file from the sandbox's outputs (``report.json`` for /outputs/report.json).
        Links are never followed; paths leaving outputs/ are refused."""
        from aido.host.sandboxfiles import read_whole, split_path

        parts = split_path(path, "outputs/", example="report.json")
        return read_whole(self._paths().root, ["outputs", *parts], max_bytes=max_bytes)

    def list_outputs(self) -> list[FileInfo]:
        """The regular files in outputs/ (links and special files are left out)."""
        from aido.evidence.snapshot import snapshot

        taken = snapshot(self._paths().outputs)
        return [
            FileInfo(path, entry.size, entry.sha256 or "")
            for path, entry in sorted(taken.entries.items())
            if entry.kind == "file"
        ]

    # -- lifetime ----------------------------------------------------------------------------

    def extend(self, ttl: str) -> str:
        """Expire ``ttl`` from now (e.g. "1h"); returns the new expiry."""
        record, _ = self._manager.extend(self._id, ttl)
        return record.expires_at

    def keep(self, keep: bool = True) -> None:
        """Keep the sandbox when the ``with`` block ends (or, with False, destroy it then)."""
        self._keep = keep

    def destroy(self, *, purge: bool = False) -> None:
        """Destroy the sandbox now (its evidence stays in the archive unless ``purge``)."""
        if self._destroyed:
            return
        self._manager.destroy([self._id], purge=purge, confirm=(lambda _w: True) if purge else None)
        self._destroyed = True

    def close(self) -> None:
        """What leaving ``with`` does: destroy the sandbox unless it is kept."""
        if not self._keep:
            self.destroy()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandbox({self._id!r})"

    def _paths(self) -> SandboxPaths:
        return self._manager.store.paths(self._id)


__all__ = ["Sandbox"]
