"""A hard disk quota for a sandbox: ``resources.disk_quota: hard``.

A bind mount carries no quota, so by default aido measures ``work/`` and ``outputs/``
while the task runs and kills it past the limit (a fast writer overshoots a little).
With a hard quota the two trees live on a filesystem of their own, exactly
``resources.disk`` big with ``resources.files`` inodes: an ext4 image in the sandbox
directory, loop-mounted at ``.volume/`` and bind-mounted over ``work/`` and
``outputs/``. A write past the limit fails with ENOSPC inside the task; the host
never holds a byte more. Mounting needs root, so this is for aido running as root.

The image persists with the sandbox; the mounts do not survive a reboot, so every
run re-mounts what is missing. Destroying unmounts first and never deletes through
a mount point that is still in place.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from aido.errors import ConfigError, Problem, RuntimeFailure

if TYPE_CHECKING:
    from aido.store.workspace import SandboxPaths

IMAGE = "disk.img"
MOUNT = ".volume"
OVERHEAD = 1.03  # ext4 metadata (bitmaps, descriptors): so tasks get about the limit
MIN_EXTRA = 1 << 20
INODE_SIZE = 128
FULL_FRACTION = 0.01  # less free than this (of the limit) after a run: the quota was hit


def image(paths: SandboxPaths) -> Path:
    return paths.root / IMAGE


def mountpoint(paths: SandboxPaths) -> Path:
    return paths.root / MOUNT


def is_hard(paths: SandboxPaths) -> bool:
    return image(paths).is_file()


def check_possible() -> None:
    """Refuse before anything is created if this machine cannot give a hard quota."""
    if os.getuid() != 0:
        raise ConfigError(
            [
                Problem(
                    "hard needs aido to run as root (it mounts a filesystem for the sandbox)",
                    key="resources.disk_quota",
                )
            ],
            hint="run aido as root, or set `resources.disk_quota: soft` in sandbox.yaml "
            "(the default: measured, the task killed past the limit)",
        )
    import shutil  # here: it imports bz2, lzma and zlib, and every aido run imports this module

    missing = [tool for tool in ("mkfs.ext4", "mount", "umount") if shutil.which(tool) is None]
    if missing:
        raise ConfigError(
            [Problem(f"hard needs {', '.join(missing)} on this machine", key="resources.disk_quota")],
            hint="install e2fsprogs and util-linux (`apt-get install e2fsprogs mount`)",
        )


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeFailure(
            f"`{' '.join(argv[:2])} ...` failed: {detail[-1] if detail else f'exit {done.returncode}'}",
            hint="check that loop devices are available (`losetup -f`) and the disk has room",
        )


def create(paths: SandboxPaths, *, size_bytes: int, max_files: int, uid: int, gid: int) -> None:
    """Make the filesystem, mount it, and put work/ and outputs/ on it."""
    img = image(paths)
    total = max(int(size_bytes * OVERHEAD), size_bytes + MIN_EXTRA)
    # The inode count is the file-count limit (plus the few directories aido makes), as far
    # as a filesystem this small can hold: ext4 wants at least 2 KiB per inode. Beyond that
    # the measured file limit still applies.
    inodes = min(max_files + 16, total // 2048)
    total += inodes * INODE_SIZE  # inode tables are metadata: the task still gets size_bytes
    with open(img, "xb") as handle:  # sparse: the host pays only for what is written
        handle.truncate(total)
    os.chmod(img, 0o600)
    # -m 0: no blocks reserved for root; no journal: nothing to replay after a crash.
    _run(
        [
            "mkfs.ext4", "-q", "-F", "-m", "0", "-I", str(INODE_SIZE), "-N", str(inodes),
            "-O", "^has_journal", str(img),
        ]
    )  # fmt: skip
    ensure_mounted(paths, uid=uid, gid=gid)


def ensure_mounted(paths: SandboxPaths, *, uid: int, gid: int) -> None:
    """Mount whatever is missing (after a reboot nothing is), in order."""
    top = mountpoint(paths)
    top.mkdir(mode=0o700, exist_ok=True)
    if not os.path.ismount(top):
        _run(["mount", "-o", "loop,nosuid,nodev", str(image(paths)), str(top)])
    for name, target in (("work", paths.work), ("outputs", paths.outputs)):
        source = top / name
        if not source.is_dir():
            source.mkdir(mode=0o755)
            os.chown(source, uid, gid)
        if not os.path.ismount(target):
            _run(["mount", "--bind", str(source), str(target)])


def release(paths: SandboxPaths) -> None:
    """Unmount the binds and the filesystem (before the sandbox directory is deleted)."""
    for target in (paths.work, paths.outputs, mountpoint(paths)):
        if os.path.ismount(target):
            done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
            if done.returncode != 0:  # still busy: detach now, the kernel frees it when idle
                _run(["umount", "-l", str(target)])
    for target in (paths.work, paths.outputs, mountpoint(paths)):
        if os.path.ismount(target):
            raise RuntimeFailure(
                f"{target} is still mounted; refusing to delete through it",
                hint=f"unmount it (`umount {target}`) and destroy the sandbox again",
            )


def full(paths: SandboxPaths, limit: int) -> str | None:
    """Why the quota stopped the task, if its filesystem is (nearly) full."""
    try:
        st = os.statvfs(mountpoint(paths))
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < limit * FULL_FRACTION:
        return f"disk quota reached: the sandbox's {limit >> 20} MiB filesystem is full"
    if st.f_favail == 0:
        return "file quota reached: the sandbox's filesystem has no inodes left"
    return None


def release_mounted(paths: SandboxPaths) -> None:
    """Release the sandbox's filesystem if anything of it is mounted: nothing is ever
    deleted (or moved) through a mounted filesystem."""
    if is_hard(paths) or os.path.ismount(paths.work) or os.path.ismount(paths.outputs):
        release(paths)
