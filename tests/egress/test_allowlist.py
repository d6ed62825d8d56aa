"""Allowlist entries (aido.egress.allowlist): what is accepted, in which canonical form, and
every refusal naming the entry, the problem and the fix."""

from __future__ import annotations

import pytest

from aido.egress.allowlist import MAX_ENTRIES, BadEntry, Entry, parse_allowlist, parse_entry

ACCEPTED = [
    ("pypi.org", Entry("pypi.org"), "pypi.org"),
    ("*.pythonhosted.org", Entry("pythonhosted.org", wildcard=True), "*.pythonhosted.org"),
    ("api.example.com:443", Entry("api.example.com", port=443), "api.example.com:443"),
    ("PyPI.Org.", Entry("pypi.org"), "pypi.org"),  # case-insensitive, trailing dot tolerated
    ("*.Example.COM.:8443", Entry("example.com", wildcard=True, port=8443), "*.example.com:8443"),
    ("  pypi.org  ", Entry("pypi.org"), "pypi.org"),
    ("xn--bcher-kva.de", Entry("xn--bcher-kva.de"), "xn--bcher-kva.de"),  # IDNA in ASCII form
    ("files-1.example.co.uk", Entry("files-1.example.co.uk"), "files-1.example.co.uk"),
    ("proxy-target", Entry("proxy-target"), "proxy-target"),  # a single-label name (a network alias)
    ("x.org:1", Entry("x.org", port=1), "x.org:1"),
    ("x.org:65535", Entry("x.org", port=65535), "x.org:65535"),
]


