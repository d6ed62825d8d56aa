"""The task-writable trees, ``work/`` and ``outputs/``, against the sandbox's disk and
file-count limits: which limits they breach, refusing a run that would start over them,
and clearing them (``aido sandbox clean``).

Whatever a task leaves there stays for the next run. A run that ends over a limit is
reported as such (see verdict.py); the next run is then refused before any container
starts, rather than killed at once by the meter, with the fix: clear the trees.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aido.config.units import format_size
from aido.errors import SandboxOverLimit
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.host.diskusage import DiskUsage
    from aido.store.records import RunSettings
    from aido.store.workspace import SandboxPaths

TREES = ("work", "outputs")
WHERE = "work/ and outputs/"
RECOUNT_FILES = 1_000_000  # how far a refusal counts, to say how many files there are


@dataclass(frozen=True)
class Breach:
    """One limit the task reached: ``measured`` is None when only the fact is known."""

    kind: str  # timeout | memory | pids | disk | files
    limit: float
    measured: float | None
    unit: str  # seconds | bytes | processes | files
    text: str  # in words, e.g. "out of memory (limit 64M)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "limit": self.limit,
            "measured": self.measured,
            "unit": self.unit,
            "message": self.text,
        }


def measure(paths: SandboxPaths, settings: RunSettings, *, stop: bool) -> DiskUsage:
    from aido.host.diskusage import measure as walk

    return walk(
        [paths.work, paths.outputs],
        stop_bytes=settings.disk_bytes if stop else None,
        stop_files=settings.max_files,
    )


def breaches(paths: SandboxPaths, settings: RunSettings, usage: DiskUsage) -> list[Breach]:
    """The disk and file-count limits the trees breach: over the file limit, or at or over
    the disk limit (full: the next write fails). With a hard quota the filesystem judges."""
    found = []
    if settings.disk_quota == "hard":
        from aido.host import volume

        full = volume.full(paths, settings.disk_bytes)
        if full is not None:
            kind = "files" if full.startswith("file") else "disk"
            limit = settings.max_files if kind == "files" else settings.disk_bytes
            measured = usage.files if kind == "files" else usage.bytes_used
            found.append(Breach(kind, limit, measured, "files" if kind == "files" else "bytes", full))
        return found
    limit = settings.disk_bytes
    if usage.bytes_used >= limit:
        used, shown = format_size(usage.bytes_used), format_size(limit)
        if usage.bytes_used == limit:
            text = f"disk limit reached: {shown} in {WHERE}"
        else:
            if used.replace(".0", "") == shown:  # "1.0G used of 1G" would not read as over
                used = f"{usage.bytes_used} bytes"
            text = f"disk limit exceeded: {used} used of {shown} in {WHERE}"
        found.append(Breach("disk", limit, usage.bytes_used, "bytes", text))
    if usage.files > settings.max_files:
        count = f"{usage.files}" if usage.complete else f"more than {settings.max_files}"
        found.append(
            Breach(
                "files",
                settings.max_files,
                usage.files,
                "files",
                f"file limit exceeded: {count} files of {settings.max_files} in {WHERE}",
            )
        )
    return found


def check_room(paths: SandboxPaths, settings: RunSettings, sandbox_id: str) -> None:
    """Refuse a run that would start over the limits (SandboxOverLimit, exit 3): it would
    be killed at once, or every write of it refused, for what an earlier run left."""
    if settings.disk_quota == "hard":
        from aido.host import volume

        if not volume.is_hard(paths) or not os.path.ismount(volume.mountpoint(paths)):
            return  # mounted by the run itself (after a reboot): it judges at the end
    usage = measure(paths, settings, stop=True)
    found = breaches(paths, settings, usage)
    if not found:
        return
    if not usage.complete:
        from aido.host.diskusage import measure as walk

        # Refusing anyway: count further, to say how much is there.
        usage = walk([paths.work, paths.outputs], stop_files=max(RECOUNT_FILES, settings.max_files))
        found = breaches(paths, settings, usage) or found
    held = f"{usage.files}{'' if usage.complete else '+'} files, {format_size(usage.bytes_used)}"
    raise SandboxOverLimit(
        f"sandbox {sandbox_id} is over its limits: {'; '.join(b.text for b in found)} "
        f"(left by earlier runs: {held}); a run now would be stopped at once",
        hint=f"clear them with `aido sandbox clean {sandbox_id}` (--work or --outputs for one of them), "
        "or create a new sandbox with `aido sandbox up`",
    )


def clear(paths: SandboxPaths, names: list[str]) -> dict[str, dict[str, Any]]:
    """Delete everything inside the named trees (they stay, empty: they may be mount
    points), never following a link the task planted. Returns what each held: its
    top-level entries, every entry below it (files and directories) and the bytes freed.
    One pass, in bounded memory, whatever the depth or the number of entries."""
    from aido import fs

    cleared = {}
    for name in names:
        root = paths.root / name
        # The tree's own directory is aido's (the task cannot replace it); everything in
        # it is the task's, removed by the symlink-safe, iterative remover.
        if not root.is_dir() or root.is_symlink():
            cleared[name] = {"entries": 0, "files": 0, "bytes": 0}
            continue
        with os.scandir(root) as listing:
            top = sum(1 for _ in listing)  # counted, not kept: there may be millions
        removed = fs.empty_tree(root)
        cleared[name] = {"entries": top, "files": removed.entries, "bytes": removed.bytes}
    return cleared
