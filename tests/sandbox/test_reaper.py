"""The TTL reaper's in-process pieces (lifecycle/reaper.py): interval parsing, when it has
work, its single-instance lock. The reaper against a real engine is in
tests/e2e/test_e2e_lifecycle.py."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from aido import fs
from aido.lifecycle import reaper
from aido.store.workspace import DIRNAME, Workspace

SID = "abcdefabcdef"
OTHER = "0123456789ab"


def _workspace(root: Path) -> Workspace:
    (root / DIRNAME / "sandboxes").mkdir(parents=True)
    return Workspace(root.resolve())


def _sandbox(workspace: Workspace, sandbox_id: str, **fields: object) -> Path:
    paths = workspace.sandbox(sandbox_id)
    paths.root.mkdir()
    paths.metadata.write_text(json.dumps({"id": sandbox_id, "runs": [], **fields}))
    return paths.metadata


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 60.0),
        ("", 60.0),
        ("1", 1.0),
        ("0.1", 0.1),
        ("2.5", 2.5),
        ("86400", 86400.0),
        ("0.05", 60.0),  # below the floor: a busy loop is never what was meant
        ("0", 60.0),
        ("-1", 60.0),
        ("86401", 60.0),
        ("soon", 60.0),
        ("nan", 60.0),
    ],
)
def test_interval_from_env(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: float) -> None:
    if raw is None:
        monkeypatch.delenv(reaper.INTERVAL_ENV, raising=False)
    else:
        monkeypatch.setenv(reaper.INTERVAL_ENV, raw)
    assert reaper.interval_from_env() == expected


def testhas_work_only_for_auto_cleanup_or_running_runs(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    assert not reaper.has_work(workspace)
    metadata = _sandbox(workspace, SID, auto_cleanup=False)
    assert not reaper.has_work(workspace)
    # A run marked running may need recovering even in a sandbox that never expires.
    metadata.write_text(json.dumps({"id": SID, "auto_cleanup": False, "runs": [{"status": "running"}]}))
    assert reaper.has_work(workspace)
    metadata.write_text(json.dumps({"id": SID, "auto_cleanup": False, "runs": [{"status": "success"}]}))
    assert not reaper.has_work(workspace)
    _sandbox(workspace, OTHER)  # auto_cleanup defaults to true
    assert reaper.has_work(workspace)


def testhas_work_skips_unreadable_metadata(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    _sandbox(workspace, SID)
    workspace.sandbox(SID).metadata.write_text("{not json")
    assert not reaper.has_work(workspace)
    _sandbox(workspace, OTHER)
    assert reaper.has_work(workspace)


def test_serve_returns_at_once_when_there_is_nothing_to_reap(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    _sandbox(workspace, SID, auto_cleanup=False)
    started = time.monotonic()
    assert reaper.serve(workspace.root, 3600) == 0
    assert time.monotonic() - started < 2
    assert not reaper.is_running(workspace)  # the lock went with it
    log = (workspace.dir / "reaper.log").read_text()
    assert f"[{os.getpid()}] started (interval 3600s)" in log
    assert "exiting" in log


def test_serve_exits_0_when_another_reaper_holds_the_lock(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    _sandbox(workspace, SID)  # there is work, so only the lock can make it return
    workspace.reaper_lock.touch()
    held = fs.hold_lock(workspace.reaper_lock)
    assert held is not None
    try:
        assert reaper.is_running(workspace)
        assert reaper.ensure_running(workspace) is None  # starts nothing
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(reaper.serve(workspace.root, 3600)))
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert result == [0]
    finally:
        os.close(held)
    assert not reaper.is_running(workspace)
    assert not (workspace.dir / "reaper.log").exists()  # it never started serving


def test_serve_writes_its_pid_into_the_lock_file(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    assert reaper.serve(workspace.root, 3600) == 0
    assert workspace.reaper_lock.read_text() == f"{os.getpid()}\n"


def test_main_needs_exactly_one_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert reaper.main([]) == 2
    assert reaper.main(["a", "b"]) == 2
    assert "usage: python -m aido.lifecycle.reaper WORKSPACE_ROOT" in capsys.readouterr().err
