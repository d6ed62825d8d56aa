"""Tampering with sealed evidence, one way per test, each with the exact exit code of
`aido verify` (0 verified, 1 tampered, 4 unverifiable). Every test tampers with its own
copy of a workspace holding four sealed runs (tests/evidence/conftest.py)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.evidence.conftest import Sealed
from tests.helpers.cli import Aido, Result, spawn, wait_for

pytestmark = pytest.mark.docker


def verify(sealed: Sealed, *args: str, code: int) -> Result:
    result = sealed.aido("verify", *args)
    assert result.code == code, f"exit {result.code}, expected {code}:\n{result.stdout}\n{result.stderr}"
    return result


def findings(sealed: Sealed, *args: str, code: int) -> list[dict[str, str]]:
    result = sealed.aido("verify", "--json", *args)
    assert result.code == code, result.stdout + result.stderr
    document = result.json
    assert document["exit_code"] == code
    assert document["verdict"] == {0: "verified", 1: "tampered", 4: "unverifiable"}[code]
    return list(document["findings"])


def codes(found: list[dict[str, str]], level: str = "FAIL") -> set[tuple[str, str]]:
    return {(f["code"], f["path"]) for f in found if f["level"] == level}


def events_lines(sealed: Sealed) -> list[bytes]:
    return (sealed.root / "events.log").read_bytes().splitlines(keepends=True)


def write_events(sealed: Sealed, lines: list[bytes]) -> None:
    (sealed.root / "events.log").write_bytes(b"".join(lines))


def envelope(sealed: Sealed, run: str) -> dict[str, object]:
    return json.loads((sealed.run_dir(run) / "attestation.intoto.json").read_bytes())


def statement(env: dict[str, object]) -> dict[str, object]:
    return json.loads(base64.b64decode(str(env["payload"])))


def line_of(sealed: Sealed, event: str, run: str) -> int:
    """0-based index of the line recording ``event`` for ``run``."""
    for index, line in enumerate(events_lines(sealed)):
        entry = json.loads(line)
        if entry.get("event") == event and entry.get("run_id") == run:
            return index
    raise AssertionError(f"no {event} for {run}")


# -- clean ---------------------------------------------------------------------------------


def test_the_sealed_workspace_verifies_and_a_later_run_explains_its_output_change(sealed: Sealed) -> None:
    found = findings(sealed, code=0)
    assert not codes(found) and not codes(found, "WARN")
    # run-001 sealed outputs/a.txt as "one"; run-003 rewrote it: explained, so INFO only.
    assert ("output_changed_later", "outputs/a.txt") in codes(found, "INFO")
    human = verify(sealed, code=0)
    assert "verified: sandbox" in human.stderr
    verify(sealed, "run-002", code=0)
    verify(sealed, "3", code=0)
    verify(sealed, sealed.sandbox_id, code=0)
    verify(sealed, "--strict", code=0)
    verify(sealed, "run-009", code=3)
    verify(sealed, "missing.tar.gz", code=3)
    verify(sealed, "not/a/run", code=2)


# -- the run's files ------------------------------------------------------------------------


def test_a_byte_flipped_in_a_log_fails(sealed: Sealed) -> None:
    log = sealed.run_dir("run-002") / "stdout.log"
    data = bytearray(log.read_bytes())
    data[0] ^= 0x01
    log.write_bytes(bytes(data))
    result = verify(sealed, code=1)
    assert "FAIL runs/run-002/stdout.log: sha256 mismatch (expected sha256:" in result.stdout
    assert "TAMPERED" in result.stderr
    verify(sealed, "run-002", code=1)
    verify(sealed, "run-001", code=0)  # the other runs are untouched


def test_a_truncated_log_fails(sealed: Sealed) -> None:
    log = sealed.run_dir("run-001") / "stderr.log"
    assert log.stat().st_size > 2
    os.truncate(log, 2)
    assert ("digest_mismatch", "runs/run-001/stderr.log") in codes(findings(sealed, "run-001", code=1))


def test_a_deleted_log_fails(sealed: Sealed) -> None:
    (sealed.run_dir("run-001") / "stdout.log").unlink()
    assert ("missing", "runs/run-001/stdout.log") in codes(findings(sealed, code=1))


def test_summary_edited_fails(sealed: Sealed) -> None:
    path = sealed.run_dir("run-002") / "summary.json"
    summary = json.loads(path.read_text())
    summary["exit_code"] = 1
    path.write_text(json.dumps(summary, indent=2))
    found = codes(findings(sealed, code=1))
    assert ("digest_mismatch", "runs/run-002/summary.json") in found
    assert ("summary_mismatch", "runs/run-002/summary.json") in found


def test_summary_only_reindented_fails(sealed: Sealed) -> None:
    path = sealed.run_dir("run-002") / "summary.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))
    assert codes(findings(sealed, code=1)) == {("digest_mismatch", "runs/run-002/summary.json")}


def test_task_file_replaced_fails(sealed: Sealed) -> None:
    (sealed.run_dir("run-004") / "task" / "four.py").write_text('print("not what ran")\n')
    assert ("digest_mismatch", "runs/run-004/task/four.py") in codes(findings(sealed, code=1))


def test_extra_file_planted_in_a_run_dir_fails(sealed: Sealed) -> None:
    (sealed.run_dir("run-003") / "notes.txt").write_text("planted\n")
    (sealed.run_dir("run-003") / "task" / "helper.py").write_text("planted\n")
    found = codes(findings(sealed, "run-003", code=1))
    assert found == {("extra_file", "runs/run-003/notes.txt"), ("extra_file", "runs/run-003/task/helper.py")}


def test_an_evidence_file_swapped_for_a_symlink_fails(sealed: Sealed) -> None:
    log = sealed.run_dir("run-002") / "stdout.log"
    copy = sealed.project / "stdout-copy.log"
    shutil.copyfile(log, copy)  # same bytes: only following the link would make it pass
    log.unlink()
    log.symlink_to(copy)
    found = codes(findings(sealed, code=1))
    assert ("not_regular", "runs/run-002/stdout.log") in found
    assert ("symlink", "runs/run-002/stdout.log") in found


def test_an_output_changed_by_hand_fails(sealed: Sealed) -> None:
    (sealed.root / "outputs" / "b.txt").write_text("edited by hand\n")
    found = findings(sealed, code=1)
    assert ("output_drift", "outputs/b.txt") in codes(found)
    assert "changed outside any sealed run" in json.dumps(found)


# -- the envelope ---------------------------------------------------------------------------


def test_envelope_payload_edited_fails(sealed: Sealed) -> None:
    env = envelope(sealed, "run-002")
    stmt = statement(env)
    stmt["predicate"]["status"] = "failed"  # type: ignore[index]
    env["payload"] = base64.b64encode(json.dumps(stmt, separators=(",", ":")).encode()).decode()
    (sealed.run_dir("run-002") / "attestation.intoto.json").write_text(json.dumps(env))
    found = codes(findings(sealed, "run-002", code=1))
    assert ("bad_signature", "runs/run-002/attestation.intoto.json") in found


def _foreign_envelope(payload: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from aido.evidence.keys import keyid_of
    from aido.evidence.seal import envelope as make_envelope

    key = Ed25519PrivateKey.generate()
    return make_envelope(payload, key, keyid_of(key.public_key().public_bytes_raw()))


def test_resigned_with_a_foreign_key_is_unverifiable(sealed: Sealed) -> None:
    path = sealed.run_dir("run-004") / "attestation.intoto.json"
    path.write_bytes(_foreign_envelope(base64.b64decode(str(envelope(sealed, "run-004")["payload"]))))
    found = findings(sealed, "run-004", code=4)
    assert [f["code"] for f in found if f["level"] != "INFO"] == ["untrusted_key"]
    verify(sealed, "run-004", "--strict", code=1)


def test_resigning_a_middle_run_is_caught_by_the_next_seal(sealed: Sealed) -> None:
    path = sealed.run_dir("run-002") / "attestation.intoto.json"
    path.write_bytes(_foreign_envelope(base64.b64decode(str(envelope(sealed, "run-002")["payload"]))))
    found = codes(findings(sealed, code=1))
    assert ("previous_record", "runs/run-002/attestation.intoto.json") in found


def test_one_runs_envelope_copied_onto_another_fails(sealed: Sealed) -> None:
    shutil.copyfile(
        sealed.run_dir("run-002") / "attestation.intoto.json",
        sealed.run_dir("run-003") / "attestation.intoto.json",
    )
    found = codes(findings(sealed, "run-003", code=1))
    assert ("misplaced", "runs/run-003/attestation.intoto.json") in found


def test_a_deleted_envelope_fails(sealed: Sealed) -> None:
    (sealed.run_dir("run-002") / "attestation.intoto.json").unlink()
    found = codes(findings(sealed, code=1))
    assert ("envelope_missing", "runs/run-002/attestation.intoto.json") in found


# -- events.log -----------------------------------------------------------------------------


def test_a_middle_events_line_edited_fails(sealed: Sealed) -> None:
    lines = events_lines(sealed)
    index = line_of(sealed, "run_completed", "run-002")
    lines[index] = lines[index].replace(b'"status":"success"', b'"status":"failed"')
    write_events(sealed, lines)
    found = findings(sealed, code=1)
    assert ("chain", f"events.log line {index + 2}") in codes(found)
    assert ("events_mismatch", "events.log") in codes(found)


def test_a_middle_events_line_deleted_fails(sealed: Sealed) -> None:
    lines = events_lines(sealed)
    del lines[line_of(sealed, "run_started", "run-003")]
    write_events(sealed, lines)
    found = codes(findings(sealed, code=1))
    assert any(code == "chain" for code, _ in found)


def test_two_events_lines_swapped_fails(sealed: Sealed) -> None:
    lines = events_lines(sealed)
    index = line_of(sealed, "run_started", "run-002")
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    write_events(sealed, lines)
    found = codes(findings(sealed, code=1))
    assert ("chain", f"events.log line {index + 1}") in found


def test_events_truncated_fails(sealed: Sealed) -> None:
    lines = events_lines(sealed)
    write_events(sealed, lines[: line_of(sealed, "run_sealed", "run-002")])
    found = codes(findings(sealed, code=1))
    assert ("events_truncated", "events.log") in found


def test_a_consistently_rewritten_chain_fails(sealed: Sealed) -> None:
    """Edit a line and recompute every seq/prev after it: the chain is whole again, but
    the seals signed the old lines' digest."""
    import hashlib

    lines = [line.rstrip(b"\n") for line in events_lines(sealed)]
    index = line_of(sealed, "run_completed", "run-001")
    entries = [json.loads(line) for line in lines]
    entries[index]["exit_code"] = 3
    previous: bytes | None = lines[index - 1] if index else None
    for number in range(index, len(entries)):
        entry = {k: v for k, v in entries[number].items() if k not in ("seq", "prev")}
        entry["seq"] = number + 1
        entry["prev"] = "sha256:" + hashlib.sha256(previous).hexdigest() if previous is not None else None
        lines[number] = json.dumps(entry, separators=(",", ":")).encode()
        previous = lines[number]
    write_events(sealed, [line + b"\n" for line in lines])
    found = findings(sealed, code=1)
    assert not [f for f in found if f["code"] == "chain"]  # the chain itself is consistent
    assert ("events_mismatch", "events.log") in codes(found)


