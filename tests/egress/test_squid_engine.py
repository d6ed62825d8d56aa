"""aido.egress.squid against the real proxy image (aido/egress-squid, Squid 5.7): Squid
accepts every generated config, and real traffic through it is decided and logged as
config() and parse_log() promise.

The test "internet" is made of containers this test starts on a network it creates (all
with --dns 127.0.0.1, so no lookup leaves them); nothing else is ever contacted.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aido.egress.allowlist import Entry
from aido.egress.squid import BLOCKED, PORT, config, gaps, parse_log
from tests.egress.test_squid import ALLOWLISTS, SUBNET

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("AIDO_EGRESS_IMAGE") or "aido/egress-squid:bookworm"  # as aido.egress
HARDENED = ["--user", "proxy", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def conf_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "squid.conf"
    path.write_text(text)
    path.chmod(0o644)  # read by the proxy user inside the container
    return path


def squid_parse(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    mount = f"{conf_file(tmp_path, text)}:/etc/squid/squid.conf:ro"
    return docker("run", "--rm", "--network", "none", *HARDENED, "-v", mount, IMAGE, "-k", "parse")


def problems(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if any(w in line for w in ("ERROR", "FATAL", "unrecognized"))
    ]


@pytest.mark.parametrize("name", ALLOWLISTS)
def test_squid_accepts_every_generated_config(engine: None, tmp_path: Path, name: str) -> None:
    done = squid_parse(tmp_path, config(ALLOWLISTS[name], SUBNET))
    assert done.returncode == 0 and not problems(done.stderr), done.stderr[-3000:]
    assert "Processing: http_access deny all why_port_or_method" in done.stderr


def test_squid_parse_does_catch_a_bad_config(engine: None, tmp_path: Path) -> None:
    """The check above can fail: a line Squid refuses makes `-k parse` say so."""
    for bad in ("bogus_directive 1", "acl x dstdomain a.test .a.test"):
        done = squid_parse(tmp_path, config((), SUBNET) + bad + "\n")
        assert done.returncode != 0 or problems(done.stderr), bad


# The origin: plain HTTP on 80 and 443 (CONNECT tunnels carry plain HTTP here), one line on
# stdout per request it serves.
ORIGIN = """
import http.server, os, socketserver, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + os.environ["NAME"]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        print("served", self.requestline, flush=True)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
threading.Thread(target=S(("", 443), H).serve_forever, daemon=True).start()
S(("", 80), H).serve_forever()
"""

# The task: raw requests to the proxy, one connection each, in order; prints
# [[status line, body], ...] as JSON.
CLIENT = r"""
import json, socket, sys, time
def connect():
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("proxy.test", PORT), timeout=10)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
def read_reply(s, data=b"", tunnel=False):
    # Headers, then Content-Length bytes of body (a denial keeps the connection open) or
    # up to EOF; a tunnel's "200 Connection established" has no body.
    while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = [int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")]
    if tunnel and head.startswith(b"HTTP/1.1 200"):
        return head.split(b"\r\n")[0].decode(), body
    while (not length or len(body) < length[0]) and (chunk := s.recv(65536)):
        body += chunk
    return head.split(b"\r\n")[0].decode(), body
def ask(raw):
    s = connect()
    s.sendall(raw)
    try:
        status, body = read_reply(s, tunnel=raw.startswith(b"CONNECT"))
        if raw.startswith(b"CONNECT") and status.startswith("HTTP/1.1 200"):
            s.sendall(b"GET / HTTP/1.0\r\nHost: allowed.test\r\n\r\n")
            body = read_reply(s, body)[1]
    except TimeoutError:
        status, body = "timeout -", b""
    s.close()
    return [status, body.decode() if body.startswith(b"hello") else ""]
print(json.dumps([ask(raw.encode("latin-1")) for raw in json.loads(sys.argv[1])]))
""".replace("PORT", str(PORT))


# A DNS server that logs each query's name and answers NXDOMAIN.
DNS_LOGGER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 53))
while True:
    data, peer = s.recvfrom(4096)
    i, labels = 12, []
    while data[i]:
        labels.append(data[i + 1 : i + 1 + data[i]].decode(errors="replace"))
        i += 1 + data[i]
    print("query", ".".join(labels), flush=True)
    s.sendto(data[:2] + b"\\x81\\x83" + data[4:6] + bytes(6) + data[12 : i + 5], peer)
"""


class Rig:
    """Two networks of this test's own, as a run has them: "inside" (internal: the task and
    the proxy) and "outside" (the test 'internet': origins, a DNS server), each a /24 in
    198.18.0.0/15 (benchmarking space); the proxy is on both. Everything it started is
    removed by remove()."""

    def __init__(self, prefix: str = "sqh") -> None:
        self.prefix = f"{prefix}-{random.randrange(16**6):06x}"
        self.names: list[str] = []
        self.networks: list[str] = []
        self.inside = self.network("inside", "--internal")
        self.outside = self.network("outside")

    def network(self, name: str, *options: str) -> ipaddress.IPv4Network:
        for _ in range(10):  # another test's network may hold a given /24
            subnet = ipaddress.IPv4Network(f"198.{random.choice((18, 19))}.{random.randrange(256)}.0/24")
            made = docker("network", "create", "--subnet", str(subnet), *options, f"{self.prefix}-{name}")
            if made.returncode == 0:
                self.networks.append(f"{self.prefix}-{name}")
                return subnet
        pytest.fail("could not create a test network in 198.18.0.0/15")

    def start(self, name: str, number: int, *args: str, dns: str = "127.0.0.1") -> str:
        """A container on the outside network at address NUMBER."""
        self.names.append(f"{self.prefix}-{name}")
        where = ["--name", self.names[-1], "--network", self.networks[1], "--ip", str(self.outside[number])]
        started = docker("run", "-d", *where, "--dns", dns, *args)
        assert started.returncode == 0, started.stderr
        return self.names[-1]

    def origin(self, name: str, number: int, *aliases: str) -> str:
        alias = [arg for host in aliases for arg in ("--network-alias", host)]
        serve = ["python:3.11-slim", "python", "-u", "-c", ORIGIN]
        return self.start(name, number, *alias, "-e", f"NAME={name}", *serve)

    def proxy(self, conf: Path, dns: str = "127.0.0.1") -> str:
        """The proxy, at .2 on both networks, as aido starts it."""
        self.names.append(name := f"{self.prefix}-proxy")
        inside = ["--network", self.networks[0], "--ip", str(self.inside[2]), "--network-alias", "proxy.test"]
        mount = ["-v", f"{conf}:/etc/squid/squid.conf:ro"]
        made = docker("create", "--name", name, *inside, "--dns", dns, *HARDENED, *mount, IMAGE)
        assert made.returncode == 0, made.stderr
        for step in (
            ["network", "connect", "--ip", str(self.outside[2]), self.networks[1], name],
            ["start", name],
        ):
            done = docker(*step)
            assert done.returncode == 0, done.stderr
        return name

    def client(self, requests: list[str]) -> list[list[str]]:
        """[status line, body if it is an origin's greeting] per raw request, sent in order
        from the inside network."""
        self.names.append(f"{self.prefix}-client")
        where = ["--name", self.names[-1], "--network", self.networks[0], "--dns", "127.0.0.1"]
        done = docker("run", "--rm", *where, "python:3.11-slim", "python", "-c", CLIENT, json.dumps(requests))
        assert done.returncode == 0, done.stderr
        answers: list[list[str]] = json.loads(done.stdout)
        return answers

    def remove(self) -> None:
        for name in reversed(self.names):
            docker("rm", "-f", name)
        for network in self.networks:
            docker("network", "rm", network)


@pytest.fixture
def rig(engine: None) -> Iterator[Rig]:
    made = Rig()
    try:
        yield made
    finally:
        made.remove()


def get(host: str) -> str:
    return f"GET http://{host}/ HTTP/1.1\r\nConnection: close\r\n\r\n"


def statuses(answers: list[list[str]]) -> list[int]:
    return [int(status.split(" ")[1]) if status[:5] == "HTTP/" else 0 for status, _ in answers]


# The test internet lives in 198.18.0.0/15, so the tests unblock that range.
UNBLOCKED = tuple(r for r in BLOCKED if r != "198.18.0.0/15")


def test_real_traffic_is_decided_and_logged_as_configured(rig: Rig, tmp_path: Path) -> None:
    origin, meta, proxy_inside = str(rig.outside[10]), str(rig.outside[66]), str(rig.inside[2])
    entries = (
        Entry("allowed.test"),
        Entry("cdn.test", wildcard=True),
        Entry("", network=origin, port=80),
        # Opted in, yet the proxy's own addresses stay refused (without that rule Squid
        # forwards the request to itself, verified: the proxy as a destination).
        Entry("", network=str(rig.inside), port=3128),
        Entry("", network="127.0.0.0/8", port=3128),
    )
    conf = conf_file(tmp_path, config(entries, str(rig.inside), blocked=(*UNBLOCKED, f"{meta}/32")))
    served = rig.origin("origin", 10, "allowed.test", "denied.test", "www.cdn.test")
    metadata = rig.origin("meta", 66, "meta.cdn.test")  # the cloud-metadata stand-in: blocked
    proxy = rig.proxy(conf)
    requests = [
        "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
        "GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n",
        get(meta),
        get("www.cdn.test"),
        get("meta.cdn.test"),
        "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n",
        get(origin),
        get(str(int(ipaddress.ip_address(meta)))),  # decimal form
        "CONNECT allowed.test:8443 HTTP/1.1\r\n\r\n",
        "\x00\x01 not http\r\n\r\n",
        get(f"{proxy_inside}:3128"),
        get("127.0.0.1:3128"),
    ]
    answers = rig.client(requests)
    # A refused CONNECT is closed unanswered (0): Squid would otherwise answer it "200" and
    # show its error page inside TLS (see aido.egress.squid._split_connect).
    assert statuses(answers) == [200, 403, 403, 200, 403, 200, 200, 403, 0, 400, 403, 403]
    assert [body for _, body in answers if body] == ["hello from origin"] * 4

    assert docker("stop", "-t", "10", proxy).returncode == 0  # shutdown_lifetime 0: quick
    log = parse_log(docker("logs", proxy).stdout)
    assert gaps(log) == 0 and [e["seq"] for e in log] == list(range(len(requests)))
    # A tunnel's status is Squid's word for how it ended (200, or 500 at times): not checked.
    seen = sorted(
        (e["method"], e["host"], e["port"], e["reason"], e["status"] if e["result"] != "TCP_TUNNEL" else 0)
        for e in log
    )
    assert seen == sorted(
        [
            ("GET", "allowed.test", 80, "allow:allowed.test", 200),
            ("GET", "denied.test", 80, "deny:not_allowlisted", 403),
            ("GET", meta, 80, "deny:ip_literal", 403),
            ("GET", "www.cdn.test", 80, "allow:*.cdn.test", 200),
            ("GET", "meta.cdn.test", 80, "deny:blocked_dst", 403),
            # The tunnel (method "-": its bytes were not TLS, so it was tunnelled as they are).
            ("-", "allowed.test", 443, "allow:allowed.test", 0),
            ("GET", origin, 80, f"allow:{origin}:80", 200),
            ("GET", meta, 80, "deny:ip_literal", 403),  # the decimal form, as Squid logs it
            ("CONNECT", "allowed.test", 8443, "deny:port_or_method", None),  # closed unanswered
            ("-", "-", None, "deny:invalid_request", 400),
            ("GET", proxy_inside, 3128, "deny:ip_literal", 403),
            ("GET", "127.0.0.1", 3128, "deny:ip_literal", 403),
        ]
    )
    for entry in log:
        assert ipaddress.ip_address(entry["client"]) in rig.inside and entry["client"] != proxy_inside
        if entry["method"] == "CONNECT":  # refused: closed unanswered
            assert entry["server"] is None and entry["bytes_sent"] > 0 and entry["bytes_received"] == 0
            continue
        assert entry["server"] == (f"{origin}:{entry['port']}" if entry["decision"] == "allowed" else None)
        assert entry["bytes_sent"] > 0 and entry["bytes_received"] > 0
    assert "served" not in docker("logs", metadata).stdout  # the blocked address saw nothing
    assert docker("logs", served).stdout.count("served") == 4


def test_only_allowlisted_names_are_ever_looked_up(rig: Rig, tmp_path: Path) -> None:
    """The DNS-exfiltration control, observed: the proxy's lookups go (through Docker's
    embedded DNS) to a logging DNS server of this test's own; of the names a task sends,
    only those the allowlist covers reach it. IP literals, in the opted-in range or not,
    are never looked up either."""
    origin = str(rig.outside[10])
    entries = (Entry("allowed.test"), Entry("cdn.test", wildcard=True), Entry("", network=f"{origin}/32"))
    conf = conf_file(tmp_path, config(entries, str(rig.inside), blocked=UNBLOCKED))
    dns = rig.start("dns", 53, "python:3.11-slim", "python", "-u", "-c", DNS_LOGGER)
    rig.origin("origin", 10, "allowed.test")
    rig.proxy(conf, dns=str(rig.outside[53]))
    hosts = [
        "leak-one.exfil.invalid",
        "leak-two.1x",
        origin,
        "allowed.test",
        "leak-three.cdn.test",
        "0x7f.1",
        "[::1]",
        "leak-four.invalid.",
        "LEAK-FIVE.test",
        str(int(ipaddress.ip_address(origin))),
    ]
    answers = rig.client([get(host) for host in hosts])
    assert statuses(answers) == [403, 403, 200, 200, 502, 403, 403, 403, 403, 200]
    queries = docker("logs", dns).stdout.split()
    leaked = [name for name in queries if "leak" in name.lower()]
    assert leaked == ["leak-three.cdn.test"]  # a wildcard's names are looked up: inherent
    assert not [name for name in queries if name.startswith(tuple("0123456789"))]
