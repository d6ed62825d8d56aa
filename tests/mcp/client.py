"""The MCP SDK's own client driving `aido mcp` in a subprocess, behind a synchronous face:
the session lives in an event loop of its own thread (an anyio blocking portal), so one
server serves a whole test module and the tests stay plain functions."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

mcp = pytest.importorskip("mcp")

from anyio.from_thread import BlockingPortal, start_blocking_portal  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from tests.helpers.cli import aido_env  # noqa: E402


@dataclass
class Session:
    portal: BlockingPortal
    session: ClientSession
    project: Path

    def call(self, name: str, arguments: dict[str, Any] | None = None, *, timeout: float = 120) -> Any:
        """The tool's result (is_error, structured_content, content) as the client got it."""
        return self.portal.call(
            lambda: self.session.call_tool(name, arguments or {}, read_timeout_seconds=timeout)
        )

    def ok(self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """A call that must succeed: its structured content."""
        result = self.call(name, arguments, **kwargs)
        assert not result.is_error, result.content[0].text
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    def error(self, name: str, arguments: dict[str, Any] | None = None) -> str:
        """A call that must fail as a tool error result: its text."""
        result = self.call(name, arguments)
        assert result.is_error, result.structured_content
        assert result.structured_content is None
        return str(result.content[0].text)

    def tools(self) -> dict[str, Any]:
        return {tool.name: tool for tool in self.portal.call(self.session.list_tools).tools}


def server_params(project: Path, *flags: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    # The SDK gives the child only HOME, PATH and a few more: the rest (DOCKER_HOST, the
    # test's XDG_CONFIG_HOME for signing keys, PYTHONPATH) is passed on explicitly.
    return StdioServerParameters(
        command=sys.executable, args=["-m", "aido", "mcp", *flags], env=aido_env(env), cwd=str(project)
    )


@asynccontextmanager
async def _connect(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, read_timeout_seconds=60) as s,
    ):
        await s.initialize()
        yield s


@contextmanager
def mcp_session(project: Path, *flags: str, env: dict[str, str] | None = None) -> Iterator[Session]:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(_connect(server_params(project, *flags, env=env))) as session,
    ):
        yield Session(portal, session, project)
