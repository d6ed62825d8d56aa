"""An egress allowlist from Python: ``aido.Sandbox(network=[...])`` and a run's
``allow_hosts=``, checked, confirmed and recorded as sandbox.yaml and --allow-host are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import aido
from aido.errors import ConfigError, NotConfirmed, UsageError


def _sandboxes(root: Path) -> list[Path]:
    found = root / ".aido" / "sandboxes"
    return list(found.iterdir()) if found.is_dir() else []


def test_a_sandbox_with_an_allowlist(engine: None, tmp_path: Path) -> None:
    with pytest.raises(NotConfirmed, match=r"permissions\.network\.allow: every task can reach pypi\.org"):
        aido.Sandbox(network=["pypi.org"], workspace=tmp_path)
    with pytest.raises(ConfigError) as caught:
        aido.Sandbox(network=["pypi.org", "*"], workspace=tmp_path, confirm=lambda _w: True)
    assert caught.value.problems[0].startswith("Sandbox(): network.allow[1]: '*' would allow every host")
    with pytest.raises(UsageError, match="network: expected True, False or a list of hosts"):
        aido.Sandbox(network="pypi.org", workspace=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Sandbox\(\): network.allow: expected a non-empty list"):
        aido.Sandbox(network=[], workspace=tmp_path, confirm=lambda _w: True)
    assert _sandboxes(tmp_path) == []

    asked: list[list[str]] = []

    def confirm(warnings: list[str]) -> bool:
        asked.append(warnings)
        return True

    ranges = {"allow": ["10.0.0.0/8"], "allow_ip_ranges": True}
    with aido.Sandbox(network=ranges, workspace=tmp_path, confirm=confirm) as sb:
        config = json.loads((sb.path / "sandbox.json").read_text())["config"]
        assert config["permissions"]["network"] == ranges
    with aido.Sandbox(network=["PyPI.org", "*.pythonhosted.org"], workspace=tmp_path, confirm=confirm) as sb:
        config = json.loads((sb.path / "sandbox.json").read_text())["config"]
        assert config["permissions"]["network"]["allow"] == ["pypi.org", "*.pythonhosted.org"]
    assert [len(w) for w in asked] == [1, 1]
    assert asked[1][0].startswith(
        "permissions.network.allow: every task can reach pypi.org, *.pythonhosted.org"
    )


def test_a_runs_allow_hosts(sb: aido.Sandbox) -> None:
    runs = len(sb.runs())
    with pytest.raises(NotConfirmed, match=r"--allow-host: the task can reach pypi\.org") as refused:
        sb.run_code("print(1)", allow_hosts=["pypi.org"])
    assert refused.value.hint is not None and refused.value.hint.startswith("pass confirm=")
    with pytest.raises(UsageError, match="allow_hosts: expected a list of hosts"):
        sb.run_code("print(1)", allow_hosts="pypi.org", confirm=lambda _w: True)
    with pytest.raises(UsageError, match=r"--allow-host: '10\.0\.0\.1' is an IP address"):
        sb.run_code("print(1)", allow_hosts=["10.0.0.1"], confirm=lambda _w: True)
    assert len(sb.runs()) == runs

    outcome = sb.run_code(
        "print(1)",
        allow_hosts=["API.example.com:443"],
        widen=aido.Widening(allow_hosts=("pypi.org",)),
        confirm=lambda _w: True,
    )
    assert outcome.exit_code == 0
    summary = json.loads((outcome.evidence_path / "summary.json").read_text())
    assert summary["escape_hatches"]["allow_hosts"] == ["pypi.org", "api.example.com:443"]
    # The run went through its own egress proxy, which saw no request.
    assert (outcome.network, outcome.requests_allowed, outcome.requests_denied) == ("allowlist", 0, 0)
    assert summary["network"]["allow"] == ["pypi.org", "api.example.com:443"]
    assert (outcome.evidence_path / "network.jsonl").read_text() == ""
