"""Egress allowlist entries: parsed, checked and put in canonical form. Pure.

TO BE WRITTEN (helper): see the interface below.
"""

from __future__ import annotations

from aido.values import dataclass


@dataclass(frozen=True)
class Entry:
    """One allowlist entry. ``host`` is lower case without a trailing dot; ``wildcard``: the
    entry was ``*.host`` (the host itself and any name below it); ``port``: only that port
    (None: 80 for HTTP and 443 for HTTPS). ``network``: an IP address or range (CIDR), only
    with the sandbox's explicit opt-in (``allow_ip_ranges: true``); then ``host`` is empty."""

    host: str
    wildcard: bool = False
    port: int | None = None
    network: str = ""

    def __str__(self) -> str:  # the canonical text, as recorded and as ExecRequest.egress holds it
        raise NotImplementedError


def parse_entry(text: object, *, allow_ip_ranges: bool = False) -> Entry:
    """One entry, or ValueError whose message names the problem and the fix."""
    raise NotImplementedError


def parse_allowlist(items: object, *, allow_ip_ranges: bool = False) -> tuple[Entry, ...]:
    """A whole list, duplicates dropped, order kept; ValueError names the first bad entry."""
    raise NotImplementedError
