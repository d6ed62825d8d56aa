"""From the sandbox's allowlist and `--allow-host` to the container request's ``egress``
(run/request.py check_allow_hosts, run/prepare.py build_request), through the public facade
with a scripted backend: the backend's half (the proxy) is not involved here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aido import SandboxManager, Widening, Workspace
from aido.errors import NotConfirmed, UsageError
from tests.helpers.fake_backend import FakeBackend, Script
from tests.helpers.files import load, write
from tests.helpers.sandbox import events, indexed_runs
from tests.run.test_pipeline_fast import no_engine  # noqa: F401  (autouse: no real engine here)

ALLOWLIST = 'permissions:\n  network:\n    allow: [pypi.org, "*.pythonhosted.org"]\n'


class Setup:
    def __init__(self, project: Path, spec: str, **create: Any) -> None:
        write(project / "sandbox.yaml", spec)
        self.backend = FakeBackend(Script())
        self.manager = SandboxManager(Workspace.find_or_create(project), backend=self.backend)
        self.confirmed: list[list[str]] = []
        record = self.manager.create(
            spec_file=project / "sandbox.yaml", start=project, confirm=self.confirm, **create
        )
        self.sandbox_id = record.id
        self.root = self.manager.workspace.sandbox(record.id).root
        self.task = write(project / "task.py", "print('hello')\n")

    def confirm(self, warnings: list[str]) -> bool:
        self.confirmed.append(warnings)
        return True

    def run(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("confirm", self.confirm)
        result = self.manager.run(self.task, [], sandbox_id=self.sandbox_id, **kwargs)
        summary = load(result.evidence_dir / "summary.json")
        assert isinstance(summary, dict)
        return summary

    def refused(self, error: type[Exception], **kwargs: Any) -> Exception:
        with pytest.raises(error) as caught:
            self.run(**kwargs)
        assert indexed_runs(self.root) == []  # refused before a run id exists
        assert self.backend.requests == []
        return caught.value


def test_the_sandbox_allowlist_and_the_runs_own_hosts_make_the_request_egress(project: Path) -> None:
    s = Setup(project, ALLOWLIST)
    assert s.confirmed == [
        [
            "permissions.network.allow: every task can reach pypi.org, *.pythonhosted.org "
            "(through aido's egress proxy; everything else is refused)"
        ]
    ]
    plain = s.run()
    hosts = ("API.example.com.:443", "pypi.org", "api.example.com:443", "files.pythonhosted.org")
    widened = s.run(widen=Widening(allow_hosts=hosts))
    first, second = s.backend.requests
    assert (first.network, first.egress) == (False, ("pypi.org", "*.pythonhosted.org"))
    # The sandbox's entries, then the run's (canonical), each once.
    assert (second.network, second.egress) == (
        False,
        ("pypi.org", "*.pythonhosted.org", "api.example.com:443", "files.pythonhosted.org"),
    )
    assert plain["escape_hatches"]["allow_hosts"] == []
    assert widened["escape_hatches"]["allow_hosts"] == [
        "api.example.com:443",
        "pypi.org",
        "files.pythonhosted.org",
    ]
    run_warning = (
        "--allow-host: the task can reach api.example.com:443, pypi.org, files.pythonhosted.org "
        "(through aido's egress proxy)"
    )
    assert s.confirmed[-1] == [run_warning]
    assert run_warning in widened["warnings"]
    assert any(w.startswith("permissions.network.allow: ") for w in plain["warnings"])
    assert widened["permissions"]["network"] == {
        "allow": ["pypi.org", "*.pythonhosted.org"],
        "allow_ip_ranges": False,
    }
    recorded = [e for e in events(s.root / "events.log") if e["event"] == "permissions_widened"]
    assert [e.get("run_id") for e in recorded] == [None, "run-001", "run-002"]
    assert recorded[2]["escape_hatches"]["allow_hosts"] == widened["escape_hatches"]["allow_hosts"]


def test_full_network_needs_no_proxy(project: Path) -> None:
    s = Setup(project, ALLOWLIST)
    s.run(widen=Widening(network=True))  # --network on an allowlist sandbox: its own widening
    (request,) = s.backend.requests
    assert (request.network, request.egress) == (True, ())


def test_allow_host_on_a_sandbox_without_network(project: Path) -> None:
    s = Setup(project, "resources:\n  memory: 128M\n")
    s.run(widen=Widening(allow_hosts=("pypi.org",)))
    (request,) = s.backend.requests
    assert (request.network, request.egress) == (False, ("pypi.org",))


def test_allow_host_needs_confirmation(project: Path) -> None:
    s = Setup(project, "resources:\n  memory: 128M\n")
    error = s.refused(NotConfirmed, widen=Widening(allow_hosts=("pypi.org",)), confirm=lambda _w: False)
    assert "--allow-host: the task can reach pypi.org" in str(error)


@pytest.mark.parametrize(
    ("hosts", "message", "hint"),
    [
        (("*",), "--allow-host: '*' would allow every host", "name each host"),
        (("http://pypi.org",), "--allow-host: 'http://pypi.org' is a URL", "like pypi.org"),
        (("",), "--allow-host: '' is empty", "pypi.org"),
        (("10.0.0.0/8",), "--allow-host: '10.0.0.0/8' is an IP range", "sandbox.yaml only"),
        (("10.0.0.1:80",), "--allow-host: '10.0.0.1:80' is an IP address", "allow_ip_ranges: true"),
        (("pypi.org", "x.org:0"), "--allow-host: 'x.org:0' has port 0", "1 to 65535"),
        ("pypi.org", "allow_hosts: expected a list of hosts, got the string 'pypi.org'", "['pypi.org']"),
    ],
)
def test_bad_allow_hosts_are_refused_before_the_run(
    project: Path, hosts: tuple[str, ...], message: str, hint: str
) -> None:
    s = Setup(project, "resources:\n  memory: 128M\n")
    error = s.refused(UsageError, widen=Widening(allow_hosts=hosts))
    assert isinstance(error, UsageError)
    assert error.message.startswith(message), error.message
    assert error.hint is not None and hint in error.hint, error.hint


def test_allow_host_with_network_or_on_a_full_network_sandbox_is_refused(project: Path) -> None:
    s = Setup(project, "resources:\n  memory: 128M\n")
    error = s.refused(UsageError, widen=Widening(network=True, allow_hosts=("pypi.org",)))
    assert "--allow-host cannot be combined with --network" in str(error)
    assert isinstance(error, UsageError) and error.hint is not None and "pick one" in error.hint
    full = Setup(project / "full", "permissions:\n  network: true\n")
    error = full.refused(UsageError, widen=Widening(allow_hosts=("pypi.org",)))
    assert f"sandbox {full.sandbox_id} has permissions.network: true" in str(error)


def test_allow_host_under_gvisor_is_refused(project: Path) -> None:
    s = Setup(project, "isolation: gvisor\n")
    s.backend.isolation = ("default", "gvisor")
    error = s.refused(UsageError, widen=Widening(allow_hosts=("pypi.org",)))
    assert str(error).startswith("--allow-host is not available with isolation gvisor")


def test_a_run_with_egress_never_takes_a_warm_container(project: Path) -> None:
    s = Setup(project, "runtime: python\nwarm: 1\n")
    plain = s.run()
    widened = s.run(widen=Widening(allow_hosts=("pypi.org",)))
    assert plain["start"] == widened["start"] == "cold"
    # The scripted backend has no warm start at all; the allowlist is said first.
    assert "no warm start" in plain["start_detail"]["reason"]
    assert widened["start_detail"] == {"reason": "the run has an egress allowlist (--allow-host)"}
