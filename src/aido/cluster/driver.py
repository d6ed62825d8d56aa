"""A run sent to a Ray cluster, as the driver (the machine that asked) sees it.

The run id is taken here, like a local run's; the task goes to a node as one Ray task
(its CPUs and memory plus one ``aido`` slot, never retried by Ray); what the task prints
is written to the local run directory as it comes (so ``aido logs --follow`` works) and
shown; the node's sealed evidence is checked (cluster/accept.py) and stored as an
ordinary ``runs/run-NNN``. A lost node, a Ctrl-C or a node that could not start the run
close the run here, through the same close path as any local run that failed.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aido import __version__, fs
from aido.backends.base import StopReason
from aido.cluster.connect import JOIN_HINT, RESOURCE
from aido.cluster.dispatch import Dispatcher, fitting_nodes
from aido.cluster.spec import DONE, FAILED, NODE, OUTPUT, RemoteSpec, node_name
from aido.errors import AidoError, ClusterUnavailable, RuntimeFailure
from aido.exit_codes import ExitCode
from aido.run.close import abandon_run
from aido.run.prepare import begin
from aido.run.request import RunHooks
from aido.run.result import result_from_summary
from aido.store.workspace import STDERR, STDOUT, SUMMARY, TASK_DIR

if TYPE_CHECKING:
    from aido.run.context import Context
    from aido.run.plan import RunPlan
    from aido.run.prepare import RunStart
    from aido.run.result import RunResult

WAIT = 0.2  # how often the wait for a node looks at the cancel event
PENDING_CHECK = 2.0  # how often a run no node has taken yet checks that some node still could


class NodeLost(AidoError):
    """The node (or the worker) running a task died: the run is closed as interrupted."""

    code = "node_lost"
    exit_code = ExitCode.RUNTIME

    def __init__(self, message: str, node: dict[str, Any]) -> None:
        super().__init__(message)
        self.node = node


class _Stopped(Exception):
    """The driver stopped the run (Ctrl-C, or the batch was cancelled)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def run_on_cluster(
    ctx: Context,
    plan: RunPlan,
    hooks: RunHooks | None,
    dispatcher: Dispatcher,
    *,
    cancel: threading.Event | None = None,
    turn: AbstractContextManager[object] | None = None,
) -> RunResult:
    """One task on the cluster; with ``retries``, a run lost with its node is run again as
    a new run (its summary names the lost one in ``retry_of``)."""
    hooks = hooks or RunHooks()
    result = _attempt(ctx, plan, hooks, dispatcher, cancel, turn, None)
    left = dispatcher.cluster.retries
    while result.stop_reason == StopReason.NODE_LOST and left > 0 and not (cancel and cancel.is_set()):
        left -= 1
        if hooks.on_warning is not None:
            hooks.on_warning(f"{result.run_id} was lost with its node: running it again as a new run")
        result = _attempt(ctx, plan, hooks, dispatcher, cancel, None, result.run_id)
    return result


def _attempt(
    ctx: Context,
    plan: RunPlan,
    hooks: RunHooks,
    dispatcher: Dispatcher,
    cancel: threading.Event | None,
    turn: AbstractContextManager[object] | None,
    retry_of: str | None,
) -> RunResult:
    start = begin(ctx, plan, turn)
    node: dict[str, Any] = {}
    try:
        return _drive(ctx, plan, start, hooks, dispatcher, cancel, retry_of, node)
    except NodeLost as lost:
        details = {"stop_reason": StopReason.NODE_LOST, "message": lost.message, "node": lost.node or None}
        return _close(ctx, plan, start, lost, details, retry_of, hooks)
    except _Stopped as stopped:
        details = {"stop_reason": stopped.reason, "node": node or None}
        return _close(ctx, plan, start, KeyboardInterrupt(), details, retry_of, hooks)
    except BaseException as exc:
        abandon_run(ctx.store, plan, start.run_id, exc, details={"node": node or None, "retry_of": retry_of})
        raise
    finally:
        os.close(start.lock_fd)


def _close(
    ctx: Context,
    plan: RunPlan,
    start: RunStart,
    exc: BaseException,
    details: dict[str, Any],
    retry_of: str | None,
    hooks: RunHooks,
) -> RunResult:
    abandon_run(
        ctx.store, plan, start.run_id, exc, status="interrupted", details={**details, "retry_of": retry_of}
    )
    summary = fs.read_json(start.run_dir / SUMMARY)
    where = start.run_dir.relative_to(ctx.workspace.root)
    result = result_from_summary(
        summary, evidence_dir=start.run_dir, outputs_dir=plan.paths.outputs, artifacts=(str(where / SUMMARY),)
    )
    return replace(result, signal_exit=hooks.signal_exit() if hooks.signal_exit else None)


def _spec(ctx: Context, plan: RunPlan, rid: str, dispatcher: Dispatcher, retry_of: str | None) -> RemoteSpec:
    from aido.evidence.capture import DEFAULT_LIMIT
    from aido.evidence.gitinfo import git_context
    from aido.store.ids import run_number
    from aido.store.store import read_secrets

    record, paths = plan.record, plan.paths
    try:
        manifest: bytes | None = paths.inputs_manifest.read_bytes()
    except FileNotFoundError:
        manifest = None
    return RemoteSpec(
        sandbox_id=record.id,
        name=record.name,
        created_at=record.created_at,
        expires_at=record.expires_at,
        config=record.config,
        secrets=read_secrets(paths),
        inputs_manifest=manifest,
        number=run_number(rid) or 0,
        task_name=plan.task.name,
        task_source=plan.source,
        task_mode=plan.task_mode,
        from_code=plan.from_code,
        args=list(plan.args),
        env=dict(plan.env),
        timeout_seconds=plan.timeout_seconds,
        network=plan.widen.network,
        output_limit=ctx.output_limit or DEFAULT_LIMIT,
        return_limit=dispatcher.cluster.return_limit,
        aido_version=__version__,
        retry_of=retry_of,
        git=git_context(ctx.workspace.root),
        driver={"hostname": socket.gethostname(), "pid": os.getpid()},
    )


