"""aido.egress.squid without an engine: the generated squid.conf (rule order, entries,
opt-in ranges, injection attempts) and the access-log parser (lines captured from the
real Squid 5.7, and garbage). tests/egress/test_squid_engine.py runs both against the
real proxy image."""

from __future__ import annotations

import ipaddress
import random
import re

import pytest

from aido.egress.allowlist import Entry
from aido.egress.squid import BLOCKED, LOGFORMAT, config, gaps, label, parse_log

SUBNET = "172.30.5.0/24"
PYPI = (Entry("pypi.org"), Entry("pythonhosted.org", wildcard=True), Entry("api.example.com", port=443))

# Every allowlist shape config() must turn into a valid squid.conf (the engine test runs
# `squid -k parse` on each).
ALLOWLISTS: dict[str, tuple[Entry, ...]] = {
    "pypi": PYPI,
    "empty": (),
    "ports": (Entry("api.test", port=8443), Entry("api.test"), Entry("cdn.test", wildcard=True, port=8080)),
    "covered names": (
        Entry("pythonhosted.org"),
        Entry("files.pythonhosted.org"),
        Entry("pythonhosted.org", wildcard=True),
        Entry("files.pythonhosted.org", wildcard=True),
        Entry("pypi.org"),
        Entry("pypi.org"),
    ),
    "ranges": (
        Entry("pypi.org"),
        Entry("", network="10.1.0.0/16", port=8080),
        Entry("", network="169.254.169.254"),
        Entry("", network="0.0.0.0/0"),
    ),
}


def http_access(conf: str) -> list[str]:
    return [line for line in conf.splitlines() if line.startswith("http_access ")]


def ssl_bump(conf: str) -> list[str]:
    return [line for line in conf.splitlines() if line.startswith("ssl_bump ")]


def acl_values(conf: str, name: str) -> list[str]:
    (line,) = [line for line in conf.splitlines() if line.startswith(f"acl {name} ")]
    return line.split()[2:]


def test_pypi_allowlist_gives_exactly_these_rules() -> None:
    conf = config(PYPI, SUBNET)
    assert http_access(conf) == [
        "http_access deny manager why_manager",
        "http_access deny !aido_clients why_not_client",
        "http_access allow CONNECT !peeked",  # decided by ssl_bump, below
        "http_access deny ip_literal why_ip_literal",
        "http_access deny !allowlisted why_not_allowlisted",
        "http_access deny blocked_dst why_blocked_dst",
        "http_access deny self why_blocked_dst",
        "http_access allow http_scheme e0 port_80 why_0",
        "http_access allow peeked e0 port_443",  # the tunnel, once spliced or not TLS
        "http_access allow http_scheme e1 port_80 why_1",
        "http_access allow peeked e1 port_443",
        "http_access allow http_scheme e2 e2_port why_2",
        "http_access allow peeked e2 e2_port",
        "http_access deny all why_port_or_method",
    ]
    # CONNECT: the same chain at step 1 (terminate: closed unanswered), then the SNI check.
    assert ssl_bump(conf) == [
        "ssl_bump terminate step1 ip_literal why_ip_literal",
        "ssl_bump terminate step1 !allowlisted why_not_allowlisted",
        "ssl_bump terminate step1 blocked_dst why_blocked_dst",
        "ssl_bump terminate step1 self why_blocked_dst",
        "ssl_bump peek step1 CONNECT e0 port_443 tunnel_0",
        "ssl_bump peek step1 CONNECT e1 port_443 tunnel_1",
        "ssl_bump peek step1 CONNECT e2 e2_port tunnel_2",
        "ssl_bump terminate step1 all why_port_or_method",
        "ssl_bump splice CONNECT e0 port_443 sni_e0 spliced",
        "ssl_bump splice CONNECT e1 port_443 sni_e1 spliced",
        "ssl_bump splice CONNECT e2 e2_port sni_e2 spliced",
        "ssl_bump terminate !sni_allowlisted why_sni_not_allowlisted",
        "ssl_bump terminate all why_sni_mismatch",
    ]
    assert acl_values(conf, "sni_e0") == ["ssl::server_name", "--client-requested", "pypi.org"]
    assert acl_values(conf, "sni_e1") == ["ssl::server_name", "--client-requested", ".pythonhosted.org"]
    assert acl_values(conf, "sni_allowlisted")[2:] == ["pypi.org", ".pythonhosted.org", "api.example.com"]
    assert "acl tunnel_1 annotate_client aido=allow:*.pythonhosted.org aido_tunnel=yes" in conf
    assert acl_values(conf, "peeked") == ["note", "aido_tunnel", "yes"]
    lines = conf.splitlines()
    assert lines[0].startswith("http_port 3128 ssl-bump ") and "generate-host-certificates=off" in lines[0]
    assert "on_unsupported_protocol tunnel all spliced" in lines
    assert "acl step1 at_step SslBump1" in lines
    assert acl_values(conf, "aido_clients") == ["src", SUBNET]
    assert acl_values(conf, "self") == ["dst", "0.0.0.0/8", "127.0.0.0/8", SUBNET]  # the proxy itself
    assert acl_values(conf, "e0") == ["dstdomain", "-n", "pypi.org"]
    assert acl_values(conf, "e1") == ["dstdomain", "-n", ".pythonhosted.org"]  # apex and below
    assert acl_values(conf, "e2_port") == ["port", "443"]
    assert acl_values(conf, "allowlisted") == [
        "dstdomain",
        "-n",
        "pypi.org",
        ".pythonhosted.org",
        "api.example.com",
    ]
    assert "acl why_1 annotate_transaction aido=allow:*.pythonhosted.org" in conf
    assert "acl why_2 annotate_transaction aido=allow:api.example.com:443" in conf
    assert f"logformat aido {LOGFORMAT}" in conf
    assert "access_log stdio:/dev/stdout aido" in conf and "cache_log stdio:/dev/stderr" in conf
    for setting in (
        "pid_filename none",
        "cache deny all",
        "via off",
        "forwarded_for delete",
        "pinger_enable off",
    ):
        assert setting in conf.splitlines()


