"""`aido mcp --http PORT`: streamable HTTP on loopback, behind a bearer token."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, aido_env, wait_for

mcp = pytest.importorskip("mcp")

from anyio.from_thread import start_blocking_portal  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

from mcp import ClientSession  # noqa: E402

pytestmark = pytest.mark.docker
TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def server(engine: None, project: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aido", "mcp", "--http", str(port)],
        cwd=project,
        env=aido_env({"AIDO_MCP_TOKEN": TOKEN}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: listening(port) or process.poll() is not None, timeout=30, what="the server to listen"
        )
        assert process.poll() is None, process.communicate()
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def post(port: int, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/mcp",
        data=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **headers,
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@asynccontextmanager
async def connect(port: int) -> AsyncIterator[ClientSession]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
    async with (
        http,
        streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http) as (read, write),
        ClientSession(read, write, read_timeout_seconds=60) as session,
    ):
        await session.initialize()
        yield session


def test_http_needs_the_token_and_serves_the_tools(
    server: tuple[subprocess.Popen[str], int], project: Path
) -> None:
    process, port = server
    assert post(port, {}) == 401
    assert post(port, {"Authorization": "Bearer wrong-token-0123456789"}) == 401
    assert post(port, {"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"}) == 421  # DNS rebinding
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(connect(port)) as session:
        names = {tool.name for tool in portal.call(session.list_tools).tools}
        assert {"create_sandbox", "run_code", "destroy_sandbox"} <= names
        created = portal.call(session.call_tool, "create_sandbox", {"ttl": "5m"})
        assert not created.is_error, created.content
        sid = created.structured_content["sandbox_id"]
        ran = portal.call(session.call_tool, "run_code", {"sandbox_id": sid, "code": "print(6 * 7)"})
        assert ran.structured_content["stdout"]["text"] == "42\n"
    # SIGTERM (a service manager stopping it): the server's sandboxes are destroyed on the way out.
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert "bearer token" not in stderr  # given through AIDO_MCP_TOKEN: never printed
    assert "serving http://127.0.0.1:" in stderr
    assert list((project / ".aido" / "sandboxes").iterdir()) == []
    assert (project / ".aido" / "archive" / sid).is_dir()


def test_http_refuses_other_hosts_and_a_taken_port(aido: Aido, project: Path) -> None:
    result = aido("mcp", "--http", "8765", "--host", "0.0.0.0")
    assert result.code == 2
    assert "only on loopback" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = aido("mcp", "--http", str(port))
    assert result.code == 2
    assert f"--http {port}: cannot listen on 127.0.0.1:{port} (Address already in use)" in result.stderr
