"""What ``aido verify`` reports and reads: Findings and the verdict they make, and a run's
envelope opened and its signatures checked against the trusted keys (SEAL-SPEC).

The verdict: any FAIL is "tampered" (exit 1); else anything that cannot be verified (an
unsealed or running run, a signature only by an untrusted key, an unknown predicate) is
"unverifiable" (exit 4); else "verified" (0). ``--strict`` turns WARN and unverifiable
into failures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, Protocol

from aido.evidence.seal import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, pae
from aido.values import dataclass

ENVELOPE = "attestation.intoto.json"
EVENTS = "events.log"
SUMMARY = "summary.json"
FAIL, WARN, INFO = "FAIL", "WARN", "INFO"
# Findings that make a record unverifiable rather than tampered (exit 4).
UNVERIFIABLE = frozenset({"unsealed", "running", "seal_failed", "untrusted_key", "unknown_predicate"})
OK, TAMPERED, CANNOT = 0, 1, 4
TRUSTED, UNTRUSTED, BAD = "trusted", "untrusted", "bad"


class Key(Protocol):
    @property
    def keyid(self) -> str: ...

    def verify(self, signature: bytes, data: bytes) -> bool: ...


class Tree(Protocol):
    """Evidence by name (aido.evidence.tree: a directory, or a bundle's members)."""

    def kind(self, name: str) -> str | None: ...
    def read(self, name: str, limit: int = ...) -> bytes: ...
    def sha256(self, name: str) -> str: ...
    def walk(self, top: str) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class Finding:
    level: str
    code: str
    path: str
    message: str
    expected: str | None = None
    actual: str | None = None

    def line(self) -> str:
        text = f"{self.level} {self.path}: {self.message}"
        if self.expected is not None or self.actual is not None:
            text += f" (expected {_short(self.expected)}, found {_short(self.actual)})"
        return text

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


def _short(value: str | None) -> str:
    """A digest as its first 8 hex digits (enough to tell two apart on a terminal)."""
    if value is None:
        return "nothing"
    hexpart = value.removeprefix("sha256:")
    if len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart):
        return value[: len(value) - 64 + 8] + "…"
    return value if len(value) <= 80 else value[:77] + "…"


def verdict(findings: list[Finding], *, strict: bool = False) -> int:
    if any(f.level == FAIL for f in findings):
        return TAMPERED
    cannot = any(f.code in UNVERIFIABLE for f in findings)
    if strict and (cannot or any(f.level == WARN for f in findings)):
        return TAMPERED
    return CANNOT if cannot else OK


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Report:
    """Findings, each once."""

    findings: list[Finding]

    def __init__(self) -> None:
        self.findings = []

    def add(
        self, level: str, code: str, path: str, message: str, expected: Any = None, actual: Any = None
    ) -> None:
        found = Finding(
            level,
            code,
            path,
            message,
            None if expected is None else str(expected),
            None if actual is None else str(actual),
        )
        if found not in self.findings:  # e.g. sandbox.json's config, compared with every run's seal
            self.findings.append(found)


@dataclass
class Seal:
    """One run's envelope, opened; ``trust`` says whether a trusted key signed it."""

    run_id: str
    sha256: str  # of the envelope file's bytes
    trust: str  # TRUSTED, UNTRUSTED (by a key not trusted here) or BAD (does not verify)
    statement: dict[str, Any]
    keyid: str = ""  # the trusted key whose signature verified

    @property
    def predicate(self) -> dict[str, Any]:
        value = self.statement.get("predicate")
        return value if isinstance(value, dict) else {}

    @property
    def lines(self) -> object:
        """How many events.log lines the seal covers (as the predicate says)."""
        events = self.predicate.get("events")
        return events.get("lines") if isinstance(events, dict) else None

    @property
    def subjects(self) -> list[dict[str, Any]]:
        value = self.statement.get("subject")
        return [s for s in value if isinstance(s, dict)] if isinstance(value, list) else []


def open_seal(
    report: Report, name: str, raw: bytes, run_id: str, keys: dict[str, Key], signer: Key | None
) -> Seal | None:
    """The envelope ``raw`` (stored at ``name``) opened, with its findings; None when there
    is no statement of ours to check (malformed, or an unknown predicate)."""
    try:
        doc = json.loads(raw)
        payload_type = doc["payloadType"]
        body = base64.b64decode(doc["payload"], validate=True)
        signatures = doc["signatures"]
        if not isinstance(payload_type, str) or not isinstance(signatures, list):
            raise TypeError("payloadType or signatures has the wrong type")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        report.add(FAIL, "envelope_invalid", name, f"not a DSSE envelope: {exc}")
        return None
    if payload_type != PAYLOAD_TYPE:
        report.add(FAIL, "payload_type", name, "not an in-toto payload", PAYLOAD_TYPE, payload_type)
        return None
    trust, keyid = _signatures(report, name, pae(payload_type, body), signatures, keys, signer)
    try:
        statement = json.loads(body)
        if not isinstance(statement, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        report.add(FAIL, "statement_invalid", name, f"the payload is not a JSON statement: {exc}")
        return None
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        report.add(
            WARN,
            "unknown_predicate",
            name,
            "a statement or predicate type this aido does not know",
            f"{STATEMENT_TYPE} {PREDICATE_TYPE}",
            f"{statement.get('_type')} {statement.get('predicateType')}",
        )
        return None
    return Seal(run_id, sha256_hex(raw), trust, statement, keyid)


def _signatures(
    report: Report, name: str, message: bytes, signatures: list[Any], keys: dict[str, Key], signer: Key | None
) -> tuple[str, str]:
    """(TRUSTED, keyid) when a trusted key's signature verifies; else UNTRUSTED (only keys
    not trusted here, whose signatures verify as far as can be told) or BAD."""
    bad, untrusted = [], []
    for entry in signatures:
        try:
            keyid, sig = str(entry["keyid"]), base64.b64decode(entry["sig"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            bad.append("?")
            continue
        key = keys.get(keyid)
        if key is not None:
            if key.verify(sig, message):
                return TRUSTED, keyid
            bad.append(keyid)
        elif signer is not None and signer.keyid == keyid and not signer.verify(sig, message):
            bad.append(keyid)  # a bundle's signer.pub tells a broken signature from an untrusted one
        else:
            untrusted.append(keyid)
    if bad or not untrusted:
        report.add(
            FAIL,
            "bad_signature",
            name,
            "the signature does not verify: the payload or the signature was changed",
            "a valid signature by a trusted key",
            f"key {bad[0][:16]}" if bad else "no signature",
        )
        return BAD, ""
    report.add(
        WARN,
        "untrusted_key",
        name,
        f"signed by key {untrusted[0][:16]}, which is not trusted here; trust it with "
        "`aido key trust signer.pub` (or give --key PEM) if you know whose it is",
        "a trusted key",
        untrusted[0],
    )
    return UNTRUSTED, ""