@pytest.mark.parametrize("name", ALLOWLISTS)
def test_no_name_is_resolved_before_the_allowlist_decides(name: str) -> None:
    """The DNS-exfiltration control: every rule up to `deny !allowlisted` uses only ACLs
    that never resolve a name (a plain `dst` does; `dst -n` does not)."""
    conf = config(ALLOWLISTS[name], SUBNET)
    resolving = {line.split()[1] for line in conf.splitlines() if re.match(r"acl \S+ dst (?!-n )", line)}
    assert "blocked_dst" in resolving
    for rules, deny_literal, last in (
        (
            http_access(conf),
            "http_access deny ip_literal why_ip_literal",
            "http_access deny all why_port_or_method",
        ),
        (
            [rule for rule in ssl_bump(conf) if " step1 " in rule],  # CONNECT
            "ssl_bump terminate step1 ip_literal why_ip_literal",
            "ssl_bump terminate step1 all why_port_or_method",
        ),
    ):
        cut = next(i for i, rule in enumerate(rules) if "why_not_allowlisted" in rule)
        assert rules.index(deny_literal) < cut
        for rule in rules[: cut + 1]:
            assert not {acl.lstrip("!") for acl in rule.split()[2:]} & resolving, rule
        assert rules[-1] == last
    assert "allow all" not in conf


def test_a_port_entry_allows_that_port_only() -> None:
    conf = config(ALLOWLISTS["ports"], SUBNET)
    rules = http_access(conf) + ssl_bump(conf)
    assert "ssl_bump peek step1 CONNECT e0 e0_port tunnel_0" in rules
    assert "ssl_bump splice CONNECT e0 e0_port sni_e0 spliced" in rules
    assert "http_access allow peeked e0 e0_port" in rules
    assert "http_access allow http_scheme e0 e0_port why_0" in rules
    assert not [rule for rule in rules if " e0 port_" in rule]
    assert acl_values(conf, "e0_port") == ["port", "8443"]
    assert acl_values(conf, "e2_port") == ["port", "8080"]
    assert "acl why_2 annotate_transaction aido=allow:*.cdn.test:8080" in conf
    assert acl_values(conf, "allowlisted") == ["dstdomain", "-n", "api.test", ".cdn.test"]


def test_names_a_wildcard_covers_leave_the_allowlisted_acl() -> None:
    """Squid refuses (FATAL) a dstdomain ACL holding both `x.y` and `.x.y`."""
    conf = config(ALLOWLISTS["covered names"], SUBNET)
    assert acl_values(conf, "allowlisted") == ["dstdomain", "-n", ".pythonhosted.org", "pypi.org"]
    assert acl_values(conf, "e1") == ["dstdomain", "-n", "files.pythonhosted.org"]  # its own rule stays


