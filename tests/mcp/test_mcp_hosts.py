"""Hosts an agent may allowlist: the operator names them (`aido mcp --allow-host`, or
`mcp.allow_hosts` in aido's settings), and an agent's entry for a sandbox or a run must be
covered by one of them. The checks are pure: this file needs no server and no engine (the
real server and proxy: tests/egress/test_egress_mcp.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aido.config.mcp import McpPolicy, policy_from
from aido.config.settings import load_settings
from aido.egress.allowlist import covers, parse_entry
from aido.errors import ConfigError, UsageError
from aido.mcp.checks import PolicyRefusal, RunAsk, SandboxAsk, sandbox_spec, widening
from tests.helpers.cli import Aido

OPERATOR = McpPolicy(allow_hosts=("pypi.org", "*.pythonhosted.org", "api.example.com:8443"))


@pytest.mark.parametrize(
    ("outer", "inner", "covered"),
    [
        ("pypi.org", "pypi.org", True),
        ("pypi.org", "PyPI.org.", True),  # canonical forms compare
        ("pypi.org", "www.pypi.org", False),
        ("pypi.org", "*.pypi.org", False),
        ("pypi.org", "pypi.org:443", False),  # a port entry allows plain HTTP on 443 too
        ("*.pythonhosted.org", "files.pythonhosted.org", True),
        ("*.pythonhosted.org", "pythonhosted.org", True),
        ("*.pythonhosted.org", "*.cdn.pythonhosted.org", True),
        ("*.pythonhosted.org", "*.pythonhosted.org", True),
        ("*.pythonhosted.org", "evilpythonhosted.org", False),  # a label boundary, not a suffix
        ("*.pythonhosted.org", "pythonhosted.org.evil.test", False),
        ("api.example.com:8443", "api.example.com:8443", True),
        ("api.example.com:8443", "api.example.com", False),
        ("api.example.com", "api.example.com:8443", False),
    ],
)
def test_covers(outer: str, inner: str, covered: bool) -> None:
    assert covers(parse_entry(outer), parse_entry(inner)) is covered


def test_ip_entries_cover_nothing_and_are_covered_by_nothing() -> None:
    net = parse_entry("10.0.0.0/8", allow_ip_ranges=True)
    assert not covers(net, net)
    assert not covers(parse_entry("*.example.com"), net)


def ask(*hosts: str, network: bool = False, isolation: str = "default") -> SandboxAsk:
    return SandboxAsk("python:3.11", None, None, None, None, network, False, isolation, None, hosts)


def test_a_covered_allowlist_becomes_the_sandboxs() -> None:
    _, spec = sandbox_spec(OPERATOR, ask("PyPI.org", "files.pythonhosted.org", "pypi.org"))
    assert spec["permissions"]["network"] == {"allow": ["pypi.org", "files.pythonhosted.org"]}
    _, plain = sandbox_spec(OPERATOR, ask())
    assert plain["permissions"]["network"] is False


@pytest.mark.parametrize(
    ("policy", "hosts", "message"),
    [
        (
            McpPolicy(),
            ("pypi.org",),
            "host pypi.org is not allowed by the operator of this server (allowed: none)",
        ),
        (
            OPERATOR,
            ("evil.test",),
            "host evil.test is not allowed by the operator of this server (allowed: pypi.org",
        ),
        (OPERATOR, ("*.pypi.org",), "host *.pypi.org is not allowed"),
        (OPERATOR, ("api.example.com",), "host api.example.com is not allowed"),
    ],
)
def test_a_host_the_operator_did_not_allow_is_refused(
    policy: McpPolicy, hosts: tuple[str, ...], message: str
) -> None:
    for attempt in (lambda: sandbox_spec(policy, ask(*hosts)), lambda: widening(policy, (False,) * 3, hosts)):
        with pytest.raises(PolicyRefusal) as caught:
            attempt()
        assert caught.value.message.startswith(message), caught.value.message
        assert caught.value.hint == f"the operator can allow it with `aido mcp --allow-host {hosts[0]}`"


@pytest.mark.parametrize(
    ("hosts", "problem"),
    [
        (("*",), "allowed_hosts: '*' would allow every host"),
        (("http://pypi.org",), "allowed_hosts: 'http://pypi.org' is a URL"),
        (("10.0.0.0/8",), "allowed_hosts: '10.0.0.0/8'"),
        (("",), "allowed_hosts: '' is empty"),
    ],
)
def test_a_bad_entry_is_refused_for_what_it_is(hosts: tuple[str, ...], problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        sandbox_spec(McpPolicy(allow_network=True), ask(*hosts))
    assert caught.value.message.startswith(problem), caught.value.message
    if "10.0" in problem:
        assert caught.value.hint == "name hosts only: IP addresses and ranges are not offered to agents"


def test_network_covers_every_host_but_not_both_at_once() -> None:
    open_policy = McpPolicy(allow_network=True)
    _, spec = sandbox_spec(open_policy, ask("anything.example"))
    assert spec["permissions"]["network"] == {"allow": ["anything.example"]}
    with pytest.raises(UsageError, match="allowed_hosts cannot be combined with network"):
        sandbox_spec(open_policy, ask("anything.example", network=True))


@pytest.mark.parametrize(
    "policy", [OPERATOR, McpPolicy(allow_hosts=("pypi.org",), require_gvisor=True)], ids=["asked", "required"]
)
def test_gvisor_sandboxes_get_no_allowlist(policy: McpPolicy) -> None:
    with pytest.raises(UsageError, match="allowed_hosts is not available under gVisor"):
        sandbox_spec(policy, ask("pypi.org", isolation="gvisor" if not policy.require_gvisor else "default"))


def test_a_runs_hosts_are_a_recorded_widening() -> None:
    widen = widening(OPERATOR, (False, False, False), ("files.pythonhosted.org", "FILES.pythonhosted.org"))
    assert widen is not None and widen.allow_hosts == ("files.pythonhosted.org",)
    assert widen.warnings() == [
        "--allow-host: the task can reach files.pythonhosted.org (through aido's egress proxy)"
    ]
    assert widening(OPERATOR, (False, False, False), ()) is None
    assert RunAsk([], None, {}, (False, False, False)).allowed_hosts == ()


def test_the_operators_list_is_checked_and_canonical() -> None:
    policy = policy_from({"allow_hosts": ["PyPI.org.", "*.pythonhosted.org", "pypi.org"]})
    assert policy.allow_hosts == ("pypi.org", "*.pythonhosted.org")
    assert "hosts an agent may allow (egress allowlist): pypi.org, *.pythonhosted.org" in policy.lines()
    assert policy.as_json()["allow_hosts"] == ("pypi.org", "*.pythonhosted.org")
    assert "every host (network is allowed)" in McpPolicy(allow_network=True).lines()[1]
    for bad, problem in (
        (["*"], "allow_hosts: '*' would allow every host"),
        (["10.0.0.0/8"], "allow_hosts: '10.0.0.0/8'"),
        ("pypi.org", "allow_hosts: expected a list of hosts"),
    ):
        with pytest.raises(ValueError) as caught:
            policy_from({"allow_hosts": bad})
        assert str(caught.value).startswith(problem), caught.value
    with pytest.raises(ValueError, match="not offered to agents"):
        policy_from({"allow_hosts": ["10.0.0.0/8"]})


def test_settings_refuse_a_bad_host_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("mcp:\n  allow_hosts:\n    - pypi.org\n    - 'http://x'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0].startswith("config.yaml:2: mcp.allow_hosts: 'http://x' is a URL")
    path.write_text("mcp:\n  allow_hosts: pypi.org\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "mcp.allow_hosts" in caught.value.problems[0] and "a list of hosts" in caught.value.problems[0]


def test_the_flag_overrides_settings_and_is_printed(aido: Aido, project: Path) -> None:
    config = project / "aido.yaml"
    config.write_text("mcp:\n  allow_hosts: [example.org]\n")
    result = aido(
        "--config",
        str(config),
        "mcp",
        "--allow-host",
        "pypi.org",
        "--allow-host",
        "*.pythonhosted.org",
        input="",
    )
    assert result.code == 0, result.stderr
    assert "hosts an agent may allow (egress allowlist): pypi.org, *.pythonhosted.org\n" in result.stderr
    bad = aido("mcp", "--allow-host", "*", input="")
    assert bad.code == 2 and "--allow-host: '*' would allow every host" in bad.stderr, bad.stderr
    from_file = aido("--config", str(config), "mcp", input="")
    assert "hosts an agent may allow (egress allowlist): example.org\n" in from_file.stderr
