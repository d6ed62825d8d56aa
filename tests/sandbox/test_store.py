"""The sandbox store (store/store.py) and the one path that closes a run without an
outcome (run/close.py), without an engine: transactions, run-id allocation, closing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from aido import fs
from aido.errors import SandboxNotFound
from aido.run.close import abandon_run, close_run, recover_run
from aido.store.records import SandboxRecord
from aido.store.store import SandboxStore, wants_reaper
from aido.store.workspace import DIRNAME, SUMMARY, Workspace

SID = "abcdefabcdef"


@pytest.fixture
def store(tmp_path: Path) -> SandboxStore:
    (tmp_path / DIRNAME / "sandboxes").mkdir(parents=True)
    workspace = Workspace(tmp_path.resolve())
    paths = workspace.sandbox(SID)
    paths.root.mkdir()
    paths.runs.mkdir()
    record = SandboxRecord(
        id=SID,
        created_at="2026-01-01T00:00:00Z",
        expires_at="2099-01-01T00:00:00Z",
        config={},
        task_user="1000:1000",
    )
    fs.atomic_write_bytes(paths.metadata, record.to_bytes())
    return SandboxStore(workspace)


def test_a_transaction_saves_only_a_changed_record(store: SandboxStore) -> None:
    metadata = store.paths(SID).metadata
    inode = metadata.stat().st_ino
    with store.transaction(SID):
        pass
    assert metadata.stat().st_ino == inode  # not rewritten
    with store.transaction(SID) as record:
        record.expires_at = "2098-01-01T00:00:00Z"
    assert store.load(SID).expires_at == "2098-01-01T00:00:00Z"


def test_a_transaction_that_raises_saves_nothing(store: SandboxStore) -> None:
    with pytest.raises(RuntimeError), store.transaction(SID) as record:
        record.expires_at = "2098-01-01T00:00:00Z"
        raise RuntimeError
    assert store.load(SID).expires_at == "2099-01-01T00:00:00Z"


def test_run_ids_are_allocated_in_order_and_marked_running(store: SandboxStore) -> None:
    taken = []
    for _ in range(3):
        rid, run_dir, lock_fd = store.begin_run(SID, "task.py")
        assert fs.is_locked(run_dir)
        os.close(lock_fd)
        taken.append(rid)
    assert taken == ["run-001", "run-002", "run-003"]
    assert [(r.run_id, r.status) for r in store.load(SID).runs] == [(r, "running") for r in taken]


def test_no_run_starts_in_a_sandbox_being_destroyed(store: SandboxStore) -> None:
    store.paths(SID).destroying.write_text("{}")
    with pytest.raises(SandboxNotFound, match="is being destroyed"):
        store.begin_run(SID, "task.py")
    assert store.load(SID).runs == []


def _plan(store: SandboxStore, **more: object) -> SimpleNamespace:
    return SimpleNamespace(
        record=store.load(SID),
        task=Path("task.py"),
        choice=SimpleNamespace(image="python:3.11-slim"),
        settings=SimpleNamespace(network=False, egress=()),
        widen=SimpleNamespace(network=False, allow_hosts=()),
        **more,
    )


def test_a_failed_stage_closes_its_run_once(store: SandboxStore) -> None:
    rid, run_dir, lock_fd = store.begin_run(SID, "task.py")
    try:
        abandon_run(store, _plan(store), rid, RuntimeError("boom"))  # type: ignore[arg-type]
        abandon_run(store, _plan(store), rid, RuntimeError("again"))  # type: ignore[arg-type]
    finally:
        os.close(lock_fd)
    ref = store.load(SID).run(rid)
    sealed = f"runs/{rid}/attestation.intoto.json"
    assert ref is not None and ref.status == "error" and ref.artifacts == [f"runs/{rid}/{SUMMARY}", sealed]
    assert (run_dir / "attestation.intoto.json").is_file()  # closed once, sealed once
    summary = json.loads((run_dir / SUMMARY).read_text())
    assert (summary["status"], summary["error"], summary["image"]) == ("error", "boom", "python:3.11-slim")
    assert summary["network"] == {"mode": "none"}  # every summary says what the network was
    events = [json.loads(line) for line in store.paths(SID).events.read_text().splitlines()]
    assert [(e["event"], e.get("error")) for e in events] == [("run_completed", "boom"), ("run_sealed", None)]


def test_a_run_whose_process_is_alive_is_not_recovered(store: SandboxStore) -> None:
    rid, _, lock_fd = store.begin_run(SID, "task.py")
    try:
        # Held by this process: a sweep must leave it alone (and never ask the engine).
        assert close_run(store, SID, rid, lambda ref: pytest.fail("closed"), owned=False) is None
    finally:
        os.close(lock_fd)
    ref = store.load(SID).run(rid)
    assert ref is not None and ref.status == "running"


def test_an_orphaned_run_is_recovered_as_interrupted(store: SandboxStore) -> None:
    rid, run_dir, lock_fd = store.begin_run(SID, "task.py")
    os.close(lock_fd)  # its aido process died
    (run_dir / "stdout.log").write_bytes(b"partial")

    class Backend:
        def list_labelled(self, labels: dict[str, str]) -> list[dict[str, str]]:
            return []

    ctx = SimpleNamespace(store=store, backend=Backend(), remove_containers=lambda labels: [])
    assert recover_run(ctx, SID, rid)  # type: ignore[arg-type]
    assert not recover_run(ctx, SID, rid)  # type: ignore[arg-type]
    ref = store.load(SID).run(rid)
    assert ref is not None and ref.status == "interrupted"
    summary = json.loads((run_dir / SUMMARY).read_text())
    assert summary["stop_reason"] == "aido_lost" and summary["completed_at"] is None
    assert summary["output"]["stdout"] == {"path": "stdout.log", "bytes_captured": 7, "complete": False}
    sealed = f"runs/{rid}/attestation.intoto.json"
    assert sorted(ref.artifacts) == [sealed, f"runs/{rid}/stdout.log", f"runs/{rid}/{SUMMARY}"]
    assert (run_dir / "attestation.intoto.json").is_file()


def test_a_failed_allowlisted_run_says_its_proxy_log_was_not_collected(store: SandboxStore) -> None:
    rid, run_dir, lock_fd = store.begin_run(SID, "task.py")
    try:
        plan = _plan(store)
        plan.settings.egress = ("pypi.org",)  # the sandbox's entry, then the run's --allow-host
        plan.widen.allow_hosts = ("*.pythonhosted.org", "pypi.org")
        abandon_run(store, plan, rid, RuntimeError("the proxy did not start"))  # type: ignore[arg-type]
    finally:
        os.close(lock_fd)
    summary = json.loads((run_dir / SUMMARY).read_text())
    assert summary["network"] == {
        "mode": "allowlist",
        "allow": ["pypi.org", "*.pythonhosted.org"],
        "log": None,
        "note": "the run failed before aido collected the proxy's log",
    }


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        (None, {"mode": "none"}),
        (True, {"mode": "full"}),
        (
            {"allow": ["pypi.org"]},
            {
                "mode": "allowlist",
                "allow": ["pypi.org"],
                "log": None,
                "note": "the run ended without aido; the proxy's log was not collected",
            },
        ),
    ],
)
def test_a_recovered_run_says_what_its_network_was(
    store: SandboxStore, network: object, expected: dict[str, object]
) -> None:
    """A sweep knows the run only by its sandbox's stored config: the proxy was removed
    with the run's containers, its log with it."""
    with store.transaction(SID) as record:
        record.config = {"permissions": {"network": network}} if network is not None else {}
    rid, run_dir, lock_fd = store.begin_run(SID, "task.py")
    os.close(lock_fd)  # its aido process died

    class Backend:
        def list_labelled(self, labels: dict[str, str]) -> list[dict[str, str]]:
            return []

    ctx = SimpleNamespace(store=store, backend=Backend(), remove_containers=lambda labels: [])
    assert recover_run(ctx, SID, rid)  # type: ignore[arg-type]
    assert json.loads((run_dir / SUMMARY).read_text())["network"] == expected


def test_wants_reaper_lives_with_the_store() -> None:
    assert wants_reaper({"auto_cleanup": True, "runs": []})
    assert not wants_reaper({"auto_cleanup": False, "runs": []})
    assert wants_reaper({"auto_cleanup": False, "runs": [{"status": "running"}]})
    assert wants_reaper({"auto_cleanup": False}, ["run-001"])  # schema 2: a .running marker
