"""The TTL reaper: one background process per workspace that destroys expired sandboxes.

``aido sandbox up`` starts it (``ensure_running``); it detaches from the terminal,
keeps running after the command returns, and exits on its own once no sandbox with
auto-cleanup is left. An flock on ``.aido/reaper.lock`` makes it single-instance:
a second one exits at once, and a crashed one leaves no stale lock behind.

Each sweep also recovers runs orphaned by a killed ``aido run``, removes
containers of this workspace that no live run owns, and deletes archived evidence
older than the ``evidence_retention`` setting (re-read from ``.aido/config.json``
at each sweep; an invalid file means nothing is pruned). Every aido command sweeps on
its way too, so the reaper is a safety net, not the only line of cleanup.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aido import fs
from aido.store.store import keeps_pool, marked_running, wants_reaper
from aido.store.workspace import Workspace

if TYPE_CHECKING:
    from aido.run.context import Context

DEFAULT_INTERVAL = 60.0  # seconds between full sweeps, as the spec says
IDLE_CHECK = 5.0  # between sweeps, how often to check whether there is anything left to reap
POOL_CHECK = 0.1  # with a warm pool, how often to look whether it changed (a stat or two)
SCAN_INTERVAL = 1.0  # with a warm pool, how often to re-read which sandboxes need the reaper
POOL_LIVENESS = 2.0  # how often to ask the engine whether the idle containers still run
POOL_BACKOFF = 10.0  # after a pool could not be filled, before trying again
INTERVAL_ENV = "AIDO_REAPER_INTERVAL"
LOG_LIMIT = 256 << 10


def interval_from_env() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if 0.1 <= value <= 86400 else DEFAULT_INTERVAL


def is_running(workspace: Workspace) -> bool:
    return fs.is_locked(workspace.reaper_lock)


def ensure_running(workspace: Workspace) -> int | None:
    """Start the workspace's reaper unless one is running; return the new process id.
    It inherits the environment, AIDO_REAPER_INTERVAL included."""
    if is_running(workspace):
        return None
    # -P: the project directory (the reaper's cwd) must never shadow aido's own modules.
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "aido.lifecycle.reaper", str(workspace.root)],
        cwd=workspace.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal that ran `sandbox up` must not reach it
        close_fds=True,
    )
    return process.pid


def has_work(workspace: Workspace) -> bool:
    """Any sandbox left that the reaper may have to destroy (or whose runs it may recover,
    or whose warm pool it keeps)."""
    return bool(_wanting(workspace)[0])


def has_pool(workspace: Workspace) -> bool:
    """Whether a live sandbox of the workspace keeps a warm pool (``warm: N``)."""
    for sandbox_id in workspace.sandbox_ids():
        try:
            data = fs.read_json(workspace.sandbox(sandbox_id).metadata)
        except (OSError, ValueError):
            continue
        if keeps_pool(data):
            return True
    return False


def ensure_server(workspace: Workspace) -> None:
    """Start the workspace's command server (cli/server.py) unless one runs."""
    if fs.is_locked(workspace.server_lock):
        return
    subprocess.Popen(
        [sys.executable, "-P", "-m", "aido.cli.server", str(workspace.root)],
        cwd=workspace.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _wanting(workspace: Workspace) -> tuple[list[str], list[str]]:
    """(sandboxes that need the reaper, those of them that have or had a warm pool)."""
    wanting, pools = [], []
    for sandbox_id in workspace.sandbox_ids():
        paths = workspace.sandbox(sandbox_id)
        try:
            data = fs.read_json(paths.metadata)
        except (OSError, ValueError):
            data = None
        if data is not None and wants_reaper(data, marked_running(paths)):
            wanting.append(sandbox_id)
        if paths.warm.is_dir():  # the pool of a sandbox now expired or gone is drained too
            pools.append(sandbox_id)
    return wanting, pools


def _log(workspace: Workspace, message: str) -> None:
    path = workspace.reaper_log
    try:
        if path.exists() and path.lstat().st_size > LOG_LIMIT:
            os.replace(path, path.with_suffix(".log.1"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        fs.append_line(path, f"{stamp} [{os.getpid()}] {message}")
    except OSError:
        pass


def _retention(workspace: Workspace) -> float | None:
    """The workspace's evidence_retention; None (prune nothing) if its settings are invalid:
    a broken file must never shorten how long evidence is kept."""
    from aido.config.settings import load_settings
    from aido.errors import AidoError

    config = workspace.config_file
    try:
        return load_settings(config if config.is_file() else None).evidence_retention
    except AidoError as exc:
        _log(workspace, f"not pruning evidence: {config} is invalid: {exc}")
        return None


def serve(root: Path, interval: float) -> int:
    """The reaper's loop. Returns when there is nothing left to reap (or another reaper runs)."""
    from aido.lifecycle.sweep import sweep
    from aido.run.context import Context

    workspace = Workspace(root)
    try:
        lock = os.open(workspace.reaper_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError:
        return 1
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return 0  # another reaper serves this workspace
    try:
        os.ftruncate(lock, 0)
        os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    _log(workspace, f"started (interval {interval:g}s)")
    context = Context(workspace)
    next_sweep = 0.0
    keeper = PoolKeeper(context, workspace)
    scanned = -SCAN_INTERVAL
    next_server_check = 0.0
    pools: list[str] = []
    try:
        while workspace.sandboxes.is_dir():
            if time.monotonic() - scanned >= SCAN_INTERVAL or not pools:
                # Reads every sandbox's record: once a second at most, not at the pools' pace.
                wanting, pools = _wanting(workspace)
                scanned = time.monotonic()
                if not wanting and not pools:
                    break
            if time.monotonic() >= next_sweep:
                try:
                    context.evidence_retention = _retention(workspace)
                    for action in sweep(context, containers=True):
                        _log(workspace, f"{action}")
                except Exception:  # the reaper must outlive any one bad sweep
                    import traceback  # here: every aido run imports this module

                    _log(workspace, "sweep failed: " + traceback.format_exc(limit=3).replace("\n", " | "))
                next_sweep = time.monotonic() + interval
            keeper.keep(pools)
            if pools and time.monotonic() >= next_server_check:
                next_server_check = time.monotonic() + SCAN_INTERVAL
                if os.environ.get("AIDO_SERVER") != "off" and has_pool(workspace):
                    try:
                        ensure_server(workspace)
                    except OSError as exc:
                        _log(workspace, f"could not start the command server: {exc}")
            pause = POOL_CHECK if pools else IDLE_CHECK
            time.sleep(max(0.05 if not pools else 0.0, min(pause, next_sweep - time.monotonic())))
    finally:
        _log(workspace, "exiting: no sandbox with auto-cleanup left")
        os.close(lock)
    return 0


class PoolKeeper:
    """Keeps the warm pools filled (run/warm.py ``keep``), a few times a second; asks the
    engine which idle containers are still alive every POOL_LIVENESS seconds; after a
    failure (engine gone, image removed) leaves that pool alone for POOL_BACKOFF seconds
    and logs it once."""

    def __init__(self, context: Context, workspace: Workspace) -> None:
        self.context, self.workspace = context, workspace
        self.failed: dict[str, float] = {}
        self.seen: dict[str, tuple[tuple[int, ...], bool]] = {}
        self.next_check = 0.0

    def keep(self, pools: list[str]) -> None:
        from aido.run.warm import keep

        now = time.monotonic()
        check = now >= self.next_check
        if check:
            self.next_check = now + POOL_LIVENESS
        for sandbox_id in pools:
            if self.failed.get(sandbox_id, 0.0) > now:
                continue
            seen = _pool_state(self.workspace, sandbox_id)
            if not check and not seen[1] and self.seen.get(sandbox_id) == seen:
                continue  # nothing claimed, nothing changed since the last pass
            self.seen[sandbox_id] = seen
            try:
                for action in keep(self.context, sandbox_id, check=check):
                    _log(self.workspace, f"{action}")
            except Exception as exc:  # one bad pool must not stop the others, nor the reaper
                self.failed[sandbox_id] = now + POOL_BACKOFF
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                _log(self.workspace, f"warm pool of {sandbox_id}: {message}; retrying in {POOL_BACKOFF:g}s")
                _pool_error(self.workspace, sandbox_id, message)
            else:
                _pool_error(self.workspace, sandbox_id, None)


def _pool_state(workspace: Workspace, sandbox_id: str) -> tuple[tuple[int, ...], bool]:
    """(when the pool's directories last changed, whether a run holds a container): a claim
    renames a file, so a pass is needed only when this changes or while runs hold one."""
    from aido.store.pool import CLAIMED, READY, STARTING

    root = workspace.sandbox(sandbox_id).warm
    stamps = []
    for kind in (READY, STARTING, CLAIMED):
        try:
            stamps.append(os.stat(root / kind).st_mtime_ns)
        except OSError:
            stamps.append(0)
    try:
        claimed = any(not n.startswith(".") for n in os.listdir(root / CLAIMED))
    except OSError:
        claimed = False
    return tuple(stamps), claimed


def _pool_error(workspace: Workspace, sandbox_id: str, message: str | None) -> None:
    """What `aido sandbox list` shows about a pool that cannot be filled (None: clear it)."""
    from aido.store.pool import WarmPool

    try:
        WarmPool(workspace.sandbox(sandbox_id).warm).set_error(message)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m aido.lifecycle.reaper WORKSPACE_ROOT", file=sys.stderr)
        return 2
    return serve(Path(args[0]).resolve(), interval_from_env())


if __name__ == "__main__":
    sys.exit(main())
