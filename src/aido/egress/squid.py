"""Squid's configuration for one run's egress proxy, generated from the allowlist, and its
access log parsed. Pure: no engine, no files.

TO BE WRITTEN (helper): see the interface below.
"""

from __future__ import annotations

from typing import Any

from aido.egress.allowlist import Entry

PORT = 3128  # where the proxy listens on the run's internal network

# One line per request (``access_log stdio:/dev/stdout aido``). The helper writing this
# module verifies the format codes against the real Squid 5.7 and may change the format:
# parse_log is its only reader. Planned: sequence number (gaps show lost lines), time,
# client, method, host, port, result/status, bytes from the client, bytes to the client,
# upstream address, aido's note (allow:<entry> | deny:<reason>).
LOGFORMAT = "%sn %ts.%03tu %>a %rm %>rd %>rP %Ss/%>Hs %>st %<st %<a:%<p %{aido}note"


def config(entries: tuple[Entry, ...], clients: str) -> str:
    """squid.conf allowing exactly ``entries`` to clients in the subnet ``clients``."""
    raise NotImplementedError


def parse_log(text: str) -> list[dict[str, Any]]:
    """The access log's entries, in order, each a dict with exactly these keys:
    seq (int), time (ISO 8601 UTC with milliseconds), client, method, host, port (int|None),
    decision ("allowed" if aido's note says allow:, else "denied"), reason (the note, e.g.
    "allow:*.pythonhosted.org", "deny:not_allowlisted"; "deny:invalid_request" without one),
    result (Squid's, e.g. "TCP_TUNNEL"), status (int|None), bytes_sent (by the task: the
    request's size), bytes_received (by the task: the reply's size), server ("ip:port"|None).
    A line that does not parse (the task chose odd bytes) becomes {"unparsed": <the line,
    at most 512 characters>}: kept, never guessed at."""
    raise NotImplementedError
