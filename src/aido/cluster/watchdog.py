"""Removal that survives the Ray worker: a node's run directories and their containers.

Ray kills a worker (a force cancel, a lost raylet, the driver gone) but never the run's
container, which belongs to dockerd. So each worker process has one watchdog: a process in
its own session, told over a pipe which run directories are live. When the pipe closes
without the worker having said a directory is done (the worker died), the watchdog removes
their containers (by the directory's workspace label) and the directories. It also removes
finished directories for the worker, after the task has handed its slot back.

Every run directory is locked by the process running it, for as long as it runs. A
directory whose lock is free belongs to nobody: ``sweep_stale`` (at each task's start)
removes those the watchdog could not (it was killed too, the engine was away, the machine
restarted). A directory is created under a hidden name, locked, then renamed into view, so
a sweep can never take a directory that is about to be used.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from aido import fs
from aido.errors import AidoError
from aido.log import log
from aido.store.workspace import Workspace

NODE_DIR_ENV = "AIDO_NODE_DIR"  # where a node keeps its runs while they run (default: the temp dir)
PREFIX = "aido-node-"

SCRIPT = r"""
import os, sys
if os.fork():
    os._exit(0)  # the grandchild is nobody's child: Ray cannot kill it with the worker
from pathlib import Path
live, pending = set(), b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break  # the worker is gone
    pending += chunk
    *lines, pending = pending.split(b"\n")
    for line in lines:
        op, _, path = line.decode("utf-8", "surrogateescape").partition(" ")
        if op == "+":
            live.add(path)
        elif op == "-":
            live.discard(path)
        elif op == "rm":
            live.discard(path)
            from aido.cluster.watchdog import remove_when_free
            remove_when_free(Path(path))
if live:
    from aido.cluster.watchdog import clean_base
    for path in live:
        clean_base(Path(path))
"""


def node_dir() -> Path:
    return Path(os.environ.get(NODE_DIR_ENV) or tempfile.gettempdir()).resolve()


def new_base() -> tuple[Path, int]:
    """A new run directory, and the descriptor holding its lock."""
    hidden = Path(tempfile.mkdtemp(prefix="." + PREFIX, dir=node_dir()))
    lock = fs.hold_lock(hidden)
    assert lock is not None
    base = hidden.with_name(hidden.name[1:])  # unique as the hidden name is
    try:
        os.rename(hidden, base)
    except BaseException:
        os.close(lock)
        fs.remove_tree(hidden)
        raise
    return base, lock


class Watchdog:
    def __init__(self) -> None:
        read_end, self._fd = os.pipe()
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env=env,
        ).wait()  # the first child exits at once; its child watches
        os.close(read_end)
        os.set_inheritable(self._fd, False)
        self._lock = threading.Lock()

    def _say(self, op: str, base: Path) -> None:
        with self._lock:
            os.write(self._fd, f"{op} {base}\n".encode("utf-8", "surrogateescape"))

    def watch(self, base: Path) -> None:
        """From now until ``remove`` or ``forget``: cleaned if this worker dies."""
        self._say("+", base)

    def remove(self, base: Path) -> None:
        """Done: the watchdog removes it once this worker lets go of its lock."""
        self._say("rm", base)

    def forget(self, base: Path) -> None:
        """Done, but kept (a container may be left): the next sweep removes it."""
        self._say("-", base)


_watchdog: tuple[int, Watchdog] | None = None
_started = threading.Lock()


def watchdog() -> Watchdog:
    """This worker process's watchdog, started with its first run."""
    global _watchdog
    with _started:
        if _watchdog is None or _watchdog[0] != os.getpid():
            _watchdog = (os.getpid(), Watchdog())
        return _watchdog[1]


def remove_when_free(base: Path) -> None:
    """Remove a finished run's directory once its worker has let go of it (in the watchdog)."""
    try:
        held = fs.hold_lock(base)
    except OSError:
        return  # a sweep removed it already
    try:
        _remove_base(base)
    finally:
        if held is not None:
            os.close(held)


def clean_base(base: Path) -> None:
    """Remove a dead run's containers (by its workspace label) and its directory."""
    from aido.backends.registry import get_backend

    try:
        get_backend().remove_labelled({"aido.workspace": str(base)[:1024]})
    except AidoError as exc:
        log.warning("could not remove the containers of %s: %s", base, exc.message)
        return  # keep the directory: the next sweep tries again
    _remove_base(base)


def _remove_base(base: Path) -> None:
    from aido.host import volume

    workspace = Workspace(base)
    try:
        for sid in workspace.sandbox_ids():
            volume.release_mounted(workspace.sandbox(sid))  # never delete through a mount
    except (AidoError, OSError) as exc:
        log.debug("could not list %s: %s", base, exc)
    try:
        fs.remove_tree(base)
    except FileNotFoundError:
        pass


def sweep_stale() -> None:
    """Clean run directories whose worker is gone (their lock is free): the case where
    the watchdog itself was killed, the engine was away, or the machine restarted mid-run."""
    root = node_dir()
    try:
        names = [n for n in os.listdir(root) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        base = root / name
        try:
            held = fs.hold_lock(base, wait=False) if base.is_dir() and not base.is_symlink() else None
        except OSError:  # gone meanwhile
            continue
        if held is None:
            continue  # alive (or not a directory)
        try:
            if base.exists():  # not removed while this sweep waited for it
                clean_base(base)
        finally:
            os.close(held)