def test_an_empty_allowlist_refuses_every_name() -> None:
    conf = config((), SUBNET)
    rules = http_access(conf)
    assert "http_access deny all why_not_allowlisted" in rules
    assert [rule for rule in rules if rule.startswith("http_access allow")] == [
        "http_access allow CONNECT !peeked"
    ]
    assert "ssl_bump terminate step1 all why_not_allowlisted" in ssl_bump(conf)
    assert not [rule for rule in ssl_bump(conf) if rule.startswith(("ssl_bump peek", "ssl_bump splice"))]


def test_opted_in_ranges_allow_ip_literals_there_and_leave_the_blocked_ranges() -> None:
    entries = (
        Entry("pypi.org"),
        Entry("", network="10.1.0.0/16", port=8080),
        Entry("", network="169.254.169.254"),
    )
    conf = config(entries, SUBNET)
    rules = http_access(conf)
    assert rules[3:9] == [
        "http_access deny ip_literal self_literal why_ip_literal",  # never the proxy itself
        "http_access allow ip_literal http_scheme e1 e1_port why_1",
        "http_access allow ip_literal peeked e1 e1_port",
        "http_access allow ip_literal http_scheme e2 port_80 why_2",
        "http_access allow ip_literal peeked e2 port_443",
        "http_access deny ip_literal why_ip_literal",
    ]
    assert ssl_bump(conf)[:4] == [
        "ssl_bump terminate step1 ip_literal self_literal why_ip_literal",
        "ssl_bump peek step1 ip_literal CONNECT e1 e1_port tunnel_1",
        "ssl_bump peek step1 ip_literal CONNECT e2 port_443 tunnel_2",
        "ssl_bump terminate step1 ip_literal why_ip_literal",
    ]
    # A range names no server: its tunnels are spliced whatever their SNI.
    assert "ssl_bump splice ip_literal CONNECT e1 e1_port spliced" in ssl_bump(conf)
    assert acl_values(conf, "e1") == ["dst", "-n", "10.1.0.0/16"]  # -n: IP-literal hosts only, no lookup
    assert acl_values(conf, "e2") == ["dst", "-n", "169.254.169.254/32"]
    assert "acl why_2 annotate_transaction aido=allow:169.254.169.254" in conf
    blocked = [ipaddress.ip_network(value) for value in acl_values(conf, "blocked_dst")[1:]]

    def is_blocked(address: str) -> bool:
        return any(ipaddress.ip_address(address) in net for net in blocked)

    assert not is_blocked("10.1.0.1") and not is_blocked("10.1.255.255") and not is_blocked("169.254.169.254")
    for address in (
        "10.0.255.255",
        "10.2.0.0",
        "169.254.169.253",
        "169.254.169.255",
        "127.0.0.1",
        "192.168.1.1",
    ):
        assert is_blocked(address), address


def test_opting_into_everything_keeps_the_name_check_and_the_proxys_own_addresses() -> None:
    conf = config((Entry("", network="0.0.0.0/0"),), SUBNET, blocked=("10.0.0.0/8", "127.0.0.0/8"))
    assert "acl blocked_dst" not in conf and "deny blocked_dst" not in conf
    assert acl_values(conf, "self_literal") == ["dst", "-n", "0.0.0.0/8", "127.0.0.0/8", SUBNET]
    assert acl_values(conf, "e0") == ["dst", "-n", "0.0.0.0/1", "128.0.0.0/1"]  # Squid refuses 0.0.0.0/0
    rules = http_access(conf)
    assert rules.index("http_access deny ip_literal self_literal why_ip_literal") < rules.index(
        "http_access allow ip_literal http_scheme e0 port_80 why_0"
    )
    steps = ssl_bump(conf)
    assert steps.index("ssl_bump terminate step1 ip_literal self_literal why_ip_literal") < steps.index(
        "ssl_bump peek step1 ip_literal CONNECT e0 port_443 tunnel_0"
    )
    assert (
        "http_access deny all why_not_allowlisted" in rules
        and "http_access deny self why_blocked_dst" in rules
    )


def test_blocked_can_be_adjusted() -> None:
    conf = config(PYPI, SUBNET, blocked=("198.18.5.66/32",))
    assert acl_values(conf, "blocked_dst") == ["dst", "198.18.5.66/32"]
    assert "198.18.0.0/15" in BLOCKED and "169.254.0.0/16" in BLOCKED


