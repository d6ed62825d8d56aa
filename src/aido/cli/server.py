"""The command server of a workspace with a warm pool: ``aido run`` without its start-up.

Half of a warm run's time was aido's own start: the interpreter, ~70 ms of imports, click.
This process pays that once: it imports what ``aido run`` needs, then waits on a Unix
socket in ``.aido/``. A client (cli/client.py, run before anything heavy is imported) sends
its argv, working directory, environment and umask, and passes its stdin, stdout and
stderr descriptors; the server forks, and the child becomes that command: it takes the
descriptors as its own 0, 1 and 2, the directory, the environment, and runs the ordinary
``aido.cli.main.main(argv)``, then sends back the exit code. The same code runs the same
command, on the same terminal; nothing is parsed twice. It is Mercurial's chg model.

Who may connect: only the user the server runs as (SO_PEERCRED), and only a client that
would run exactly this code (same interpreter, same ``sys.path``, same aido files:
``fingerprint()``); anything else is refused and the client runs the command itself. The
socket (mode 0600, in ``.aido/``) is one no task can see (it is
outside every mounted tree, and hidden under --host-filesystem). A signal the client gets
(Ctrl-C, SIGTERM, SIGHUP) is sent on to the child, which stops its run as it would have;
a client that goes away (killed) counts as SIGHUP.

It runs only while the workspace has a warm pool (its keeper, lifecycle/reaper.py, starts
it), and it is single-threaded: it forks only from its one thread, never while another
thread could hold a lock the child would need.
"""

from __future__ import annotations

import array
import fcntl
import marshal
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from aido.cli.client import fingerprint

MAX_HEADER = 4 << 20  # argv and environment
# Seconds between looks whether the workspace still has a pool and aido's files are as
# they were when the server started (an upgrade or an edit: stop, never serve stale code).
IDLE_CHECK = 1.0


def files_stamp() -> str:
    """aido's files as they are now (names, sizes, modification times)."""
    import hashlib

    import aido

    root = Path(aido.__file__).parent
    stamps = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                st = os.stat(os.path.join(folder, name))
                stamps.append(f"{folder}/{name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(stamps)).encode()).hexdigest()


def recv_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    """A client's header (marshal data, length-prefixed) and the descriptors it passed;
    read only from a client of this user (its data is this interpreter's marshal format)."""
    fds = array.array("i")
    data, ancdata, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if _peer_uid(conn) != os.getuid():
        for fd in fds:
            os.close(fd)
        raise PermissionError("another user")
    if len(data) < 4:
        raise ValueError("short header")
    (size,) = struct.unpack(">I", data[:4])
    if size > MAX_HEADER:
        raise ValueError("header too large")
    body = data[4:]
    while len(body) < size:
        chunk = conn.recv(min(65536, size - len(body)))
        if not chunk:
            raise ValueError("client went away")
        body += chunk
    request = marshal.loads(body[:size])  # noqa: S302 - this user's, and this interpreter's
    if not isinstance(request, dict):
        raise ValueError("not a request")
    return request, list(fds)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _child(conn: socket.socket, request: dict[str, object], fds: list[int]) -> int:
    """In the forked child: become the client's command and run it; its exit code."""
    for fd, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    os.umask(int(str(request["umask"])))
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def relay() -> None:
        # The client's signals, one byte each; end of file: the client is gone (SIGHUP).
        while True:
            try:
                data = conn.recv(16)
            except OSError:
                data = b""
            if not data:
                os.kill(os.getpid(), signal.SIGHUP)
                return
            for sig in data:
                os.kill(os.getpid(), sig)

    threading.Thread(target=relay, name="aido-client-signals", daemon=True).start()
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = ["aido", *map(str, argv)]
    from aido.cli.main import main

    try:
        main([str(a) for a in argv], delegate=False)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def serve(root: Path) -> int:
    from aido.lifecycle.reaper import has_pool
    from aido.store.workspace import Workspace

    workspace = Workspace(root)
    lock = os.open(workspace.server_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another server serves this workspace
    path = workspace.server_socket
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(64)
    listener.settimeout(IDLE_CHECK)
    # What `aido run` imports, once, here: each child starts with it loaded.
    import aido.cli.app
    import aido.cli.commands.run
    import aido.manager
    import aido.run.collect
    import aido.run.warm  # noqa: F401

    try:
        import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401
    except ImportError:
        pass
    mine, files = fingerprint(), files_stamp()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    try:
        next_check = 0.0
        while True:
            if time.monotonic() >= next_check:  # at most once a second, not per command
                if not has_pool(workspace) or files_stamp() != files:
                    break
                next_check = time.monotonic() + IDLE_CHECK
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            _serve_one(conn, listener, lock, mine)
    finally:
        path.unlink(missing_ok=True)
        listener.close()
        os.close(lock)
    return 0


def _serve_one(conn: socket.socket, listener: socket.socket, lock: int, mine: list[str]) -> None:
    fds: list[int] = []
    try:
        conn.settimeout(5)
        request, fds = recv_request(conn)
        if len(fds) != 3 or request.get("fingerprint") != mine:
            conn.sendall(b"R")  # refused: the client runs the command itself
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                listener.close()
                os.close(lock)
                conn.settimeout(None)
                conn.sendall(b"A")  # accepted
                code = _child(conn, request, fds)
            finally:
                try:
                    conn.sendall(b"X" + struct.pack(">i", code))
                finally:
                    os._exit(code)
    except (OSError, ValueError):
        pass
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m aido.cli.server WORKSPACE_ROOT", file=sys.stderr)
        return 2
    return serve(Path(args[0]).resolve())


if __name__ == "__main__":
    sys.exit(main())
