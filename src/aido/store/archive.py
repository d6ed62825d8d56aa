"""A destroyed sandbox's evidence: ``.aido/archive/<id>/``.

Destroying a sandbox removes its containers and working trees but keeps what it
recorded: ``sandbox.json`` (status ``destroyed``, with when and why), ``events.log``,
``inputs.json``, the run index ``runs.jsonl`` and every ``runs/run-NNN/``.
``secrets.json`` (secret values) never reaches the archive; nothing else in those files
holds a secret value (env values are redacted, logs and diffs masked).

The steps keep the runs in exactly one place, reachable by name, at every moment:

1. ``sandboxes/<id>/.destroying`` is written (why, when, purge or not): runs stop
   themselves, no new run starts; the containers are removed.
2. ``secrets.json`` is deleted and a hard-quota volume unmounted.
3. ``sandboxes/<id>`` is renamed to ``archive/<id>.partial`` (``archive/<id>.<hex>.purge``
   with ``--purge``): one rename on one filesystem, however big the evidence.
4. Everything but the evidence is deleted from ``<id>.partial`` by a walk that never
   follows a link, ``sandbox.json`` is marked destroyed, and ``<id>.partial`` is renamed
   to ``<id>``. A ``.purge`` directory is deleted whole.

A crash before 3 leaves the live sandbox marked ``.destroying``: the next ``destroy``
does it again, and so does the next command's sweep once no process holds the sandbox.
A crash after 3 leaves ``<id>.partial`` or ``.purge``: the next sweep finishes it. The
process doing the work holds an flock on the sandbox's directory throughout (the lock
follows the directory through the renames), so a sweep never competes with it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from aido import fs
from aido.errors import AidoError, WorkspaceError
from aido.store.ids import is_sandbox_id
from aido.store.records import SandboxRecord, isoformat, parse_time, utcnow
from aido.store.workspace import (
    EVENTS,
    INPUTS_MANIFEST,
    METADATA,
    PARTIAL,
    PURGE,
    RUN_INDEX,
    RUNS,
    SandboxPaths,
    Workspace,
)

# What an archive keeps, and what each must be (anything else, a link included, goes).
KEEP = {
    METADATA: stat.S_IFREG,
    EVENTS: stat.S_IFREG,
    INPUTS_MANIFEST: stat.S_IFREG,
    RUNS: stat.S_IFDIR,
    RUN_INDEX: stat.S_IFREG,
}


def read_marker(path: Path) -> dict[str, Any]:
    """The ``.destroying`` marker's content; {} for an empty (older aido) or unreadable one."""
    try:
        data = fs.read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mark(paths: SandboxPaths, *, reason: str, purge: bool) -> dict[str, Any]:
    """Step 1: write the marker (the caller holds the sandbox's lock). A destroy that is
    repeated keeps the first reason and time; a purge asked for once stays asked for."""
    old = read_marker(paths.destroying)
    marker = {
        "reason": old.get("reason") if isinstance(old.get("reason"), str) else reason,
        "requested_at": old.get("requested_at") if isinstance(old.get("requested_at"), str) else None,
        "purge": old.get("purge") is True or purge,
    }
    marker["requested_at"] = marker["requested_at"] or isoformat(utcnow())
    if marker != old:
        fs.atomic_write_json(paths.destroying, marker)
    return marker


# Unmounts a sandbox's own filesystem if it has one (host.volume.release_mounted), given
# by the caller: the store does not reach up into the host's mounts.
Release = Callable[[SandboxPaths], None]


def move_out(
    workspace: Workspace, paths: SandboxPaths, sandbox_id: str, *, purge: bool, release: Release
) -> Path:
    """Steps 2 and 3 (the caller holds the sandbox's locks); returns the staging directory."""
    release(paths)
    paths.secrets.unlink(missing_ok=True)
    for name in os.listdir(paths.root):
        if name.startswith(f".{paths.secrets.name}."):  # a temporary copy left by a crash
            (paths.root / name).unlink(missing_ok=True)
    if workspace.archive.is_symlink():
        raise WorkspaceError(
            f"{workspace.archive} is a symlink; refusing to move evidence through it",
            hint="remove the link (aido creates the directory itself) and destroy the sandbox again",
        )
    workspace.archive.mkdir(mode=0o755, exist_ok=True)
    name = f"{sandbox_id}.{os.urandom(4).hex()}{PURGE}" if purge else f"{sandbox_id}{PARTIAL}"
    target = workspace.archive / name
    try:
        os.rename(paths.root, target)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot move sandbox {sandbox_id} into {target}: {exc.strerror}",
            hint=f"{workspace.archive} must be a directory on the same filesystem as "
            f"{workspace.sandboxes}; fix that and destroy the sandbox again",
        ) from None
    return target