def _drive(
    ctx: Context,
    plan: RunPlan,
    start: RunStart,
    hooks: RunHooks,
    dispatcher: Dispatcher,
    cancel: threading.Event | None,
    retry_of: str | None,
    node: dict[str, Any],
) -> RunResult:
    from aido.cluster.accept import accept
    from aido.evidence.capture import OutputCapture
    from aido.evidence.events import record_event
    from aido.evidence.redact import secret_values

    rid, run_dir, paths, settings = start.run_id, start.run_dir, plan.paths, plan.settings
    spec = _spec(ctx, plan, rid, dispatcher, retry_of)
    (run_dir / TASK_DIR).mkdir(mode=0o755)
    fs.write_new(run_dir / TASK_DIR / plan.task.name, plan.source, mode=spec.task_mode)
    capture = OutputCapture(
        {1: run_dir / STDOUT, 2: run_dir / STDERR},
        limit=spec.output_limit,
        echo=hooks.on_output,
        secrets=secret_values({**settings.env, **plan.env}),
    )
    if hooks.on_start:
        hooks.on_start(rid, plan.task.name, plan.choice.image)
    options = {
        "max_retries": 0,  # Ray would silently run a lost task again: retries are aido's, opt-in
        "retry_exceptions": False,
        "num_cpus": settings.cpus,
        "memory": settings.memory_bytes,
        "resources": {RESOURCE: 1},
        "name": f"aido-{plan.record.id}-{rid}",
    }
    stream = dispatcher.stream(
        options, spec, dispatcher.inputs(paths, plan.record.id), f"{plan.record.id}/{rid}"
    )
    final: tuple[str, Any] | None = None
    looked = time.monotonic()
    try:
        while final is None:
            if cancel is not None and cancel.is_set():
                raise _Stopped(StopReason.CANCELLED)
            items = _poll(stream, node, rid)
            if items is None:
                if not node and time.monotonic() - looked > PENDING_CHECK:
                    # Ray keeps a task no node can take pending forever, without an error.
                    looked = time.monotonic()
                    if not fitting_nodes(settings.cpus, settings.memory_bytes):
                        raise ClusterUnavailable(
                            f"no node of the cluster can take {rid} any more: every aido node "
                            "that could was lost",
                            hint=JOIN_HINT,
                        )
                continue
            for kind, value in items:
                if kind == NODE:
                    node.update(value)
                    record_event(
                        paths.events, "run_placed", sandbox_id=plan.record.id, run_id=rid, node=value
                    )
                elif kind == OUTPUT:
                    for fd, data in value:
                        capture.write(fd, data)
                elif kind in (DONE, FAILED):
                    final = (kind, value)
    except KeyboardInterrupt:
        stream.cancel()
        raise _Stopped(StopReason.INTERRUPTED) from None
    except (_Stopped, ClusterUnavailable):
        stream.cancel()
        raise
    finally:
        capture.close()
    kind, value = final
    if kind == FAILED:
        raise _node_failure(value, node)
    return accept(ctx, plan, start, value, node, dispatcher.trusted_keys())


def _poll(stream: Any, node: dict[str, Any], rid: str) -> list[tuple[str, Any]] | None:
    """The items that arrived (None: none yet), with Ray's failures said as aido's."""
    from ray import exceptions as rex

    try:
        items: list[tuple[str, Any]] | None = stream.poll(WAIT)
    except StopIteration:
        raise NodeLost(f"{node_name(node)} ended {rid} without a result", node) from None
    except rex.TaskCancelledError:
        raise _Stopped(StopReason.CANCELLED) from None
    except rex.RayTaskError as exc:  # aido failed on the node: a bug there, not a lost node
        cause = getattr(exc, "cause", None)
        said = str(cause) if cause is not None else (str(exc).strip().splitlines() or [""])[-1]
        said = re.sub(r"\x1b\[[0-9;]*m", "", said).strip()[:300] or type(cause or exc).__name__
        raise RuntimeFailure(f"{node_name(node)} failed running {rid}: {said}") from None
    except rex.RayError as exc:  # the node, its raylet or the worker died, or its objects are gone
        raise NodeLost(f"{node_name(node)} was lost while {rid} ran ({type(exc).__name__})", node) from None
    for item in items or ():
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise RuntimeFailure(f"{node_name(node)} sent something aido does not understand")
    return items


def _node_failure(value: Any, node: dict[str, Any]) -> AidoError:
    info = value if isinstance(value, dict) else {}
    message = f"{node_name(node)}: {info.get('message') or 'the run could not start'}"
    exc = RuntimeFailure(message, hint=info.get("hint") if isinstance(info.get("hint"), str) else None)
    code = info.get("exit_code")
    if isinstance(code, int) and code in ExitCode._value2member_map_:
        exc.exit_code = ExitCode(code)
    return exc
