"""The sandbox manager: the public Python API behind every ``aido`` command.

A facade only: each method is a lifecycle operation (aido.lifecycle) or a run through the
pipeline (aido.run.pipeline: plan -> prepare -> execute -> collect), and the workspace,
backend and settings it works against are its ``Context``. It never prints: callers pass
hooks for progress and output, and get structured results back.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from aido.lifecycle import create as _create
from aido.lifecycle import destroy as _destroy
from aido.lifecycle import logs, sandboxes
from aido.lifecycle import sweep as _sweep
from aido.run import pipeline
from aido.run.context import Context
from aido.run.plan import CodeTask, RunPlan, plan_run

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager

    from aido.lifecycle.verify import Exported, Verified
    from aido.run.batch import BatchResult
    from aido.run.request import Confirm, RunHooks, Widening
    from aido.run.result import RunResult
    from aido.store.records import SandboxRecord
    from aido.store.workspace import SandboxPaths


class RunKeywords(TypedDict, total=False):
    """What ``run`` and ``run_code`` take besides the task (see ``run``)."""

    sandbox_id: str | None
    timeout: str | None
    env: list[str] | None
    hooks: RunHooks | None
    widen: Widening | None
    confirm: Confirm | None
    cancel: threading.Event | None
    stdin: int | None
    cluster: str | None
    retries: int


class SandboxManager(Context):
    # Each operation is a function whose first parameter is a Context; assigned here it is
    # a method (that parameter binds to the manager), so its signature is written once.

    # -- sandboxes: aido sandbox up / list / use / extend / clean / destroy -----------
    resolve_id = sandboxes.resolve_id
    create = _create.create
    start_background = _create.start_background
    copied_inputs = _create.copied_inputs
    list_sandboxes = sandboxes.list_sandboxes
    list_runs = sandboxes.list_runs
    use = sandboxes.use
    extend = sandboxes.extend
    clean = sandboxes.clean
    destroy = _destroy.destroy

    # -- the TTL sweep and crash recovery (every command, and the reaper) -------------
    sweep = _sweep.sweep
    reap_containers = _sweep.reap_containers

    # -- evidence: aido logs / show / runs --------------------------------------------
    run_ref = logs.run_ref
    run_dir = logs.run_dir
    stream_logs = logs.stream_logs
    network_log = logs.network_log

    # -- sealed evidence: aido verify / export (imported when used: not on `aido run`'s path)
    def verify(self, sandbox_id: str | None, run: str | None, **kwargs: Any) -> Verified:
        """Check a run's or a sandbox's seals (see aido.lifecycle.verify.verify)."""
        from aido.lifecycle.verify import verify

        return verify(self, sandbox_id, run, **kwargs)

    def export(self, sandbox_id: str | None, run: str, out: Path, **kwargs: Any) -> Exported:
        """Verify a run, then write its bundle (see aido.lifecycle.verify.export)."""
        from aido.lifecycle.verify import export

        return export(self, sandbox_id, run, out, **kwargs)

    def load(self, sandbox_id: str) -> SandboxRecord:
        return self.store.load(sandbox_id)

    def load_evidence(self, sandbox_id: str) -> tuple[SandboxRecord, SandboxPaths]:
        """A sandbox's record and paths for reading its runs: the live sandbox, or else its
        archive once it was destroyed. Never for starting a run."""
        return self.store.load_evidence(sandbox_id)

    # -- aido run -------------------------------------------------------------------

    def run(self, task: Path, args: list[str] | None = None, **options: Unpack[RunKeywords]) -> RunResult:
        """Run one task in a fresh container of the sandbox and record its evidence.

        ``widen`` asks for escape hatches; they need ``confirm`` to return True for their
        warnings. Setting ``cancel`` (from another thread) stops the task as interrupted.
        ``stdin``, a file descriptor, is forwarded to the task's stdin (else it is closed).
        ``cluster``, a Ray address, runs it on a node of that cluster (aido.cluster);
        ``retries`` re-runs it there, as a new run, if its node is lost. See RunKeywords.
        """
        return self._run(task, None, None, args, options)

    def run_code(
        self,
        code: str,
        args: list[str] | None = None,
        *,
        runtime: str | None = None,
        **options: Unpack[RunKeywords],
    ) -> RunResult:
        """Run a code string as ``run`` runs a task file: it becomes the task
        ``snippet-<sha256 prefix>.<ext>``, stored in the run's evidence like any task. It runs
        with the sandbox's runtime; ``runtime`` (python, node or sh) picks one for a sandbox
        that has none."""
        return self._run(None, code, runtime, args, options)

    def _run(
        self,
        task: Path | None,
        code: str | None,
        runtime: str | None,
        args: list[str] | None,
        options: RunKeywords,
    ) -> RunResult:
        cluster = options.get("cluster")
        hooks = options.get("hooks")
        plan = plan_run(
            self,
            self.resolve_id(options.get("sandbox_id")),
            task,
            args,
            timeout=options.get("timeout"),
            env=options.get("env"),
            widen=options.get("widen"),
            confirm=options.get("confirm"),
            hooks=hooks,
            remote=cluster is not None,
            code=code,
            runtime=runtime,
        )
        stdin = options.get("stdin")
        if stdin is not None:
            plan = replace(plan, stdin=stdin)
        return self._execute_plan(plan, hooks, options.get("cancel"), cluster, options.get("retries", 0))

    def _execute_plan(
        self,
        plan: RunPlan,
        hooks: RunHooks | None,
        cancel: threading.Event | None,
        cluster: str | None,
        retries: int,
    ) -> RunResult:
        if cluster is None:
            return self.execute(plan, hooks, cancel=cancel)
        from aido.cluster.dispatch import Cluster, dispatcher_for
        from aido.cluster.driver import run_on_cluster

        dispatcher = dispatcher_for(Cluster(cluster, retries))
        dispatcher.check(plan)
        return run_on_cluster(self, plan, hooks, dispatcher, cancel=cancel)

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
    ) -> RunPlan:
        """Check everything a run needs (sandbox, task, engine, image, confirmation)
        before a run id exists: a run that cannot start leaves no trace."""
        sid = self.resolve_id(sandbox_id)
        return plan_run(
            self, sid, task, args, timeout=timeout, env=env, widen=widen, confirm=confirm, hooks=hooks
        )

    # Run a prepared plan: take the run id, run the task, write the evidence.
    execute = pipeline.run_one

    def run_batch(
        self, tasks: Sequence[Path | CodeTask], args: list[str] | None = None, **kwargs: Any
    ) -> BatchResult:
        """Run several tasks (files, or code strings as CodeTask) concurrently (see
        aido.run.batch.run_batch); ``cluster`` and ``retries`` as for ``run``."""
        from aido.run.batch import run_batch

        cluster: str | None = kwargs.pop("cluster", None)
        retries: int = kwargs.pop("retries", 0)
        if cluster is not None:
            from aido.cluster.dispatch import Cluster, dispatcher_for
            from aido.cluster.driver import run_on_cluster

            dispatcher = dispatcher_for(Cluster(cluster, retries))

            def runner(
                ctx: Context,
                plan: RunPlan,
                hooks: RunHooks | None,
                *,
                cancel: threading.Event | None,
                turn: AbstractContextManager[object] | None,
            ) -> RunResult:
                return run_on_cluster(ctx, plan, hooks, dispatcher, cancel=cancel, turn=turn)

            kwargs.update(runner=runner, check=dispatcher.check)
        return run_batch(self, tasks, list(args or []), resolve=self.resolve_id, **kwargs)


__all__ = ["RunKeywords", "SandboxManager"]
