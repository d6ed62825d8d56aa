"""Egress allowlist entries: parsed, checked and put in canonical form. Pure.

An entry is one of

- a host name: ``pypi.org`` (that name only);
- a wildcard: ``*.pythonhosted.org`` (the name itself and any name below it); the ``*``
  must be the whole first label, and what follows needs two labels at least (``*.com``
  would be a whole top-level domain);
- either with a port: ``api.example.com:443`` (that port only; without one, the proxy's
  usual 80 for HTTP and 443 for HTTPS);
- with the sandbox's explicit opt-in (``allow_ip_ranges: true``) only, an IPv4 address or
  range: ``10.0.0.5``, ``10.0.0.0/8``, ``10.0.0.0/8:5432``.

Names are case-insensitive and may end in a dot; non-ASCII names must be given in their
ASCII form (``xn--...``). IPv6 is always refused (tasks have no IPv6 path), and so is any
name that a resolver or URL parser would read as an IPv4 address (``3323068426``,
``0x7f000001``, ``127.1``): an allowlist names hosts, not numbers in disguise.

The canonical text (``str(entry)``, what sandbox.json records and ExecRequest.egress holds):
lower case, no trailing dot: ``pypi.org``, ``*.pythonhosted.org``, ``api.example.com:443``;
an address or range always as a CIDR: ``10.0.0.5/32``, ``10.0.0.0/8:5432``.
``parse_entry(str(e), allow_ip_ranges=True) == e`` for every entry.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from typing import TypeVar

from aido.values import dataclass

MAX_ENTRIES = 256  # a squid.conf line each; no real allowlist comes near
MAX_ENTRY_CHARS = 300  # a name is at most 253 characters, plus "*." and ":65535"
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")  # what inet_aton reads as a number
_DOTTED_QUAD = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
H = TypeVar("H", bound=Hashable)
_HOST_EXAMPLE = "a host like pypi.org, *.pythonhosted.org or api.example.com:443"


class BadEntry(ValueError):
    """An entry refused: ``problem`` names it (quoting the entry), ``fix`` says what to write
    instead; ``str()`` is both, one line, for sandbox.yaml's file:line errors."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix


IP_OPT_IN = (
    "IP addresses and ranges need the sandbox's opt-in, allow_ip_ranges: true under "
    "permissions.network in sandbox.yaml (or name the host instead)"
)


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
        name = self.network or (f"*.{self.host}" if self.wildcard else self.host)
        return name if self.port is None else f"{name}:{self.port}"


def parse_entry(text: object, *, allow_ip_ranges: bool = False) -> Entry:
    """One entry, or ValueError (a BadEntry) whose message names the problem and the fix."""
    if not isinstance(text, str):
        kind = "mapping" if isinstance(text, dict) else "list" if isinstance(text, list) else None
        shown = f"a {kind}" if kind else repr(text)
        raise BadEntry(f"expected {_HOST_EXAMPLE}, got {shown}", "write each entry as a string")
    shown = repr(text) if len(text) <= 80 else repr(text[:77] + "...")
    entry = text.strip()
    if not entry:
        raise BadEntry(f"{shown} is empty", f"name {_HOST_EXAMPLE}")
    if len(entry) > MAX_ENTRY_CHARS:
        raise BadEntry(f"{shown} is longer than {MAX_ENTRY_CHARS} characters", f"name {_HOST_EXAMPLE}")
    if "://" in entry:
        rest = entry.partition("://")[2].partition("/")[0] or "the host"
        raise BadEntry(
            f"{shown} is a URL", f"write the host alone, like {rest} (the proxy allows HTTP and HTTPS to it)"
        )
    if "@" in entry:
        raise BadEntry(f"{shown} has a user name (@)", "write the host alone, like pypi.org")
    if entry.startswith("[") or entry.count(":") > 1:
        raise BadEntry(
            f"{shown} is an IPv6 address", "IPv6 is blocked for tasks: name the host (or an IPv4 address)"
        )
    name, colon, port_text = entry.partition(":")
    port = _port(shown, port_text) if colon else None
    lowered = name.lower()
    if "/" in lowered and not _DOTTED_QUAD.fullmatch(lowered.partition("/")[0]):
        host = lowered.partition("/")[0] or "the host"
        raise BadEntry(f"{shown} has a path", f"an allowlist names hosts only: write {host}")
    if lowered.endswith(".") and not lowered.endswith(".."):
        lowered = lowered[:-1]
    if "/" in lowered or _DOTTED_QUAD.fullmatch(lowered):
        return _network(shown, lowered, port, allow_ip_ranges=allow_ip_ranges)
    wildcard = lowered.startswith("*.")
    host = lowered[2:] if wildcard else lowered
    if lowered == "*":
        raise BadEntry(
            f"{shown} would allow every host",
            "name each host, like pypi.org or *.pythonhosted.org (network: true gives full network)",
        )
    if "*" in host:
        raise BadEntry(
            f"{shown} has '*' inside a name", "a wildcard is the whole first label only, like *.example.com"
        )
    if not host.isascii():
        raise BadEntry(f"{shown} is not ASCII", _ascii_fix(host))
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
        raise BadEntry(
            f"{shown} is not a valid host name",
            "use letters, digits, '-' and '.' only, labels of 1-63 characters, like pypi.org",
        )
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise BadEntry(
            f"{shown} reads as an IP address",
            "name the host, or write the address as a.b.c.d (with allow_ip_ranges: true in sandbox.yaml)",
        )
    if host == "localhost" or host.endswith(".localhost"):
        raise BadEntry(f"{shown} is the proxy itself", "name a host on the network, like pypi.org")
    if wildcard and len(labels) < 2:
        raise BadEntry(
            f"{shown} would allow a whole top-level domain",
            f"name the domain below it, like *.example.{labels[0]}",
        )
    return Entry(host=host, wildcard=wildcard, port=port)


