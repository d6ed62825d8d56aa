"""``aido verify``: the checks of sealed runs, pure over a tree of evidence (a sandbox
directory, or a bundle's members: aido.evidence.tree), its events.log and the keys the
user trusts. What each finding means for the verdict: aido.evidence.attestation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aido.evidence import chaincheck
from aido.evidence.attestation import (
    BAD,
    CANNOT,
    ENVELOPE,
    EVENTS,
    FAIL,
    INFO,
    OK,
    SUMMARY,
    TAMPERED,
    TRUSTED,
    UNTRUSTED,
    WARN,
    Finding,
    Key,
    Report,
    Seal,
    Tree,
    open_seal,
    sha256_hex,
    verdict,
)
from aido.evidence.eventlog import EventLog
from aido.evidence.tree import DIR, FILE, LINK, safe_name

__all__ = ["BAD", "CANNOT", "FAIL", "INFO", "OK", "TAMPERED", "WARN", "Finding", "Verifier", "verdict"]


@dataclass
class Verifier(Report):
    """The checks over one tree. ``bundle``: the tree is an exported bundle (no index, no
    sandbox.json, no other runs, outputs maybe left out); ``outputs_kept``: False for an
    archive (destroying a sandbox deletes outputs/, so a missing output is expected)."""

    tree: Tree
    keys: dict[str, Key]
    sandbox_id: str | None = None  # where the tree is (None: a bundle, which says itself)
    bundle: bool = False
    outputs_kept: bool = True
    signer: Key | None = None  # a bundle's signer.pub: tells an untrusted valid signature from a bad one
    findings: list[Finding] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            data = self.tree.read(EVENTS)
        except OSError:
            data = b""
            if self.tree.kind(EVENTS) is not None:
                self.add(FAIL, "not_regular", EVENTS, "not a regular file")
        self.log = EventLog(data)
        self.sealed = self.log.sealed
        self._seals: dict[str, Seal | None] = {}
        self.covered = 0  # the most events.log lines a trusted seal covers

    # -- the envelope ---------------------------------------------------------------------

    def load_seal(self, run_id: str, *, report: bool = True) -> Seal | None:
        """The run's envelope, parsed and its signature checked (findings only if ``report``)."""
        if run_id in self._seals and not report:
            return self._seals[run_id]
        saved = self.findings
        if not report:
            self.findings = []
        try:
            seal = self._load_seal(run_id)
        finally:
            self.findings = saved
        self._seals[run_id] = seal
        return seal

    def seals(self) -> list[Seal]:
        """The envelopes loaded so far."""
        return [s for s in self._seals.values() if s is not None]

    def envelope_name(self, run_id: str) -> str:
        return ENVELOPE if self.bundle else f"runs/{run_id}/{ENVELOPE}"

    def _load_seal(self, run_id: str) -> Seal | None:
        name = self.envelope_name(run_id)
        try:
            raw = self.tree.read(name)
        except OSError as exc:
            self.add(FAIL, "envelope_unreadable", name, str(exc))
            return None
        seal = open_seal(self, name, raw, run_id, self.keys, self.signer)
        if seal is not None and seal.trust == TRUSTED and isinstance(seal.lines, int):
            self.covered = max(self.covered, seal.lines)
        return seal

    # -- one run ------------------------------------------------------------------------

    def check_run(self, run_id: str, entry: dict[str, Any] | None, config: dict[str, Any] | None) -> None:
        """Every check of one run (SEAL-SPEC; evidence-design.md §3). ``entry`` is its index
        entry and ``config`` the sandbox.json config (None in a bundle)."""
        where = f"runs/{run_id}"
        name = self.envelope_name(run_id)
        kind = self.tree.kind(name)
        if kind is None:
            self._unsealed(run_id, entry)
            return
        if kind != FILE:
            self.add(FAIL, "not_regular", name, f"a {kind}, not a regular file")
            return
        seal = self.load_seal(run_id)
        if seal is None or seal.trust == UNTRUSTED:
            # Nothing an untrusted record claims can be checked against: unverifiable, no more.
            return
        pred = seal.predicate
        if pred.get("runId") != run_id:
            self.add(FAIL, "misplaced", name, "the envelope is another run's", run_id, pred.get("runId"))
        if self.sandbox_id is not None and pred.get("sandboxId") != self.sandbox_id:
            self.add(
                FAIL,
                "misplaced",
                name,
                "the envelope is another sandbox's",
                self.sandbox_id,
                pred.get("sandboxId"),
            )
        names = self._check_subjects(seal)
        self._check_run_dir(seal, where, names)
        self._check_summary(seal, where, names)
        if entry is not None:
            for key, field_name in (("status", "status"), ("exitCode", "exit_code")):
                if entry.get(field_name) != pred.get(key):
                    self.add(
                        FAIL,
                        "index_mismatch",
                        f"{where} (run index)",
                        f"{field_name} differs from the sealed record",
                        pred.get(key),
                        entry.get(field_name),
                    )
        if config is not None and config != pred.get("sandboxConfig"):
            self.add(FAIL, "config_mismatch", "sandbox.json", "its config differs from the sealed record's")
        chaincheck.events_order(self, seal)
        if not self.bundle:
            chaincheck.previous_record(self, seal)

    def _unsealed(self, run_id: str, entry: dict[str, Any] | None) -> None:
        name = self.envelope_name(run_id)
        if any(rid == run_id for _, rid, _ in self.sealed):
            self.add(FAIL, "envelope_missing", name, "deleted: events.log records this run's seal")
        elif entry is not None and entry.get("status") == "running":
            self.add(WARN, "running", f"runs/{run_id}", "still running: it is sealed when it ends")
        elif run_id in self.log.seal_failed:
            self.add(WARN, "seal_failed", f"runs/{run_id}", "aido could not seal this run (events.log)")
        else:
            self.add(
                WARN, "unsealed", f"runs/{run_id}", "not sealed (made by an older aido, or AIDO_SEAL=off)"
            )

    def _check_subjects(self, seal: Seal) -> set[str]:
        names: set[str] = set()
        for subject in seal.subjects:
            name = subject.get("name")
            digest = subject.get("digest")
            want = digest.get("sha256") if isinstance(digest, dict) else None
            if not safe_name(name) or not isinstance(want, str):
                self.add(
                    FAIL, "unsafe_subject", self.envelope_name(seal.run_id), f"subject {name!r} is unsafe"
                )
                continue
            assert isinstance(name, str)
            if name in names:
                self.add(FAIL, "duplicate_subject", name, "listed twice in the sealed record")
                continue
            names.add(name)
            if name == EVENTS:
                chaincheck.events_digest(self, seal, subject, want)
            elif name.startswith("outputs/"):
                self._check_output(seal, name, want)
            else:
                self._check_file(name, want)
        return names

    def _check_file(self, name: str, want: str) -> str | None:
        """The file's sha256 if it matches; findings otherwise."""
        kind = self.tree.kind(name)
        if kind is None:
            self.add(FAIL, "missing", name, "deleted", f"sha256:{want}", None)
            return None
        if kind != FILE:
            self.add(FAIL, "not_regular", name, f"a {kind} where a regular file was sealed")
            return None
        try:
            found = self.tree.sha256(name)
        except OSError as exc:
            self.add(FAIL, "unreadable", name, str(exc))
            return None
        if found != want:
            self.add(FAIL, "digest_mismatch", name, "sha256 mismatch", f"sha256:{want}", f"sha256:{found}")
            return None
        return found

    def _check_output(self, seal: Seal, name: str, want: str) -> None:
        kind = self.tree.kind(name)
        if kind is None and (self.bundle or not self.outputs_kept):
            where = "the bundle" if self.bundle else "the archive (outputs/ is not kept)"
            self.add(INFO, "output_absent", name, f"not in {where}: not checked")
            return
        try:
            found = self.tree.sha256(name) if kind == FILE else None
        except OSError:  # outputs/ is the task's: unreadable is possible, and drift
            found = None
        if found == want:
            return
        explained = not self.bundle and self._explained(seal.run_id, name)
        if explained:
            self.add(INFO, "output_changed_later", name, f"changed after {seal.run_id} by {explained}")
            return
        actual = f"sha256:{found}" if found else (kind or "nothing")
        self.add(FAIL, "output_drift", name, "changed outside any sealed run", f"sha256:{want}", actual)

    def _explained(self, run_id: str, name: str) -> str:
        """Which later event explains a change to an output: a later sealed run that changed
        (or removed) it, or `sandbox clean`. '' if none does."""
        order = self.log.order
        if run_id not in order:
            return ""
        start = self.log.seals_of(run_id)[0][0]
        for number in self.log.cleaned:
            if number > start:
                return f"`aido sandbox clean` (events.log line {number})"
        for later in order[order.index(run_id) + 1 :]:
            seal = self.load_seal(later, report=False)
            if seal is None or seal.trust != TRUSTED:
                continue
            for subject in seal.subjects:
                if subject.get("name") == name and (subject.get("annotations") or {}).get("aido.changed"):
                    return later
            if any(c.get("path") == name for c in self._sealed_changes(seal)):
                return later
        return ""

    def _sealed_changes(self, seal: Seal) -> list[dict[str, Any]]:
        """A sealed run's changes[] from its summary.json, if that matches its seal."""
        summary = f"runs/{seal.run_id}/{SUMMARY}"
        want = next(
            (s.get("digest", {}).get("sha256") for s in seal.subjects if s.get("name") == summary), None
        )
        try:
            data = self.tree.read(summary)
            changes = json.loads(data).get("changes") if sha256_hex(data) == want else None
        except (OSError, ValueError, AttributeError):
            return []
        return [c for c in changes if isinstance(c, dict)] if isinstance(changes, list) else []

    def _check_run_dir(self, seal: Seal, where: str, names: set[str]) -> None:
        unhashed = seal.predicate.get("unhashed")
        skipped = (
            {u.get("name") for u in unhashed if isinstance(u, dict)} if isinstance(unhashed, list) else set()
        )
        keep = set(names)
        if not self.bundle:
            keep.add(f"{where}/{ENVELOPE}")
        if self.tree.kind(where) == LINK:
            self.add(FAIL, "not_regular", where, "a symlink where the run directory was")
            return
        for name, kind in self.tree.walk(where):
            if kind == DIR and any(n.startswith(name + "/") for n in keep):
                continue
            if kind == FILE and name in keep:
                continue
            if name in skipped:
                self.add(WARN, "unhashed", name, "in the run directory but not hashed by the seal")
            elif kind == LINK:
                self.add(FAIL, "symlink", name, "a symlink in the run's evidence")
            elif kind != FILE or name not in names:
                self.add(FAIL, "extra_file", name, f"a {kind} the sealed record does not list")

    def _check_summary(self, seal: Seal, where: str, names: set[str]) -> None:
        name = f"{where}/{SUMMARY}"
        if name not in names or self.tree.kind(name) != FILE:
            return
        try:
            summary = json.loads(self.tree.read(name))
        except (OSError, ValueError):
            return  # its digest check has said what is wrong
        if not isinstance(summary, dict):
            return
        pred = seal.predicate
        for key, field_name in (
            ("sandboxId", "sandbox_id"),
            ("runId", "run_id"),
            ("status", "status"),
            ("exitCode", "exit_code"),
            ("taskSha256", "task_sha256"),
        ):
            if summary.get(field_name) != pred.get(key):
                self.add(
                    FAIL,
                    "summary_mismatch",
                    name,
                    f"{field_name} differs from the sealed record",
                    pred.get(key),
                    summary.get(field_name),
                )

    # -- events.log ---------------------------------------------------------------------

    def check_chain(self) -> None:
        """The chain: broken inside the sealed part is tampering (see chaincheck.chain)."""
        chaincheck.chain(self)
