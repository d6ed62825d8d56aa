"""Every way a run closes leaves a seal (run/seal.py), with a scripted backend (no engine):
the envelope is standard DSSE that securesystemslib verifies, its subjects are the files
on disk, and seals chain in the order they were made."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

import aido.run.seal as sealing
from aido import SandboxManager, Workspace
from aido.errors import RuntimeUnavailable
from aido.evidence.events import chain_problems, line_hash
from aido.evidence.keys import signing_key
from tests.helpers.fake_backend import FakeBackend, Script, Step
from tests.helpers.files import write
from tests.helpers.sandbox import events


@pytest.fixture(autouse=True)
def fresh_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/aido-fast-tests.sock")
    # The key is cached per process; each test starts with its own.
    monkeypatch.setattr(sealing, "_key", None)
    monkeypatch.setattr(sealing, "_key_error", None)
    monkeypatch.setattr(sealing, "_warming", None)


def _manager(project: Path, script: Script) -> tuple[SandboxManager, str, Path]:
    manager = SandboxManager(Workspace.find_or_create(project), backend=FakeBackend(script))
    sandbox_id = manager.create(spec_file=None, start=project).id
    return manager, sandbox_id, write(project / "task.py", "print('hello')\n")


def _statement(envelope_path: Path) -> dict[str, Any]:
    document = json.loads(envelope_path.read_bytes())
    payload = json.loads(base64.b64decode(document["payload"]))
    assert isinstance(payload, dict)
    return payload


def test_a_run_is_sealed_in_a_standard_envelope(tmp_path: Path) -> None:
    step = Step(stdout=b"hello\n", files={"/outputs/result.txt": b"42\n"})
    manager, sandbox_id, task = _manager(tmp_path, Script(default=step))
    result = manager.run(task, [], sandbox_id=sandbox_id)
    envelope_path = result.evidence_dir / "attestation.intoto.json"
    pem = signing_key().public.pem().encode()
    key = SSlibKey.from_crypto(load_pem_public_key(pem))  # type: ignore[arg-type]
    Envelope.from_dict(json.loads(envelope_path.read_bytes())).verify([key], 1)  # raises if not
    statement = _statement(envelope_path)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://aido.dev/attestation/run/v1"
    root = manager.workspace.sandbox(sandbox_id).root
    names = {s["name"]: s for s in statement["subject"]}
    assert {"runs/run-001/summary.json", "runs/run-001/stdout.log", "runs/run-001/task/task.py"} <= set(names)
    assert names["outputs/result.txt"]["annotations"] == {"aido.changed": True}
    for name, item in names.items():
        if name != "events.log":
            assert hashlib.sha256((root / name).read_bytes()).hexdigest() == item["digest"]["sha256"], name
    lines = (root / "events.log").read_bytes().splitlines(keepends=True)
    upto = names["events.log"]["annotations"]["lines"]
    assert hashlib.sha256(b"".join(lines[:upto])).hexdigest() == names["events.log"]["digest"]["sha256"]
    predicate = statement["predicate"]
    assert predicate["runId"] == "run-001" and predicate["status"] == "success" and predicate["exitCode"] == 0
    assert predicate["sealedBy"] == "run" and predicate["previousRecord"] is None
    assert predicate["events"] == {"lines": upto, "lastLine": line_hash(lines[upto - 1].rstrip(b"\n"))}
    sealed = [e for e in events(root / "events.log") if e["event"] == "run_sealed"]
    assert sealed[0]["record"] == "sha256:" + hashlib.sha256(envelope_path.read_bytes()).hexdigest()
    assert "runs/run-001/attestation.intoto.json" in result.summary["artifacts"]


def test_seals_chain_in_the_order_they_were_made(tmp_path: Path) -> None:
    manager, sandbox_id, task = _manager(tmp_path, Script(default=Step(exit_code=3)))
    first = manager.run(task, [], sandbox_id=sandbox_id)
    second = manager.run(task, [], sandbox_id=sandbox_id)
    predicate = _statement(second.evidence_dir / "attestation.intoto.json")["predicate"]
    digest = hashlib.sha256((first.evidence_dir / "attestation.intoto.json").read_bytes()).hexdigest()
    assert predicate["previousRecord"] == {"runId": "run-001", "sha256": digest}
    assert predicate["status"] == "failed" and predicate["exitCode"] == 3
    root = manager.workspace.sandbox(sandbox_id).root
    assert chain_problems((root / "events.log").read_bytes()) == []


def test_a_run_whose_stage_failed_is_sealed_too(tmp_path: Path) -> None:
    step = Step(stdout=b"before\n", raises=RuntimeUnavailable("engine went away", hint="restart"))
    manager, sandbox_id, task = _manager(tmp_path, Script(default=step))
    with pytest.raises(RuntimeUnavailable):
        manager.run(task, [], sandbox_id=sandbox_id)
    run_dir = manager.workspace.sandbox(sandbox_id).run_dir("run-001")
    predicate = _statement(run_dir / "attestation.intoto.json")["predicate"]
    assert predicate["status"] == "error" and predicate["sealedBy"] == "close"


def test_a_run_that_cannot_be_sealed_keeps_its_evidence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager, sandbox_id, task = _manager(tmp_path, Script(default=Step(stdout=b"kept\n")))
    keys = tmp_path / "cfg" / "aido" / "keys"
    keys.mkdir(parents=True)
    (keys / "signing.key").write_text("not a key")
    os.chmod(keys / "signing.key", 0o600)
    result = manager.run(task, [], sandbox_id=sandbox_id)
    assert result.status == "success"
    assert (result.evidence_dir / "stdout.log").read_text() == "kept\n"
    assert not (result.evidence_dir / "attestation.intoto.json").exists()
    root = manager.workspace.sandbox(sandbox_id).root
    failed = [e for e in events(root / "events.log") if e["event"] == "seal_failed"]
    assert failed and "not a PEM private key" in failed[0]["error"]
    assert "run-001 was not sealed" in caplog.text


def test_aido_seal_off_is_a_baseline_without_seals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDO_SEAL", "off")
    manager, sandbox_id, task = _manager(tmp_path, Script(default=Step()))
    result = manager.run(task, [], sandbox_id=sandbox_id)
    assert not (result.evidence_dir / "attestation.intoto.json").exists()
    assert not any(a.endswith("attestation.intoto.json") for a in result.summary["artifacts"])
    assert not (tmp_path / "cfg" / "aido" / "keys").exists()  # no key made either


def test_a_run_closed_but_not_sealed_is_sealed_by_the_next_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aido killed between closing a run's record and sealing it: the note it left makes
    the next command's sweep seal the run (sealedBy: recovery)."""
    manager, sandbox_id, task = _manager(tmp_path, Script(default=Step(stdout=b"hi\n")))
    with monkeypatch.context() as patched:
        patched.setattr("aido.run.collect.seal_run", lambda *a, **k: None)  # died right here
        result = manager.run(task, [], sandbox_id=sandbox_id)
    paths = manager.workspace.sandbox(sandbox_id)
    assert not (result.evidence_dir / "attestation.intoto.json").exists()
    assert (paths.seal_pending / "run-001").exists()
    from aido.lifecycle.sweep import sweep

    actions = sweep(manager)
    assert {"action": "sealed_run", "sandbox_id": sandbox_id, "run_id": "run-001"} in actions
    predicate = _statement(result.evidence_dir / "attestation.intoto.json")["predicate"]
    assert predicate["sealedBy"] == "recovery" and predicate["status"] == "success"
    assert not (paths.seal_pending / "run-001").exists()
    assert sweep(manager) == []  # once


