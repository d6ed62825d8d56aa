"""One run on a cluster node: the body of the Ray task the driver sends.

The node rebuilds the driver's sandbox in a private directory (same id, config, secrets
and inputs; an empty work/ and outputs/), runs the task with the ordinary pipeline
(run/pipeline.py: the same hardening, limits, timeout, isolation and masking as a local
run), and sends back what it printed as it comes, then the run's sealed evidence.

Ray kills the worker but never the container (dockerd owns it), so removal is guaranteed
outside Ray: a watchdog process in its own session removes the run's container and
directory when this worker dies without saying goodbye, and each task first sweeps run
directories whose worker is gone (their lock is free).
"""

from __future__ import annotations

import io
import os
import queue
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from aido import __version__, fs
from aido.cluster.spec import DONE, FAILED, NODE, OUTPUT, NodeResult, RemoteSpec
from aido.cluster.watchdog import new_base, sweep_stale, watchdog
from aido.errors import AidoError
from aido.store.ids import run_id
from aido.store.workspace import ATTESTATION, Workspace

CHUNK = 64 << 10  # output coalesced per item: few Ray objects for a flood, little delay for a line
ENGINE_TTL = 30.0  # how long a worker reuses what the engine said about itself

_engine: tuple[float, dict[str, Any]] | None = None


