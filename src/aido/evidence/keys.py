"""Ed25519 keys that sign and check run records.

One key per user, never per workspace: a key copied along with a project would name no
one. It lives in ``${XDG_CONFIG_HOME:-~/.config}/aido/keys/`` (the home of the *effective*
user, so ``sudo aido`` never leaves root-owned files in someone's home), is created on
first use with O_EXCL, mode 0600 in a 0700 directory, and is refused if anyone else can
read it. ``AIDO_SIGNING_KEY`` (a PEM file's path, or the PEM text) replaces it, for CI.

Trusted keys: your own, the signer in ``AIDO_SIGNING_KEY``, and the public keys you
trusted with ``aido key trust`` (``keys/trusted/*.pub``). Never a key that came inside a
bundle or a workspace: whoever edits the record could edit that key too.

``cryptography`` costs ~20 ms to import, so it is imported inside the functions that
sign or check, and only its Ed25519 module: the fixed DER wrappers of Ed25519 keys are
handled here rather than importing ``serialization`` (+25 ms) for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any

from aido.errors import SigningKeyError
from aido.fs import atomic_write_bytes
from aido.values import dataclass

ENV_KEY = "AIDO_SIGNING_KEY"
# PKCS#8 and SPKI encodings of an Ed25519 key are a fixed prefix and 32 raw bytes (RFC 8410).
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
PRIVATE_PEM = "PRIVATE KEY"
PUBLIC_PEM = "PUBLIC KEY"


def key_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME")
    if config and os.path.isabs(config):
        return Path(config) / "aido" / "keys"
    home = pwd.getpwuid(os.geteuid()).pw_dir
    return Path(home) / ".config" / "aido" / "keys"


def keyid_of(raw_public: bytes) -> str:
    """securesystemslib's keyid for an Ed25519 key, so its Envelope.verify matches ours."""
    key = {"keytype": "ed25519", "keyval": {"public": raw_public.hex()}, "scheme": "ed25519"}
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _pem(label: str, der: bytes) -> str:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _der(text: str, label: str, source: str) -> bytes:
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    start = text.find(begin)
    stop = text.find(end, start + 1)
    if start < 0 or stop < 0:
        raise SigningKeyError(
            f"{source} is not a PEM {label.lower()}", hint="expected an Ed25519 key in PEM form"
        )
    try:
        return base64.b64decode("".join(text[start + len(begin) : stop].split()), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"{source}: the PEM body is not base64") from None


@dataclass(frozen=True)
class PublicKey:
    raw: bytes  # the 32 bytes of the Ed25519 public key
    source: str = ""

    @property
    def keyid(self) -> str:
        return keyid_of(self.raw)

    def pem(self) -> str:
        return _pem(PUBLIC_PEM, SPKI_PREFIX + self.raw)

    def verify(self, signature: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


def public_key_from_pem(text: str, source: str = "key") -> PublicKey:
    der = _der(text, PUBLIC_PEM, source)
    if len(der) != len(SPKI_PREFIX) + 32 or not der.startswith(SPKI_PREFIX):
        raise SigningKeyError(
            f"{source} is not an Ed25519 public key", hint="aido signs with Ed25519 keys only"
        )
    return PublicKey(der[len(SPKI_PREFIX) :], source)


@dataclass(frozen=True)
class SigningKey:
    seed: bytes
    public: PublicKey
    source: str

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(data)


def _signing_from_pem(text: str, source: str) -> SigningKey:
    der = _der(text, PRIVATE_PEM, source)
    if len(der) != len(PKCS8_PREFIX) + 32 or not der.startswith(PKCS8_PREFIX):
        raise SigningKeyError(
            f"{source} is not an Ed25519 private key", hint="aido signs with Ed25519 keys only"
        )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = der[len(PKCS8_PREFIX) :]
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return SigningKey(seed, PublicKey(public, source), source)


def _read_private(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SigningKeyError(f"the signing key {path} is not a regular file")
        if st.st_mode & 0o077:
            raise SigningKeyError(
                f"the signing key {path} can be read by others (mode {stat.S_IMODE(st.st_mode):o})",
                hint=f"chmod 600 {path}, and make a new key if others may have read it",
            )
        return handle.read(64 << 10).decode("ascii", "replace")


def generate_pem() -> str:
    """A new Ed25519 private key as PKCS#8 PEM."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return _pem(PRIVATE_PEM, PKCS8_PREFIX + seed)


def _create_user_key(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    pem = generate_pem()
    try:
        fd = os.open(directory / "signing.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return  # another aido process made it first: use theirs
    with os.fdopen(fd, "w") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    public = _signing_from_pem(pem, "new key").public
    atomic_write_bytes(directory / "signing.pub", public.pem().encode())


def signing_key(*, create: bool = True) -> SigningKey:
    """The key that seals runs: ``AIDO_SIGNING_KEY``, else the user's (made on first use)."""
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        if env.startswith("-----BEGIN"):
            return _signing_from_pem(env, ENV_KEY)
        try:
            return _signing_from_pem(_read_private(Path(env)), env)
        except FileNotFoundError:
            raise SigningKeyError(f"{ENV_KEY} names {env}, which does not exist") from None
    path = key_dir() / "signing.key"
    try:
        return _signing_from_pem(_read_private(path), str(path))
    except FileNotFoundError:
        if not create:
            raise SigningKeyError(
                f"no signing key yet ({path})", hint="it is made by the first sealed run"
            ) from None
    _create_user_key(path.parent)
    return _signing_from_pem(_read_private(path), str(path))


def _own_public() -> PublicKey | None:
    try:
        return signing_key(create=False).public
    except SigningKeyError:
        return None


def trusted_dir() -> Path:
    return key_dir() / "trusted"


def trusted_keys(extra: tuple[Path, ...] | list[Path] = ()) -> dict[str, PublicKey]:
    """keyid → key for every key whose signature aido accepts in this call."""
    keys: dict[str, PublicKey] = {}
    own = _own_public()
    if own is not None:
        keys[own.keyid] = own
    folder = trusted_dir()
    try:
        names = sorted(p for p in folder.iterdir() if p.suffix == ".pub")
    except OSError:
        names = []
    for path in [*names, *extra]:
        try:
            key = public_key_from_pem(path.read_text(encoding="ascii", errors="replace"), str(path))
        except (OSError, SigningKeyError):
            if path in extra:
                raise
            continue
        keys[key.keyid] = key
    return keys


def trust(path: Path) -> tuple[PublicKey, Path, bool]:
    """Add the public key in a PEM file to the trusted keys: (key, where it is kept, whether
    it is new)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise SigningKeyError(f"cannot read {path}: {exc.strerror}") from None
    return trust_pem(text, str(path))


def trust_pem(text: str, source: str = "key") -> tuple[PublicKey, Path, bool]:
    """Add a public key given as PEM text (a cluster node's, fetched by `aido cluster
    trust`) to the trusted keys: (key, where it is kept, whether it is new)."""
    key = public_key_from_pem(text, source)
    folder = trusted_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / f"{key.keyid[:16]}.pub"
    if target.exists():
        return key, target, False
    atomic_write_bytes(target, key.pem().encode())
    return key, target, True


def describe(key: PublicKey) -> dict[str, Any]:
    return {"keyid": key.keyid, "source": key.source, "public_key": key.pem()}
