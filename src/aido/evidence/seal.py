"""A run's seal: a DSSE envelope carrying an in-toto Statement v1, signed with Ed25519.

The Statement's subjects are every file of the run's evidence, the inputs manifest, the
files of ``outputs/`` (digests reused from the run's after-snapshot) and ``events.log``
up to this run; its predicate (``https://aido.dev/attestation/run/v1``) records the
outcome, the sandbox's config and the previous seal, so seals form a second chain in the
order they were made. Standard formats on purpose: securesystemslib, cosign, or openssl
with jq and sha256sum check an envelope without aido (README: "Verifying a bundle").

This module is pure (paths in, bytes out); the run stage that calls it owns the layout
and the events lock (run/seal.py).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://aido.dev/attestation/run/v1"
MAX_RUN_FILES = 1000  # aido writes a handful; more means someone planted them
_PORTABLE_BAD = set(range(0x20)) | {0x7F, ord("\\")}


class Signer(Protocol):
    def sign(self, data: bytes) -> bytes: ...


class HasKeyid(Protocol):
    @property
    def keyid(self) -> str: ...


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def fd_sha256(fd: int) -> str:
    """The SHA-256 of what is left to read on a descriptor, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a regular file, opened without following a link (OSError otherwise)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return fd_sha256(fd)
    finally:
        os.close(fd)


def portable(name: str) -> bool:
    """Whether a name can be a subject that sha256sum and tar name the same way."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(c) in _PORTABLE_BAD for c in name) and "\n" not in name


def subject(name: str, sha256: str, annotations: Mapping[str, Any] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"name": name, "digest": {"sha256": sha256}}
    if annotations:
        item["annotations"] = dict(annotations)
    return item


def run_dir_subjects(
    run_dir: Path, prefix: str, *, skip: str
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every regular file under the run directory as a subject ``<prefix>/<path>``;
    anything else (a link, a fifo, an unreadable file) as unhashed, with why."""
    subjects: list[dict[str, Any]] = []
    unhashed: list[dict[str, str]] = []
    stack = [""]
    seen = 0
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(run_dir / rel if rel else run_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            unhashed.append({"name": f"{prefix}/{rel}", "reason": f"not listed: {exc.strerror}"})
            continue
        for entry in entries:
            seen += 1
            if seen > MAX_RUN_FILES:
                unhashed.append({"name": f"{prefix}/", "reason": f"more than {MAX_RUN_FILES} files"})
                return subjects, unhashed
            path = f"{rel}/{entry.name}" if rel else entry.name
            name = f"{prefix}/{path}"
            if not rel and entry.name == skip:
                continue
            if not portable(name):
                unhashed.append(
                    {"name": name.encode("utf-8", "backslashreplace").decode(), "reason": "odd name"}
                )
                continue
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                stack.append(path)
            elif stat.S_ISREG(mode):
                try:
                    subjects.append(subject(name, file_sha256(run_dir / path)))
                except OSError as exc:
                    unhashed.append({"name": name, "reason": f"unreadable: {exc.strerror}"})
            else:
                unhashed.append({"name": name, "reason": "not a regular file"})
    return sorted(subjects, key=lambda s: s["name"]), unhashed


def output_subjects(
    entries: Mapping[str, Any], changed: Iterable[str], notes: Iterable[str] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Subjects for the files of outputs/ from a snapshot (path → Entry with .kind and
    .sha256), marked ``aido.changed`` when this run added or modified them."""
    touched = set(changed)
    why = {}
    for note in notes:
        path, _, reason = note.partition(": ")
        why[path] = reason
    subjects: list[dict[str, Any]] = []
    unhashed: list[dict[str, str]] = []
    for path in sorted(entries):
        entry = entries[path]
        name = f"outputs/{path}"
        if entry.kind == "dir":
            continue
        if entry.kind != "file":
            unhashed.append({"name": name, "reason": entry.kind})
        elif entry.sha256 is None:
            unhashed.append({"name": name, "reason": why.get(path, "not hashed")})
        elif not portable(name):
            unhashed.append({"name": name, "reason": "odd name (control characters or not UTF-8)"})
        else:
            marks = {"aido.changed": True} if name in touched else None
            subjects.append(subject(name, entry.sha256, marks))
    return subjects, unhashed


def statement(subjects: list[dict[str, Any]], predicate: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def envelope(payload: bytes, key: Signer, keyid: str) -> bytes:
    """The DSSE envelope of ``payload``, as the bytes to store (and to name in events)."""
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    document = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode()}],
    }
    return (json.dumps(document, separators=(",", ":")) + "\n").encode()


def payload_bytes(document: dict[str, Any]) -> bytes:
    # Signed as serialized once; readers take these bytes from the envelope and never re-serialize.
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")
