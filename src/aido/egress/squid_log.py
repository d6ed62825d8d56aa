"""Squid's access log as aido's proxy writes it (the ``aido`` logformat, which
aido.egress.squid's config() installs), parsed. Pure: no engine, no files."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

# One line per request, space-separated, a fixed number of fields: every field the task
# can influence (method, host, the note) is URL-encoded (%#), so spaces, control bytes
# and '%' itself can never split or forge a line. %sn numbers the lines (0, 1, ...): a
# missing number is a lost line (see gaps()). Verified against Squid 5.7.
LOGFORMAT = "%sn %ts.%03tu %>a %#rm %#>rd %>rP %Ss %>Hs %>st %<st %<a %<p %#{aido}note"
_FIELDS = 13

# A logged field is %-encoded (%#); decode only the escapes of printable, non-space ASCII
# other than '%', so that a field stays one printable token and a literal '%' in the result
# always starts an escape: '%5B::1%5D' -> '[::1]', 'a%20b' stays.
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_TOKEN = re.compile(r"[!-~]+")  # what Squid writes: anything else is not its line


def _decode(field: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if "!" <= char <= "~" and char != "%" else match.group(0)

    return _ESCAPE.sub(one, field)


def _number(field: str) -> int | None:
    return int(field) if field.isdigit() and len(field) <= 20 else None


def _entry(line: str) -> dict[str, Any] | None:
    fields = line.split(" ")
    if len(fields) != _FIELDS or not all(_TOKEN.fullmatch(field) for field in fields):
        return None
    seq, stamp, client, method, host, port, result, status, sent, received, server, sport, note = fields
    seconds, dot, millis = stamp.partition(".")
    if not (_number(seq) is not None and seconds.isdigit() and dot and len(millis) == 3 and millis.isdigit()):
        return None
    if not (sent.isdigit() and received.isdigit()):
        return None
    try:
        when = datetime.fromtimestamp(int(seconds), UTC)
    except (OverflowError, OSError, ValueError):
        return None
    reason = _decode(note) if note != "-" else "deny:invalid_request"
    if not (reason.startswith("allow:") or reason.startswith("deny:")):
        return None
    return {
        "seq": int(seq),
        "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + millis + "Z",
        "client": _decode(client),
        "method": _decode(method),
        "host": _decode(host),
        "port": _number(port),
        "decision": "allowed" if reason.startswith("allow:") else "denied",
        "reason": reason,
        "result": _decode(result),
        # A tunnel's status is Squid's own figure, 200 or at times 500 for one that worked
        # (it peeks at the TLS inside): nothing a reader should take for the server's answer.
        "status": None if method == "CONNECT" or result == "TCP_TUNNEL" else _number(status) or None,
        "bytes_sent": int(sent),
        "bytes_received": int(received),
        "server": f"{_decode(server)}:{sport}" if server != "-" and sport.isdigit() else None,
    }


def parse_log(text: str) -> list[dict[str, Any]]:
    """The access log's entries, in order, each a dict with exactly these keys:
    seq (int), time (ISO 8601 UTC with milliseconds), client, method, host, port (int|None),
    decision ("allowed" if aido's note says allow:, else "denied"), reason (the note, e.g.
    "allow:*.pythonhosted.org", "deny:not_allowlisted"; "deny:invalid_request" without one),
    result (Squid's, e.g. "TCP_TUNNEL"), status (int|None: the HTTP status the proxy answered,
    None for a tunnel), bytes_sent (by the task: the
    request's size), bytes_received (by the task: the reply's size), server ("ip:port"|None).
    A line that does not parse (the task chose odd bytes) becomes {"unparsed": <the line,
    at most 512 characters>}: kept, never guessed at.

    A CONNECT is one line: the tunnel when it closes (result TCP_TUNNEL; method "-" if its
    bytes were not TLS; status None: Squid's figure, 200 or at times 500, means nothing), or,
    refused or terminated on its SNI, the CONNECT (NONE_NONE, no server, nothing received).

    ``time`` is when Squid logged the request, i.e. when it ended: lines come in the order
    requests finished, and a tunnel (CONNECT) is logged when it closes; one still open is
    logged when the proxy is stopped (SIGTERM: ``docker stop``; SIGKILL loses it unseen).

    Text fields are printable and space-free: bytes Squid %-encoded stay %-encoded (a host
    ``a%20b`` had a space), only printable ASCII is decoded (``%5B::1%5D`` -> ``[::1]``).
    ``seq`` counts from 0 (the proxy's first line) up by one a line; a missing number is a
    lost line, which ``gaps(entries)`` counts.
    A request Squid could not parse is logged with host "-" (method "-" too if it had
    none), port and server None, reason "deny:invalid_request".
    Blank lines are skipped; a line may end in CR (a terminal's log)."""
    entries: list[dict[str, Any]] = []
    for raw in text.split("\n"):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        entries.append(_entry(line) or {"unparsed": line[:512]})
    return entries


def gaps(entries: list[dict[str, Any]]) -> int:
    """How many lines are missing from a parsed log: sequence numbers that neither a parsed
    entry nor an unparsed line (each standing for one number) accounts for, from 0 (Squid's
    first) up to the last number seen. 0 for a complete log. The summary's ``lost_lines``
    (aido.evidence.network)."""
    seen: set[int] = {entry["seq"] for entry in entries if isinstance(entry.get("seq"), int)}
    if not seen:
        return 0
    unparsed = sum(1 for entry in entries if "unparsed" in entry)
    return max(0, max(seen) + 1 - len(seen) - unparsed)
