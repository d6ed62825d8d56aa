"""Just enough HTTP/1.1 for the Docker engine API: a request and its response, on a socket
the engine client opened (Unix or TCP), kept alive between requests.

Why not ``http.client``: importing it imports ``email`` (to parse headers), ``ssl`` and
``random``, about 10 ms of the ~100 ms that ``aido run`` spends importing, for a protocol
this small: the engine's answers are framed by Content-Length, by chunks, or by the end
of the connection; nothing here needs TLS, proxies, redirects or compression.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

# As http.client: a longer status, header or chunk-size line, or more headers, is refused
# rather than buffered (a confused or hostile peer cannot make aido hold unbounded data).
MAX_LINE = 65536
MAX_HEADERS = 100
READ = 65536  # the largest piece of a body read (or yielded) at once


class ProtocolError(Exception):
    """The peer's answer is not HTTP/1.x, or it ended before its body did."""


class Disconnected(ConnectionResetError):
    """The connection was closed before any answer: typically a kept-alive connection the
    engine had already closed, which is worth one retry on a new connection."""


class Response:
    """An answer's status and headers; its body is read by ``read`` or ``chunks`` (once)."""

    def __init__(self, status: int, headers: dict[str, str], body: Body) -> None:
        self.status = status
        self.headers = headers  # names lower-cased; a repeated header keeps its last value
        self._body = body
        # Keep-alive is HTTP/1.1's default; the connection cannot be reused when the peer
        # says so or when the body's end is the connection's end.
        self.will_close = headers.get("connection", "").lower() == "close" or body.until_eof

    def chunks(self) -> Iterator[bytes]:
        """The body, piece by piece as it arrives (each at most 64 KiB)."""
        return self._body.pieces()

    def read(self) -> bytes:
        return b"".join(self._body.pieces())


class Body:
    """How a response's body is framed: no body, ``length`` bytes, chunked, or until EOF."""

    def __init__(self, stream: _Stream, *, length: int | None, chunked: bool) -> None:
        self._stream = stream
        self._length = length
        self._chunked = chunked
        self.until_eof = length is None and not chunked

    def pieces(self) -> Iterator[bytes]:
        if self._chunked:
            yield from self._chunked_pieces()
        elif self._length is not None:
            left = self._length
            while left > 0:
                data = self._stream.read_some(min(left, READ))
                if not data:
                    raise ProtocolError(f"the answer ended {left} bytes before its Content-Length")
                left -= len(data)
                yield data
        else:
            while data := self._stream.read_some(READ):
                yield data

    def _chunked_pieces(self) -> Iterator[bytes]:
        while True:
            line = self._stream.line()
            try:
                size = int(line.split(b";", 1)[0], 16)  # a chunk extension after ";" is ignored
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size < 0:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}")
            if size == 0:
                for _ in range(MAX_HEADERS + 1):  # trailer fields, up to the empty line
                    if not self._stream.line():
                        return
                raise ProtocolError(f"the answer has more than {MAX_HEADERS} trailer fields")
            while size > 0:
                data = self._stream.read_some(min(size, READ))
                if not data:
                    raise ProtocolError("the answer ended inside a chunk")
                size -= len(data)
                yield data
            if self._stream.line():
                raise ProtocolError("a chunk did not end with CRLF")


class _Stream:
    """Buffered reading of one connection: bounded lines, and pieces of a body."""

    def __init__(self, sock: socket.socket) -> None:
        self._reader = sock.makefile("rb")

    def line(self, *, first: bool = False) -> bytes:
        """The next line without its line end. At EOF: Disconnected if it is the answer's
        ``first`` line (nothing was answered), else ProtocolError (it was cut short)."""
        raw = self._reader.readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise ProtocolError("the answer has a line longer than 64 KiB")
        if not raw.endswith(b"\n"):
            if first and not raw:
                raise Disconnected("the engine closed the connection without answering")
            raise ProtocolError("the answer ended early")
        return raw.rstrip(b"\r\n")

    def read_some(self, size: int) -> bytes:
        """Up to ``size`` bytes: what has arrived, at least one byte unless at EOF."""
        return self._reader.read1(size)

    def close(self) -> None:
        self._reader.close()


class Connection:
    """One connection to the engine; requests are sent one at a time, each answer read
    whole (or to its end) before the next request."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self._host = host  # the Host header
        self._stream = _Stream(sock)

    def request(
        self, method: str, target: str, body: bytes | None = None, content_type: str = ""
    ) -> Response:
        head = f"{method} {target} HTTP/1.1\r\nHost: {self._host}\r\nAccept-Encoding: identity\r\n"
        if body is not None:
            if content_type:
                head += f"Content-Type: {content_type}\r\n"
            head += f"Content-Length: {len(body)}\r\n"
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"  # what http.client sends; some servers want it
        self.sock.sendall(head.encode("latin-1") + b"\r\n" + (body or b""))
        return self._response(method)

    def _response(self, method: str) -> Response:
        while True:
            line = self._stream.line(first=True)
            version, _, rest = line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise ProtocolError(f"not an HTTP/1.x answer: {line[:80]!r}")
            status = int(code)
            headers = self._headers()
            if status != 100:  # an interim "continue" is followed by the real answer
                break
        if version == b"HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
            headers["connection"] = "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = Body(self._stream, length=0, chunked=False)
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = Body(self._stream, length=None, chunked=True)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise ProtocolError(f"bad Content-Length {headers['content-length'][:40]!r}") from None
            if length < 0:
                raise ProtocolError(f"bad Content-Length {length}")
            body = Body(self._stream, length=length, chunked=False)
        else:
            body = Body(self._stream, length=None, chunked=False)
        return Response(status, headers, body)

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._stream.line()
            if not line:
                return headers
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        raise ProtocolError(f"the answer has more than {MAX_HEADERS} headers")

    def close(self) -> None:
        self._stream.close()
        self.sock.close()
