"""An egress allowlist through the real CLI: sandbox.yaml's permissions.network.allow and
`aido run --allow-host` are refused with file:line or flag errors when wrong, never widen
a sandbox or a run without a yes (a terminal's, or --yes), and are recorded like the other
widenings. (What the egress proxy then lets through is the Docker backend's, tested there.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import Aido, wait_for
from tests.helpers.files import write
from tests.helpers.sandbox import (
    assert_no_run_consumed,
    events,
    record,
    sandbox_root,
    sandbox_up,
    summary,
)
from tests.helpers.warm import ready

pytestmark = pytest.mark.docker

ALLOWLIST = 'permissions:\n  network:\n    allow:\n      - pypi.org\n      - "*.pythonhosted.org"\n'
SPEC_WARNING = (
    "permissions.network.allow: every task can reach pypi.org, *.pythonhosted.org "
    "(through aido's egress proxy; everything else is refused)"
)


def no_sandbox(project: Path) -> None:
    sandboxes = project / ".aido" / "sandboxes"
    assert not sandboxes.is_dir() or list(sandboxes.iterdir()) == []


def widened(project: Path, sandbox_id: str) -> list[dict[str, object]]:
    log = sandbox_root(project, sandbox_id) / "events.log"
    return [e for e in events(log) if e["event"] == "permissions_widened"]


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        ('"*"', "sandbox.yaml:5: permissions.network.allow[1]: '*' would allow every host"),
        ("http://x", "sandbox.yaml:5: permissions.network.allow[1]: 'http://x' is a URL"),
        ('""', "sandbox.yaml:5: permissions.network.allow[1]: '' is empty"),
        ("10.0.0.0/8", "sandbox.yaml:5: permissions.network.allow[1]: '10.0.0.0/8' is an IP range"),
        ('"3323068426"', "sandbox.yaml:5: permissions.network.allow[1]: '3323068426' reads as an IP address"),
    ],
)
def test_a_bad_entry_is_refused_at_its_line(aido: Aido, project: Path, entry: str, line: str) -> None:
    # Line 5 is the bad entry's own (the allow key's is 3, the good entry's 4).
    write(
        project / "sandbox.yaml", f"permissions:\n  network:\n    allow:\n      - pypi.org\n      - {entry}\n"
    )
    result = aido("sandbox", "up", "--yes")
    assert result.code == 2, result.stderr
    assert line in result.stderr
    assert result.stdout == ""
    as_json = aido("sandbox", "up", "--yes", "--json")
    assert as_json.code == 2
    (problem,) = as_json.json["error"]["problems"]
    assert (problem["file"], problem["line"], problem["key"]) == (
        "sandbox.yaml",
        5,
        "permissions.network.allow[1]",
    )
    no_sandbox(project)


def test_an_empty_allowlist_is_refused(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", "ttl: 5m\npermissions:\n  network:\n    allow: []\n")
    result = aido("sandbox", "up", "--yes")
    assert result.code == 2
    assert "sandbox.yaml:4: permissions.network.allow: expected a non-empty list of hosts" in result.stderr
    no_sandbox(project)


def test_ip_ranges_with_the_opt_in_are_accepted(aido: Aido, project: Path) -> None:
    write(
        project / "sandbox.yaml",
        "permissions:\n  network:\n    allow_ip_ranges: true\n    allow: [10.0.0.0/8, '10.1.2.3:5432']\n",
    )
    sandbox_id = sandbox_up(aido, "--yes")
    network = record(project, sandbox_id)["config"]["permissions"]["network"]
    assert network == {"allow": ["10.0.0.0/8", "10.1.2.3/32:5432"], "allow_ip_ranges": True}


def test_gvisor_and_warm_are_refused_at_their_lines(aido: Aido, project: Path) -> None:
    write(project / "g.yaml", "isolation: gvisor\n" + ALLOWLIST)
    result = aido("sandbox", "up", "-f", "g.yaml", "--yes")
    assert result.code == 2
    assert (
        "g.yaml:4: permissions.network.allow: an allowlist cannot be combined with isolation: gvisor"
        in result.stderr
    )
    # The flag asked for gVisor: the allowlist's line is still the one named.
    result = aido("sandbox", "up", "-f", "g.yaml", "--isolation", "gvisor", "--yes")
    assert result.code == 2 and "g.yaml:4: permissions.network.allow:" in result.stderr

    write(project / "w.yaml", "runtime: python\n" + ALLOWLIST + "warm: 2\n")
    result = aido("sandbox", "up", "-f", "w.yaml", "--yes")
    assert result.code == 2
    assert "w.yaml:7: warm: 2 cannot be combined with permissions.network.allow" in result.stderr
    assert "a pre-started container has no network" in result.stderr
    assert "hint: leave out warm" in result.stderr
    write(project / "w.yaml", "runtime: python\n" + ALLOWLIST)
    result = aido("sandbox", "up", "-f", "w.yaml", "--warm", "1", "--yes")
    assert result.code == 2
    assert "--warm: 1 cannot be combined with permissions.network.allow" in result.stderr
    no_sandbox(project)


def test_an_allowlist_needs_a_yes_and_is_recorded(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", ALLOWLIST)
    refused = aido("sandbox", "up", input="")  # no terminal, no --yes
    assert refused.code == 2
    assert f"warning: {SPEC_WARNING}" in refused.stderr
    assert "--yes" in refused.stderr
    no_sandbox(project)

    sandbox_id = sandbox_up(aido, "--yes")
    (event,) = widened(project, sandbox_id)
    assert event["warnings"] == [SPEC_WARNING]
    assert "run_id" not in event
    write(project / "t.py", "print('ran')\n")
    ran = aido("run", "t.py", input="")  # confirmed at up: repeated, not asked again
    assert ran.code == 0, ran.stderr
    assert f"warning: {SPEC_WARNING}" in ran.stderr
    run_summary = summary(project, sandbox_id)
    assert SPEC_WARNING in run_summary["warnings"]
    assert run_summary["permissions"]["network"]["allow"] == ["pypi.org", "*.pythonhosted.org"]
    shown = aido("show")
    assert "network allow pypi.org, *.pythonhosted.org (sandbox.yaml)" in shown.stdout


def test_allow_host_needs_a_yes_and_is_recorded_for_that_run(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--isolation", "default")
    write(project / "t.py", "print('ran')\n")
    refused = aido("run", "--allow-host", "pypi.org", "--allow-host", "*.pythonhosted.org", "t.py", input="")
    assert refused.code == 2
    warning = "--allow-host: the task can reach pypi.org, *.pythonhosted.org (through aido's egress proxy)"
    assert f"warning: {warning}" in refused.stderr
    assert "--yes" in refused.stderr
    assert_no_run_consumed(project, sandbox_id)
    assert widened(project, sandbox_id) == []

    ran = aido("run", "--allow-host", "PyPI.org", "--allow-host", "*.pythonhosted.org", "--yes", "t.py")
    assert ran.code == 0, ran.stderr
    run_summary = summary(project, sandbox_id)
    assert run_summary["escape_hatches"]["allow_hosts"] == ["pypi.org", "*.pythonhosted.org"]
    assert warning in run_summary["warnings"]
    (event,) = widened(project, sandbox_id)
    assert event["run_id"] == "run-001"
    assert event["escape_hatches"] == run_summary["escape_hatches"]
    assert "--allow-host pypi.org, *.pythonhosted.org" in aido("show").stdout
    assert aido("show", "--json").json["run"]["allow_hosts"] == ["pypi.org", "*.pythonhosted.org"]

    # For that run only.
    assert aido("run", "t.py").code == 0
    second = summary(project, sandbox_id, "run-002")
    assert second["escape_hatches"]["allow_hosts"] == []
    assert second["warnings"] == []

    # A batch: confirmed once for all its runs, each recording it.
    write(project / "u.py", "print('ran too')\n")
    assert aido("run", "--allow-host", "pypi.org", "t.py", "u.py", input="").code == 2
    batch = aido("run", "--allow-host", "pypi.org", "--yes", "t.py", "u.py")
    assert batch.code == 0, batch.stderr
    for run_id in ("run-003", "run-004"):
        assert summary(project, sandbox_id, run_id)["escape_hatches"]["allow_hosts"] == ["pypi.org"]


@pytest.mark.parametrize(
    ("args", "error", "hint"),
    [
        (("--allow-host", "*"), "error: --allow-host: '*' would allow every host", "hint: name each host"),
        (("--allow-host", "http://pypi.org"), "error: --allow-host: 'http://pypi.org' is a URL", "pypi.org"),
        (("--allow-host", ""), "error: --allow-host: '' is empty", "pypi.org"),
        (("--allow-host", "x.org:0"), "error: --allow-host: 'x.org:0' has port 0", "1 to 65535"),
        (
            ("--allow-host", "10.0.0.0/8"),
            "error: --allow-host: '10.0.0.0/8' is an IP range",
            "hint: IP addresses and ranges are allowed in sandbox.yaml only: list them under "
            "permissions.network.allow with allow_ip_ranges: true",
        ),
        (
            ("--allow-host", "pypi.org", "--network"),
            "error: --allow-host cannot be combined with --network",
            "hint: pick one",
        ),
    ],
)
def test_bad_allow_host_is_refused_even_with_yes(
    aido: Aido, project: Path, args: tuple[str, ...], error: str, hint: str
) -> None:
    sandbox_id = sandbox_up(aido, "--isolation", "default")
    write(project / "t.py", "print('ran')\n")
    result = aido("run", *args, "--yes", "t.py")
    assert result.code == 2
    assert error in result.stderr
    assert hint in result.stderr
    assert_no_run_consumed(project, sandbox_id)


def test_allow_host_where_it_cannot_apply_is_refused(aido: Aido, project: Path) -> None:
    write(project / "t.py", "print('ran')\n")
    write(project / "full.yaml", "permissions:\n  network: true\n")
    full = sandbox_up(aido, "-f", "full.yaml", "--yes")
    result = aido("run", "--allow-host", "pypi.org", "--yes", "t.py")
    assert result.code == 2
    assert f"error: --allow-host: sandbox {full} has permissions.network: true" in result.stderr
    assert "hint: leave out --allow-host" in result.stderr
    assert_no_run_consumed(project, full)

    gvisor = sandbox_up(aido, "--isolation", "gvisor")
    result = aido("run", "--allow-host", "pypi.org", "--yes", "t.py")
    assert result.code == 2
    assert "error: --allow-host is not available with isolation gvisor" in result.stderr
    assert_no_run_consumed(project, gvisor)

    # --network on an allowlist sandbox: full network is its own (confirmed) widening.
    write(project / "sandbox.yaml", ALLOWLIST)
    allowlisted = sandbox_up(aido, "--yes")
    assert aido("run", "--network", "t.py", input="").code == 2
    assert_no_run_consumed(project, allowlisted)
    ran = aido("run", "--network", "--yes", "t.py")
    assert ran.code == 0, ran.stderr
    assert summary(project, allowlisted)["security"]["requested"]["network"] is True


def test_a_run_with_allow_host_starts_cold_and_leaves_the_pool_alone(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido, "--runtime", "python", "--warm", "1", "--isolation", "default")
    wait_for(lambda: bool(ready(project, sandbox_id)), timeout=60, what="a ready warm container")
    pool = ready(project, sandbox_id)
    write(project / "t.py", "print('ran')\n")
    ran = aido("run", "--allow-host", "pypi.org", "--yes", "t.py")
    assert ran.code == 0, ran.stderr
    run_summary = summary(project, sandbox_id)
    assert run_summary["start"] == "cold"
    assert run_summary["start_detail"] == {"reason": "the run has an egress allowlist (--allow-host)"}
    assert ready(project, sandbox_id) == pool  # not claimed
    shown = aido("show")
    assert "cold (the run has an egress allowlist (--allow-host))" in shown.stdout
