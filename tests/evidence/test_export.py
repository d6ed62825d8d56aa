"""`aido export`: a reproducible bundle that `aido verify BUNDLE` checks without the
workspace (against trusted keys only), refused for a run that does not verify, and an
envelope that securesystemslib, the reference DSSE implementation, accepts as is."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from tests.evidence.conftest import Sealed
from tests.helpers.cli import run_aido

pytestmark = pytest.mark.docker


def export(sealed: Sealed, out: Path, *args: str, code: int = 0) -> None:
    result = sealed.aido("export", *args, "-o", str(out))
    assert result.code == code, result.stdout + result.stderr


def test_a_bundle_holds_exactly_the_sealed_files_and_is_reproducible(sealed: Sealed, tmp_path: Path) -> None:
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    export(sealed, first, "run-003")
    result = sealed.aido("export", "3", "-o", str(second), "--json")
    assert result.code == 0 and result.json["run_id"] == "run-003"
    assert first.read_bytes() == second.read_bytes()
    assert result.json["sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        events = tar.extractfile("events.log").read()  # type: ignore[union-attr]
        envelope = tar.extractfile("attestation.intoto.json").read()  # type: ignore[union-attr]
    assert names == sorted(names)
    assert all(m.isreg() and m.mode == 0o644 and m.uid == 0 and m.gid == 0 and not m.uname for m in members)
    assert set(names) == {
        "attestation.intoto.json",
        "signer.pub",
        "events.log",
        "outputs/a.txt",
        "outputs/b.txt",
        "runs/run-003/stdout.log",
        "runs/run-003/stderr.log",
        "runs/run-003/summary.json",
        "runs/run-003/changes.diff",
        "runs/run-003/task/three.py",
    }
    assert envelope == (sealed.run_dir("run-003") / "attestation.intoto.json").read_bytes()  # never re-signed
    # events.log: exactly the lines the seal covers, which end with run-003's run_completed.
    assert json.loads(events.splitlines()[-1])["event"] == "run_completed"
    assert (sealed.root / "events.log").read_bytes().startswith(events)
    assert not any("secrets" in n for n in names)


def test_a_bundle_verifies_without_the_workspace_only_with_a_trusted_key(
    sealed: Sealed, tmp_path: Path, signing_keys: Path
) -> None:
    bundle = tmp_path / "run.tar.gz"
    export(sealed, bundle, "4")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run_aido("verify", str(bundle), cwd=elsewhere).code == 0  # our own key is trusted
    stranger = {"XDG_CONFIG_HOME": str(tmp_path / "stranger")}
    result = run_aido("verify", "--json", str(bundle), cwd=elsewhere, env=stranger)
    assert result.code == 4, result.stdout
    assert "aido key trust signer.pub" in result.json["error"]["hint"]
    assert run_aido("verify", "--strict", str(bundle), cwd=elsewhere, env=stranger).code == 1
    key = signing_keys / "signing.pub"
    assert run_aido("verify", "--key", str(key), str(bundle), cwd=elsewhere, env=stranger).code == 0


def test_a_tampered_bundle_fails_even_with_its_own_signer(sealed: Sealed, tmp_path: Path) -> None:
    bundle, bad = tmp_path / "run.tar.gz", tmp_path / "bad.tar"
    export(sealed, bundle, "2", "--no-outputs")
    with tarfile.open(bundle) as source, tarfile.open(bad, "w") as target:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "runs/run-002/stdout.log":
                data = data.replace(b"second", b"SECOND")
            import io

            target.addfile(member, io.BytesIO(data))
    result = sealed.aido("verify", str(bad))
    assert result.code == 1
    assert "FAIL runs/run-002/stdout.log: sha256 mismatch" in result.stdout


def test_a_run_that_does_not_verify_is_not_exported(sealed: Sealed, tmp_path: Path) -> None:
    (sealed.run_dir("run-002") / "stdout.log").write_text("rewritten\n")
    out = tmp_path / "out" / "run.tar.gz"
    out.parent.mkdir()
    result = sealed.aido("export", "2", "-o", str(out))
    assert result.code == 1
    assert "FAIL runs/run-002/stdout.log" in result.stdout
    assert "not exported" in result.stderr
    assert list(out.parent.iterdir()) == []  # not even a temporary file


def test_drifted_outputs_are_refused_unless_left_out(sealed: Sealed, tmp_path: Path) -> None:
    out = tmp_path / "run.tar.gz"
    # run-001 sealed outputs/a.txt as "one"; run-003 changed it since.
    result = sealed.aido("export", "1", "-o", str(out))
    assert result.code == 1
    assert "--no-outputs" in result.stderr
    assert not out.exists()
    export(sealed, out, "1", "--no-outputs")
    with tarfile.open(out) as tar:
        assert not [n for n in tar.getnames() if n.startswith("outputs/")]
    assert sealed.aido("verify", str(out)).code == 0


def test_export_usage_errors(sealed: Sealed, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    assert sealed.aido("export", "2", "-o", str(tmp_path / "run.zip")).code == 2
    assert sealed.aido("export", "2", "-o", str(tmp_path / "missing" / "run.tar.gz")).code == 2
    assert sealed.aido("export", "9", "-o", str(tmp_path / "run.tar.gz")).code == 3
    assert list(tmp_path.iterdir()) == []


def test_securesystemslib_verifies_the_exported_envelope(sealed: Sealed, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    bundle = tmp_path / "run.tar.gz"
    export(sealed, bundle, "4")
    with tarfile.open(bundle) as tar:
        document = json.load(tar.extractfile("attestation.intoto.json"))  # type: ignore[arg-type]
        pem = tar.extractfile("signer.pub").read()  # type: ignore[union-attr]
    keyid = document["signatures"][0]["keyid"]
    key = SSlibKey.from_crypto(load_pem_public_key(pem))
    assert key.keyid == keyid  # aido's keyid is securesystemslib's default
    # from_dict rewrites the signatures it is given: each call gets its own copy.
    accepted = Envelope.from_dict(json.loads(json.dumps(document))).verify([key], 1)
    assert list(accepted) == [keyid]
    forged = json.loads(json.dumps(document))
    forged["payload"] = document["payload"][:-8] + "AAAAAAA="
    with pytest.raises(VerificationError):
        Envelope.from_dict(forged).verify([key], 1)
