"""aido.egress.squid against the real proxy image (aido/egress-squid, Squid 5.7): Squid
accepts every generated config, and real traffic through it is decided and logged as
config() and parse_log() promise.

The test "internet" is made of containers this test starts on a network it creates (all
with --dns 127.0.0.1, so no lookup leaves them); nothing else is ever contacted.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
from pathlib import Path

import pytest

from aido.egress.allowlist import Entry
from aido.egress.squid import BLOCKED, PORT, config, gaps, parse_log
from tests.egress.test_squid import ALLOWLISTS, SUBNET

pytestmark = pytest.mark.docker

IMAGE = "aido/egress-squid:bookworm"
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


def create_network(name: str) -> str:
    """A /24 in 198.18.0.0/15 (benchmarking space: the test 'internet'); another test's
    network may hold a given one, so a few are tried."""
    for _ in range(10):
        subnet = f"198.{random.choice((18, 19))}.{random.randrange(256)}.0/24"
        if docker("network", "create", "--subnet", subnet, name).returncode == 0:
            return subnet
    pytest.fail("could not create a test network in 198.18.0.0/15")


def test_real_traffic_is_decided_and_logged_as_configured(engine: None, tmp_path: Path) -> None:
    prefix = f"sqh-{random.randrange(16**6):06x}"
    network, origin, meta, proxy = (f"{prefix}-{part}" for part in ("net", "origin", "meta", "proxy"))
    subnet = create_network(network)
    try:
        net = ipaddress.ip_network(subnet)
        at = {name: str(net[number]) for name, number in (("proxy", 2), ("origin", 10), ("meta", 66))}
        # The test internet lives in 198.18.0.0/15, so that range is unblocked; the
        # metadata stand-in's address is blocked instead.
        blocked = (*[r for r in BLOCKED if r != "198.18.0.0/15"], f"{at['meta']}/32")
        entries = (
            Entry("allowed.test"),
            Entry("cdn.test", wildcard=True),
            Entry("", network=at["origin"], port=80),
        )
        conf = conf_file(tmp_path, config(entries, subnet, blocked=blocked))
        common = ["run", "-d", "--network", network, "--dns", "127.0.0.1"]
        serve = ["python:3.11-slim", "python", "-u", "-c", ORIGIN]
        aliases = [
            "--network-alias",
            "allowed.test",
            "--network-alias",
            "denied.test",
            "--network-alias",
            "www.cdn.test",
        ]
        for started in (
            docker(*common, "--name", origin, "--ip", at["origin"], *aliases, "-e", "NAME=origin", *serve),
            docker(*common, "--name", meta, "--ip", at["meta"], "--network-alias", "meta.cdn.test",
                   "-e", "NAME=meta", *serve),
            docker(*common, "--name", proxy, "--ip", at["proxy"], "--network-alias", "proxy.test", *HARDENED,
                   "-v", f"{conf}:/etc/squid/squid.conf:ro", IMAGE),
        ):  # fmt: skip
            assert started.returncode == 0, started.stderr
        decimal = str(int(ipaddress.ip_address(at["meta"])))
        requests = [
            "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
            "GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n",
            f"GET http://{at['meta']}/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET http://www.cdn.test/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET http://meta.cdn.test/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n",
            f"GET http://{at['origin']}/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            f"GET http://{decimal}/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            "CONNECT allowed.test:8443 HTTP/1.1\r\n\r\n",
            "\x00\x01 not http\r\n\r\n",
        ]
        client = docker("run", "--rm", "--network", network, "--dns", "127.0.0.1",
                        "--name", f"{prefix}-client", "python:3.11-slim", "python", "-c", CLIENT,
                        json.dumps(requests))  # fmt: skip
        assert client.returncode == 0, client.stderr
        answers = json.loads(client.stdout)
        assert [status.split(" ")[1] for status, _ in answers] == [
            "200", "403", "403", "200", "403", "200", "200", "403", "403", "400",
        ]  # fmt: skip
        assert [body for _, body in answers if body] == ["hello from origin"] * 4

        assert docker("stop", "-t", "10", proxy).returncode == 0  # shutdown_lifetime 0: quick
        log = docker("logs", proxy)
        entries_seen = parse_log(log.stdout)
        assert gaps(entries_seen) == 0 and [e["seq"] for e in entries_seen] == list(range(len(requests)))
        seen = sorted((e["method"], e["host"], e["port"], e["reason"], e["status"]) for e in entries_seen)
        assert seen == sorted([
            ("GET", "allowed.test", 80, "allow:allowed.test", 200),
            ("GET", "denied.test", 80, "deny:not_allowlisted", 403),
            ("GET", at["meta"], 80, "deny:ip_literal", 403),
            ("GET", "www.cdn.test", 80, "allow:*.cdn.test", 200),
            ("GET", "meta.cdn.test", 80, "deny:blocked_dst", 403),
            ("CONNECT", "allowed.test", 443, "allow:allowed.test", 200),
            ("GET", at["origin"], 80, f"allow:{at['origin']}:80", 200),
            ("GET", at["meta"], 80, "deny:ip_literal", 403),  # the decimal form, as Squid logs it
            ("CONNECT", "allowed.test", 8443, "deny:port_or_method", 403),
            ("-", "-", None, "deny:invalid_request", 400),
        ])  # fmt: skip
        for entry in entries_seen:
            assert ipaddress.ip_address(entry["client"]) in net and entry["client"] != at["proxy"]
            assert entry["server"] == (
                f"{at['origin']}:{entry['port']}" if entry["decision"] == "allowed" else None
            )
            assert entry["bytes_sent"] > 0 and entry["bytes_received"] > 0
        assert "served" not in docker("logs", meta).stdout  # the blocked address saw nothing
        assert docker("logs", origin).stdout.count("served") == 4
    finally:
        for name in (f"{prefix}-client", proxy, meta, origin):
            docker("rm", "-f", name)
        docker("network", "rm", network)
