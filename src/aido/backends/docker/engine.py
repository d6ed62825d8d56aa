"""A small client for the Docker Engine API, over the engine's Unix socket (or plain TCP).

Why not the ``docker`` SDK: importing it (it pulls in ``requests``) costs about
140 ms here, more than half of a whole hardened ``docker run``; ``aido run`` would
then be ~1.8x raw docker instead of ~1.3x (see benchmarks/). This client speaks
only the dozen endpoints aido needs, over a minimal HTTP/1.1 of its own (http11.py:
``http.client`` alone would cost ``aido run`` ~10 ms of imports). It also talks to
Podman's Docker-compatible socket unchanged.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aido.backends.docker.http11 import Connection, Disconnected, ProtocolError

# The API versions this client is written against; the engine's own maximum is
# used when it is lower, so Docker 20.10 (1.41) and current engines both work.
MIN_API = (1, 41)
MAX_API = (1, 45)
DEFAULT_SOCKET = "/var/run/docker.sock"


class EngineError(Exception):
    """An error answer from the engine (``status`` is the HTTP status) or no answer (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


class Engine:
    def __init__(self, host: str | None = None, *, timeout: float = 60.0) -> None:
        host = host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
        parts = urlsplit(host)
        if parts.scheme == "unix":
            self._unix: str | None = parts.path
            self._tcp: tuple[str, int] | None = None
        elif parts.scheme in ("tcp", "http") and parts.hostname:
            if os.environ.get("DOCKER_TLS_VERIFY"):
                raise EngineError(0, f"DOCKER_HOST={host} with TLS is not supported yet; use a unix socket")
            self._unix, self._tcp = None, (parts.hostname, parts.port or 2375)
        else:
            raise EngineError(0, f"unsupported DOCKER_HOST {host!r}: use unix:///path or tcp://host:port")
        self.host = host
        self.timeout = timeout
        self._conn: Connection | None = None
        self._prefix = ""
        self.api_version = ""

    # -- connection ---------------------------------------------------------------

    def _connection(self, timeout: float | None) -> Connection:
        """A new connection (connected within the client's timeout), then ``timeout`` for
        each of its reads and writes."""
        sock = self._raw_socket()
        try:
            if self._tcp is not None:
                # A request's head and body go out in one write; do not let Nagle hold the
                # next request back waiting for the engine's ACK (as http.client does).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
        except OSError:
            sock.close()
            raise
        if self._unix is not None:
            return Connection(sock, "localhost")
        host, port = self._tcp or ("", 0)
        host = f"[{host}]" if ":" in host else host  # an IPv6 address, as in a URL
        return Connection(sock, host if port == 80 else f"{host}:{port}")

    def _raw_socket(self) -> socket.socket:
        if self._unix is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self._unix)
            return sock
        assert self._tcp is not None
        return socket.create_connection(self._tcp, timeout=self.timeout)

    def negotiate(self) -> str:
        """Ping the engine and pick the API version; raise EngineError(0, ...) if unreachable."""
        if self.api_version:
            return self.api_version
        status, headers, _ = self._request("GET", "/_ping", versioned=False)
        if status != 200:
            raise EngineError(status, "the engine did not answer its ping")
        server = _parse_version(headers.get("api-version") or "1.41")
        if server < MIN_API:
            raise EngineError(0, f"the engine's API {server[0]}.{server[1]} is too old; aido needs 1.41+")
        chosen = min(server, MAX_API)
        self.api_version = f"{chosen[0]}.{chosen[1]}"
        self._prefix = f"/v{self.api_version}"
        return self.api_version

    def clone(self, *, timeout: float | None = None) -> Engine:
        """A client for another thread (a connection serves one request at a time) that skips
        the ping: it reuses the version this one negotiated, so its first call is its only
        round trip."""
        other = Engine(self.host, timeout=self.timeout if timeout is None else timeout)
        other.api_version, other._prefix = self.api_version, self._prefix
        return other

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        versioned: bool = True,
        timeout: float | None = -1.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """The answer's status, headers (names lower-cased) and body."""
        url = (self._prefix if versioned else "") + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                conn = self._conn or self._connection(self.timeout)
                self._conn = conn
                conn.sock.settimeout(self.timeout if timeout == -1.0 else timeout)
                response = conn.request(method, url, payload, "application/json")
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, response.headers, data
            except (Disconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A kept-alive connection the engine had closed: retry once on a new one.
                self.close()
                if not reused or attempt == 2:
                    raise EngineError(0, f"lost the Docker engine at {self.host}: {exc}") from None
            except TimeoutError as exc:
                self.close()
                raise EngineError(0, f"the Docker engine at {self.host} did not answer: {exc}") from None
            except (OSError, ProtocolError) as exc:
                self.close()
                raise EngineError(0, f"cannot reach the Docker engine at {self.host}: {exc}") from None
        raise AssertionError("unreachable")

    def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        ok: tuple[int, ...] = (200, 201, 204),
        timeout: float | None = -1.0,
    ) -> Any:
        """One API call; the decoded JSON answer (or None), EngineError on any other status."""
        if not self.api_version:
            self.negotiate()
        status, _, data = self._request(method, path, query=query, body=body, timeout=timeout)
        if status not in ok:
            raise EngineError(status, _error_message(data) or f"HTTP {status} from {method} {path}")
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def _chunks(
        self, method: str, path: str, query: dict[str, Any] | None, timeout: float | None
    ) -> Iterator[bytes]:
        """A streamed endpoint's body as it arrives, on a connection of its own (closed when
        the body ends or the caller stops); EngineError if the engine refuses or is lost."""
        if not self.api_version:
            self.negotiate()
        conn: Connection | None = None
        try:
            conn = self._connection(timeout)
            url = self._prefix + path + ("?" + urlencode(query) if query else "")
            response = conn.request(method, url)
            if response.status != 200:
                raise EngineError(
                    response.status, _error_message(response.read()) or f"HTTP {response.status}"
                )
            yield from response.chunks()
        except (OSError, ProtocolError) as exc:
            raise EngineError(0, f"lost the Docker engine at {self.host}: {exc}") from None
        finally:
            if conn is not None:
                conn.close()

    def call_raw(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, limit: int
    ) -> tuple[bytes, int]:
        """A streamed endpoint's bytes (a container's logs), at most ``limit`` of them, and
        how many more there were (counted, never held in memory: a flood stays on disk)."""
        data, extra = bytearray(), 0
        for chunk in self._chunks(method, path, query, self.timeout):
            room = limit - len(data)
            if room > 0:
                data += chunk[:room]
            extra += max(0, len(chunk) - max(room, 0))
        return bytes(data), extra

    def stream_json(self, method: str, path: str, *, query: dict[str, Any] | None = None) -> Iterator[Any]:
        """A streamed endpoint (image pull): yield each JSON message as it arrives."""
        decoder = json.JSONDecoder()
        buffer = ""
        for chunk in self._chunks(method, path, query, None):
            buffer += chunk.decode("utf-8", "replace")
            while buffer:
                buffer = buffer.lstrip()
                try:
                    message, end = decoder.raw_decode(buffer)
                except ValueError:
                    break
                buffer = buffer[end:]
                yield message

    def attach(self, container_id: str, *, stdin: bool = False) -> AttachStream:
        """Attach to stdout/stderr (and stdin if asked) of a created container, before it
        starts, so no output is missed."""
        path = f"/containers/{quote(container_id)}/attach?stream=1&stdout=1&stderr=1"
        return self._upgrade(path + ("&stdin=1" if stdin else ""), b"")

    def exec_stream(self, exec_id: str) -> AttachStream:
        """Start a created exec instance and return its stdout/stderr (and stdin, if the
        exec was created with AttachStdin) as one stream, the same framing as attach."""
        return self._upgrade(f"/exec/{quote(exec_id)}/start", b'{"Detach":false,"Tty":false}')

    def _upgrade(self, path: str, body: bytes) -> AttachStream:
        """A POST that the engine answers by turning the connection into the raw stream."""
        if not self.api_version:
            self.negotiate()
        sock = self._raw_socket()
        request = (
            f"POST {self._prefix}{path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
            f"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(request.encode() + body)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                raise EngineError(0, "the engine closed the attach connection")
            head += chunk
            if len(head) > 65536:
                sock.close()
                raise EngineError(0, "the engine sent an oversized attach response")
        header, _, rest = head.partition(b"\r\n\r\n")
        status_line = header.split(b"\r\n", 1)[0].decode("latin-1")
        status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
        if status not in (101, 200):
            sock.close()
            raise EngineError(status, f"attach failed: {status_line}")
        sock.settimeout(None)  # a task may be silent for as long as its timeout
        return AttachStream(sock, rest)


class AttachStream:
    """The multiplexed stdout/stderr stream of a non-TTY container.

    Each frame is an 8-byte header (stream type, 3 zero bytes, big-endian length)
    followed by the payload; frames are re-cut into reads of at most 64 KiB so a
    task that sends one enormous frame cannot make aido buffer it whole.
    """

    CHUNK = 65536

    def __init__(self, sock: socket.socket, initial: bytes) -> None:
        self._sock = sock
        self._buffer = bytearray(initial)

    def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = self._sock.recv(self.CHUNK)
            if not chunk:
                return False
            self._buffer += chunk
        return True

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Yield (stream, data) with stream 1 for stdout and 2 for stderr, until the task ends."""
        while True:
            if not self._fill(8):
                return
            kind, length = struct.unpack(">BxxxL", bytes(self._buffer[:8]))
            del self._buffer[:8]
            while length > 0:
                if not self._buffer and not self._fill(1):
                    return
                take = min(length, len(self._buffer), self.CHUNK)
                data = bytes(self._buffer[:take])
                del self._buffer[:take]
                length -= take
                yield (2 if kind == 2 else 1), data

    def send(self, data: bytes) -> None:
        """Write to the task's stdin (an attach with stdin=1)."""
        self._sock.sendall(data)

    def close_stdin(self) -> None:
        """End of the task's stdin: half-close the connection (the engine closes the
        container's stdin, as with StdinOnce) and keep reading its output."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def abort(self) -> None:
        """End ``frames`` from another thread (the socket stays open until ``close``): under
        gVisor an exec's stream can stay open after its container was killed."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def _error_message(data: bytes) -> str:
    try:
        message = json.loads(data).get("message", "")
    except (ValueError, AttributeError):
        message = data.decode("utf-8", "replace").strip()
    return str(message)[:500]
