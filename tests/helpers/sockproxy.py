"""A relay in front of the Docker engine's socket, for tests that need an engine to go away
and come back (a node whose engine dies) without stopping the machine's real engine, which
every other test uses, or the engine on a TCP address (DOCKER_HOST=tcp://...), or to count
the connections a client opens. Clients are pointed at it with DOCKER_HOST.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

ENGINE = "/var/run/docker.sock"


class EngineRelay:
    """Listens on the Unix socket ``path``, or with no path on a free TCP port of 127.0.0.1."""

    def __init__(self, path: Path | None, target: str = ENGINE) -> None:
        self.path = path
        self.target = target
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._port = 0
        self.accepted = 0  # connections relayed so far

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}" if self.path is not None else f"tcp://127.0.0.1:{self._port}"

    def start(self) -> EngineRelay:
        if self.path is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            self._port = listener.getsockname()[1]
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """The engine is gone: no new connection, and every open one cut."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self.cut()

    def cut(self) -> None:
        """Every open connection is cut (as an engine restart does); new ones are still relayed."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
