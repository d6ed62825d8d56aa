"""The second stage of a run: it takes a run id from the store (in order: a batch holds
its turn meanwhile), installs the task, hands the inputs over if asked, takes the first
snapshot of every tree the task can write, and builds the container request: a frozen
``PreparedRun``. From here on the run exists, and a failure closes it (run/close.py).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import __version__, fs
from aido.errors import TaskNotRunnable
from aido.evidence.events import record_event
from aido.host.inputs import hand_over
from aido.log import log
from aido.run.plan import RunPlan, pids_limit
from aido.run.request import BASE_ENV, HOST_FILESYSTEM_TARGET
from aido.run.seal import mark_pending
from aido.store.workspace import TASK_DIR
from aido.values import dataclass

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from aido.backends.base import ExecRequest, Limits, Mount
    from aido.evidence.snapshot import Snapshot
    from aido.run.context import Context
    from aido.store.records import RunSettings
    from aido.store.workspace import SandboxPaths


# Every host directory the task can write, by the name its changes are reported under,
# with the top-level names not to walk.
Trees = dict[str, tuple[Path, frozenset[str]]]


@dataclass(frozen=True)
class RunStart:
    """A run id taken: its directory exists and this process holds its lock (``lock_fd``)."""

    run_id: str
    run_dir: Path
    lock_fd: int


@dataclass(frozen=True)
class PreparedRun:
    plan: RunPlan
    run_id: str
    run_dir: Path
    watched: Trees
    before: dict[str, Snapshot]
    request: ExecRequest
    git: dict[str, Any] | None
    secrets: list[str]  # values to mask in the output and the diff


def begin(ctx: Context, plan: RunPlan, turn: AbstractContextManager[object] | None = None) -> RunStart:
    """Take the run id. ``turn`` is held while it is allocated (a batch uses it to number
    runs in the order the tasks were given)."""
    with turn or contextlib.nullcontext():
        number = plan.placement.number if plan.placement else None
        rid, run_dir, lock_fd = ctx.store.begin_run(plan.record.id, plan.task.name, number)
        mark_pending(plan.paths, rid)
        record_event(
            plan.paths.events,
            "run_started",
            sandbox_id=plan.record.id,
            run_id=rid,
            task=plan.task.name,
            task_source="code" if plan.from_code else "file",
        )
    return RunStart(rid, run_dir, lock_fd)


def prepare(ctx: Context, plan: RunPlan, start: RunStart) -> PreparedRun:
    from aido.evidence.gitinfo import git_context
    from aido.evidence.redact import secret_values
    from aido.evidence.snapshot import snapshot

    rid, run_dir = start.run_id, start.run_dir
    record, paths, task, settings = plan.record, plan.paths, plan.task, plan.settings
    uid, _, gid = record.task_user.partition(":")
    if settings.disk_quota == "hard":
        from aido.host import volume

        volume.ensure_mounted(paths, uid=int(uid), gid=int(gid))  # after a reboot, nothing is
    install_task(
        paths.work / task.name,
        run_dir / TASK_DIR / task.name,
        plan.source,
        plan.task_mode,
        int(uid),
        int(gid),
    )
    if plan.widen.mutations and settings.filesystem != "readwrite":
        hand_over(paths.inputs, int(uid), int(gid))
    if plan.warnings:
        record_event(
            paths.events,
            "permissions_widened",
            sandbox_id=record.id,
            run_id=rid,
            escape_hatches=plan.widen.as_dict(),
            warnings=plan.warnings,
        )
    git = plan.placement.git if plan.placement else git_context(ctx.workspace.root)
    watched = writable_trees(ctx, plan)
    before = {name: snapshot(root, exclude=skip) for name, (root, skip) in watched.items()}
    request = build_request(ctx, plan, rid, watched)
    log.debug("container %s: image %s, argv %s", request.name, request.image, request.argv)
    log.debug(
        "limits %s, user %s, network %s, egress %s, mounts %s",
        request.limits,
        request.user,
        request.network,
        list(request.egress),
        [(m.source, m.target, "ro" if m.read_only else "rw") for m in request.mounts],
    )
    secrets = secret_values({**settings.env, **plan.env})
    return PreparedRun(plan, rid, run_dir, watched, before, request, git, secrets)


def writable_trees(ctx: Context, plan: RunPlan) -> Trees:
    """Every host directory the task can write, by the name its changes are reported
    under, with the top-level names not to walk: what a run changed is recorded wherever
    it could change something, including what an escape hatch opened."""
    paths, settings = plan.paths, plan.settings
    trees = {"work": (paths.work, frozenset[str]()), "outputs": (paths.outputs, frozenset[str]())}
    if settings.filesystem != "none" and (settings.filesystem == "readwrite" or plan.widen.mutations):
        trees["inputs"] = (paths.inputs, frozenset())
    if plan.widen.host_filesystem and plan.widen.mutations:
        # aido's own state is hidden from the task (see build_request): not the task's change.
        trees["project"] = (ctx.workspace.root, frozenset({ctx.workspace.dir.name}))
    return trees


def build_request(ctx: Context, plan: RunPlan, rid: str, writable: Trees) -> ExecRequest:
    """The container request: the sandbox's policy, made explicit. ``writable`` is
    ``writable_trees(ctx, plan)``: what it names is mounted writable, the rest read-only.
    The task file's own mount comes last (a warm container, created before the task was
    known, has all the others: run/warm.py)."""
    from aido.backends.base import ExecRequest, Mount
    from aido.config.runtimes import task_command

    record, paths, settings = plan.record, plan.paths, plan.settings
    env = {**BASE_ENV, **settings.env, **plan.env, "AIDO_SANDBOX_ID": record.id, "AIDO_RUN_ID": rid}
    # On a cluster node each run writes its own outputs/<run> (the driver stores it there).
    mounts = sandbox_mounts(
        paths, settings, "inputs" in writable, paths.outputs / rid if plan.placement else None
    )
    masked = []
    if plan.widen.host_filesystem:
        # The project directory, but never aido's own state inside it: other sandboxes'
        # evidence and secrets.json stay hidden under an empty read-only tmpfs.
        mounts.append(
            Mount(str(ctx.workspace.root), HOST_FILESYSTEM_TARGET, read_only="project" not in writable)
        )
        masked.append(f"{HOST_FILESYSTEM_TARGET}/{ctx.workspace.dir.name}")
    # The task file itself comes from the run's evidence, read-only: what ran is exactly
    # what task_sha256 describes, even if a concurrent run rewrites work/ meanwhile.
    evidence_copy = paths.run_dir(rid) / TASK_DIR / plan.task.name
    mounts.append(Mount(str(evidence_copy.resolve()), f"/work/{plan.task.name}", read_only=True))
    return ExecRequest(
        image=plan.choice.image,
        argv=task_command(plan.choice, f"/work/{plan.task.name}", plan.args),
        env=env,
        mounts=mounts,
        limits=run_limits(settings),
        timeout_seconds=plan.timeout_seconds,
        labels={**container_labels(ctx, record.id), "aido.run": rid},
        name=f"aido-{record.id}-{rid}",
        user=record.task_user,
        network=settings.network or plan.widen.network,
        isolation=settings.isolation,
        masked_paths=masked,
        stdin=plan.stdin,
        image_id=plan.image_id,
        egress=egress_entries(plan),
    )


def egress_entries(plan: RunPlan) -> tuple[str, ...]:
    """The run's egress allowlist: the sandbox's entries, then --allow-host's (both canonical
    already), without repeats. Full network (the sandbox's or --network) needs no proxy."""
    if plan.settings.network or plan.widen.network:
        return ()
    return tuple(dict.fromkeys(plan.settings.egress + plan.widen.allow_hosts))


def sandbox_mounts(
    paths: SandboxPaths, settings: RunSettings, inputs_writable: bool, outputs: Path | None = None
) -> list[Mount]:
    """The sandbox's own trees: inputs (unless ``filesystem: none``), work and outputs."""
    from aido.backends.base import Mount

    mounts = [
        Mount(str(paths.work.resolve()), "/work", read_only=False),
        Mount(str((outputs or paths.outputs).resolve()), "/outputs", read_only=False),
    ]
    if settings.filesystem != "none":
        mounts.insert(0, Mount(str(paths.inputs.resolve()), "/inputs", read_only=not inputs_writable))
    return mounts


def run_limits(settings: RunSettings) -> Limits:
    from aido.backends.base import Limits

    return Limits(
        cpus=settings.cpus,
        memory_bytes=settings.memory_bytes,
        fsize_bytes=settings.disk_bytes,
        pids=pids_limit(settings),
    )


def container_labels(ctx: Context, sandbox_id: str) -> dict[str, str]:
    """How sweeps find the containers of this workspace's sandboxes (a run's adds aido.run)."""
    return {
        "aido.managed": "true",
        "aido.sandbox": sandbox_id,
        "aido.workspace": ctx.store.workspace_label(),
        "aido.version": __version__,
    }


def install_task(dest: Path, evidence: Path, source: bytes, mode: int, uid: int, gid: int) -> None:
    """Write the task twice: into the run's evidence (mounted read-only over the task's path),
    and into work/ as the spec says, by write-then-rename so that a symlink or file a task
    left at that name in an earlier run is replaced, never followed."""
    if dest.is_dir() and not dest.is_symlink():
        raise TaskNotRunnable(
            f"cannot copy the task: work/{dest.name} is a directory (left by an earlier run)",
            hint="rename the task file, or start a new sandbox",
        )
    evidence.parent.mkdir(mode=0o755)
    fs.write_new(evidence, source, mode=mode)
    if same_file_content(dest, source, mode):
        # Concurrent runs of one task: replacing the file would pull the mount point
        # (/work/<task>) from under a container another run is starting.
        return
    fs.atomic_write_bytes(dest, source, mode=mode)
    if os.getuid() == 0:
        os.chown(dest, uid, gid, follow_symlinks=False)


def same_file_content(path: Path, data: bytes, mode: int) -> bool:
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
