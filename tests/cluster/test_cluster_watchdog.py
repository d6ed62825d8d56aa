"""A node's run directories: a sweep never takes one that is being set up or run, and
takes every one whose worker is gone (its lock is free); the watchdog cleans up after a
worker that dies mid-run. Real processes and locks, no Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aido.cluster import watchdog
from tests.helpers.cli import wait_for


@pytest.fixture
def node_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(watchdog.NODE_DIR_ENV, str(tmp_path))
    return tmp_path


def test_a_new_directory_is_locked_before_a_sweep_can_see_it(node_dir: Path) -> None:
    base, lock = watchdog.new_base()
    assert base.name.startswith(watchdog.PREFIX) and base.parent == node_dir.resolve()
    hidden = node_dir / f".{watchdog.PREFIX}half-made"  # a directory still being set up
    hidden.mkdir()
    watchdog.sweep_stale()
    assert base.is_dir() and hidden.is_dir(), "a live (locked) or hidden directory is never swept"
    os.close(lock)
    watchdog.sweep_stale()
    assert not base.exists(), "a directory nobody holds is stale"
    assert hidden.is_dir()


def test_a_directory_gone_during_the_sweep_is_skipped(
    node_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (node_dir / f"{watchdog.PREFIX}vanishing").mkdir()
    real = watchdog.fs.hold_lock

    def vanish(path: Path, *, wait: bool = True) -> int | None:
        path.rmdir()  # removed by another task's sweep just before this one locks it
        return real(path, wait=wait)

    monkeypatch.setattr(watchdog.fs, "hold_lock", vanish)
    watchdog.sweep_stale()  # no FileNotFoundError


@pytest.mark.docker
def test_the_watchdog_cleans_up_after_a_worker_killed_mid_run(node_dir: Path) -> None:
    """A stand-in for a Ray worker: it makes a run directory, tells its watchdog, then is
    SIGKILLed. The watchdog (another session) removes the directory."""
    worker = textwrap.dedent(
        """
        import sys, time
        from aido.cluster.watchdog import new_base, watchdog
        base, lock = new_base()
        (base / "evidence").write_text("x")
        watchdog().watch(base)
        print(base, flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, watchdog.NODE_DIR_ENV: str(node_dir)}
    proc = subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    base = Path(proc.stdout.readline().strip())
    assert base.is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not base.exists(), timeout=30, what="the watchdog to remove the dead run's directory")


def test_finished_directories_are_removed_once_released(node_dir: Path) -> None:
    base, lock = watchdog.new_base()
    guard = watchdog.watchdog()
    guard.watch(base)
    guard.remove(base)
    assert base.is_dir(), "not while this process still holds it"
    os.close(lock)
    wait_for(lambda: not base.exists(), timeout=30, what="the watchdog to remove the finished directory")
