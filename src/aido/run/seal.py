"""Sealing a closed run: its evidence signed into ``runs/<run>/attestation.intoto.json``.

Every way a run closes ends here: collect (the task ran), abandon (a stage failed) and
recovery (its aido process died). The seal is made under the events lock, after the
run's closing event, so it signs every line up to that event and names the seal made
before it; the ``run_sealed`` line that follows names the envelope's digest. The envelope
is created exclusively and never rewritten. A run that cannot be sealed (no key, a full
disk) keeps its evidence and says so in a ``seal_failed`` event and a warning: losing
the record to protect it would be the wrong way round.

Signing needs ``cryptography`` (~20 ms to import) and the key file: ``prewarm`` loads
both in a thread while the task runs, so a run pays almost nothing for its seal.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import TYPE_CHECKING, Any

from aido import __version__, fs
from aido.errors import AidoError
from aido.evidence.events import SEALED, events_locked, record_event
from aido.evidence.seal import (
    envelope,
    file_sha256,
    output_subjects,
    payload_bytes,
    run_dir_subjects,
    statement,
    subject,
)
from aido.log import log
from aido.store.workspace import ATTESTATION, EVENTS, INPUTS_MANIFEST, RUNS

if TYPE_CHECKING:
    from aido.evidence.keys import SigningKey
    from aido.evidence.snapshot import Snapshot
    from aido.store.workspace import SandboxPaths

ENV_SWITCH = "AIDO_SEAL"  # "off": runs are not sealed (a benchmark's baseline); verify says unverifiable

_key: SigningKey | None = None
_key_error: AidoError | None = None
_key_lock = threading.Lock()
_warming: threading.Thread | None = None


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() not in ("off", "0", "false", "no")


def _load_key() -> None:
    global _key, _key_error
    from aido.evidence.keys import signing_key

    with _key_lock:
        if _key is None and _key_error is None:
            try:
                _key = signing_key()
            except AidoError as exc:
                _key_error = exc
            except OSError as exc:
                _key_error = AidoError(f"cannot make or read the signing key: {exc}")


def prewarm() -> None:
    """Start loading the signing key (and cryptography) in the background."""
    global _warming
    if not enabled() or _warming is not None:
        return
    _warming = threading.Thread(target=_load_key, name="aido-seal-prewarm", daemon=True)
    _warming.start()


def _signing_key() -> SigningKey:
    if _warming is not None:
        _warming.join()
    _load_key()
    if _key is None:
        assert _key_error is not None
        raise _key_error
    return _key


def mark_pending(paths: SandboxPaths, run_id: str) -> None:
    """Note that a run must be sealed: if its aido dies after closing the run's record but
    before sealing it, the next command's sweep finds the note and seals it."""
    if not enabled():
        return
    try:
        paths.seal_pending.mkdir(mode=0o755, exist_ok=True)
        (paths.seal_pending / run_id).touch()
    except OSError as exc:
        log.debug("could not note %s as not sealed yet: %s", run_id, exc)


def pending(paths: SandboxPaths) -> list[str]:
    try:
        return sorted(os.listdir(paths.seal_pending))
    except OSError:
        return []


def _clear_pending(paths: SandboxPaths, run_id: str) -> None:
    try:
        os.unlink(paths.seal_pending / run_id)
    except OSError:
        pass


def _predicate(
    summary: dict[str, Any], config: dict[str, Any], sealed_by: str, unhashed: list[dict[str, str]]
) -> dict[str, Any]:
    task = summary.get("task")
    return {
        "sandboxId": summary.get("sandbox_id"),
        "runId": summary.get("run_id"),
        "task": task,
        "taskSha256": summary.get("task_sha256"),
        "status": summary.get("status"),
        "exitCode": summary.get("exit_code"),
        "startedOn": summary.get("started_at"),
        "finishedOn": summary.get("completed_at"),
        "imageId": summary.get("image_id"),
        "aidoVersion": __version__,
        "sandboxConfig": config,
        "unhashed": unhashed,
        "sealedBy": sealed_by,
    }


def seal_run(
    paths: SandboxPaths,
    run_id: str,
    *,
    summary: dict[str, Any],
    config: dict[str, Any],
    sealed_by: str,
    outputs: Snapshot | None = None,
    changed: frozenset[str] = frozenset(),
) -> str | None:
    """Seal a closed run; a warning to show when it could not be sealed, else None."""
    if not enabled():
        return None
    sandbox_id = str(summary.get("sandbox_id") or paths.root.name)
    try:
        if (paths.run_dir(run_id) / ATTESTATION).exists():
            return None  # sealed already (a recovery racing a late seal)
        _seal(
            paths,
            run_id,
            summary=summary,
            config=config,
            sealed_by=sealed_by,
            outputs=outputs,
            changed=changed,
        )
    except (AidoError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        log.warning("%s was not sealed: %s", run_id, reason)
        try:
            record_event(
                paths.events, "seal_failed", sandbox_id=sandbox_id, run_id=run_id, error=reason[:500]
            )
        except OSError:
            pass
        return (
            f"{run_id} was not sealed: {reason} (its evidence is kept, but `aido verify` cannot vouch for it)"
        )
    finally:
        _clear_pending(paths, run_id)
    return None


def _seal(
    paths: SandboxPaths,
    run_id: str,
    *,
    summary: dict[str, Any],
    config: dict[str, Any],
    sealed_by: str,
    outputs: Snapshot | None,
    changed: frozenset[str],
) -> None:
    key = _signing_key()
    run_dir = paths.run_dir(run_id)
    subjects, unhashed = run_dir_subjects(run_dir, f"{RUNS}/{run_id}", skip=ATTESTATION)
    try:
        subjects.append(subject(INPUTS_MANIFEST, file_sha256(paths.inputs_manifest)))
    except FileNotFoundError:
        pass
    if outputs is None:
        from aido.evidence.snapshot import snapshot

        outputs = snapshot(paths.outputs)
    found, odd = output_subjects(outputs.entries, changed, outputs.notes)
    subjects += found
    unhashed += odd
    predicate = _predicate(summary, config, sealed_by, unhashed)
    sandbox_id = predicate["sandboxId"] or paths.root.name
    with events_locked(paths.events) as events:
        head = events.head()
        subjects.append(subject(EVENTS, head.prefix_sha256, {"lines": head.lines}))
        previous = head.last_sealed
        predicate["previousRecord"] = (
            {"runId": previous[0], "sha256": previous[1].removeprefix("sha256:")} if previous else None
        )
        predicate["events"] = {"lines": head.lines, "lastLine": head.last_line}
        payload = payload_bytes(statement(subjects, predicate))
        data = envelope(payload, key, key.public.keyid)
        fs.write_new(run_dir / ATTESTATION, data)  # exclusive: a seal is never replaced
        events.append(
            SEALED,
            sandbox_id=sandbox_id,
            run_id=run_id,
            record="sha256:" + hashlib.sha256(data).hexdigest(),
            keyid=key.public.keyid,
        )