def test_a_forged_line_appended_after_the_last_seal_warns(sealed: Sealed) -> None:
    lines = events_lines(sealed)
    forged = {"timestamp": "2026-01-01T00:00:00Z", "event": "run_completed", "run_id": "run-009"}
    write_events(sealed, [*lines, json.dumps(forged).encode() + b"\n"])
    found = findings(sealed, code=0)
    assert ("unsealed_tail", "events.log") in codes(found, "WARN")
    verify(sealed, "--strict", code=1)


# -- the sandbox ----------------------------------------------------------------------------


def test_a_middle_run_deleted_fails(sealed: Sealed) -> None:
    shutil.rmtree(sealed.run_dir("run-002"))
    found = codes(findings(sealed, code=1))
    assert ("run_missing", "runs/run-002") in found
    assert ("envelope_missing", "runs/run-002/attestation.intoto.json") in found


def test_sandbox_config_edited_fails(sealed: Sealed) -> None:
    path = sealed.root / "sandbox.json"
    data = json.loads(path.read_text())
    data["config"].setdefault("permissions", {})["network"] = True
    path.write_text(json.dumps(data, indent=2))
    assert ("config_mismatch", "sandbox.json") in codes(findings(sealed, code=1))


def test_run_index_status_edited_fails(sealed: Sealed) -> None:
    index = sealed.root / "runs.jsonl"
    if index.exists():  # the append-only index: the last line for a run wins
        entries = [json.loads(line) for line in index.read_text().splitlines()]
        entry = next(e for e in reversed(entries) if e["run_id"] == "run-002")
        with index.open("a") as handle:
            handle.write(json.dumps({**entry, "status": "failed"}) + "\n")
    else:
        path = sealed.root / "sandbox.json"
        data = json.loads(path.read_text())
        next(r for r in data["runs"] if r["run_id"] == "run-002")["status"] = "failed"
        path.write_text(json.dumps(data, indent=2))
    assert ("index_mismatch", "runs/run-002 (run index)") in codes(findings(sealed, code=1))


