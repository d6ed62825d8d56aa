"""A run's network evidence, read: the table of `aido logs --network` and the one line of
`aido show`. Host names and unparsed lines are the task's choice: every value is shown
escaped (cli/show.py's ``clean``), so none can act on the terminal."""

from __future__ import annotations

from typing import Any

from aido.cli.show import clean

COLUMNS = ["TIME", "DECISION", "METHOD", "HOST:PORT", "STATUS", "SENT", "RECEIVED", "REASON"]
# The proxy's reasons (aido's note on each request: evidence/network.py), as a reader says them.
REASONS = {
    "deny:not_allowlisted": "not in the allowlist",
    "deny:ip_literal": "an IP address, not a name",
    "deny:blocked_dst": "resolves to a private, local or metadata address",
    "deny:not_client": "not from the task's network",
    "deny:manager": "the proxy's own manager interface",
    "deny:port_or_method": "port or method not allowed",
    "deny:invalid_request": "not a valid request",
    "deny:sni_not_allowlisted": "TLS asked for a name not in the allowlist",
    "deny:sni_mismatch": "TLS asked for another name than the tunnel's",
}
UNPARSED_SHOWN = 100  # characters of an unparsed line in the table (network.jsonl has it all)


def _text(value: Any) -> str:
    return "-" if value is None else clean(value)


def reason(note: Any) -> str:
    text = str(note or "")
    if text.startswith("allow:"):
        return "allowlist: " + clean(text.removeprefix("allow:"))
    return REASONS.get(text) or clean(text.removeprefix("deny:")) or "-"


def rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    shown = []
    for entry in entries:
        if "unparsed" in entry:
            line = clean(entry["unparsed"])
            cut = line[:UNPARSED_SHOWN] + ("…" if len(line) > UNPARSED_SHOWN else "")
            shown.append(
                ["-", "?", "-", cut, "-", "-", "-", "a line the proxy logged that aido could not read"]
            )
            continue
        when = entry.get("time")
        host, port = _text(entry.get("host")), entry.get("port")
        shown.append(
            [
                clean(when).replace("T", " ").removesuffix("Z") if isinstance(when, str) else "-",
                "ALLOW" if entry.get("decision") == "allowed" else "DENY",
                _text(entry.get("method")),
                host if port is None else f"{host}:{_text(port)}",
                _text(entry.get("status")),
                _text(entry.get("bytes_sent")),
                _text(entry.get("bytes_received")),
                reason(entry.get("reason")),
            ]
        )
    return shown


def _counted(section: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, int]:
    """The counts the summary recorded (they cover a flood past the log's cap); counted
    from the entries for a section without them."""
    counts = section.get("requests")
    if isinstance(counts, dict) and all(
        isinstance(counts.get(k), int) for k in ("allowed", "denied", "unparsed")
    ):
        return {k: int(counts[k]) for k in ("allowed", "denied", "unparsed")}
    unparsed = sum("unparsed" in e for e in entries)
    allowed = sum(e.get("decision") == "allowed" for e in entries)
    return {"allowed": allowed, "denied": len(entries) - unparsed - allowed, "unparsed": unparsed}


def totals(section: dict[str, Any], entries: list[dict[str, Any]]) -> list[str]:
    """The lines under the table: the counts, then what the log is missing."""
    counts = _counted(section, entries)
    line = f"{counts['allowed']} allowed, {counts['denied']} denied"
    if counts["unparsed"]:
        line += f", {counts['unparsed']} unparsed line{'s' if counts['unparsed'] != 1 else ''}"
    allow = [clean(a) for a in section.get("allow") or []]
    lines = [line + (f" (allowlist: {', '.join(allow)})" if allow else "")]
    lost = section.get("lost_lines")
    if isinstance(lost, int) and lost:
        lines.append(f"{lost} line{'s' if lost != 1 else ''} the proxy logged never reached aido")
    truncated = section.get("truncated")
    if isinstance(truncated, dict) and truncated.get("note"):
        lines.append(clean(truncated["note"]))
    if section.get("error"):
        lines.append(f"the proxy reported a problem: {clean(section['error'])}")
    return lines


def show_line(section: Any) -> str:
    """`aido show`'s network line: the mode, and for an allowlist its size and counts."""
    if not isinstance(section, dict) or not isinstance(section.get("mode"), str):
        return "not recorded"
    mode = clean(section["mode"])
    if mode != "allowlist":
        return mode
    allow = section.get("allow")
    allow = allow if isinstance(allow, list) else []
    line = f"allowlist ({len(allow)} entr{'y' if len(allow) == 1 else 'ies'})"
    if not section.get("log"):
        return f"{line}: no log ({clean(section.get('note') or 'not collected')})"
    counts = _counted(section, [])
    return f"{line}: {counts['allowed']} allowed, {counts['denied']} denied — aido logs --network"