def test_a_sealed_run_leaves_no_note(tmp_path: Path) -> None:
    manager, sandbox_id, task = _manager(tmp_path, Script(default=Step()))
    manager.run(task, [], sandbox_id=sandbox_id)
    assert list(manager.workspace.sandbox(sandbox_id).seal_pending.iterdir()) == []


def test_a_run_whose_record_failed_to_close_after_its_summary_agrees_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run got as far as its own summary (its outcome decided), then closing its record
    failed (a full disk, or aido killed right there): the record is closed from that summary,
    not as a guessed error, so the index, the summary and the seal agree and it verifies."""
    from aido.store.store import SandboxStore

    manager, sandbox_id, task = _manager(tmp_path, Script(default=Step(stdout=b"done\n")))
    real = SandboxStore.close_run
    calls = []

    def failing_once(self: SandboxStore, sid: str, ref: Any) -> None:
        calls.append(ref.run_id)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real(self, sid, ref)

    monkeypatch.setattr(SandboxStore, "close_run", failing_once)
    with pytest.raises(OSError):
        manager.run(task, [], sandbox_id=sandbox_id)
    run_dir = manager.workspace.sandbox(sandbox_id).run_dir("run-001")
    summary = json.loads((run_dir / "summary.json").read_bytes())
    ref = manager.load(sandbox_id).run("run-001")
    predicate = _statement(run_dir / "attestation.intoto.json")["predicate"]
    assert summary["status"] == "success"
    assert ref is not None and (ref.status, ref.exit_code) == ("success", 0)
    assert (predicate["status"], predicate["exitCode"], predicate["sealedBy"]) == ("success", 0, "close")
    assert ref.artifacts == summary["artifacts"]
    from aido.evidence.keys import trusted_keys

    verified = manager.verify(sandbox_id, None, keys=trusted_keys(), strict=True)
    assert verified.exit_code == 0, [str(f) for f in verified.findings]