HOSTILE = [
    Entry("a.test\nhttp_access allow all"),
    Entry("a.test all"),
    Entry("a.test#x"),
    Entry("a.test\rhttp_access allow all"),
    Entry("${service_name}.test"),
    Entry('"a.test"'),
    Entry(""),
    Entry("."),
    Entry(".a.test"),
    Entry("a..test"),
    Entry("*.a.test"),
    Entry("a.test", wildcard=True, port="443\nhttp_access allow all"),  # type: ignore[arg-type]
    Entry("a.test", port=True),
    Entry("a.test", port=0),
    Entry("a.test", port=65536),
    Entry("1.2.3.4"),
    Entry("3323068426"),
    Entry("a." + "b" * 64),
    Entry(".".join(["a"] * 200)),
    Entry(None),  # type: ignore[arg-type]
    Entry("", network="10.0.0.0/8 0.0.0.0/0"),
    Entry("", network="10.0.0.0/8\nhttp_access allow all"),
    Entry("", network="all"),
    Entry("", network="fd00::/8"),
    Entry("a.test", network="10.0.0.0/8"),
    Entry("", wildcard=True, network="10.0.0.0/8"),
    Entry("", network="10.0.0.0/8", port=-1),
]


@pytest.mark.parametrize("entry", HOSTILE, ids=repr)
def test_a_hostile_entry_cannot_add_a_line(entry: Entry) -> None:
    with pytest.raises(ValueError, match="egress entry"):
        config((Entry("ok.test"), entry), SUBNET)
    with pytest.raises(ValueError):
        label(entry)


@pytest.mark.parametrize(
    "clients", ["172.30.5.0/24\nhttp_access allow all", "all", "", "172.30.5.0/24 0.0.0.0/0"]
)
def test_hostile_clients_or_blocked_cannot_add_a_line(clients: str) -> None:
    with pytest.raises(ValueError):
        config(PYPI, clients)
    with pytest.raises(ValueError):
        config(PYPI, SUBNET, blocked=(clients,))


@pytest.mark.parametrize("clients", ["127.0.0.0/24", "0.0.0.0/0", "10.0.0.0/7", "fd00::/64", "0.1.2.0/24"])
def test_clients_must_be_a_plausible_run_network(clients: str) -> None:
    with pytest.raises(ValueError, match="clients"):
        config(PYPI, clients)


def test_labels() -> None:
    assert label(Entry("pypi.org")) == "pypi.org"
    assert label(Entry("cdn.test", wildcard=True)) == "*.cdn.test"
    assert label(Entry("api.test", port=8443)) == "api.test:8443"
    assert label(Entry("", network="10.1.0.0/16", port=443)) == "10.1.0.0/16:443"
    assert label(Entry("x_y.test")) == "x_y.test"


def test_labels_are_the_entries_canonical_text() -> None:
    """allow:<label> in the network log names the entry as the run records it."""
    entries = [
        *PYPI,
        *ALLOWLISTS["ports"],
        Entry("", network="10.1.0.0/16", port=443),
        Entry("", network="10.0.0.1"),
    ]
    assert [label(entry) for entry in entries] == [str(entry) for entry in entries]


