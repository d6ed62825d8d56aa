"""``aido verify`` and ``aido export`` over a workspace: which sandbox and run are meant,
where their evidence is (live or archived), what the run index and sandbox.json say; the
checks themselves are pure (aido.evidence.verify, aido.evidence.bundle).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido.errors import AidoError, RunNotFound, UsageError
from aido.evidence.tree import DirTree
from aido.evidence.verify import FAIL, INFO, OK, Finding, Verifier, verdict
from aido.exit_codes import ExitCode
from aido.lifecycle.sandboxes import resolve_id
from aido.store.ids import check_run_id, run_number
from aido.values import dataclass, field

if TYPE_CHECKING:
    from aido.run.context import Context
    from aido.store.records import SandboxRecord
    from aido.store.workspace import SandboxPaths


class BundleNotFound(AidoError):
    code = "bundle_not_found"
    exit_code = ExitCode.SANDBOX_STATE  # 3: not found, as a sandbox or run would be


@dataclass
class Verified:
    """What a verify found: the findings, the exit code they make, and what was checked."""

    findings: list[Finding]
    exit_code: int
    sandbox_id: str | None = None
    runs: list[str] = field(default_factory=list)
    bundle: str | None = None
    signers: list[str] = field(default_factory=list)  # keyids whose signatures verified

    @property
    def verdict(self) -> str:
        return {0: "verified", 1: "tampered", 4: "unverifiable"}.get(self.exit_code, "error")


def trusted(extra: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The keys whose signatures count: the user's trusted keys and the ``--key`` files."""
    from aido.evidence.keys import trusted_keys

    try:
        return dict(trusted_keys(extra))
    except OSError as exc:
        raise UsageError(
            f"cannot read the key {exc.filename}: {exc.strerror}", hint="--key takes a public key file (PEM)"
        ) from None


def _run_entry(record: SandboxRecord, run_id: str) -> dict[str, Any] | None:
    """The run index's entry for a run, as a plain dict (the one place verify reads it)."""
    ref = record.run(run_id)
    return asdict(ref) if ref is not None else None


def _run_ids(record: SandboxRecord, verifier: Verifier, paths: SandboxPaths) -> list[str]:
    """Every run the sandbox knows of: indexed, with a directory, or sealed in events.log."""
    found = {r.run_id for r in record.runs} | {rid for _, rid, _ in verifier.sealed if run_number(rid)}
    try:
        found |= {p.name for p in paths.runs.iterdir() if run_number(p.name) is not None}
    except OSError:
        pass
    return sorted(found, key=lambda r: run_number(r) or 0)


def _open(
    ctx: Context, sandbox_id: str | None, keys: dict[str, Any]
) -> tuple[SandboxRecord, Verifier, SandboxPaths]:
    record, paths = ctx.store.load_evidence(resolve_id(ctx, sandbox_id))
    archived = paths.root == ctx.workspace.archived(record.id).root
    verifier = Verifier(DirTree(paths.root), keys, sandbox_id=record.id, outputs_kept=not archived)
    return record, verifier, paths


def verify(
    ctx: Context,
    sandbox_id: str | None,
    run: str | None,
    *,
    keys: dict[str, Any],
    strict: bool = False,
) -> Verified:
    """Check one run, or (``run`` None) the whole sandbox: every run sealed, numbered
    without gaps, each seal recorded once in events.log, the chain intact."""
    record, verifier, paths = _open(ctx, sandbox_id, keys)
    if run is not None:
        rid = check_run_id(run)
        known = _run_ids(record, verifier, paths)
        if rid not in known:
            raise RunNotFound(
                f"sandbox {record.id} has no run {rid}",
                hint=f"its runs: {', '.join(known)}" if known else "run a task with `aido run TASK`",
            )
        verifier.check_run(rid, _run_entry(record, rid), record.config)
        runs = [rid]
    else:
        runs = _run_ids(record, verifier, paths)
        for rid in runs:
            verifier.check_run(rid, _run_entry(record, rid), record.config)
        numbers = {run_number(r) for r in runs}
        names = sorted(os.listdir(paths.runs)) if paths.runs.is_dir() else []
        present = {run_number(name) for name in names}
        for name in names:
            if run_number(name) is None:
                verifier.add(FAIL, "extra_file", f"runs/{name}", "not a run directory aido made")
        for number in range(1, max((n or 0 for n in numbers), default=0) + 1):
            if number not in present:
                verifier.add(
                    FAIL, "run_missing", f"runs/run-{number:03d}", "missing: run numbers have a gap here"
                )
        if not runs:
            verifier.add(INFO, "no_runs", "runs", f"sandbox {record.id} has no runs yet: nothing is sealed")
    verifier.check_chain()
    return _result(verifier, strict, sandbox_id=record.id, runs=runs)


