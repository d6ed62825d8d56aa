"""The network evidence on the run's own path, with a scripted backend (no engine): every
summary says what the network was; an allowlisted run's proxy log and configuration are
written, listed, sealed, verified and exported like its other evidence files.

The backend's side (the proxy) is not what is tested here: its run is given an
``EgressRecord`` as the Docker backend returns it, and the request the egress entries the
planner puts in it."""

from __future__ import annotations

import dataclasses
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

import aido.run.prepare as prepare
import aido.run.seal as sealing
from aido import SandboxManager, Workspace
from aido.backends.base import EgressRecord, ExecOutcome, ExecRequest
from aido.evidence.keys import trusted_keys
from aido.run.request import Widening
from tests.helpers.fake_backend import FakeBackend, Script, Step
from tests.helpers.files import write

ALLOW = ("allowed.test", "*.cdn.test")
CONFIG = "http_port 3128\nacl e0 dstdomain -n allowed.test\nhttp_access deny all\n"
# Squid's access log as the proxy writes it (aido.egress.squid.LOGFORMAT).
LOG = (
    "0 1796178310.465 10.213.0.2 GET allowed.test 80 TCP_MISS 200 135 234 198.18.0.10 80 allow:allowed.test\n"
    "1 1796178310.466 10.213.0.2 GET denied.test 80 TCP_DENIED 403 133 3395 - - deny:not_allowlisted\n"
    "2 1796178310.472 10.213.0.2 CONNECT allowed.test 443 TCP_TUNNEL 200 772 2150 198.18.0.10 443 "
    "allow:allowed.test\n"
)
FACTS = {"image": "aido/egress-squid:bookworm", "image_id": "sha256:" + "ab" * 32, "proxy": "10.213.0.3:3128"}


@pytest.fixture(autouse=True)
def fresh_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/aido-fast-tests.sock")
    monkeypatch.setattr(sealing, "_key", None)
    monkeypatch.setattr(sealing, "_key_error", None)
    monkeypatch.setattr(sealing, "_warming", None)


def _manager(project: Path, step: Step | None = None) -> tuple[SandboxManager, str, Path]:
    manager = SandboxManager(
        Workspace.find_or_create(project), backend=FakeBackend(Script(default=step or Step()))
    )
    sandbox_id = manager.create(spec_file=None, start=project).id
    return manager, sandbox_id, write(project / "task.py", "print('hello')\n")


@pytest.fixture
def egress(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner asks for the allowlist; the backend returns its proxy's record."""
    build = prepare.build_request

    def with_allowlist(*args: Any, **kwargs: Any) -> ExecRequest:
        return dataclasses.replace(build(*args, **kwargs), egress=ALLOW)

    real_run = FakeBackend.run

    def run_with_proxy(self: FakeBackend, request: ExecRequest, *args: Any, **kwargs: Any) -> ExecOutcome:
        outcome = real_run(self, request, *args, **kwargs)
        assert request.egress == ALLOW
        outcome.egress = EgressRecord(config=CONFIG, log=LOG, facts=dict(FACTS))
        return outcome

    monkeypatch.setattr(prepare, "build_request", with_allowlist)
    monkeypatch.setattr(FakeBackend, "run", run_with_proxy)


def test_every_summary_says_what_the_network_was(tmp_path: Path) -> None:
    manager, sandbox_id, task = _manager(tmp_path)
    closed = manager.run(task, [], sandbox_id=sandbox_id)
    assert closed.summary["network"] == {"mode": "none"}
    opened = manager.run(
        task, [], sandbox_id=sandbox_id, widen=Widening(network=True), confirm=lambda _: True
    )
    assert opened.summary["network"] == {"mode": "full"}
    for result in (closed, opened):
        assert not (result.evidence_dir / "network.jsonl").exists()
        assert not any("network.jsonl" in a for a in result.summary["artifacts"])


def test_an_allowlisted_run_without_the_proxys_record_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend failed before it could read the proxy (no EgressRecord): no log, and
    the summary says that rather than a count of zero."""
    build = prepare.build_request
    monkeypatch.setattr(
        prepare, "build_request", lambda *a, **k: dataclasses.replace(build(*a, **k), egress=ALLOW)
    )
    manager, sandbox_id, task = _manager(tmp_path, Step(error="the egress proxy did not start"))
    result = manager.run(task, [], sandbox_id=sandbox_id)
    assert result.summary["network"] == {
        "mode": "allowlist",
        "allow": list(ALLOW),
        "log": None,
        "note": "the proxy's log was not collected",
    }
    assert not (result.evidence_dir / "network.jsonl").exists()


@pytest.mark.usefixtures("egress")
def test_the_network_log_is_evidence_sealed_verified_and_exported(tmp_path: Path) -> None:
    manager, sandbox_id, task = _manager(tmp_path)
    result = manager.run(task, [], sandbox_id=sandbox_id)
    network = result.summary["network"]
    assert network["mode"] == "allowlist" and network["allow"] == list(ALLOW)
    assert network["requests"] == {"allowed": 2, "denied": 1, "unparsed": 0}
    assert (network["log"], network["config"], network["lost_lines"]) == (
        "network.jsonl",
        "egress-squid.conf",
        0,
    )
    assert network["proxy"] == FACTS
    entries = [json.loads(line) for line in (result.evidence_dir / "network.jsonl").read_text().splitlines()]
    assert [(e["host"], e["port"], e["decision"]) for e in entries] == [
        ("allowed.test", 80, "allowed"),
        ("denied.test", 80, "denied"),
        ("allowed.test", 443, "allowed"),
    ]
    assert (result.evidence_dir / "egress-squid.conf").read_text() == CONFIG
    listed = {"runs/run-001/network.jsonl", "runs/run-001/egress-squid.conf"}
    assert listed <= set(result.summary["artifacts"])
    ref = manager.load(sandbox_id).run("run-001")
    assert ref is not None and listed <= set(ref.artifacts)
    assert manager.verify(sandbox_id, None, keys=trusted_keys(), strict=True).exit_code == 0
    bundle = tmp_path / "run.tar.gz"
    manager.export(sandbox_id, "run-001", bundle, keys=trusted_keys())
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert any(n.endswith("runs/run-001/network.jsonl") for n in names), names
    assert any(n.endswith("runs/run-001/egress-squid.conf") for n in names), names
    # One byte of the sealed network log changed: verify fails and names the file.
    log = result.evidence_dir / "network.jsonl"
    data = bytearray(log.read_bytes())
    at = data.index(b"denied")
    data[at : at + 6] = b"allow_"[:6]
    log.write_bytes(bytes(data))
    tampered = manager.verify(sandbox_id, None, keys=trusted_keys())
    assert tampered.exit_code != 0
    assert any("network.jsonl" in f.path for f in tampered.findings), [f.line() for f in tampered.findings]