# Captured from aido/egress-squid (Squid 5.7) with config(), LOGFORMAT as above: allowed,
# denied, IP literals (dotted, CONNECT, decimal 3323068426, [::1], 0x7f.1), wildcard and
# apex, a wildcard name resolving to a blocked address, a tunnel, wrong ports, requests
# Squid could not parse (Host with a space, NUL bytes), an odd method (G%ET).
CAPTURED = """\
0 1796246258.330 198.18.213.3 GET allowed.test 80 TCP_MISS_ABORTED 200 76 207 198.18.213.10 80 allow:allowed.test
1 1796246258.331 198.18.213.3 GET denied.test 80 TCP_DENIED 403 74 3395 - - deny:not_allowlisted
2 1796246258.332 198.18.213.3 GET 198.18.213.10 80 TCP_DENIED 403 57 3399 - - deny:ip_literal
3 1796246258.333 198.18.213.3 CONNECT 198.18.213.10 443 TCP_DENIED 403 38 3408 - - deny:ip_literal
4 1796246258.333 198.18.213.3 GET 198.18.0.10 80 TCP_DENIED 403 54 3395 - - deny:ip_literal
5 1796246258.334 198.18.213.3 GET %5B::1%5D 80 TCP_DENIED 403 49 3383 - - deny:ip_literal
6 1796246258.336 198.18.213.3 GET www.cdn.test 80 TCP_MISS_ABORTED 200 56 207 198.18.213.10 80 allow:*.cdn.test
7 1796246258.337 198.18.213.3 GET cdn.test 80 TCP_MISS_ABORTED 200 52 207 198.18.213.10 80 allow:*.cdn.test
8 1796246258.338 198.18.213.3 GET meta.cdn.test 80 TCP_DENIED 403 57 3399 - - deny:blocked_dst
9 1796246258.342 198.18.213.3 CONNECT allowed.test 443 TCP_TUNNEL 200 99 169 198.18.213.10 443 allow:allowed.test
10 1796246258.343 198.18.213.3 CONNECT allowed.test 8443 TCP_DENIED 403 38 3396 - - deny:port_or_method
11 1796246258.345 198.18.213.3 GET - - NONE_NONE 400 58 3591 - - -
13 1796246258.349 198.18.213.3 G%25ET allowed.test 80 TCP_MISS_ABORTED 501 57 260 198.18.213.10 80 allow:allowed.test
15 1796246258.356 198.18.213.3 - - - NONE_NONE 400 14 3369 - - -
18 1796246258.360 198.18.213.3 GET 127.0.0.1 80 TCP_DENIED 403 31 3396 - - deny:ip_literal
20 1796246258.363 198.18.213.3 GET allowed.test 21 TCP_DENIED 403 36 3400 - - deny:port_or_method
"""  # noqa: E501

KEYS = {
    "seq", "time", "client", "method", "host", "port", "decision", "reason",
    "result", "status", "bytes_sent", "bytes_received", "server",
}  # fmt: skip


def test_parse_log_of_captured_lines() -> None:
    entries = parse_log(CAPTURED)
    assert all(set(entry) == KEYS for entry in entries)
    assert entries[0] == {
        "seq": 0,
        "time": "2026-12-02T21:17:38.330Z",
        "client": "198.18.213.3",
        "method": "GET",
        "host": "allowed.test",
        "port": 80,
        "decision": "allowed",
        "reason": "allow:allowed.test",
        "result": "TCP_MISS_ABORTED",
        "status": 200,
        "bytes_sent": 76,
        "bytes_received": 207,
        "server": "198.18.213.10:80",
    }
    summary = [
        (e["seq"], e["method"], e["host"], e["port"], e["decision"], e["reason"], e["status"])
        for e in entries
    ]
    assert summary[1:] == [
        (1, "GET", "denied.test", 80, "denied", "deny:not_allowlisted", 403),
        (2, "GET", "198.18.213.10", 80, "denied", "deny:ip_literal", 403),
        (3, "CONNECT", "198.18.213.10", 443, "denied", "deny:ip_literal", None),  # a tunnel: no status
        (4, "GET", "198.18.0.10", 80, "denied", "deny:ip_literal", 403),
        (5, "GET", "[::1]", 80, "denied", "deny:ip_literal", 403),
        (6, "GET", "www.cdn.test", 80, "allowed", "allow:*.cdn.test", 200),
        (7, "GET", "cdn.test", 80, "allowed", "allow:*.cdn.test", 200),
        (8, "GET", "meta.cdn.test", 80, "denied", "deny:blocked_dst", 403),
        (9, "CONNECT", "allowed.test", 443, "allowed", "allow:allowed.test", None),
        (10, "CONNECT", "allowed.test", 8443, "denied", "deny:port_or_method", None),
        (11, "GET", "-", None, "denied", "deny:invalid_request", 400),
        (13, "G%25ET", "allowed.test", 80, "allowed", "allow:allowed.test", 501),  # '%' stays encoded
        (15, "-", "-", None, "denied", "deny:invalid_request", 400),
        (18, "GET", "127.0.0.1", 80, "denied", "deny:ip_literal", 403),
        (20, "GET", "allowed.test", 21, "denied", "deny:port_or_method", 403),
    ]
    assert entries[9]["server"] == "198.18.213.10:443" and entries[9]["result"] == "TCP_TUNNEL"
    assert entries[1]["server"] is None and entries[1]["bytes_received"] == 3395
    assert gaps(entries) == 5  # 12, 14, 16, 17, 19


