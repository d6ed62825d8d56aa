"""Squid's configuration for one run's egress proxy, generated from the allowlist, and its
access log parsed. Pure: no engine, no files.

The rule order is the security design (verified on Debian's Squid 5.7; see the README's
threat model):

1. ``deny manager``, ``deny !aido_clients``: only the run's own subnet may use the proxy.
2. Opted-in IP ranges (``Entry.network``): ``allow ip_literal nN ...`` where ``nN`` is a
   ``dst -n`` ACL: it matches IP-literal hosts only and never resolves anything. The
   proxy's own addresses (0.0.0.0/8, 127.0.0.0/8 and the run's network, where the proxy
   listens) are refused first, whatever is opted in: the proxy is never a destination of
   itself (its port, its loopback).
3. ``deny ip_literal``: every other IP-literal host (dotted, decimal, hex, octal, short
   forms, IPv6), matched by name (``-n``: no reverse lookup, which would otherwise let a
   PTR record make an IP look like an allowed name).
4. ``deny !allowlisted`` by name, before any ACL that resolves: an unlisted name is
   refused without a single DNS query (a DNS-exfiltration control).
5. ``deny blocked_dst``: a listed name resolving (any of its addresses) to a private,
   loopback, link-local (cloud metadata 169.254.169.254), CGNAT, multicast or reserved
   range, minus the ranges the allowlist opted into; then ``deny self``: the proxy's own
   addresses, as above, opted into or not.
6. Per entry: a name without a port may CONNECT to 443 and send plain HTTP to 80; with a
   port, both on that port only. ``*.x.y`` is Squid's ``.x.y``: the apex ``x.y`` itself
   and any name below it, at any depth.
7. ``deny all``.

CONNECT (HTTPS and any other tunnel) takes the same chain, as ``ssl_bump`` rules at step 1
(``terminate``: closed unanswered, see _split_connect), then, once the task's first bytes
are read, a second check: a TLS ClientHello's SNI must fall under the entry that allowed
the CONNECT (a plain name: that name, case aside; a wildcard: a name under it; same port
rule), else the tunnel is terminated before the proxy connects anywhere (domain fronting:
``deny:sni_not_allowlisted``, or ``deny:sni_mismatch`` for a listed name of another entry).
Nothing is ever decrypted (peek, splice, terminate; never bump). A ClientHello without SNI
is judged by the CONNECT target, already allowed; an address-range entry names no server,
so its tunnels are spliced whatever their SNI; bytes that are not TLS (a database protocol
on a port entry) are tunnelled as they are (on_unsupported_protocol).

Each decisive rule annotates the transaction (``aido=allow:<entry>`` or
``aido=deny:<reason>``), so every access-log line says which rule decided it.

IPv6: the run's networks have no IPv6. Squid sees that at start ("IPv6 has not been
enabled") and then neither connects over IPv6 nor keeps IPv6 ACL values (the IPv6 entries
of BLOCKED are dropped: harmless, as no IPv6 destination is reachable); Squid 5 has no
``dns_v4_first`` to set. IPv6 literals are denied as IP literals, and opting into an IPv6
range is refused here (ValueError): the allowlist should refuse it first.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from aido.egress.allowlist import Entry, dedupe
from aido.egress.squid_log import LOGFORMAT as LOGFORMAT
from aido.egress.squid_log import gaps as gaps
from aido.egress.squid_log import parse_log as parse_log

PORT = 3128  # where the proxy listens on the run's internal network

# Where a request may never go unless the allowlist opts into the range (Entry.network).
# Squid's ``dst`` matches when ANY address of a name is in a range, so a name with one
# public and one private address is refused.
BLOCKED: tuple[str, ...] = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",
    "100.64.0.0/10",  # CGNAT
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, broadcast
    "::/128",
    "::1/128",
    "::ffff:0:0/96",  # IPv4-mapped: would reach the IPv4 ranges above
    "64:ff9b::/96",  # NAT64, likewise
    "100::/64",
    "2001:db8::/32",
    "2002::/16",  # 6to4
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)

_SELF = ("0.0.0.0/8", "127.0.0.0/8")  # and the clients' network: see config()
_RANGE = re.compile(r"[0-9a-f.:/]{2,43}")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
# An IP literal in any form inet_aton or getaddrinfo accepts (1.2.3.4, 3323068426,
# 0xc612000a, 0306.022.0.012, 1.2.3, ...) ends in a label starting with a digit; no DNS
# name does (top-level domains are alphabetic). IPv6 literals contain ':'.
_IP_LITERAL = (r"^(.*\.)?[0-9][^.]*\.?$", ":")


def _check_host(entry: Entry) -> str:
    host = entry.host
    labels = host.split(".") if isinstance(host, str) else [""]
    if not (
        isinstance(host, str)
        and len(host) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1][0].isdigit()
    ):
        raise ValueError(f"egress entry {entry!r}: not a DNS name")
    return host


def _check_port(entry: Entry) -> int | None:
    port = entry.port
    if port is None:
        return None
    if type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"egress entry {entry!r}: port must be 1..65535")
    return port


def _check_network(entry: Entry) -> ipaddress.IPv4Network:
    try:
        bad = entry.host or entry.wildcard or not isinstance(entry.network, str)
        if bad or not _RANGE.fullmatch(entry.network):
            raise ValueError
        network = ipaddress.ip_network(entry.network, strict=False)
    except ValueError:
        raise ValueError(f"egress entry {entry!r}: not an IP range") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"egress entry {entry!r}: IPv6 ranges are not supported (no IPv6 egress)")
    return network


def _acl_range(network: ipaddress.IPv4Network) -> str:
    # Squid refuses 0.0.0.0/0 ("needs to be replaced by the term 'all'", whose meaning
    # includes IPv6): the same addresses as two halves.
    return " ".join(str(net) for net in (network.subnets() if network.prefixlen == 0 else [network]))


def label(entry: Entry) -> str:
    """The entry as the log names it (``allow:<label>``): ``*.x.y``, ``x.y:8443``,
    ``10.1.0.0/16:443``: the entry's canonical text, once checked to hold only DNS-name,
    digit and range characters (it goes into squid.conf)."""
    _check_port(entry)
    if entry.network:
        _check_network(entry)
    else:
        _check_host(entry)
    return str(entry)


def _blocked(blocked: tuple[str, ...], opted: list[ipaddress.IPv4Network]) -> list[str]:
    """The blocked ranges minus the opted-in ones (a set difference, so that a name with one
    address in an opted range and another in a blocked one is still refused)."""
    left = [ipaddress.ip_network(text) for text in blocked]
    for hole in opted:
        kept: list[Any] = []
        for net in left:
            if net.version != hole.version or not net.overlaps(hole):
                kept.append(net)
            elif hole.supernet_of(net):
                continue
            else:
                kept.extend(net.address_exclude(hole))
        left = kept
    return [str(net) for net in left]


def _clients(clients: str) -> str:
    network = ipaddress.ip_network(clients, strict=False)
    own = [ipaddress.IPv4Network(text) for text in _SELF]
    if (
        not isinstance(network, ipaddress.IPv4Network)
        or network.prefixlen < 8
        or any(map(network.overlaps, own))
    ):
        raise ValueError(f"clients {clients!r}: expected the run's IPv4 network (e.g. 172.30.5.0/24)")
    return str(network)


def config(
    entries: tuple[Entry, ...],
    clients: str,
    *,
    blocked: tuple[str, ...] = BLOCKED,
    listen: str | None = None,
) -> str:
    """squid.conf allowing exactly ``entries`` to clients in the subnet ``clients``,
    listening on ``listen`` (an IPv4 address: the proxy's on the run's network) or, without
    it, on every address. ValueError if an entry, ``clients``, ``listen`` or a blocked range
    is not what its type promises (entries come validated; this is the last guard against a
    line being injected)."""
    client_net = _clients(clients)
    port_line = _port_line(listen)
    opted = [_check_network(entry) for entry in entries if entry.network]
    acls = [
        "acl CONNECT method CONNECT",
        "acl http_scheme proto HTTP",
        # Squid checks a tunnel again once it is spliced, or once its first bytes turn out
        # not to be TLS (on_unsupported_protocol), as a request of its own (no method, or
        # CONNECT) on the same client connection: that connection's CONNECT was allowed
        # at step 1, which annotated the connection (its note is then every later line's).
        "acl peeked note aido_tunnel yes",
        "acl spliced annotate_client aido_spliced=yes",  # handed over: see _ACCESS_LOG
        "acl port_80 port 80",
        "acl port_443 port 443",
        f"acl aido_clients src {client_net}",
        "acl ip_literal dstdom_regex -n -i " + " ".join(_IP_LITERAL),
    ]
    why = ["manager", "not_client", "ip_literal", "not_allowlisted", "blocked_dst", "port_or_method"]
    notes = [f"acl why_{reason} annotate_transaction aido=deny:{reason}" for reason in why]
    rules = ["http_access deny manager why_manager", "http_access deny !aido_clients why_not_client"]
    own = " ".join((*_SELF, client_net))  # where the proxy itself is: never a destination
    acls.append(f"acl self dst {own}")
    if opted:
        acls.append(f"acl self_literal dst -n {own}")
        rules.append("http_access deny ip_literal self_literal why_ip_literal")
    names: list[str] = []  # the dstdomain value of every name entry
    allows: list[str] = []
    splices: list[str] = []  # ssl_bump: which tunnels keep going once their SNI is known
    for number, entry in enumerate(entries):
        port, text = _check_port(entry), label(entry)
        notes.append(f"acl why_{number} annotate_transaction aido=allow:{text}")
        notes.append(f"acl tunnel_{number} annotate_client aido=allow:{text} aido_tunnel=yes")
        if entry.network:
            # `dst -n` matches IP-literal hosts only and never resolves; these rules come
            # before `deny ip_literal`, and `ip_literal` is checked first anyway.
            acls.append(f"acl e{number} dst -n {_acl_range(_check_network(entry))}")
            lines, prefix = rules, "ip_literal "
        else:
            value = ("." if entry.wildcard else "") + _check_host(entry)
            acls.append(f"acl e{number} dstdomain -n {value}")
            names.append(value)
            lines, prefix = allows, ""
        if port is not None:
            acls.append(f"acl e{number}_port port {port}")
        tls, plain = ("port_443", "port_80") if port is None else (f"e{number}_port",) * 2
        lines.append(f"http_access allow {prefix}CONNECT e{number} {tls} why_{number}")
        lines.append(f"http_access allow {prefix}http_scheme e{number} {plain} why_{number}")
        lines.append(f"http_access allow {prefix}peeked e{number} {tls}")
        if entry.network:
            # An address range names no server: any SNI goes to that address, nowhere else.
            splices.append(f"ssl_bump splice ip_literal CONNECT e{number} {tls} spliced")
        else:
            # The SNI must fall under the same entry (and port rule) as the CONNECT target:
            # for a plain name, the same name.
            acls.append(f"acl sni_e{number} ssl::server_name --client-requested {value}")
            splices.append(f"ssl_bump splice CONNECT e{number} {tls} sni_e{number} spliced")
    rules.append("http_access deny ip_literal why_ip_literal")
    listed = _dstdomain_set(names)
    if listed:
        acls.append("acl allowlisted dstdomain -n " + " ".join(listed))
        rules.append("http_access deny !allowlisted why_not_allowlisted")
    else:
        rules.append("http_access deny all why_not_allowlisted")
    ranges = _blocked(blocked, opted)
    if ranges:
        acls.append("acl blocked_dst dst " + " ".join(ranges))
        rules.append("http_access deny blocked_dst why_blocked_dst")
    rules.append("http_access deny self why_blocked_dst")
    rules += allows
    rules.append("http_access deny all why_port_or_method")
    rules, steps = _split_connect(rules)
    if listed:
        acls.append("acl sni_allowlisted ssl::server_name --client-requested " + " ".join(listed))
        splices.append("ssl_bump terminate !sni_allowlisted why_sni_not_allowlisted")
    else:
        splices.append("ssl_bump terminate all why_sni_not_allowlisted")
    notes += [f"acl why_{reason} annotate_client aido=deny:{reason} aido_tunnel=no" for reason in _SNI_WHY]
    tls_rules = [*_TLS_SETTINGS, *steps, *splices, "ssl_bump terminate all why_sni_mismatch", *_ACCESS_LOG]
    body = [
        port_line,
        *_SETTINGS,
        *acls,
        *notes,
        *rules,
        *tls_rules,
        "icp_access deny all",
        "htcp_access deny all",
    ]
    text = "\n".join([*body, ""])
    if any(not line.isprintable() or "#" in line.partition("logformat")[0] for line in text.splitlines()):
        raise ValueError("generated squid.conf has an unexpected character")  # cannot happen: checked above
    return text


def _split_connect(rules: list[str]) -> tuple[list[str], list[str]]:
    """The same decision chain, CONNECTs decided by ssl_bump at step 1 instead of http_access.
    Squid 5.7 answers a CONNECT that http_access denies on an ssl-bump port by bumping the
    tunnel to show its error page inside TLS (client_side_request.cc: "Force bump action on
    error"): a 200, then Squid's own certificate. ``ssl_bump terminate`` at step 1 closes
    the connection instead, before any "200" and before any connection to the server; an
    allowed CONNECT is peeked at (its SNI is then checked at step 2)."""
    http = [*rules[:2], "http_access allow CONNECT !peeked"]  # manager, not_client: then ssl_bump
    steps = []
    for line in rules[2:]:
        words = line.split()
        if words[1] == "deny":
            http.append(line)
            steps.append(" ".join(["ssl_bump terminate step1", *words[2:]]))
        elif "CONNECT" in words:
            steps.append(
                " ".join(["ssl_bump peek step1", *words[2:-1], words[-1].replace("why_", "tunnel_")])
            )
        else:
            http.append(line)
    return http, steps


def _dstdomain_set(values: list[str]) -> list[str]:
    """Distinct values, minus those a wildcard already covers: Squid warns about (and drops)
    a name that lies under another value of the same dstdomain ACL."""
    unique = dedupe(values)
    wild = {value for value in unique if value.startswith(".")}

    def covered(value: str) -> bool:
        name = value.lstrip(".")
        parents = ["." + ".".join(name.split(".")[i:]) for i in range(len(name.split(".")))]
        return any(parent in wild and parent != value for parent in parents)

    return [value for value in unique if not covered(value)]


def _port_line(listen: str | None) -> str:
    """The listening port. ``ssl-bump`` lets the ssl_bump rules peek at each tunnel's TLS
    ClientHello; the certificate (made when the image is built, scripts/bootstrap.sh) is
    required by Squid for such a port but never presented: nothing is bumped (decrypted),
    tunnels are only spliced or terminated, and generate-host-certificates=off starts no
    certificate helper."""
    where = str(PORT)
    if listen is not None:
        try:
            address = ipaddress.ip_address(listen) if _RANGE.fullmatch(listen) else None
        except ValueError:
            address = None
        if not isinstance(address, ipaddress.IPv4Address):
            raise ValueError(f"listen {listen!r}: expected the proxy's IPv4 address")
        where = f"{address}:{PORT}"
    return f"http_port {where} ssl-bump {_PEEK_CERT} generate-host-certificates=off"


_PEEK_CERT = "tls-cert=/etc/squid/aido-peek.pem tls-key=/etc/squid/aido-peek.key"
_SNI_WHY = ("sni_not_allowlisted", "sni_mismatch")

# A CONNECT that http_access allowed is answered "200", then the proxy reads the task's
# first bytes (peek at step 1, before any connection to the server) and decides on the TLS
# ClientHello's SNI: splice (a byte-for-byte tunnel, never decrypted) when it falls under
# the entry that allowed the CONNECT, else terminate (the task's connection is closed, the
# server is never contacted). A ClientHello without SNI is judged by the CONNECT target
# (already allowed). Bytes that are not TLS (a database protocol to a port entry) cannot be
# peeked at and are tunnelled as they are: on_unsupported_protocol.
# After the ACLs it names.
_ACCESS_LOG = (
    # An allowed tunnel's CONNECT is logged twice by Squid: once answered (when it hands the
    # connection over to be spliced or tunnelled: 200, no server yet) and once as the tunnel
    # when it closes (with the server and the bytes). The first is left out: one line per
    # tunnel. Refused and terminated CONNECTs, and one still waiting for the task's first
    # bytes when the proxy stops, were never handed over ("spliced") and are logged.
    "acl spliced_note note aido_spliced yes",
    "acl answered_status http_status 200",
    "acl answered_hier hier_code HIER_NONE",
    "acl answered all-of CONNECT spliced_note answered_status answered_hier",
    "access_log stdio:/dev/stdout aido !answered",
)

_TLS_SETTINGS = (
    "acl step1 at_step SslBump1",
    "on_unsupported_protocol tunnel all spliced",
)

_SETTINGS = (
    "pid_filename none",
    "coredump_dir none",
    "cache deny all",
    "cache_mem 0 MB",
    "pinger_enable off",
    "icp_port 0",
    "htcp_port 0",
    "shutdown_lifetime 0 seconds",
    "max_filedescriptors 1024",
    "visible_hostname aido-egress",
    "httpd_suppress_version_string on",
    "via off",
    "forwarded_for delete",
    "check_hostnames on",
    "client_db off",
    # A server that does not answer is given up after 30 s; read_timeout keeps its default
    # (15 min without a byte) so that long downloads and quiet tunnels still work.
    "connect_timeout 30 seconds",
    "request_timeout 60 seconds",
    "logfile_rotate 0",
    "cache_log stdio:/dev/stderr",
    f"logformat aido {LOGFORMAT}",
)