def _remove(path: Path) -> None:
    """Delete a file, link or tree without following any link."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        fs.remove_tree(path)
    else:
        path.unlink()


def finish(workspace: Workspace, staging: Path, *, release: Release) -> Path | None:
    """Step 4 (the caller holds staging's lock): the archive's path, or None once a
    ``.purge`` staging directory is deleted."""
    sandbox_paths = SandboxPaths(staging)
    release(sandbox_paths)
    if staging.name.endswith(PURGE):
        fs.remove_tree(staging)
        return None
    marker = read_marker(sandbox_paths.destroying)
    with os.scandir(staging) as entries:
        names = [(e.name, e.stat(follow_symlinks=False).st_mode) for e in entries]
    for name, mode in names:
        if name == sandbox_paths.destroying.name or stat.S_IFMT(mode) == KEEP.get(name):
            continue
        _remove(staging / name)
    _seal(sandbox_paths, marker)
    final = workspace.archive / staging.name.removesuffix(PARTIAL)
    os.rename(staging, final)
    sandbox_paths = SandboxPaths(final)
    sandbox_paths.destroying.unlink(missing_ok=True)
    return final


def _seal(paths: SandboxPaths, marker: dict[str, Any]) -> None:
    """Mark sandbox.json destroyed, with when and why (a schema-1 file's runs moved into
    the run index first). Runs still marked running (their aido process did not finish in
    time) are closed as interrupted, by an appended index line. A file aido cannot read
    (corrupt, or from a newer aido, or its index damaged) is kept exactly as it is."""
    from aido.store import runindex
    from aido.store.store import SandboxStore

    try:
        record = SandboxRecord.from_json(
            fs.read_json(paths.metadata), source=str(paths.metadata), run_index=paths.run_index
        )
        runs = record.runs
    except (OSError, ValueError, AidoError):
        return
    SandboxStore.migrate_runs(paths, record, live=False)
    if record.status != "destroyed" or record.destroyed_at is None:
        record.status = "destroyed"
        record.destroyed_at = _time_or_now(marker.get("requested_at"))
        record.destroy_reason = str(marker.get("reason") or "destroyed")
    closed = []
    for ref in runs:
        if ref.status == "running":
            ref.status = "interrupted"
            ref.completed_at = ref.completed_at or record.destroyed_at
            closed.append(ref)
    runindex.append(paths.run_index, closed)
    fs.atomic_write_bytes(paths.metadata, record.to_bytes())


def _time_or_now(value: Any) -> str:
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        if parse_time(value).tzinfo is not None:
            return str(value)
    return isoformat(utcnow())


def scan(workspace: Workspace) -> tuple[list[str], list[Path]]:
    """(finished archives' ids, staging directories a crash left behind)."""
    try:
        names = os.listdir(workspace.archive)
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    done, left = [], []
    for name in sorted(names):
        if is_sandbox_id(name):
            done.append(name)
        elif (name.endswith(PARTIAL) or name.endswith(PURGE)) and is_sandbox_id(name.split(".")[0]):
            left.append(workspace.archive / name)
    return done, left


@contextlib.contextmanager
def holding(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the flock on a sandbox or archive directory; yields False if it is gone or
    (without ``wait``) another process holds it."""
    try:
        fd = fs.hold_lock(path, wait=wait)
    except (FileNotFoundError, NotADirectoryError):
        fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def purge(workspace: Workspace, sandbox_id: str, *, wait: bool) -> bool:
    """Delete a finished archive (crash-safe: renamed to ``.purge`` first). False if it is
    gone, or (without ``wait``) another process is deleting it."""
    root = workspace.archived(sandbox_id).root
    with holding(root, wait=wait) as held:
        if not held or not root.is_dir():
            return False
        staging = workspace.archive / f"{sandbox_id}.{os.urandom(4).hex()}{PURGE}"
        os.rename(root, staging)
        fs.remove_tree(staging)
    return True


def run_count(paths: SandboxPaths) -> int:
    try:
        data = fs.read_json(paths.metadata)
        return len(SandboxRecord.from_json(data, source="", run_index=paths.run_index).runs)
    except (OSError, ValueError, AidoError):
        try:
            return sum(1 for p in paths.runs.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return 0


def older_than(workspace: Workspace, sandbox_id: str, seconds: float, now: datetime) -> str | None:
    """The archive's destruction time if it is older than ``seconds``, else None. The
    cheap look first (the newest of the directory's and sandbox.json's mtimes, both
    written at destruction); sandbox.json's ``destroyed_at`` must agree when it is there."""
    paths = workspace.archived(sandbox_id)
    newest = 0.0
    for path in (paths.root, paths.metadata):
        with contextlib.suppress(OSError):
            newest = max(newest, os.lstat(path).st_mtime)
    if newest == 0.0 or now.timestamp() - newest < seconds:
        return None
    when = isoformat(datetime.fromtimestamp(newest, now.tzinfo))
    try:
        data = fs.read_json(paths.metadata)
        destroyed_at = data.get("destroyed_at") if isinstance(data, dict) else None
        if isinstance(destroyed_at, str):
            if (now - parse_time(destroyed_at)).total_seconds() < seconds:
                return None
            when = destroyed_at
    except (OSError, ValueError, TypeError):
        pass
    return when
