"""A small "internet" for egress tests, made only of containers and a network the test
creates: an allowed origin, a denied origin, a host meant to be reached by IP literal only,
and a DNS server that answers the test names and logs every query. Every container gets
``--dns 127.0.0.1``, so Docker's resolver never forwards a lookup toward the host's. The
egress proxy joins this network (AIDO_EGRESS_NETWORK) and resolves through the test's DNS
server (AIDO_EGRESS_DNS); nothing here can reach, or is reached from, anything else.
"""

from __future__ import annotations

import datetime
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

IMAGE = "python:3.11-slim"  # the local stand-in (scripts/bootstrap.sh): python3, no network tools

# HTTP on 80 and 8443, HTTPS on 443 (a self-signed certificate), a raw TCP port and a UDP
# port; every connection or datagram that arrives is printed, with the peer's address.
ORIGIN = r"""
import http.server, mimetypes, os, socket, socketserver, ssl, sys, threading
NAME = sys.argv[1]
WWW = "/srv/www/"
def log(*parts):
    print(NAME, *parts, flush=True)
def page(path):
    # A file the test published under www/ (a folder's index.html), else a greeting.
    local = os.path.normpath(WWW + path.split("?")[0].lstrip("/"))
    if os.path.isdir(local):
        local = os.path.join(local, "index.html")
    if local.startswith(WWW) and os.path.isfile(local):
        with open(local, "rb") as f:
            return f.read(), mimetypes.guess_type(local)[0] or "application/octet-stream"
    return ("hello from " + NAME + "\n").encode(), "text/plain"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        log("http", self.client_address[0], self.server.server_address[1], self.headers.get("Host"))
        body, kind = page(self.path)
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
servers = [Server(("0.0.0.0", port), Handler) for port in (80, 443, 8443)]
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain("/srv/cert.pem", "/srv/key.pem")
servers[1].socket = tls.wrap_socket(servers[1].socket, server_side=True)
for server in servers:
    threading.Thread(target=server.serve_forever, daemon=True).start()
def raw_tcp():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 9000))
    listener.listen()
    while True:
        conn, peer = listener.accept()
        log("tcp", peer[0])
        conn.close()
threading.Thread(target=raw_tcp, daemon=True).start()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 9001))
log("ready")
while True:
    data, peer = udp.recvfrom(2048)
    log("udp", peer[0])
"""

# A DNS server for the test names: A records from its arguments (NAME=IP, *.DOMAIN=IP),
# no other answer (NXDOMAIN); every question is printed with the asker's address.
DNS = r"""
import socket, struct, sys
names = dict(arg.split("=", 1) for arg in sys.argv[1:])
asked = {}
def lookup(name, qtype):
    # NAME=IP1|IP2: the A answers take turns, each with TTL 0 (a DNS rebinding attacker's name).
    value = names.get(name)
    for key, ip in names.items():
        if value is None and key.startswith("*.") and name.endswith(key[1:]):
            value = ip
    if value is None or qtype != 1:
        return value, 0
    ips = value.split("|")
    if len(ips) == 1:
        return ips[0], 5
    asked[name] = asked.get(name, -1) + 1
    return ips[asked[name] % len(ips)], 0
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 53))
print("dns ready", flush=True)
while True:
    data, peer = sock.recvfrom(4096)
    try:
        pos, labels = 12, []
        while data[pos]:
            labels.append(data[pos + 1 : pos + 1 + data[pos]].decode("ascii", "replace"))
            pos += 1 + data[pos]
        qtype = struct.unpack(">H", data[pos + 1 : pos + 3])[0]
        question = data[12 : pos + 5]
    except (IndexError, struct.error):
        continue
    name = ".".join(labels).lower()
    print("query", name, qtype, peer[0], flush=True)
    ip, ttl = lookup(name, qtype)
    flags = 0x8180 if ip else 0x8183
    answers = b""
    if ip and qtype == 1:
        answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, ttl, 4) + socket.inet_aton(ip)
    head = data[:2] + struct.pack(">HHHHH", flags, 1, 1 if answers else 0, 0, 0)
    sock.sendto(head + question + answers, peer)
"""


