"""The proxy's TLS check against the real image (aido/egress-squid, squid-openssl 5.7): a
CONNECT tunnel is spliced only when the ClientHello's SNI falls under the entry that
allowed the CONNECT; otherwise it is terminated before the proxy contacts the server.
Non-TLS bytes in an allowed tunnel still pass (a port entry for a database).

Same test "internet" as test_squid_engine.py: containers and networks of this test's own,
every resolver 127.0.0.1; nothing else is contacted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aido.egress.allowlist import Entry
from aido.egress.squid import PORT, config, gaps, parse_log
from tests.egress.test_squid_engine import UNBLOCKED, Rig, conf_file, docker
from tests.helpers.internet import _certificate

pytestmark = pytest.mark.docker

# One origin for every name: TLS on 443 with a certificate for all of them, logging each TCP
# connection it accepts, the SNI it is asked for and each completed handshake; raw TCP on
# 5432 answering "pong:" + what it got (a non-TLS protocol).
ORIGIN = r"""
import socket, ssl, threading
def log(*parts):
    print(*parts, flush=True)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain("/srv/cert.pem", "/srv/key.pem")
tls.sni_callback = lambda sock, name, ctx: log("sni", name)
def serve_tls(conn):
    try:
        s = tls.wrap_socket(conn, server_side=True)
        log("handshake")
        s.recv(4096)
        s.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 17\r\n\r\nhello from origin")
        s.close()
    except (OSError, ssl.SSLError) as exc:
        log("tls-error", type(exc).__name__)
def serve_raw(conn):
    data = conn.recv(4096)
    log("raw", data.decode(errors="replace").strip())
    conn.sendall(b"pong:" + data)
    conn.close()
def listen(port, serve):
    server = socket.create_server(("", port))
    while True:
        conn, _ = server.accept()
        log("accept", port)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