def test_gaps() -> None:
    lines = CAPTURED.splitlines()
    assert gaps(parse_log("\n".join(lines[:11]))) == 0
    assert gaps(parse_log("\n".join(lines[1:11]))) == 1  # the first line (seq 0) lost
    assert gaps(parse_log("\n".join([*lines[:5], "garbage", *lines[6:11]]))) == 0  # unparsed stands for seq 5
    assert gaps(parse_log("\n".join([*lines[:5], *lines[6:11]]))) == 1
    assert gaps([]) == 0 and gaps([{"unparsed": "x"}]) == 0


def test_parse_log_keeps_garbage_as_unparsed_and_never_raises() -> None:
    good = CAPTURED.splitlines()[0]
    bad = [
        "garbage",
        good + " extra",
        good.replace(" 80 ", "  80 ", 1),
        good.replace("1796246258.330", "1796246258"),
        good.replace("1796246258.330", "99999999999999999999.330"),
        good.replace("1796246258.330", "-1.330"),
        good.replace(" 76 ", " -76 "),
        good.replace("allow:allowed.test", "maybe:allowed.test"),
        good.replace("0 ", "x ", 1),
        "x" * 10_000,
        good.replace(" GET ", " G\x1bET "),
    ]
    entries = parse_log("\n".join(bad) + "\r\n\n")
    assert entries == [{"unparsed": line[:512]} for line in bad]  # Squid encodes control bytes
    assert len(entries[9]["unparsed"]) == 512
    assert parse_log("") == [] and parse_log("\n\r\n") == []
    assert parse_log(good + "\r") == parse_log(good)


def test_parse_log_decodes_only_printable_escapes() -> None:
    line = "7 1796246258.336 10.0.0.3 GET a%20b%25c%0A%7E.test 80 TCP_DENIED 403 1 2 - - deny:not_allowlisted"
    (entry,) = parse_log(line)
    assert entry["host"] == "a%20b%25c%0A~.test"


def test_parse_log_fuzz() -> None:
    """Random fields and bytes: every result is either a full entry or {"unparsed": line}."""
    rng = random.Random(13)
    tokens = [
        "0",
        "-",
        "1796246258.330",
        "GET",
        "%",
        "%zz",
        "%41",
        "allow:x",
        "deny:",
        "80",
        "",
        "\x00",
        "é",
        "\t",
    ]
    for _ in range(3000):
        line = " ".join(rng.choice(tokens) for _ in range(rng.choice([12, 13, 13, 14])))
        for entry in parse_log(line):
            assert set(entry) == KEYS or set(entry) == {"unparsed"}


def test_listen_binds_the_proxys_address_only() -> None:
    assert config(PYPI, SUBNET).splitlines()[0].startswith("http_port 3128 ssl-bump ")
    assert (
        config(PYPI, SUBNET, listen="172.30.5.2")
        .splitlines()[0]
        .startswith("http_port 172.30.5.2:3128 ssl-bump ")
    )
    for bad in ("::1", "172.30.5.2:80", "host.test", "1.2.3.4 ssl-bump", "172.30.5.2\nhttp_port 80"):
        with pytest.raises(ValueError, match="listen"):
            config(PYPI, SUBNET, listen=bad)


def test_a_tunnel_is_logged_once_and_its_sni_denials_say_why() -> None:
    conf = config(PYPI, SUBNET).splitlines()
    # Squid's line for an answered CONNECT that was handed over (spliced, or tunnelled as
    # not TLS) is left out: the tunnel's own line follows. Refused, terminated and never
    # handed over CONNECTs are logged.
    assert [line for line in conf if line.startswith("access_log")] == [
        "access_log stdio:/dev/stdout aido !answered"
    ]
    assert "acl answered all-of CONNECT spliced_note answered_status answered_hier" in conf
    assert "on_unsupported_protocol tunnel all spliced" in conf
    mark = conf.index("acl spliced annotate_client aido_spliced=yes")
    assert mark < conf.index("ssl_bump splice CONNECT e0 port_443 sni_e0 spliced")
    assert mark < conf.index("on_unsupported_protocol tunnel all spliced")
    assert conf.index("acl spliced_note note aido_spliced yes") < conf.index(
        "access_log stdio:/dev/stdout aido !answered"
    )
    for reason in ("sni_not_allowlisted", "sni_mismatch"):
        assert f"acl why_{reason} annotate_client aido=deny:{reason} aido_tunnel=no" in conf
