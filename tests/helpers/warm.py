"""A sandbox's warm pool (``warm: N``) as tests see it: its bookkeeping on disk (read
directly: polling `aido sandbox list` would cost a whole aido start each time), its
containers in the engine, and the workspace's keeper (the reaper process)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aido import fs
from tests.helpers.cli import wait_for
from tests.helpers.sandbox import run_dir, sandbox_root


def ready(project: Path, sandbox_id: str) -> set[str]:
    """Ids of the pool's ready containers (warm/ready/<key>.<container id>)."""
    directory = sandbox_root(project, sandbox_id) / "warm" / "ready"
    try:
        return {name.partition(".")[2] for name in os.listdir(directory) if not name.startswith(".")}
    except FileNotFoundError:
        return set()


def starting(project: Path, sandbox_id: str) -> list[str]:
    directory = sandbox_root(project, sandbox_id) / "warm" / "starting"
    try:
        return [name for name in os.listdir(directory) if not name.startswith(".")]
    except FileNotFoundError:
        return []


def wait_full(project: Path, sandbox_id: str, size: int, timeout: float = 30) -> set[str]:
    """Wait until the keeper has ``size`` containers ready and is starting none; returns them."""
    wait_for(
        lambda: len(ready(project, sandbox_id)) == size and not starting(project, sandbox_id),
        timeout=timeout,
        what=f"{size} warm container(s) ready in sandbox {sandbox_id}",
    )
    return ready(project, sandbox_id)


def engine_containers(sandbox_id: str, *, warm_only: bool = False, running: bool = False) -> list[str]:
    """Full ids of the sandbox's containers in the engine (any state unless ``running``)."""
    argv = ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=aido.sandbox={sandbox_id}"]
    if not running:
        argv.insert(2, "-a")
    if warm_only:
        argv += ["--filter", "label=aido.warm"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.split()


def latest_run(project: Path, sandbox_id: str) -> str:
    """The sandbox's newest run id (runs are numbered in order: run-001, run-002, ...)."""
    runs = sorted(p.name for p in (sandbox_root(project, sandbox_id) / "runs").iterdir())
    assert runs, f"sandbox {sandbox_id} has no run"
    return runs[-1]


def run_output(project: Path, sandbox_id: str, run_id: str) -> tuple[str, str]:
    """(stdout.log, stderr.log) of a run."""
    directory = run_dir(project, sandbox_id, run_id)
    return (directory / "stdout.log").read_text(), (directory / "stderr.log").read_text()


def keeper_pid(project: Path) -> int:
    """The pid of the workspace's reaper (the pool's keeper), from .aido/reaper.lock."""
    return int((project / ".aido" / "reaper.lock").read_text().split()[0])


@contextmanager
def keeper_stopped(project: Path) -> Iterator[None]:
    """kill -9 the keeper, and hold its lock so that no aido command brings it back (each
    command starts one when none holds the lock) until the block ends."""
    lock_path = project / ".aido" / "reaper.lock"
    # `sandbox up` returns as the keeper it started is still starting.
    wait_for(lambda: lock_path.is_file() and fs.is_locked(lock_path), timeout=20, what="the keeper to start")
    wait_for(lambda: bool(lock_path.read_text().strip()), timeout=5, what="the keeper to write its pid")
    pid = keeper_pid(project)
    # Only the keeper this test's aido started: it is that module.
    assert b"aido.lifecycle.reaper" in Path(f"/proc/{pid}/cmdline").read_bytes()
    os.kill(pid, signal.SIGKILL)
    fd = os.open(lock_path, os.O_RDWR)
    try:
        # The lock is free once the killed process is gone (the kernel drops its flock).
        def taken() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_for(taken, timeout=10, what=f"the killed keeper {pid} to release its lock")
        yield
    finally:
        os.close(fd)
