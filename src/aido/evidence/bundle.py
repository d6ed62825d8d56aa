"""``aido export`` bundles: writing one, and reading one back for ``aido verify BUNDLE``.

A bundle mirrors the sandbox directory, so every subject name of the seal is the path
of a member and ``sha256sum -c`` checks them from the bundle's root::

    attestation.intoto.json   the run's original envelope, byte for byte (never re-signed)
    signer.pub                the signing key's public key (SPKI PEM); NOT trusted by itself
    events.log                exactly lines 1..N of events.log, the prefix the seal covers
    inputs.json               when the seal lists it
    runs/run-NNN/...          the run's evidence files (task/, logs, summary.json, ...)
    outputs/...               the outputs the seal lists (left out with --no-outputs)

Reproducible: members sorted by name, regular files only, mode 0644, owner 0:0 with no
names, mtime the run's finishedOn (or 0), gzip header mtime 0: the same run exported twice
gives the same bytes. Reading never extracts anything: the tar is streamed member by
member, unsafe names, links, devices and duplicates are findings, and only the small
files the checks parse are kept in memory (the rest only as a sha256).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tarfile
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from aido.evidence.attestation import ENVELOPE, EVENTS, FAIL, UNTRUSTED, Finding, Key, Seal
from aido.evidence.tree import FILE, LINK, MAX_READ, OTHER, DirTree, Member, MemTree, safe_name
from aido.evidence.verify import Verifier

SIGNER = "signer.pub"
BUNDLE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_bundle_name(name: str) -> bool:
    return name.endswith(BUNDLE_SUFFIXES)


def _kept_whole(name: str) -> bool:
    """The members the checks parse (everything else is only hashed)."""
    return name in (ENVELOPE, SIGNER, EVENTS) or name.endswith("/summary.json")


class _Hashing(io.RawIOBase):
    """A file read through once by tarfile, hashed on the way."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        return data


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _mtime(seal: Seal) -> int:
    value = seal.predicate.get("finishedOn")
    try:
        return max(0, int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()))
    except ValueError:
        return 0


def bundle_members(seal: Seal, *, outputs: bool) -> list[tuple[str, str]]:
    """(name, sha256 the seal gives it) of every subject the bundle carries."""
    members = []
    for subject in seal.subjects:
        name = subject.get("name")
        digest = subject.get("digest")
        if not isinstance(name, str) or not isinstance(digest, dict) or name == EVENTS:
            continue
        if name.startswith("outputs/") and not outputs:
            continue
        members.append((name, str(digest.get("sha256"))))
    return members


