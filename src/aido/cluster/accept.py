"""A node's sealed run, checked before it is stored: never trusted because it came back.

The node returns an export bundle of its run (runs/<run>/..., inputs.json, the sealed
events.log prefix, its envelope and public key) and the outputs that fit the return
limit. The bundle goes through every check of ``aido verify BUNDLE`` against the keys
*this* machine trusts, strictly; it must be the run the driver asked for (sandbox, run
id, task digest); every returned output must be a sealed subject with its sealed digest.
Anything else and the whole record is kept aside under ``.aido/rejected/`` and the run is
closed as an error: it is never merged. Accepted, it becomes an ordinary run: its logs,
summary and diff in the run directory, the node's bundle beside them (``aido verify``
re-checks it any time), its outputs under ``outputs/<run>/``, and the driver's own seal
over all of it in the sandbox's chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from typing import TYPE_CHECKING, Any, NoReturn

from aido import fs
from aido.cluster.spec import NodeResult, node_name
from aido.errors import AidoError
from aido.exit_codes import ExitCode
from aido.store.workspace import CHANGES, NODE_EVIDENCE, STDERR, STDOUT, SUMMARY, TASK_DIR, run_evidence

if TYPE_CHECKING:
    from pathlib import Path

    from aido.run.context import Context
    from aido.run.plan import RunPlan
    from aido.run.prepare import RunStart
    from aido.run.result import RunResult

COPIED = (STDOUT, STDERR, SUMMARY, CHANGES)  # what the run directory gets from the bundle


class EvidenceRejected(AidoError):
    code = "evidence_rejected"
    exit_code = ExitCode.RUNTIME


def accept(
    ctx: Context, plan: RunPlan, start: RunStart, result: Any, node: dict[str, Any], keys: dict[str, Any]
) -> RunResult:
    """Check a node's result against ``keys`` (the keys this machine trusts), then store it."""
    from aido.evidence.events import record_event
    from aido.run.close import close_from
    from aido.run.result import result_from_summary
    from aido.run.seal import seal_run
    from aido.store.records import RunRef, isoformat, utcnow

    if not isinstance(result, NodeResult):
        raise EvidenceRejected(f"{node_name(node)} sent no evidence for {start.run_id}")
    rid, run_dir, paths, record = start.run_id, start.run_dir, plan.paths, plan.record
    bundle = run_dir / NODE_EVIDENCE
    fs.write_new(bundle, result.bundle)
    sealed = _verified(ctx, plan, rid, bundle, node, keys)
    try:
        files = _members(bundle, rid, sealed)
    except (EvidenceRejected, OSError, tarfile.TarError) as exc:
        _reject(ctx, plan, rid, bundle, node, [str(exc) or type(exc).__name__])
    if files.get(f"{TASK_DIR}/{plan.task.name}") != plan.source:
        _reject(ctx, plan, rid, bundle, node, ["the task the node ran is not the task that was sent"])
    outputs, refused = _outputs(result, rid, sealed)
    if refused:
        _reject(ctx, plan, rid, bundle, node, refused)
    for name in COPIED:
        if name in files:
            fs.atomic_write_bytes(run_dir / name, files[name])
    stored, not_returned = _store_outputs(paths.outputs, outputs, sealed, result.not_returned)
    summary = json.loads(files[SUMMARY])
    started = summary.get("started_at")
    ref = RunRef(
        rid,
        plan.task.name,
        "running",
        started if isinstance(started, str) else "",
        evidence=run_evidence(rid),
    )
    close_from(ref, summary, isoformat(utcnow()))  # as close.py closes a run from its summary
    ref.artifacts.append(run_evidence(rid, NODE_EVIDENCE))
    artifacts = ref.artifacts
    ctx.store.close_run(record.id, ref)
    record_event(
        paths.events,
        "run_completed",
        sandbox_id=record.id,
        run_id=rid,
        exit_code=summary.get("exit_code"),
        status=summary.get("status"),
        duration_ms=summary.get("duration_ms"),
        timed_out=summary.get("timed_out") or None,
        oom_killed=summary.get("oom_killed") or None,
        stop_reason=summary.get("stop_reason"),
        node=node,
        node_record=sealed["record"],
        outputs_stored=stored,
        outputs_not_returned=not_returned or None,
    )
    changed = frozenset(str(c.get("path")) for c in summary.get("changes") or [] if isinstance(c, dict))
    # Only this run's own outputs: a cluster run cannot have touched the rest, and walking
    # every earlier run's outputs at each seal would make runs slower as they accumulate.
    seal_run(
        paths,
        rid,
        summary=summary,
        config=record.config,
        sealed_by="run",
        outputs=_own_outputs(paths.outputs, rid),
        changed=changed,
    )
    done = result_from_summary(
        summary,
        evidence_dir=run_dir,
        outputs_dir=paths.outputs / rid,
        artifacts=tuple(
            str(run_dir.relative_to(ctx.workspace.root) / a.split("/", 2)[-1]) for a in artifacts
        ),
    )
    return done


def _own_outputs(root: Path, rid: str) -> Any:
    """A snapshot of outputs/<run>/ named as under outputs/ (what the seal lists)."""
    from aido.evidence.snapshot import Snapshot, snapshot

    if not (root / rid).is_dir():
        return Snapshot()
    own = snapshot(root / rid)
    return Snapshot(
        entries={f"{rid}/{name}": entry for name, entry in own.entries.items()},
        notes=[f"{rid}/{note}" for note in own.notes],
    )


