"""Signing keys (evidence/keys.py): per user, safe on disk, standard ids, CI override."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aido.errors import SigningKeyError
from aido.evidence import keys


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("AIDO_SIGNING_KEY", raising=False)
    return tmp_path / "config" / "aido" / "keys"


def test_first_use_makes_a_private_key_only_its_owner_can_read(config: Path) -> None:
    signer = keys.signing_key()
    key_file = config / "signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert keys.public_key_from_pem((config / "signing.pub").read_text()) == keys.PublicKey(
        signer.public.raw, "key"
    )
    assert keys.signing_key().public.keyid == signer.public.keyid  # made once, then reused


def test_the_key_is_standard_pkcs8_and_its_id_is_securesystemslibs(config: Path) -> None:
    from securesystemslib.signer import SSlibKey

    signer = keys.signing_key()
    loaded = serialization.load_pem_private_key((config / "signing.key").read_bytes(), password=None)
    public_pem = loaded.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public_pem.decode() == signer.public.pem()
    assert SSlibKey.from_crypto(loaded.public_key()).keyid == signer.public.keyid  # type: ignore[arg-type]
    signature = signer.sign(b"data")
    assert signer.public.verify(signature, b"data") and not signer.public.verify(signature, b"dat4")


def test_a_key_others_can_read_is_refused(config: Path) -> None:
    keys.signing_key()
    os.chmod(config / "signing.key", 0o644)
    with pytest.raises(SigningKeyError, match="can be read by others"):
        keys.signing_key()


def test_a_linked_key_is_refused(config: Path, tmp_path: Path) -> None:
    keys.signing_key()
    real = tmp_path / "elsewhere.key"
    os.replace(config / "signing.key", real)
    os.symlink(real, config / "signing.key")
    with pytest.raises(SigningKeyError, match="cannot read"):
        keys.signing_key()


def test_aido_signing_key_as_a_path_or_as_text(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = keys.generate_pem()
    path = tmp_path / "ci.key"
    path.write_text(pem)
    path.chmod(0o600)
    monkeypatch.setenv("AIDO_SIGNING_KEY", str(path))
    by_path = keys.signing_key()
    monkeypatch.setenv("AIDO_SIGNING_KEY", pem)
    assert keys.signing_key().public.keyid == by_path.public.keyid
    assert not (config / "signing.key").exists()  # the user's key is not made
    assert by_path.public.keyid in keys.trusted_keys()
    monkeypatch.setenv("AIDO_SIGNING_KEY", str(tmp_path / "missing.key"))
    with pytest.raises(SigningKeyError, match="does not exist"):
        keys.signing_key()


def test_only_ed25519_keys(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    monkeypatch.setenv("AIDO_SIGNING_KEY", pem)
    with pytest.raises(SigningKeyError, match="not an Ed25519 private key"):
        keys.signing_key()
    public = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519 public key"):
        keys.public_key_from_pem(public.decode())
    with pytest.raises(SigningKeyError, match="not a PEM"):
        keys.public_key_from_pem("hello")


def test_trusted_keys_are_yours_and_those_you_trusted(config: Path, tmp_path: Path) -> None:
    own = keys.signing_key().public
    colleague = tmp_path / "colleague.pub"
    other = keys.PublicKey(bytes(range(32)))
    colleague.write_text(other.pem())
    assert set(keys.trusted_keys()) == {own.keyid}
    key, kept, new = keys.trust(colleague)
    assert new and key.keyid == other.keyid and kept.parent == config / "trusted"
    assert keys.trust(colleague)[2] is False
    assert set(keys.trusted_keys()) == {own.keyid, other.keyid}
    (config / "trusted" / "junk.pub").write_text("not a key")  # skipped, not fatal
    assert set(keys.trusted_keys()) == {own.keyid, other.keyid}
