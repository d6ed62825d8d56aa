"""The engine client's own HTTP/1.1 (http11.py): against the real engine, over Unix and TCP
sockets, and its framing of answers the engine does not send every day (pure logic, on a
socket pair)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aido.backends.docker.engine import Engine, EngineError
from aido.backends.docker.http11 import MAX_LINE, Connection, Disconnected, ProtocolError
from tests.helpers.cli import Aido
from tests.helpers.sockproxy import EngineRelay


@pytest.fixture
def relay(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EngineRelay]:
    """A relay to the real engine: on TCP 127.0.0.1 if parametrized with "tcp", else a Unix socket."""
    tcp = getattr(request, "param", "unix") == "tcp"
    relay = EngineRelay(None if tcp else tmp_path / "engine.sock").start()
    yield relay
    relay.stop()


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("relay", ["unix", "tcp"], indirect=True)
def test_calls_of_every_framing_share_one_kept_alive_connection(relay: EngineRelay) -> None:
    client = Engine(relay.docker_host, timeout=30)
    assert client.negotiate()
    assert client.call("GET", "/version")["ApiVersion"]  # a Content-Length answer
    assert "Containers" in client.call("GET", "/info")  # > 2 KiB: the engine sends it chunked
    with pytest.raises(EngineError) as caught:
        client.call("GET", "/containers/aido-no-such-container-0000/json")
    assert caught.value.status == 404
    assert "aido-no-such-container-0000" in caught.value.message
    assert relay.accepted == 1
    now = int(time.time())
    # A chunked stream that ends: the events of the last minute (on a connection of its own).
    events = list(client.stream_json("GET", "/events", query={"since": str(now - 60), "until": str(now)}))
    assert all(isinstance(event, dict) for event in events)
    assert relay.accepted == 2
    client.close()


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("relay", ["unix", "tcp"], indirect=True)
def test_a_kept_alive_connection_the_engine_closed_is_replaced(relay: EngineRelay) -> None:
    """Unix and TCP sockets report a peer's close differently (a failed write; an empty
    read or a reset): each is retried once on a new connection."""
    client = Engine(relay.docker_host, timeout=30)
    client.negotiate()
    relay.cut()  # the engine restarted between two calls
    assert client.call("GET", "/version")["ApiVersion"]
    assert relay.accepted == 2
    relay.stop()
    with pytest.raises(EngineError) as caught:
        client.call("GET", "/version")
    assert caught.value.status == 0
    assert relay.docker_host in caught.value.message


@pytest.mark.docker
@pytest.mark.parametrize("relay", ["tcp"], indirect=True)
def test_a_run_through_a_tcp_docker_host(sandbox: str, project: Path, aido: Aido, relay: EngineRelay) -> None:
    """Every call of a run (create, attach, start, wait, inspect, remove) over TCP."""
    (project / "t.py").write_text("import sys; print('out'); print('err', file=sys.stderr)\n")
    done = aido("run", "t.py", env={"DOCKER_HOST": relay.docker_host})
    assert done.code == 0, done.stderr
    assert done.stdout == "out\n"
    assert "err\n" in done.stderr
    assert relay.accepted >= 2  # the API connection and the attach


# -- framing, on a socket pair: the peer's bytes are given ---------------------------------------


def answer(wire: bytes, method: str = "GET") -> tuple[int, dict[str, str], bytes, bool]:
    """What the client makes of ``wire`` (sent in 7-byte pieces, so that every line and
    chunk is split): status, headers, body and whether the connection must be closed."""
    ours, theirs = socket.socketpair()
    ours.settimeout(10)

    def peer() -> None:
        try:
            theirs.recv(65536)  # the request
            for start in range(0, len(wire), 7):
                theirs.sendall(wire[start : start + 7])
            theirs.shutdown(socket.SHUT_WR)
        except OSError:  # the client gave up reading (what some cases test) and closed
            pass

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    conn = Connection(ours, "localhost")
    try:
        response = conn.request(method, "/x")
        return response.status, response.headers, response.read(), response.will_close
    finally:
        conn.close()
        thread.join(10)
        theirs.close()


def test_a_chunked_body_with_extensions_and_trailers_is_joined() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nApi-Version: 1.41\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1a\r\n" + b"x" * 26 + b"\r\n0\r\nTrailer: t\r\n\r\n"
    )
    status, headers, body, will_close = answer(wire)
    assert (status, body, will_close) == (200, b"hello" + b"x" * 26, False)
    assert headers["api-version"] == "1.41"


def test_a_content_length_body_stops_at_its_length_and_keeps_the_connection() -> None:
    status, _, body, will_close = answer(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabcEXTRA")
    assert (status, body, will_close) == (201, b"abc", False)


def test_a_body_without_length_ends_with_the_connection_which_is_then_not_reused() -> None:
    assert answer(b"HTTP/1.1 200 OK\r\n\r\nto the end") == (200, {}, b"to the end", True)
    assert answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")[3]
    assert answer(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")[3]


def test_answers_without_a_body() -> None:
    assert answer(b"HTTP/1.1 204 No Content\r\n\r\n")[:3] == (204, {}, b"")
    assert answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", method="HEAD")[2] == b""
    # An interim "100 Continue" is skipped for the answer after it.
    assert answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[2] == b"ok"


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_LINE + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"T: x\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
    ids=[
        "short-length",
        "short-chunk",
        "bad-chunk-size",
        "negative-length",
        "long-line",
        "many-headers",
        "many-trailers",
        "bad-header",
        "cut-headers",
        "not-http",
    ],
)
def test_a_malformed_or_cut_answer_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        answer(wire)


def test_a_connection_closed_before_any_answer_is_a_disconnect_worth_a_retry() -> None:
    with pytest.raises(Disconnected):
        answer(b"")
    assert issubclass(Disconnected, ConnectionResetError)  # what Engine._request retries on


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_a_streamed_body_past_its_limit_is_counted_not_kept() -> None:
    """How the egress proxy's log is read: a flood past the cap stays on the engine's disk."""
    import subprocess

    name = f"aido-test-call-raw-{time.monotonic_ns()}"
    subprocess.run(
        ["docker", "run", "--name", name, "--network", "none", "python:3.11-slim", "python3", "-c",
         "import sys; sys.stdout.write('x' * 99 + '\\n'); sys.stdout.write('y' * 299_900)"],
        capture_output=True, check=True,
    )  # fmt: skip
    try:
        client = Engine()
        path, query = f"/containers/{name}/logs", {"stdout": 1}
        whole, extra = client.call_raw("GET", path, query=query, limit=1 << 20)
        assert extra == 0 and len(whole) > 300_000  # the text and the engine's frame headers
        kept, extra = client.call_raw("GET", path, query=query, limit=1000)
        assert kept == whole[:1000]
        assert extra == len(whole) - 1000
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