def _verified(
    ctx: Context, plan: RunPlan, rid: str, bundle: Path, node: dict[str, Any], keys: dict[str, Any]
) -> dict[str, Any]:
    """The bundle's checks (strict: a warning is a failure here); the sealed subjects."""
    from aido.evidence.attestation import ENVELOPE, INFO, verdict
    from aido.evidence.bundle import check_bundle
    from aido.evidence.keys import public_key_from_pem

    verifier, bundle_run = check_bundle(
        bundle, keys, lambda pem: public_key_from_pem(pem.decode("ascii", "replace"))
    )
    problems = [f.line() for f in verifier.findings if f.level != INFO]
    seal = verifier.load_seal(bundle_run, report=False) if bundle_run else None
    if verdict(verifier.findings, strict=True) != 0 or seal is None:
        if any(f.code == "untrusted_key" for f in verifier.findings):
            problems.insert(0, "signed by a key this machine does not trust (`aido cluster trust`)")
        _reject(ctx, plan, rid, bundle, node, problems or ["the node's record does not verify"])
    assert seal is not None
    pred = seal.predicate
    wrong = [
        f"{what}: {got!r}, expected {want!r}"
        for what, got, want in (
            ("run", bundle_run, rid),
            ("sandbox", pred.get("sandboxId"), plan.record.id),
            ("task digest", pred.get("taskSha256"), hashlib.sha256(plan.source).hexdigest()),
        )
        if got != want
    ]
    if wrong:
        _reject(ctx, plan, rid, bundle, node, [f"not the run that was sent: {'; '.join(wrong)}"])
    digests = {
        str(s.get("name")): str((s.get("digest") or {}).get("sha256"))
        for s in seal.subjects
        if isinstance(s, dict)
    }
    record = "sha256:" + hashlib.sha256(verifier.tree.read(ENVELOPE)).hexdigest()
    return {"digests": digests, "keyid": seal.keyid, "record": {"sha256": record, "keyid": seal.keyid}}


def _members(bundle: Path, rid: str, sealed: dict[str, Any]) -> dict[str, bytes]:
    """The run directory's files from the (verified) bundle, each checked again on read."""
    wanted = {f"runs/{rid}/{n}" for n in COPIED}
    files: dict[str, bytes] = {}
    with tarfile.open(bundle, mode="r:") as tar:
        for member in tar:
            name = member.name
            if not member.isreg() or not (name in wanted or name.startswith(f"runs/{rid}/{TASK_DIR}/")):
                continue
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            if hashlib.sha256(data).hexdigest() != sealed["digests"].get(name):
                raise EvidenceRejected(f"{name} changed after it was verified")
            files[name.removeprefix(f"runs/{rid}/")] = data
    return files


def _outputs(
    result: NodeResult, rid: str, sealed: dict[str, Any]
) -> tuple[list[tuple[str, bytes]], list[str]]:
    from aido.evidence.tree import safe_name

    good, refused = [], []
    for name, data in result.outputs:
        if not (isinstance(name, str) and safe_name(name) and name.startswith(f"outputs/{rid}/")):
            refused.append(f"an output outside outputs/{rid}/: {name!r}")
        elif sealed["digests"].get(name) != hashlib.sha256(data).hexdigest():
            refused.append(f"{name}: not the sealed content")
        else:
            good.append((name, data))
    return good, refused


def _store_outputs(
    root: Path, outputs: list[tuple[str, bytes]], sealed: dict[str, Any], reasons: list[dict[str, Any]]
) -> tuple[int, list[dict[str, Any]]]:
    """Write the outputs; never over an existing file. Returns (how many, what was not)."""
    said = {str(r.get("path")): r for r in reasons if isinstance(r, dict)}
    missing: list[dict[str, Any]] = []
    stored = 0
    for name, data in outputs:
        target = root / name.removeprefix("outputs/")
        try:
            _make_dirs(root, target.parent)
            fs.write_new(target, data)
            stored += 1
        except OSError as exc:
            missing.append({"path": name, "bytes": len(data), "reason": f"not stored: {exc.strerror}"})
    returned = {name for name, _ in outputs}
    for name in sealed["digests"]:
        if name.startswith("outputs/") and name not in returned:
            reason = said.get(name, {}).get("reason") or "not returned by the node"
            missing.append({"path": name, "bytes": said.get(name, {}).get("bytes"), "reason": reason})
    return stored, missing


def _make_dirs(root: Path, directory: Path) -> None:
    """Directories under outputs/, one level at a time, never through a symlink."""
    current = root
    for part in directory.relative_to(root).parts:
        current = current / part
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if current.is_symlink() or not current.is_dir():
                raise OSError(20, f"{current.name} is not a directory") from None


def _reject(
    ctx: Context, plan: RunPlan, rid: str, bundle: Path, node: dict[str, Any], problems: list[str]
) -> NoReturn:
    """Keep the record aside (never merged) and fail the run."""
    kept = ctx.workspace.dir / "rejected" / f"{plan.record.id}-{rid}"
    kept.mkdir(parents=True, exist_ok=True)
    os.replace(bundle, kept / NODE_EVIDENCE)
    fs.atomic_write_json(kept / "why.json", {"node": node, "problems": problems})
    raise EvidenceRejected(
        f"the evidence of {rid} from {node_name(node)} failed verification: {problems[0]}",
        hint=f"it is kept aside in {kept}, never merged; `aido verify {kept / NODE_EVIDENCE}` shows why",
    )
