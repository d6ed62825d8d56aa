"""The run's network evidence: what the egress proxy let through and refused.

The Docker backend reads the per-run proxy's configuration and access log (never anything
the task wrote) into ``ExecOutcome.egress``; this module turns it into two files of the
run's evidence, sealed with the rest, and the summary's ``network`` section:

- the network log (``network.jsonl``): one JSON object per request the proxy logged, in
  the proxy's order, and lines it could not parse kept as ``{"unparsed": ...}``;
- the proxy's configuration (``egress-squid.conf``): the exact policy that was enforced.

Every run's summary says what its network was: ``none``, ``full`` or ``allowlist``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import fs

if TYPE_CHECKING:
    from aido.backends.base import EgressRecord, ExecRequest

# A task flooding the proxy with requests must not flood the evidence: the first entries
# are kept, the rest only counted (the summary says how many).
MAX_ENTRIES = 50_000
MAX_LOST_RANGES = 20  # the first gaps in the proxy's sequence numbers are listed; all are counted
# The order of a network log line's keys (parse_log's keys, the request's facts first).
KEYS = (
    "seq",
    "time",
    "client",
    "method",
    "host",
    "port",
    "decision",
    "reason",
    "result",
    "status",
    "bytes_sent",
    "bytes_received",
    "server",
)
NOT_COLLECTED = "the proxy's log was not collected"


def network_mode(request: ExecRequest) -> str:
    """What the task's network was: an egress allowlist, full access, or none."""
    return "allowlist" if request.egress else "full" if request.network else "none"


def planned_section(mode: str, allow: Iterable[str] = (), note: str | None = None) -> dict[str, Any]:
    """The ``network`` section of a run whose proxy's record is not there (no allowlist, or
    the run ended before aido could read the proxy): the mode, and for an allowlist what
    was allowed and why there is no log."""
    if mode != "allowlist":
        return {"mode": mode}
    return {"mode": mode, "allow": list(allow), "log": None, "note": note or NOT_COLLECTED}


def record_network(
    record: EgressRecord,
    allow: Iterable[str],
    *,
    log_path: Path,
    config_path: Path,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """Parse the proxy's access log and write the run's network evidence (see
    write_network); the ``network`` section of its summary."""
    from aido.egress.squid import parse_log

    return write_network(
        record,
        parse_log(record.log),
        allow,
        log_path=log_path,
        config_path=config_path,
        secrets=secrets,
    )


def write_network(
    record: EgressRecord,
    entries: list[dict[str, Any]],
    allow: Iterable[str],
    *,
    log_path: Path,
    config_path: Path,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """Write ``entries`` (parse_log's output for ``record.log``) as the network log and
    ``record.config`` as the proxy's configuration, both created exclusively; the summary's
    ``network`` section. Secret values the task was given are masked in the log: a task
    can put one in a host name it asks for."""
    from aido.egress.squid_log import gaps
    from aido.evidence.redact import mask_text

    secrets = list(secrets)
    allowed = denied = unparsed = 0
    seqs: list[int] = []
    lines: list[str] = []
    for entry in entries:
        if "unparsed" in entry:
            unparsed += 1
            line: dict[str, Any] = {"unparsed": str(entry["unparsed"])}
        else:
            if entry.get("decision") == "allowed":
                allowed += 1
            else:
                denied += 1  # fail closed: whatever is not an allow is counted as refused
            seq = entry.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                seqs.append(seq)
            line = {key: entry.get(key) for key in KEYS}
        if len(lines) < MAX_ENTRIES:
            if secrets:
                line = {k: mask_text(v, secrets) if isinstance(v, str) else v for k, v in line.items()}
            lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    fs.write_new(log_path, "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogatepass"))
    fs.write_new(config_path, record.config.encode("utf-8", "surrogatepass"))
    lost = lost_ranges(seqs)
    facts = {str(k): v for k, v in record.facts.items()}
    dropped = len(entries) - len(lines)
    bytes_dropped = facts.get("log_truncated")
    truncated: dict[str, Any] | None = None
    if dropped or bytes_dropped:
        truncated = {
            "entries_kept": len(lines),
            "entries_dropped": dropped,
            "log_bytes_dropped": bytes_dropped,
            "note": _truncation_note(len(lines), dropped, bytes_dropped),
        }
    section: dict[str, Any] = {
        "mode": "allowlist",
        "allow": list(allow),
        "proxy": facts,
        "config": config_path.name,
        "log": log_path.name,
        "requests": {"allowed": allowed, "denied": denied, "unparsed": unparsed},
        # Lines the proxy wrote that aido never read: gaps in its sequence numbers, less the
        # lines read but not parsed (each stands for one of them; which one, nobody knows, so
        # lost_ranges still lists its number).
        "lost_lines": gaps(entries),
        "lost_ranges": [list(r) for r in lost[:MAX_LOST_RANGES]],
        "truncated": truncated,
    }
    if facts.get("error"):
        section["error"] = facts["error"]
    return section


def lost_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """The sequence numbers no parsed line has, between 0 and the last one seen, as
    (first, last) ranges. Squid numbers its log lines from 0 (``%sn``, seen with Squid 5.7)."""
    ranges: list[tuple[int, int]] = []
    expected = 0
    for seq in sorted(set(seqs)):
        if seq > expected:
            ranges.append((expected, seq - 1))
        expected = max(expected, seq + 1)
    return ranges


def _truncation_note(kept: int, dropped: int, bytes_dropped: object) -> str:
    parts = []
    if dropped:
        parts.append(f"only the first {kept} of {kept + dropped} requests are in the log; all are counted")
    if bytes_dropped:
        parts.append(
            f"the proxy logged more than aido kept ({bytes_dropped} bytes dropped): those are not counted"
        )
    return "; ".join(parts)