@pytest.mark.parametrize(("text", "entry", "canonical"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_entries_and_their_canonical_text(text: str, entry: Entry, canonical: str) -> None:
    parsed = parse_entry(text)
    assert parsed == entry
    assert str(parsed) == canonical
    assert parse_entry(canonical) == parsed  # the canonical text reads back the same


# (entry, words of the problem, words of the fix)
REFUSED = [
    ("", "is empty", "pypi.org"),
    ("   ", "is empty", "pypi.org"),
    ("*", "every host", "name each host"),
    ("*.", "every host", "name each host"),
    ("*.com", "top-level domain", "*.example.com"),
    ("*.org.", "top-level domain", "*.example.org"),
    ("a*.b.com", "'*' inside a name", "first label"),
    ("a.*.com", "'*' inside a name", "first label"),
    ("*.*.example.com", "'*' inside a name", "first label"),
    ("http://x.org", "is a URL", "like x.org"),
    ("https://pypi.org/simple", "is a URL", "like pypi.org"),
    ("x.org/y", "has a path", "write x.org"),
    ("user@x.org", "user name", "host alone"),
    ("x.org:0", "port 0", "1 to 65535"),
    ("x.org:65536", "port 65536", "1 to 65535"),
    ("x.org:http", "no valid port", "1 to 65535"),
    ("x.org:", "no valid port", "1 to 65535"),
    ("x.org:-1", "no valid port", "1 to 65535"),
    ("::1", "IPv6", "IPv6 is blocked"),
    ("[::1]:443", "IPv6", "IPv6 is blocked"),
    ("fe80::1", "IPv6", "IPv6 is blocked"),
    ("10.0.0.1", "is an IP address", "allow_ip_ranges: true"),
    ("10.0.0.0/8", "is an IP range", "allow_ip_ranges: true"),
    ("10.0.0.1:80", "is an IP address", "allow_ip_ranges: true"),
    ("3323068426", "reads as an IP address", "a.b.c.d"),
    ("0x7f000001", "reads as an IP address", "a.b.c.d"),
    ("127.1", "reads as an IP address", "a.b.c.d"),
    ("0177.0.0.1", "reads as an IP address", "a.b.c.d"),
    ("*.10.0.0.1", "reads as an IP address", "a.b.c.d"),
    ("bücher.de", "not ASCII", "xn--bcher-kva.de"),
    ("my_host.org", "not a valid host name", "letters, digits"),
    ("-x.org", "not a valid host name", "letters, digits"),
    ("x-.org", "not a valid host name", "letters, digits"),
    ("a..org", "not a valid host name", "letters, digits"),
    ("pypi org", "not a valid host name", "letters, digits"),
    ("a" * 64 + ".org", "not a valid host name", "1-63 characters"),
    ("localhost", "the proxy itself", "pypi.org"),
    ("api.localhost", "the proxy itself", "pypi.org"),
    ("x" * 400, "longer than", "pypi.org"),
]


@pytest.mark.parametrize(("text", "problem", "fix"), REFUSED, ids=[r[0][:30] or "empty" for r in REFUSED])
def test_refused_entries_name_the_problem_and_the_fix(text: str, problem: str, fix: str) -> None:
    with pytest.raises(BadEntry) as caught:
        parse_entry(text)
    error = caught.value
    assert isinstance(error, ValueError)
    assert problem in error.problem
    assert fix in error.fix
    assert str(error) == f"{error.problem}: {error.fix}"
    assert "\n" not in str(error)
    if text.strip() and len(text) <= 80:
        assert repr(text) in error.problem  # the entry itself is named


@pytest.mark.parametrize("value", [None, 5, True, ["pypi.org"], {"host": "pypi.org"}])
def test_an_entry_must_be_a_string(value: object) -> None:
    with pytest.raises(BadEntry, match=r"expected a host like pypi\.org"):
        parse_entry(value)


IP_ACCEPTED = [
    ("10.0.0.1", Entry("", network="10.0.0.1/32"), "10.0.0.1/32"),
    ("10.0.0.0/8", Entry("", network="10.0.0.0/8"), "10.0.0.0/8"),
    ("10.1.2.3/8", Entry("", network="10.0.0.0/8"), "10.0.0.0/8"),  # host bits dropped
    ("10.0.0.5:5432", Entry("", port=5432, network="10.0.0.5/32"), "10.0.0.5/32:5432"),
    ("192.168.0.0/16:443", Entry("", port=443, network="192.168.0.0/16"), "192.168.0.0/16:443"),
    ("169.254.169.254", Entry("", network="169.254.169.254/32"), "169.254.169.254/32"),
]


@pytest.mark.parametrize(("text", "entry", "canonical"), IP_ACCEPTED, ids=[a[0] for a in IP_ACCEPTED])
def test_ip_addresses_and_ranges_with_the_opt_in(text: str, entry: Entry, canonical: str) -> None:
    parsed = parse_entry(text, allow_ip_ranges=True)
    assert parsed == entry
    assert str(parsed) == canonical
    assert parse_entry(canonical, allow_ip_ranges=True) == parsed
    with pytest.raises(BadEntry, match="allow_ip_ranges: true"):
        parse_entry(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0.0.0.0/0", "every address"),
        ("1.2.3.256", "not a valid IPv4"),
        ("10.0.0.0/33", "not a valid IPv4"),
        ("10.0.0.0/x", "not a valid IPv4"),
        ("3323068426", "reads as an IP address"),  # still refused: write it as a dotted quad
        ("::1", "IPv6"),
        ("10.0.0.0/8/8", "not a valid IPv4"),
    ],
)
def test_the_opt_in_still_refuses_bad_or_unbounded_ranges(text: str, problem: str) -> None:
    with pytest.raises(BadEntry, match=problem):
        parse_entry(text, allow_ip_ranges=True)


def test_a_list_drops_repeats_and_keeps_its_order() -> None:
    entries = parse_allowlist(["b.org", "A.org", "b.org.", "a.org:443", "a.org", "*.c.org"])
    assert [str(e) for e in entries] == ["b.org", "a.org", "a.org:443", "*.c.org"]
    assert parse_allowlist(()) == ()


def test_a_list_names_its_first_bad_entry() -> None:
    with pytest.raises(BadEntry, match=r"^'\*' would allow every host"):
        parse_allowlist(["pypi.org", "*", "http://x"])
    with pytest.raises(BadEntry, match="expected a list"):
        parse_allowlist("pypi.org")
    with pytest.raises(BadEntry, match=f"at most {MAX_ENTRIES}"):
        parse_allowlist([f"h{i}.org" for i in range(MAX_ENTRIES + 1)])
    assert len(parse_allowlist([f"h{i}.org" for i in range(MAX_ENTRIES)])) == MAX_ENTRIES