# -- bundles with unsafe members -------------------------------------------------------------


def _bundle_with(sealed: Sealed, tmp_path: Path, extra: tarfile.TarInfo, data: bytes = b"") -> Path:
    good = tmp_path / "good.tar.gz"
    assert sealed.aido("export", "4", "-o", str(good)).code == 0
    bad = tmp_path / "bad" / "bad.tar.gz"
    bad.parent.mkdir()
    import io

    with tarfile.open(good) as source, tarfile.open(bad, "w:gz") as target:
        for member in source:
            target.addfile(member, source.extractfile(member))
        target.addfile(extra, io.BytesIO(data) if data else None)
    return bad


def _listing(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_a_bundle_with_a_dotdot_member_fails_and_writes_nothing(sealed: Sealed, tmp_path: Path) -> None:
    member = tarfile.TarInfo("../evil.txt")
    member.size = 5
    bad = _bundle_with(sealed, tmp_path, member, b"evil\n")
    before, project_before = _listing(tmp_path), _listing(sealed.project)
    found = findings(sealed, str(bad), code=1)
    assert ("unsafe_member", "bad.tar.gz:'../evil.txt'") in codes(found)
    assert _listing(tmp_path) == before and _listing(sealed.project) == project_before


def test_a_bundle_with_a_link_member_fails(sealed: Sealed, tmp_path: Path) -> None:
    member = tarfile.TarInfo("runs/run-004/link")
    member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    bad = _bundle_with(sealed, tmp_path, member)
    before = _listing(tmp_path)
    found = codes(findings(sealed, str(bad), code=1))
    assert ("link_member", "bad.tar.gz:'runs/run-004/link'") in found
    assert _listing(tmp_path) == before


# -- real runs: concurrency and a crash --------------------------------------------------------


def test_twenty_concurrent_runs_verify(aido: Aido, sandbox: str, project: Path) -> None:
    (project / "t.py").write_text('print("hi")\n')
    processes = [spawn(project, "run", "t.py") for _ in range(20)]
    for process in processes:
        process.communicate(timeout=300)
        assert process.returncode == 0
    result = aido("verify", "--json")
    assert result.code == 0, result.stdout
    assert len(result.json["runs"]) == 20
    assert not [f for f in result.json["findings"] if f["level"] != "INFO"]


def test_kill_9_before_sealing_then_recovery_seals_it(aido: Aido, sandbox: str, project: Path) -> None:
    (project / "slow.py").write_text('import time\nprint("started", flush=True)\ntime.sleep(30)\n')
    process = spawn(project, "run", "slow.py", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = project / ".aido" / "sandboxes" / sandbox
    wait_for(
        lambda: (
            b"started"
            in (
                (root / "runs" / "run-001" / "stdout.log").read_bytes()
                if (root / "runs" / "run-001" / "stdout.log").exists()
                else b""
            )
        ),
        timeout=60,
        what="the task to start",
    )
    running = aido("verify", "--json")
    assert running.code == 4, running.stdout  # a run in progress is not sealed yet
    assert ("running", "runs/run-001") in codes(running.json["findings"], "WARN")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert not (root / "runs" / "run-001" / "attestation.intoto.json").exists()
    time.sleep(0.2)
    result = aido("verify", "--json")  # its sweep recovers the run, and the recovery seals it
    assert result.code == 0, result.stdout + result.stderr
    stmt = json.loads(
        base64.b64decode(
            json.loads((root / "runs" / "run-001" / "attestation.intoto.json").read_bytes())["payload"]
        )
    )
    assert stmt["predicate"]["sealedBy"] == "recovery"
    assert stmt["predicate"]["status"] == "interrupted"


def test_an_unsealed_run_is_unverifiable(aido: Aido, sandbox: str, project: Path) -> None:
    (project / "t.py").write_text('print("hi")\n')
    assert aido("run", "t.py", env={"AIDO_SEAL": "off"}).code == 0
    result = aido("verify", "--json")
    assert result.code == 4, result.stdout
    assert next(f["code"] for f in result.json["findings"] if f["level"] == "WARN") == "unsealed"
    assert aido("verify", "--strict").code == 1


# -- a destroyed sandbox's archive ------------------------------------------------------------


def test_a_destroyed_sandboxs_archive_verifies_without_its_outputs(sealed: Sealed, tmp_path: Path) -> None:
    # Extending and destroying the sandbox append lines after its last seal: by design, and
    # they change no evidence, so they are noted, not warned about (--strict still passes).
    assert sealed.aido("sandbox", "extend", "--ttl", "2h").code == 0
    verify(sealed, "--strict", code=0)
    assert sealed.aido("sandbox", "destroy", sealed.sandbox_id, "--yes").code == 0
    found = findings(sealed, sealed.sandbox_id, code=0)
    assert ("output_absent", "outputs/b.txt") in codes(found, "INFO")  # outputs/ is not archived
    assert ("unsealed_tail", "events.log") in codes(found, "INFO")
    verify(sealed, sealed.sandbox_id, "--strict", code=0)
    verify(sealed, "2", "--sandbox", sealed.sandbox_id, code=0)
    bundle = tmp_path / "run.tar.gz"
    assert sealed.aido("export", "2", "--sandbox", sealed.sandbox_id, "-o", str(bundle)).code == 1
    assert (
        sealed.aido("export", "2", "--sandbox", sealed.sandbox_id, "--no-outputs", "-o", str(bundle)).code
        == 0
    )
    archived = sealed.project / ".aido" / "archive" / sealed.sandbox_id
    (archived / "runs" / "run-002" / "stdout.log").write_text("edited in the archive\n")
    verify(sealed, sealed.sandbox_id, code=1)


def test_outputs_emptied_by_sandbox_clean_are_explained(sealed: Sealed) -> None:
    assert sealed.aido("sandbox", "clean", "--outputs").code == 0
    found = findings(sealed, code=0)
    assert ("output_changed_later", "outputs/b.txt") in codes(found, "INFO")
    # The explaining event came after the last seal: nobody's record yet, hence a warning.
    assert ("unsealed_tail", "events.log") in codes(found, "WARN")
    verify(sealed, "--strict", code=1)
