"""A registry that has no images, run by the tests themselves on loopback.

A test that needs an image to be missing must make aido's pull fail without ever
reaching a real registry or the host's resolver: the image names this registry
(``127.0.0.1:PORT/name:tag``, which the engine talks to over plain HTTP as it does for
any loopback registry), and every request gets the registry API's own "not found".
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_NOT_FOUND = json.dumps({"errors": [{"code": "NAME_UNKNOWN", "message": "no image here (aido tests)"}]})


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = _NOT_FOUND.encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet: the engine probes it often
        pass

    def log_error(self, format: str, *args: object) -> None:  # a TLS hello is not HTTP: ignored
        pass


@contextmanager
def empty_registry() -> Iterator[str]:
    """Yields ``127.0.0.1:PORT`` of a registry that holds nothing; stopped on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="empty-registry", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