def identity() -> dict[str, Any]:
    """The node as the run's summary names it."""
    import ray

    from aido.backends.registry import get_backend

    global _engine
    node: dict[str, Any] = {"id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname()}
    if _engine is None or time.monotonic() - _engine[0] > ENGINE_TTL:
        try:
            engine: dict[str, Any] = {"engine_version": get_backend().info().version}
        except AidoError as exc:  # said in the summary; the run fails on it with its own message
            engine = {"engine_version": None, "engine_error": exc.message}
        _engine = (time.monotonic(), engine)
    return {**node, **_engine[1]}


def failure(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, AidoError):
        return {
            "type": type(exc).__name__,
            "code": exc.code,
            "message": exc.message,
            "hint": exc.hint,
            "exit_code": int(exc.exit_code),
        }
    return {"type": type(exc).__name__, "code": "internal", "message": str(exc)[:500], "exit_code": 70}


def execute(spec: RemoteSpec, inputs: bytes) -> Iterator[tuple[str, Any]]:
    """The node's side of one run, as a stream of items (see cluster/spec.py)."""
    node = identity()
    yield (NODE, node)
    if spec.aido_version != __version__:
        message = f"node {node['hostname']} runs aido {__version__}, the driver {spec.aido_version}"
        yield (FAILED, {"code": "version_mismatch", "message": message, "exit_code": 125})
        return
    sweep_stale()
    base, base_lock = new_base()  # locked while this worker runs it: a free lock means a dead run
    guard = watchdog()
    guard.watch(base)
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    cancel = threading.Event()
    worker = threading.Thread(
        target=_work, args=(spec, inputs, node, base, items, cancel), name="aido-node-run", daemon=True
    )
    worker.start()
    try:
        while True:
            try:
                item = items.get(timeout=0.1)  # short: a cancel (KeyboardInterrupt) lands here
            except queue.Empty:
                if worker.is_alive() or not items.empty():
                    continue
                item = (
                    FAILED,
                    {"code": "internal", "message": "the run ended without a result", "exit_code": 70},
                )
            for merged in _coalesce(item, items):
                yield merged
                if merged[0] in (DONE, FAILED):
                    return
    finally:
        # Cancelled (the driver's Ctrl-C) or done: the task must be stopped and its container
        # gone before this worker lets go; the watchdog is told only once that is so.
        cancel.set()
        worker.join(timeout=60)
        # A container the engine could not remove (it went away mid-run) keeps the directory:
        # the next task's sweep removes both once the engine answers. Otherwise the watchdog
        # removes it after this task has handed its slot back.
        if not worker.is_alive() and not Workspace(base).containers_left.exists():
            guard.remove(base)
        else:
            guard.forget(base)
        os.close(base_lock)


def _coalesce(first: tuple[str, Any], items: queue.Queue[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Output chunks waiting in the queue go out as one item (up to CHUNK bytes)."""
    if first[0] != OUTPUT:
        yield first
        return
    chunks, size = [first[1]], len(first[1][1])
    while size < CHUNK:
        try:
            nxt = items.get_nowait()
        except queue.Empty:
            break
        if nxt[0] != OUTPUT:
            yield (OUTPUT, chunks)
            yield nxt
            return
        chunks.append(nxt[1])
        size += len(nxt[1][1])
    yield (OUTPUT, chunks)


def _work(
    spec: RemoteSpec,
    inputs: bytes,
    node: dict[str, Any],
    base: Path,
    items: queue.Queue[tuple[str, Any]],
    cancel: threading.Event,
) -> None:
    """Run the task in a rebuilt sandbox; the last item is DONE (a sealed run) or FAILED."""
    from aido.run.pipeline import run_one
    from aido.run.request import RunHooks

    rid = run_id(spec.number)
    try:
        ctx, plan = _rebuild(spec, inputs, node, base)
    except BaseException as exc:
        items.put((FAILED, failure(exc)))
        return
    hooks = RunHooks(on_output=lambda kind, data: items.put((OUTPUT, (kind, data))))
    error = None
    try:
        run_one(ctx, plan, hooks, cancel=cancel)
    except BaseException as exc:  # the run, if it exists, was closed and sealed as an error
        error = failure(exc)
    paths = ctx.store.paths(spec.sandbox_id)
    if not (paths.run_dir(rid) / ATTESTATION).is_file():
        items.put(
            (FAILED, error or {"code": "not_sealed", "message": f"{rid} was not sealed", "exit_code": 70})
        )
        return
    try:
        items.put((DONE, package(paths.root, rid, spec.return_limit, error, base / "bundle.tar")))
    except BaseException as exc:
        items.put((FAILED, failure(exc)))


def _rebuild(spec: RemoteSpec, inputs: bytes, node: dict[str, Any], base: Path) -> tuple[Any, Any]:
    """The driver's sandbox, rebuilt under ``base``, and the run's plan."""
    from aido.evidence.events import record_event
    from aido.run.context import Context
    from aido.run.plan import Placement, plan_run
    from aido.run.request import Widening, task_user
    from aido.store.records import RunSettings, SandboxRecord

    workspace = Workspace.find_or_create(base)
    paths = workspace.sandbox(spec.sandbox_id)
    uid, gid = task_user()
    paths.root.mkdir(mode=0o755)
    for sub in (paths.inputs, paths.work, paths.outputs, paths.runs):
        sub.mkdir(mode=0o755)
    if os.getuid() == 0:
        for writable in (paths.work, paths.outputs):
            os.chown(writable, uid, gid)
    settings = RunSettings.from_config(spec.config)
    if settings.disk_quota == "hard":  # a filesystem of its own, as `sandbox up` makes
        from aido.host import volume

        volume.create(paths, size_bytes=settings.disk_bytes, max_files=settings.max_files, uid=uid, gid=gid)
    rid = run_id(spec.number)
    (paths.outputs / rid).mkdir(mode=0o755)
    if os.getuid() == 0:
        os.chown(paths.outputs / rid, uid, gid)
    with tarfile.open(fileobj=io.BytesIO(inputs), mode="r:") as tar:
        tar.extractall(paths.inputs, filter="data")  # nothing outside, no links out, no devices
    if spec.inputs_manifest is not None:
        fs.write_new(paths.inputs_manifest, spec.inputs_manifest)
    if spec.secrets:
        fs.atomic_write_json(paths.secrets, spec.secrets, mode=0o600)
    record = SandboxRecord(
        id=spec.sandbox_id,
        name=spec.name,
        created_at=spec.created_at,
        expires_at=spec.expires_at,
        config=spec.config,
        task_user=f"{uid}:{gid}",
        auto_cleanup=False,
    )
    ctx = Context(workspace, output_limit=spec.output_limit, evidence_retention=None)
    ctx.store.save(record)
    record_event(
        paths.events,
        "sandbox_rebuilt",
        sandbox_id=spec.sandbox_id,
        node=node,
        driver=spec.driver,
        run_id=rid,
    )
    task: Path | None = None
    if not spec.from_code:
        task_dir = base / "task"
        task_dir.mkdir(mode=0o700)
        task = task_dir / spec.task_name
        fs.write_new(task, spec.task_source, mode=spec.task_mode)
    plan = plan_run(
        ctx,
        spec.sandbox_id,
        task,
        spec.args,
        widen=Widening(network=spec.network),
        confirm=lambda _warnings: True,  # confirmed on the driver, and recorded there too
        # A code string is planned as one here too: the same snippet name and runtime.
        code=spec.task_source.decode("utf-8") if spec.from_code else None,
        runtime=spec.code_runtime if spec.from_code else None,
    )
    placement = Placement(number=spec.number, node=node, retry_of=spec.retry_of, git=spec.git)
    return ctx, replace(plan, env=spec.env, timeout_seconds=spec.timeout_seconds, placement=placement)


def package(root: Path, rid: str, return_limit: int, error: dict[str, Any] | None, out: Path) -> NodeResult:
    """The sealed run as a bundle without outputs, plus the sealed outputs that fit."""
    from aido.evidence.bundle import write_bundle
    from aido.evidence.keys import signing_key
    from aido.evidence.tree import DirTree
    from aido.evidence.verify import Verifier

    key = signing_key()
    tree = DirTree(root)
    verifier = Verifier(tree, {key.public.keyid: key.public}, sandbox_id=root.name)
    seal = verifier.load_seal(rid, report=False)
    if seal is None:
        raise AidoError(f"{rid}: the node cannot read back its own seal")
    envelope = tree.read(f"runs/{rid}/{ATTESTATION}")
    write_bundle(tree, envelope, seal, key.public.pem().encode(), out, outputs=False)
    outputs: list[tuple[str, bytes]] = []
    not_returned: list[dict[str, Any]] = []
    room = return_limit
    for item in seal.subjects:
        name = item.get("name")
        if not isinstance(name, str) or not name.startswith("outputs/"):
            continue
        size = os.lstat(root / name).st_size
        if size > room:
            not_returned.append({"path": name, "bytes": size, "reason": "over the return limit"})
            continue
        with tree.open(name) as handle:
            outputs.append((name, handle.read()))
        room -= size
    return NodeResult(out.read_bytes(), outputs, not_returned, error)
