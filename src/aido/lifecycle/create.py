"""``aido sandbox up``: check the spec (inputs, isolation, quota, runtime image, widened
permissions confirmed), then make the sandbox's directories, copy its inputs, keep its
secrets apart and write its record. A sandbox is made whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import fs
from aido.errors import ConfigError, Problem, UsageError
from aido.evidence.events import record_event
from aido.host.inputs import hand_over
from aido.log import log
from aido.run.request import (
    UP_RUNTIME_HINT,
    Confirm,
    ensure_image,
    require_confirmation,
    task_user,
    unenforced_permissions,
    widened_permissions,
)
from aido.store.ids import new_sandbox_id
from aido.store.records import SandboxRecord, isoformat, utcnow
from aido.store.store import read_inputs_manifest

if TYPE_CHECKING:
    from aido.config.schema import SandboxSpec
    from aido.run.context import Context
    from aido.store.workspace import SandboxPaths


def create(
    ctx: Context,
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
    given: tuple[str, dict[str, Any]] | None = None,
    warm: int | None = None,
) -> SandboxRecord:
    """Create a sandbox. A spec that widens permissions (network, writable inputs) must be
    confirmed: ``confirm`` gets the warnings and returns True to go ahead. A spec that names
    a runtime has its image checked (and pulled, reporting to ``on_pull``) first: a sandbox
    whose every run would fail is not created. ``given`` is (source, mapping): the spec as
    data instead of a file (the Python API), its inputs relative to ``start``."""
    from aido.config.loader import load_spec_and_lines
    from aido.evidence.redact import REDACTED, is_secret_name, short_secret_warnings
    from aido.plugins.runtimes import install

    install()  # before the spec is checked: its runtime may be a plugin's
    overrides = {
        k: v
        for k, v in (
            ("name", name),
            ("runtime", runtime),
            ("ttl", ttl),
            ("isolation", isolation),
            ("warm", warm),
        )
        if v is not None
    }
    spec, lines = load_spec_and_lines(spec_file, overrides=overrides, given=given)
    matches: list[tuple[Path, Path]] = []
    if spec.inputs:
        from aido.host.inputs import match_inputs

        if spec_file is not None:
            base, where = spec_file.parent, spec_file.name
        elif given is not None:
            base, where = (start or Path.cwd()), given[0]
        else:
            raise UsageError("inputs need a sandbox.yaml to be relative to")
        matches = match_inputs(spec.inputs, base, source=where, lines=lines)
    allowlist = not isinstance(spec.permissions.network, bool)
    if spec.isolation == "gvisor" and spec.permissions.network:
        where = spec_file.name if spec_file else given[0] if given else "sandbox.yaml"
        if allowlist:
            message = (
                "an allowlist cannot be combined with isolation: gvisor (runsc is registered with "
                "--network=none, so no task could reach the egress proxy)"
            )
            line = lines.get(("permissions", "network", "allow")) or lines.get(("permissions", "network"))
            hint = "use the default isolation for a sandbox whose tasks need the network"
            raise ConfigError([Problem(message, where, line, "permissions.network.allow")], hint=hint)
        message = "true cannot be combined with isolation: gvisor (runsc is registered with --network=none)"
        line = lines.get(("permissions", "network"))
        raise ConfigError([Problem(message, where, line, "permissions.network")])
    if spec.warm:
        _check_warm(spec, spec_file, given, lines, flag=warm is not None, allowlist=allowlist)
    if spec.resources.disk_quota == "hard":
        from aido.host import volume

        try:
            volume.check_possible()
        except ConfigError as exc:  # at the line that asked for it
            from dataclasses import replace

            where = spec_file.name if spec_file else given[0] if given else "sandbox.yaml"
            line = lines.get(("resources", "disk_quota"))
            raise ConfigError(
                [replace(p, file=where, line=line) for p in exc.details], hint=exc.hint
            ) from None
    if spec.runtime:
        from aido.config.runtimes import parse_runtime

        image = parse_runtime(spec.runtime).image
        ensure_image(ctx.backend, image, on_pull, other=f"or choose another runtime: {UP_RUNTIME_HINT}")
    for warning in short_secret_warnings(spec.env):
        log.warning("%s", warning)
    widened = widened_permissions(spec.model_dump(mode="json"))
    require_confirmation(widened, confirm)
    workspace = ctx.open_workspace(start)
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
            hand_over(paths.inputs, uid, gid)
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
        ctx.store.save(record)
        if inputs:
            fs.atomic_write_json(paths.inputs_manifest, inputs)
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
        delete_sandbox_tree(paths)  # no half-created sandbox stays behind
        raise
    workspace.set_active(sandbox_id)
    return record


def _check_warm(
    spec: SandboxSpec,
    spec_file: Path | None,
    given: tuple[str, dict[str, Any]] | None,
    lines: dict[tuple[str | int, ...], int],
    *,
    flag: bool,
    allowlist: bool,
) -> None:
    """A warm pool needs a runtime (its containers start before any task says which
    interpreter it needs), the default isolation (gVisor applies the sandbox's seccomp
    profile to a container's first process only, never to a task started in a waiting one)
    and no egress allowlist (a run's egress proxy and network are made for that run)."""
    if spec.isolation == "gvisor":
        message = (
            f"{spec.warm} cannot be combined with isolation: gvisor: runsc applies the sandbox's seccomp "
            "profile to a container's first process only, so a task started in a waiting container "
            "would run without it"
        )
        hint = "use warm with the default isolation, or leave it out (gVisor runs start cold)"
    elif not spec.runtime:
        message = (
            f"{spec.warm} needs a runtime (runtime: python:3.12, node:18, sh or docker://IMAGE): "
            "warm containers are started before any task says which interpreter it needs"
        )
        hint = "set runtime: in sandbox.yaml or pass --runtime"
    elif allowlist:
        message = (
            f"{spec.warm} cannot be combined with permissions.network.allow: a pre-started container "
            "has no network (each run's egress proxy and network are made for that run)"
        )
        hint = "leave out warm (runs with an allowlist start cold), or the allowlist"
    else:
        return
    if flag:  # the flag (or the API's warm=), not a file, asked for it
        raise ConfigError([Problem(message, None, None, "--warm")], hint=hint)
    where = spec_file.name if spec_file else given[0] if given else "sandbox.yaml"
    raise ConfigError([Problem(message, where, lines.get(("warm",)), "warm")], hint=hint)


def start_background(ctx: Context, record: SandboxRecord) -> None:
    """After `sandbox up`: start the warm containers (``warm: N``) so the first runs are
    warm, and the workspace's background process, which destroys the sandbox at its ttl
    and refills its pool. Neither failing undoes the sandbox: runs then start cold, and the
    next command's sweep brings the reaper back."""
    from aido.errors import AidoError
    from aido.lifecycle.reaper import ensure_running

    pool = int(record.config.get("warm") or 0)
    if pool:
        from aido.run.warm import keep

        try:
            keep(ctx, record.id)
        except AidoError as exc:
            log.warning(
                "could not start the warm containers (%s); runs start cold until they are", exc.message
            )
    if pool and os.environ.get("AIDO_SERVER") != "off":
        from aido.lifecycle.reaper import ensure_server

        try:
            ensure_server(ctx.workspace)  # warm runs skip aido's own start-up too (cli/server.py)
        except OSError as exc:
            log.warning("could not start the command server (%s); runs start it themselves", exc)
    if record.auto_cleanup or pool:
        try:
            ensure_running(ctx.workspace)
        except OSError as exc:
            log.warning("could not start the TTL reaper (%s); expired sandboxes go at the next command", exc)


def copied_inputs(ctx: Context, sandbox_id: str) -> list[dict[str, Any]]:
    """What `sandbox up` copied into the sandbox's inputs/ (path, size, SHA-256)."""
    return read_inputs_manifest(ctx.workspace.sandbox(sandbox_id))


def delete_sandbox_tree(paths: SandboxPaths) -> None:
    from aido.host import volume

    volume.release_mounted(paths)  # never delete through a mounted filesystem
    fs.remove_tree(paths.root)