threading.Thread(target=listen, args=(5432, serve_raw), daemon=True).start()
listen(443, serve_tls)
"""

# The task: per probe, CONNECT through the proxy, then a TLS handshake with the given SNI
# ("" for none) and one request, or (sni None) raw bytes; prints one result per probe.
CLIENT = r"""
import json, socket, ssl, sys, time
def tunnel(target):
    deadline = time.monotonic() + 20
    while True:
        try:
            s = socket.create_connection(("proxy.test", PORT), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head.split(b"\r\n")[0].decode()
def probe(target, sni):
    s, status = tunnel(target)
    if " 200 " not in status:
        return status
    try:
        if sni is None:
            s.sendall(b"PING\n")
            return "raw " + s.recv(4096).decode()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        t = ctx.wrap_socket(s, server_hostname=sni or None)
        t.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return "tls " + t.recv(4096).decode().split("\r\n\r\n")[-1]
    except (OSError, ssl.SSLError) as exc:
        return "failed " + type(exc).__name__
print(json.dumps([probe(target, sni) for target, sni in json.loads(sys.argv[1])]))
""".replace("PORT", str(PORT))


@pytest.fixture
def rig(engine: None) -> Iterator[Rig]:
    made = Rig(prefix="snh")
    try:
        yield made
    finally:
        made.remove()


def test_a_tunnel_is_spliced_only_for_the_sni_of_its_entry(rig: Rig, tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    _certificate(srv, ["allowed.test", "denied.test", "www.cdn.test", "db.test"])
    (srv / "tls_origin.py").write_text(ORIGIN)
    (srv / "tls_origin.py").chmod(0o644)
    origin_ip = str(rig.outside[10])
    entries = (
        Entry("allowed.test"),
        Entry("cdn.test", wildcard=True),
        Entry("db.test", port=5432),
        Entry("", network=f"{origin_ip}/32", port=443),
    )
    conf = conf_file(
        tmp_path, config(entries, str(rig.inside), blocked=UNBLOCKED) + "debug_options ALL,1 28,3 33,2\n"
    )
    aliases = [
        arg
        for name in ("allowed.test", "denied.test", "www.cdn.test", "db.test")
        for arg in ("--network-alias", name)
    ]
    origin = rig.start(
        "origin",
        10,
        *aliases,
        "-v",
        f"{srv}:/srv:ro",
        "python:3.11-slim",
        "python",
        "-u",
        "/srv/tls_origin.py",
    )
    proxy = rig.proxy(conf)
    probes = [
        ("allowed.test:443", "allowed.test"),  # the CONNECT's own name: spliced
        ("allowed.test:443", "denied.test"),  # domain fronting: an unlisted SNI
        ("allowed.test:443", "www.cdn.test"),  # listed, but under another entry
        ("allowed.test:443", "ALLOWED.TEST"),  # names are case-insensitive
        ("allowed.test:443", ""),  # no SNI: the CONNECT target (allowed) decides
        ("www.cdn.test:443", "www.cdn.test"),
        ("db.test:5432", None),  # not TLS: tunnelled as it is
        ("db.test:5432", "denied.test"),  # TLS on a port entry: checked all the same
        ("denied.test:443", "denied.test"),  # refused at CONNECT, as before
        (f"{origin_ip}:443", "denied.test"),  # an opted-in range names no server: any SNI
    ]
    self = rig.names.append(f"{rig.prefix}-client") or rig.names[-1]
    where = ["--name", self, "--network", rig.networks[0], "--dns", "127.0.0.1"]
    done = docker("run", "--rm", *where, "python:3.11-slim", "python", "-c", CLIENT, json.dumps(probes))
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    ok, hello = "tls hello from origin", "raw pong:PING\n"
    assert [r if not r.startswith("failed") else "failed" for r in results] == [
        ok, "failed", "failed", ok, ok, ok, hello, "failed", "", ok  # "": refused, closed unanswered
    ]  # fmt: skip

    assert docker("stop", "-t", "10", proxy).returncode == 0
    log = parse_log(docker("logs", proxy).stdout)
    assert gaps(log) == 0 and not [e for e in log if "unparsed" in e], docker("logs", proxy).stdout
    # One line per tunnel: a spliced one when it closes (TCP_TUNNEL, with the server; method
    # "-" when its bytes were not TLS), a terminated or refused one when it is closed
    # (NONE_NONE: no server). Squid's own line for the answered CONNECT is not logged.
    seen = [(e["method"], e["host"], e["port"], e["result"], e["reason"]) for e in log]
    tunnel, closed = (
        ("CONNECT", "allowed.test", 443, "TCP_TUNNEL"),
        ("CONNECT", "allowed.test", 443, "NONE_NONE"),
    )
    assert sorted(seen) == sorted(
        [
            *[(*tunnel, "allow:allowed.test")] * 3,
            (*closed, "deny:sni_not_allowlisted"),
            (*closed, "deny:sni_mismatch"),
            ("CONNECT", "www.cdn.test", 443, "TCP_TUNNEL", "allow:*.cdn.test"),
            ("-", "db.test", 5432, "TCP_TUNNEL", "allow:db.test:5432"),
            ("CONNECT", "db.test", 5432, "NONE_NONE", "deny:sni_not_allowlisted"),
            ("CONNECT", "denied.test", 443, "NONE_NONE", "deny:not_allowlisted"),
            ("CONNECT", origin_ip, 443, "TCP_TUNNEL", f"allow:{origin_ip}/32:443"),
        ]
    ), seen
    for entry in log:
        if entry["decision"] == "allowed":
            assert entry["server"] is not None and entry["bytes_received"] > 0, entry
        else:
            assert entry["server"] is None and entry["bytes_received"] == 0, entry
    # The terminated tunnels never reached the origin: it accepted only the spliced ones and
    # saw only their SNIs (None: the handshake without one).
    lines = docker("logs", origin).stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("sni")) == sorted(
        ["sni allowed.test", "sni ALLOWED.TEST", "sni None", "sni www.cdn.test", "sni denied.test"]
    ), lines
    assert lines.count("accept 443") == lines.count("handshake") == 5, lines
    assert lines.count("accept 5432") == 1 and "raw PING" in lines, lines