HOSTS_ONLY = "name hosts only: IP addresses and ranges are not offered to agents"


def parse_host_entry(text: object) -> Entry:
    """``parse_entry`` for a list that names hosts only (`aido mcp`'s for agents, and an
    agent's): an IP address or range is refused with a fix that says so."""
    try:
        return parse_entry(text)
    except BadEntry as exc:
        if "allow_ip_ranges" in exc.fix:  # the sandbox.yaml opt-in: not something an agent has
            raise BadEntry(exc.problem, HOSTS_ONLY) from None
        raise


def covers(outer: Entry, inner: Entry) -> bool:
    """Whether ``outer`` allows every host and port ``inner`` does: the same port rule, and
    the same host, or ``outer`` a wildcard above it. IP entries cover and are covered by
    nothing (an operator's list for agents names hosts)."""
    if outer.network or inner.network or outer.port != inner.port:
        return False
    if not outer.wildcard:
        return not inner.wildcard and inner.host == outer.host
    return inner.host == outer.host or inner.host.endswith("." + outer.host)


def parse_allowlist(items: object, *, allow_ip_ranges: bool = False) -> tuple[Entry, ...]:
    """A whole list, duplicates dropped, order kept; ValueError names the first bad entry."""
    if isinstance(items, str) or not isinstance(items, list | tuple):
        raise BadEntry(f"expected a list of entries, got {items!r}", "write a list like [pypi.org]")
    if len(items) > MAX_ENTRIES:
        raise BadEntry(f"{len(items)} entries", f"an allowlist holds at most {MAX_ENTRIES}")
    return dedupe(parse_entry(item, allow_ip_ranges=allow_ip_ranges) for item in items)


def dedupe(items: Iterable[H]) -> tuple[H, ...]:
    """``items`` without repeats, in order."""
    return tuple(dict.fromkeys(items))


def _port(shown: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise BadEntry(f"{shown} has no valid port", "write a port number from 1 to 65535, like :443")
    port = int(text)
    if not 0 < port <= 65535:
        raise BadEntry(f"{shown} has port {port}", "a port is from 1 to 65535, like :443")
    return port


def _network(shown: str, text: str, port: int | None, *, allow_ip_ranges: bool) -> Entry:
    import ipaddress

    address, slash, prefix = text.partition("/")
    if not _DOTTED_QUAD.fullmatch(address) or (slash and not re.fullmatch(r"[0-9]{1,2}", prefix)):
        raise BadEntry(f"{shown} is not a valid IPv4 address or range", "write it like 10.0.0.0/8")
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise BadEntry(f"{shown} is not a valid IPv4 address or range", "write it like 10.0.0.0/8") from None
    if not allow_ip_ranges:
        raise BadEntry(f"{shown} is an IP {'range' if slash else 'address'}", IP_OPT_IN)
    if network.prefixlen == 0:
        raise BadEntry(f"{shown} would allow every address", "network: true gives full network")
    return Entry(host="", port=port, network=network.with_prefixlen)


def _ascii_fix(host: str) -> str:
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "write the name in its ASCII form (xn--...)"
    return f"write the name in its ASCII form: {encoded}"
