"""Warm start (``warm: N``): runs take a container the pool's keeper created and started in
advance with exactly the sandbox's settings, and use it once.

A run claims a ready container whose key (backend.warm_key: image, HostConfig, user,
network, isolation) equals its own request's without the task file's mount; anything a run
widens or changes (``--network``, ``--host-filesystem``, writable inputs, another runtime)
gives another key, so it never takes a container created without it and starts cold. A run
with an egress allowlist (``--allow-host``; a sandbox's own allowlist cannot be warm) always
starts cold: its container needs the run's own egress network. A
claimed container that cannot take the run (it stopped, was OOM-killed while idle, differs)
is discarded and the run starts cold; the evidence says which (``start``) and why.

What a warm container cannot have is the read-only mount of the run's evidence copy over
/work/<task>: its mounts were fixed before the task was known. The task runs from the
copy aido writes into work/ (as a cold run's work/ copy); a file that another task of the
sandbox replaces or modifies between aido's write and the end of the run changes its
inode or change time, which aido checks, and the run's evidence then says so.

The keeper (the workspace's background process, lifecycle/reaper.py) calls ``keep``:
it removes containers whose run has ended, drops dead ones and starts new ones up to N.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aido.backends.base import WarmUnusable
from aido.store.pool import WarmPool

if TYPE_CHECKING:
    from aido.backends.base import ExecOutcome, ExecRequest, Guard, OutputSink
    from aido.run.context import Context
    from aido.run.prepare import PreparedRun
    from aido.store.records import RunSettings, SandboxRecord
    from aido.store.workspace import SandboxPaths


def task_unmounted(request: ExecRequest) -> ExecRequest:
    """The run's request without the task file's own mount (build_request puts it last)."""
    return replace(request, mounts=request.mounts[:-1])


def run(
    ctx: Context, prepared: PreparedRun, on_output: OutputSink, guard: Guard
) -> tuple[ExecOutcome | None, dict[str, Any]]:
    """Run the task in a claimed warm container: (outcome, start record), or (None, start
    record) when it must start cold (nothing of the task ran then)."""
    plan, rid = prepared.plan, prepared.run_id
    if prepared.request.egress:
        # Its container joins the run's own egress network, made for it: a pre-started one
        # has none (and would otherwise match the pool's key, network off in both).
        return None, {"mode": "cold", "reason": "the run has an egress allowlist (--allow-host)"}
    request = task_unmounted(prepared.request)
    key = ctx.backend.warm_key(request)
    if key is None:
        reason = f"the {ctx.backend.name} runtime has no warm start for isolation {request.isolation}"
        return None, {"mode": "cold", "reason": reason}
    pool = WarmPool(plan.paths.warm)
    container_id = pool.claim(key, rid)
    if container_id is None:
        ready = pool.ready()
        reason = (
            "its settings differ from the pool's: an escape hatch, or another runtime"
            if any(k != key for k in ready.values())
            else "no pre-started container was ready"
        )
        return None, {"mode": "cold", "reason": reason}
    task_file = plan.paths.work / plan.task.name
    before = _identity(task_file)
    try:
        outcome = ctx.backend.run_warm(container_id, request, on_output, guard)
    except WarmUnusable as exc:
        discard(ctx, pool, container_id)
        return None, {"mode": "cold", "reason": f"the pre-started container could not be used: {exc.reason}"}
    start: dict[str, Any] = {"mode": "warm", "container": container_id[:12]}
    if before is None or _identity(task_file) != before:
        # Replaced or modified by a task while this one ran (a cold run reads a read-only
        # mount of the evidence copy instead): what ran may not be what task_sha256 names.
        start["task_file_changed"] = True
    return outcome, start


def _identity(path: Any) -> tuple[int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def discard(ctx: Context, pool: WarmPool, container_id: str) -> None:
    if not ctx.backend.discard(container_id):
        ctx.store.mark_containers_left()  # a sweep finds it again by its labels
    pool.forget(container_id)


# -- the keeper ------------------------------------------------------------------------------


def pool_request(
    ctx: Context, record: SandboxRecord, paths: SandboxPaths, settings: RunSettings
) -> ExecRequest:
    """What the sandbox's warm containers are created with: a cold run's request (same
    build: run/prepare.py) without what belongs to one run (argv, environment, task file)."""
    from aido.backends.base import ExecRequest
    from aido.run.plan import stored_runtime
    from aido.run.prepare import container_labels, run_limits, sandbox_mounts

    choice = stored_runtime(str(settings.runtime), record.id)
    return ExecRequest(
        image=choice.image,
        argv=[],
        env={},
        mounts=sandbox_mounts(paths, settings, settings.filesystem == "readwrite"),
        limits=run_limits(settings),
        timeout_seconds=settings.timeout_seconds,
        labels=container_labels(ctx, record.id),
        name=f"aido-{record.id}-warm-{os.urandom(4).hex()}",
        user=record.task_user,
        network=settings.network,
        isolation=settings.isolation,
    )


def keep(ctx: Context, sandbox_id: str, *, check: bool = False) -> list[dict[str, Any]]:
    """One pass of the keeper over a sandbox's pool: remove the containers of runs that
    ended, drain the pool of a sandbox that is going or expired, drop dead or mismatched
    ready containers (``check``: asks the engine, so not on every pass) and start new ones
    up to ``warm``. Returns what it did, for the keeper's log."""
    from aido import fs
    from aido.store.records import RunSettings

    paths = ctx.store.paths(sandbox_id)
    pool = WarmPool(paths.warm)
    actions: list[dict[str, Any]] = []
    running = 0
    for claim in pool.claims():
        if fs.is_locked(paths.run_dir(claim.run_id)):
            running += 1
            continue
        discard(ctx, pool, claim.container_id)  # its run ended: used once, now gone
        actions.append({"action": "removed_used", "sandbox_id": sandbox_id, "run_id": claim.run_id})
    record = None if paths.going() else ctx.store.load(sandbox_id)
    settings = RunSettings.from_config(record.config) if record is not None else None
    if record is None or settings is None or record.expired() or not settings.warm or not settings.runtime:
        for container_id in pool.ready():
            if pool.withdraw(container_id):
                discard(ctx, pool, container_id)
                actions.append({"action": "drained", "sandbox_id": sandbox_id})
        return actions
    request = pool_request(ctx, record, paths, settings)
    key = ctx.backend.warm_key(request)
    if key is None:
        return actions
    ready = pool.ready()
    alive = _alive(ctx, sandbox_id) if check else None
    for container_id, made_with in ready.items():
        stale = made_with != key or (alive is not None and container_id not in alive)
        if stale and pool.withdraw(container_id):
            discard(ctx, pool, container_id)
            actions.append(
                {"action": "dropped_stale", "sandbox_id": sandbox_id, "container": container_id[:12]}
            )
    missing = settings.warm - len(pool.ready()) - len(pool.starting())
    if running and pool.ready():
        # Starting a container takes the engine's CPU from the runs in their containers now
        # (on a small machine, ~10 ms of a warm run's ~60): refill between runs, unless
        # the pool is empty.
        return actions
    if missing > 0 and settings.disk_quota == "hard":
        from aido.host import volume

        uid, _, gid = record.task_user.partition(":")
        volume.ensure_mounted(paths, uid=int(uid), gid=int(gid))  # as a run does (after a reboot)
    for _ in range(max(0, missing)):
        name = f"aido-{sandbox_id}-warm-{os.urandom(4).hex()}"
        pool.add_starting(name)
        try:
            container_id = ctx.backend.start_idle(replace(request, name=name))
        except BaseException:
            pool.forget(name)
            raise
        if paths.going():  # destroyed while it started: it must not outlive the sandbox
            ctx.backend.discard(container_id)
            pool.forget(name)
            break
        pool.mark_ready(name, container_id, key)
        actions.append({"action": "started_warm", "sandbox_id": sandbox_id, "container": container_id[:12]})
    return actions


def _alive(ctx: Context, sandbox_id: str) -> set[str]:
    """The sandbox's warm containers that are running."""
    found = ctx.backend.list_labelled({"aido.sandbox": sandbox_id})
    return {
        str(c["id"]) for c in found if c.get("state") == "running" and "aido.warm" in (c.get("labels") or {})
    }
