"""The events.log checks of ``aido verify``: each seal's prefix of the log (its digest,
the run starting then ending inside it, the run_sealed line naming the envelope), the
order of seals (previousRecord), and the chain itself, sealed part and unsealed tail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aido.evidence.attestation import ENVELOPE, EVENTS, FAIL, INFO, WARN, Seal, sha256_hex
from aido.evidence.events import chain_problems
from aido.evidence.tree import FILE, safe_name

if TYPE_CHECKING:
    from aido.evidence.verify import Verifier

# Events aido appends after a sandbox's last run by design, that change no evidence.
BENIGN_TAIL = frozenset({"sandbox_extended", "sandbox_destroyed"})


def events_digest(v: Verifier, seal: Seal, subject: dict[str, Any], want: str) -> None:
    lines = (subject.get("annotations") or {}).get("lines")
    pred_events = seal.predicate.get("events") or {}
    if not isinstance(lines, int) or lines < 1 or pred_events.get("lines") != lines:
        v.add(
            FAIL,
            "events_subject",
            v.envelope_name(seal.run_id),
            "events.log subject has no line count",
        )
        return
    if len(v.log.lines) < lines:
        v.add(
            FAIL,
            "events_truncated",
            EVENTS,
            f"truncated: {seal.run_id} sealed {lines} lines",
            lines,
            len(v.log.lines),
        )
        return
    found = v.log.prefix_sha256(lines)
    if found != want:
        v.add(
            FAIL,
            "events_mismatch",
            EVENTS,
            f"lines 1..{lines} differ from what {seal.run_id} sealed",
            f"sha256:{want}",
            f"sha256:{found}",
        )
    last = "sha256:" + sha256_hex(v.log.lines[lines - 1])
    if pred_events.get("lastLine") != last:
        v.add(
            FAIL,
            "events_mismatch",
            f"{EVENTS} line {lines}",
            "differs from the sealed last line",
            pred_events.get("lastLine"),
            last,
        )


def events_order(v: Verifier, seal: Seal) -> None:
    """This run started and ended inside its sealed prefix, and (in a sandbox) the seal
    is recorded by a run_sealed line naming this envelope's hash."""
    run_id = seal.run_id
    upto = seal.lines if isinstance(seal.lines, int) else len(v.log.lines)
    started, ended = v.log.starts.get(run_id), v.log.ends.get(run_id)
    if started is None or ended is None or not started < ended <= upto:
        v.add(
            FAIL,
            "events_order",
            EVENTS,
            f"events.log lines 1..{upto} do not record {run_id} starting, then ending",
            "run_started, then run_completed or run_recovered",
            f"run_started at line {started}, end at line {ended}",
        )
    if v.bundle:
        return
    records = v.log.seals_of(run_id)
    if not records:
        v.add(FAIL, "seal_not_recorded", EVENTS, f"no run_sealed line for {run_id}")
    elif len(records) > 1:
        v.add(FAIL, "sealed_twice", EVENTS, f"{len(records)} run_sealed lines for {run_id}")
    elif records[0][1] != "sha256:" + seal.sha256 or records[0][0] <= upto:
        v.add(
            FAIL,
            "seal_mismatch",
            f"{EVENTS} line {records[0][0]}",
            f"the run_sealed line does not name {run_id}'s envelope",
            "sha256:" + seal.sha256,
            records[0][1],
        )


def previous_record(v: Verifier, seal: Seal) -> None:
    """previousRecord: the seal before this one in sealing order, still there unchanged."""
    previous = seal.predicate.get("previousRecord")
    order = [(rid, rec) for _, rid, rec in v.sealed]
    mine = next((i for i, (rid, _) in enumerate(order) if rid == seal.run_id), None)
    expected = order[mine - 1] if mine else None
    got = (
        (previous.get("runId"), "sha256:" + str(previous.get("sha256")))
        if isinstance(previous, dict)
        else None
    )
    if mine is not None and got != expected:
        v.add(
            FAIL,
            "previous_record",
            v.envelope_name(seal.run_id),
            "previousRecord is not the seal before it in events.log",
            expected and f"{expected[0]} {expected[1]}",
            got and f"{got[0]} {got[1]}",
        )
    if got is None or not isinstance(got[0], str) or not safe_name(got[0]):
        return
    name = f"runs/{got[0]}/{ENVELOPE}"
    try:
        found = "sha256:" + v.tree.sha256(name) if v.tree.kind(name) == FILE else None
    except OSError:
        found = None
    if found != got[1]:
        v.add(FAIL, "previous_record", name, f"the record {seal.run_id} names as previous", got[1], found)


def chain(v: Verifier) -> None:
    """The whole chain: a break inside the sealed part is tampering; lines after the last
    seal are nobody's record yet (WARN), unless they only extend or destroy the sandbox,
    which aido writes after its last run by design and which change no evidence (INFO)."""
    last_seal = max(v.sealed[-1][0] if v.sealed else 0, v.covered)
    problems = chain_problems(v.log.data)
    for problem in problems:
        level = FAIL if problem.line <= last_seal else WARN
        v.add(
            level,
            "chain",
            f"{EVENTS} line {problem.line}",
            problem.what,
            problem.expected,
            problem.actual,
        )
    tail = len(v.log.lines) - last_seal
    if not last_seal or tail <= 0:
        return
    kinds = {e.get("event") for e in v.log.events[last_seal:]}
    benign = kinds <= BENIGN_TAIL and not any(p.line > last_seal for p in problems)
    v.add(
        INFO if benign else WARN,
        "unsealed_tail",
        EVENTS,
        f"{tail} unsealed line(s) after the last seal (line {last_seal})"
        + (f": {', '.join(sorted(str(k) for k in kinds))} only" if benign else ""),
    )