def _result(verifier: Verifier, strict: bool, **facts: Any) -> Verified:
    signers = sorted({s.keyid for s in verifier.seals() if s.keyid})
    return Verified(verifier.findings, verdict(verifier.findings, strict=strict), signers=signers, **facts)


def verify_bundle(path: Path, *, keys: dict[str, Any], strict: bool = False) -> Verified:
    """``aido verify FILE.tar.gz``: needs no workspace."""
    from aido.evidence.bundle import check_bundle
    from aido.evidence.keys import public_key_from_pem

    if not path.is_file():
        raise BundleNotFound(
            f"no bundle {path}" if not path.exists() else f"{path} is not a file",
            hint="give the path of a bundle made by `aido export`",
        )
    verifier, run_id = check_bundle(
        path, keys, lambda pem: public_key_from_pem(pem.decode("ascii", "replace"))
    )
    sandbox = verifier.load_seal(run_id, report=False) if run_id else None
    facts = {"sandbox_id": sandbox.predicate.get("sandboxId") if sandbox else None}
    return _result(verifier, strict, runs=[run_id] if run_id else [], bundle=str(path), **facts)


@dataclass
class Exported:
    path: Path
    sandbox_id: str
    run_id: str
    members: list[str]
    verified: Verified
    sha256: str  # of the bundle file: to name it in a ticket or a log


def export(
    ctx: Context,
    sandbox_id: str | None,
    run: str,
    out: Path,
    *,
    keys: dict[str, Any],
    outputs: bool = True,
) -> Exported:
    """Verify the run, then write its bundle (aido.evidence.bundle). Refused (the Verified
    is returned in an ExportRefused) when the run does not verify, or when an output it
    sealed has changed since (unless ``outputs`` is False: the bundle then carries none)."""
    from aido.evidence.bundle import write_bundle

    record, verifier, _ = _open(ctx, sandbox_id, keys)
    rid = check_run_id(run)
    checked = verify(ctx, record.id, rid, keys=keys)
    drifted = [f for f in checked.findings if f.code in ("output_changed_later", "output_absent")]
    if checked.exit_code != OK:
        raise ExportRefused(checked, f"{rid} of sandbox {record.id} does not verify: not exported")
    if drifted and outputs:
        refused = Verified(drifted, 1, record.id, [rid])
        raise ExportRefused(
            refused,
            f"{len(drifted)} output(s) of {rid} are no longer what it sealed: not exported",
            hint="export without them (`--no-outputs`); the bundle still proves the run's evidence",
            drift=True,
        )
    seal = verifier.load_seal(rid, report=False)
    assert seal is not None and seal.keyid
    envelope = verifier.tree.read(verifier.envelope_name(rid))
    signer = keys[seal.keyid].pem().encode()
    tree = verifier.tree
    assert isinstance(tree, DirTree)
    members = write_bundle(tree, envelope, seal, signer, out, outputs=outputs)
    return Exported(out, record.id, rid, members, checked, DirTree(out.parent).sha256(out.name))


class ExportRefused(Exception):
    """The run does not verify (or its outputs drifted): no bundle is written."""

    def __init__(
        self, verified: Verified, message: str, hint: str | None = None, *, drift: bool = False
    ) -> None:
        super().__init__(message)
        self.verified = verified
        self.drift = drift  # it verifies, but its outputs changed since
        self.message = message
        self.hint = hint
