"""An MCP client reading a sandbox with an egress allowlist sees the hosts, not "no network"
(and a full-network sandbox still reads as network: true)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aido.config.loader import load_spec
from aido.mcp.views import sandbox_info
from aido.store.records import SandboxRecord


@pytest.mark.parametrize(
    ("network", "full", "hosts"),
    [
        ("false", False, []),
        ("true", True, []),
        ('{allow: [pypi.org, "*.pythonhosted.org"]}', False, ["pypi.org", "*.pythonhosted.org"]),
    ],
)
def test_sandbox_info_reports_the_allowlist(
    tmp_path: Path, network: str, full: bool, hosts: list[str]
) -> None:
    spec = tmp_path / "sandbox.yaml"
    spec.write_text(f"permissions:\n  network: {network}\n", encoding="utf-8")
    record = SandboxRecord(
        id="abcdefabcdef",
        name=None,
        created_at="2026-01-01T10:00:00Z",
        expires_at="2099-01-01T10:15:00Z",
        config=load_spec(spec).model_dump(mode="json"),
        task_user="10001:10001",
    )
    info = sandbox_info(record)
    assert (info.network, info.allowed_hosts) == (full, hosts)