@dataclass
class Internet:
    network: str
    allowed_ip: str  # "allowed" origin: allowed.test, api.allowed.test, *.wild.test
    denied_ip: str  # "denied" origin: denied.test
    literal_ip: str  # reached by IP literal only (and by meta.wild.test: a private address)
    dns_ip: str
    containers: dict[str, str]  # name -> container name
    root: Path  # mounted at /srv in every container: files under www/ are what the origins serve

    @property
    def env(self) -> dict[str, str]:
        """What aido needs to put its egress proxy on this network."""
        return {"AIDO_EGRESS_NETWORK": self.network, "AIDO_EGRESS_DNS": self.dns_ip}

    def lines(self, name: str) -> list[str]:
        done = subprocess.run(
            ["docker", "logs", self.containers[name]], capture_output=True, text=True, check=True
        )
        return [line for line in done.stdout.splitlines() if line.strip()]

    def hits(self, name: str) -> list[str]:
        """What reached an origin: "http <peer> <port> <host>", "tcp <peer>", "udp <peer>"."""
        return [line.split(" ", 1)[1] for line in self.lines(name) if not line.endswith(" ready")]

    def resolve(self, name: str) -> str | None:
        """Ask the test's DNS server for ``name``'s A record, as the proxy does (this host
        reaches the containers on the network the test created); None: no answer."""
        labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
        query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(query, (self.dns_ip, 53))
            reply = sock.recv(512)
        answers = int.from_bytes(reply[6:8], "big")
        return socket.inet_ntoa(reply[-4:]) if answers else None

    def queries(self) -> list[str]:
        """Every name the DNS server was asked about."""
        return [line.split()[1] for line in self.lines("dns") if line.startswith("query ")]


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def _certificate(directory: Path, names: list[str]) -> None:
    """A self-signed certificate for the test names (the origins' HTTPS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / "origin.py").write_text(ORIGIN)
    (directory / "dns.py").write_text(DNS)
    for path in directory.iterdir():
        path.chmod(0o644)
    directory.chmod(0o755)


@contextmanager
def internet(directory: Path) -> Iterator[Internet]:
    """Start the test internet; everything is removed on the way out, even on failure."""
    prefix = f"aido-test-inet-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True, exist_ok=True)
    _certificate(directory, ["allowed.test", "api.allowed.test", "*.wild.test", "denied.test"])
    containers: dict[str, str] = {}
    network = prefix
    _docker("network", "create", "--label", "aido.test=internet", network)
    try:

        def start(name: str, *command: str) -> str:
            container = f"{prefix}-{name}"
            containers[name] = container
            _docker(
                "run", "-d", "--name", container, "--network", network, "--dns", "127.0.0.1",
                "--label", "aido.test=internet", "-v", f"{directory}:/srv:ro", IMAGE, *command,
            )  # fmt: skip
            return _docker(
                "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
            )

        allowed_ip = start("allowed", "python3", "/srv/origin.py", "allowed")
        denied_ip = start("denied", "python3", "/srv/origin.py", "denied")
        literal_ip = start("literal", "python3", "/srv/origin.py", "literal")
        dns_ip = start(
            "dns",
            "python3",
            "/srv/dns.py",
            f"allowed.test={allowed_ip}",
            f"api.allowed.test={allowed_ip}",
            f"*.wild.test={allowed_ip}",
            f"meta.wild.test={literal_ip}",  # a listed wildcard's name that points at a private address
            f"rebind.wild.test={allowed_ip}|{literal_ip}",  # DNS rebinding: allowed, then private
            f"denied.test={denied_ip}",
            f"*.exfil.test={denied_ip}",
        )
        net = Internet(network, allowed_ip, denied_ip, literal_ip, dns_ip, containers, directory)
        deadline = time.monotonic() + 30
        while not all(any("ready" in line for line in net.lines(name)) for name in containers):
            if time.monotonic() > deadline:
                raise RuntimeError("the test internet did not start")
            time.sleep(0.1)
        yield net
    finally:
        if containers:
            subprocess.run(["docker", "rm", "-f", *containers.values()], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)