def write_bundle(
    tree: DirTree, envelope: bytes, seal: Seal, signer_pem: bytes, out: Path, *, outputs: bool
) -> list[str]:
    """Write the bundle to ``out`` (a temporary name renamed at the end: never half a
    bundle); returns the member names. A file that changes while it is copied (its sha256
    no longer the sealed one) aborts the export."""
    lines = seal.lines if isinstance(seal.lines, int) else 0
    events = b"".join(line + b"\n" for line in tree.read(EVENTS).split(b"\n")[:lines])
    small: dict[str, bytes] = {ENVELOPE: envelope, SIGNER: signer_pem, EVENTS: events}
    files = dict(bundle_members(seal, outputs=outputs))
    names = sorted([*small, *files])
    mtime = _mtime(seal)
    temp = out.parent / f".{out.name}.{os.urandom(4).hex()}.partial"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as raw:
            zipped = out.name.endswith((".tar.gz", ".tgz"))
            sink: Any = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if zipped else raw
            with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name in names:
                    if name in small:
                        tar.addfile(_info(name, len(small[name]), mtime), io.BytesIO(small[name]))
                        continue
                    with tree.open(name) as source:
                        reader = _Hashing(source)
                        tar.addfile(_info(name, os.fstat(source.fileno()).st_size, mtime), reader)
                    if reader.digest.hexdigest() != files[name]:
                        raise OSError(f"{name} changed while it was exported")
            if zipped:
                sink.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.rename(temp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return names


def read_bundle(path: Path) -> tuple[MemTree, list[Finding]]:
    """The bundle's members, streamed (nothing is extracted), and what is wrong with its
    layout: unsafe or duplicate names, links, devices, an unreadable archive."""
    tree, findings = MemTree(), []
    where = path.name

    def fail(code: str, name: str, message: str) -> None:
        findings.append(Finding(FAIL, code, name, message))

    try:
        with open(path, "rb") as raw:
            zipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            with tarfile.open(fileobj=raw, mode="r|gz" if zipped else "r|") as tar:
                for member in tar:
                    # `tar -czf b.tgz .` names members ./x: the same names, harmlessly spelt.
                    name = member.name.removeprefix("./")
                    if name in (".", ""):
                        continue
                    shown = f"{where}:{name!r}"
                    if not safe_name(name):
                        fail("unsafe_member", shown, "an absolute or escaping member name (refused)")
                    elif name in tree.members:
                        fail("duplicate_member", shown, "the bundle holds this name twice")
                    elif member.isdir():
                        continue
                    elif not member.isreg():
                        kind = "a link" if member.issym() or member.islnk() else "a special file"
                        fail(
                            "link_member" if kind == "a link" else "special_member",
                            shown,
                            f"{kind} (refused)",
                        )
                        tree.members[name] = Member(LINK if kind == "a link" else OTHER)
                    else:
                        tree.members[name] = _member(tar, member, keep=_kept_whole(name))
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        fail("bundle_invalid", where, f"not a readable tar archive: {exc}")
    return tree, findings


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, *, keep: bool) -> Member:
    handle = tar.extractfile(member)
    digest, kept = hashlib.sha256(), bytearray()
    if handle is not None:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            if keep and len(kept) <= MAX_READ:
                kept += chunk
    data = bytes(kept) if keep and len(kept) <= MAX_READ else None
    return Member(FILE, digest.hexdigest(), member.size, data)


def statement_run(tree: MemTree) -> Any:
    """The run id the bundle's envelope names (unchecked; the checks follow)."""
    import base64
    import json

    try:
        doc = json.loads(tree.read(ENVELOPE))
        return json.loads(base64.b64decode(doc["payload"]))["predicate"]["runId"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_bundle(
    path: Path, keys: dict[str, Key], load_key: Callable[[bytes], Key]
) -> tuple[Verifier, str | None]:
    """Every check of ``aido verify BUNDLE``, over the members in memory: the run's checks
    against the bundle's own events.log (exactly the sealed prefix), and nothing else in
    the bundle. ``load_key`` reads signer.pub, which only tells a valid signature by an
    untrusted key (unverifiable) from a broken one (tampered)."""
    tree, findings = read_bundle(path)
    signer = None
    if tree.kind(SIGNER) == FILE:
        with contextlib.suppress(Exception):  # a broken signer.pub only loses the hint
            signer = load_key(tree.read(SIGNER))
    verifier = Verifier(tree, keys, bundle=True, signer=signer)
    verifier.findings[:0] = findings
    if any(f.code == "bundle_invalid" for f in findings):
        return verifier, None
    run_id = statement_run(tree)
    if tree.kind(ENVELOPE) is None:
        verifier.add(FAIL, "envelope_missing", ENVELOPE, "the bundle has no attestation.intoto.json")
        return verifier, None
    if not isinstance(run_id, str) or not safe_name(run_id) or "/" in run_id:
        verifier.load_seal("?")  # says why the envelope is unusable
        if not verifier.findings:
            verifier.add(FAIL, "statement_invalid", ENVELOPE, "the statement names no run")
        return verifier, None
    verifier.check_run(run_id, None, None)
    seal = verifier.load_seal(run_id, report=False)
    if seal is not None and seal.trust != UNTRUSTED:
        listed = {s.get("name") for s in seal.subjects} | {ENVELOPE, SIGNER}
        for name in sorted(tree.members):
            if name not in listed and not name.startswith(f"runs/{run_id}/"):  # those: check_run
                verifier.add(FAIL, "extra_file", name, "a member the sealed record does not list")
        verifier.check_chain()
    return verifier, run_id
