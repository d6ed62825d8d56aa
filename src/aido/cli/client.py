"""``aido run`` handed to the workspace's command server (cli/server.py), when it has one.

Runs before anything heavy is imported: it looks for ``.aido/run.sock`` from the current
directory up, sends the command (argv, directory, environment, umask, and this
interpreter's fingerprint) with stdin, stdout and stderr attached, relays Ctrl-C, SIGTERM
and SIGHUP, and returns the command's exit code. Whenever the server is absent, refuses
(another interpreter, import path or aido version) or cannot be reached, it returns None
and the command runs here as always. ``AIDO_SERVER=off`` never uses it.
"""

from __future__ import annotations

# Only modules with no imports of their own (the socket and json packages import enum
# and re: ~6 ms of a delegated run's ~12 ms): the request goes as marshal data, which
# only the same interpreter (the server checks) reads, after it checked the peer's uid.
import _socket
import marshal
import os
import struct
import sys

SOCKET = "run.sock"
WORKSPACE_DIR = ".aido"
DELEGATED = ("run",)  # the commands a server runs


def fingerprint() -> list[str]:
    """What client and server must share to run the same code: the interpreter, the import
    path, and which aido (its folder and version). The server also watches its own files
    (``files_stamp``) and stops when one changes, so it never serves code a client would
    not run."""
    import aido

    # Not the current directory nor the script's, which Python may put first (or
    # `python -m aido` may have removed): where aido itself came from is named here.
    skip = {"", os.getcwd()}
    if sys.argv and sys.argv[0] not in ("", "-c", "-m"):
        skip.add(os.path.dirname(os.path.abspath(sys.argv[0])))
    paths = [p for p in sys.path if p not in skip]
    return [sys.executable, os.path.dirname(aido.__file__), aido.__version__, *paths]


def _socket_path() -> str | None:
    here = os.getcwd()
    while True:
        workspace = os.path.join(here, WORKSPACE_DIR)
        if os.path.isdir(os.path.join(workspace, "sandboxes")):
            path = os.path.join(workspace, SOCKET)
            return path if os.path.exists(path) else None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def delegate(argv: list[str]) -> int | None:
    """The command's exit code, run by the server; None: run it here."""
    if not argv or argv[0] not in DELEGATED or os.environ.get("AIDO_SERVER") == "off":
        return None
    path = _socket_path()
    if path is None:
        return None
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(2)
        conn.connect(path)
        umask = os.umask(0)
        os.umask(umask)
        header = marshal.dumps(
            {
                "argv": argv,
                "cwd": os.getcwd(),
                "env": dict(os.environ),
                "umask": umask,
                "fingerprint": fingerprint(),
            }
        )
        payload = struct.pack(">I", len(header)) + header
        fds = struct.pack("3i", 0, 1, 2)
        sent = conn.sendmsg([payload[:65536]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        conn.sendall(payload[sent:])
        if conn.recv(1) != b"A":
            conn.close()
            return None  # refused: not the same code, or not this user
    except OSError:
        conn.close()
        return None
    return _wait(conn)


def _wait(conn: _socket.socket) -> int:
    """Relay signals to the command until it sends its exit code."""

    def forward(signum: int, frame: object) -> None:
        try:
            conn.send(bytes([signum]))
        except OSError:
            pass

    import signal  # now, while the server already runs the command

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    conn.settimeout(None)
    data = b""
    while True:
        try:
            chunk = conn.recv(64)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
        if data.startswith(b"X") and len(data) >= 5:
            return int(struct.unpack(">i", data[1:5])[0])
    sys.stderr.write("aido: error: the workspace's command server ended while it ran the command\n")
    return 125
