"""The MCP server: aido's tools on the official MCP SDK.

Each tool is a thin async wrapper that runs the service's blocking call in a worker
thread; a run's thread gets a cancel Event that a client's cancellation (or a timeout)
sets, so the run stops and is recorded as interrupted. Middleware (aido.mcp.middleware)
refuses oversized or unknown arguments and records every call.
"""

import logging
import signal
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from aido import __version__
from aido import log as aido_log
from aido.errors import AidoError
from aido.mcp.checks import RunAsk, SandboxAsk
from aido.mcp.middleware import Guard, Recorder
from aido.mcp.models import (
    Destroyed,
    Evidence,
    FileContent,
    OutputList,
    OutputRead,
    RunOutcome,
    SandboxInfo,
    SandboxList,
)
from aido.mcp.service import AgentService

T = TypeVar("T")

INSTRUCTIONS = """\
Run untrusted code in hardened aido sandboxes (containers with no network, an unprivileged
user, no capabilities, a read-only root filesystem, CPU, memory and process limits) and keep
sealed evidence of every run. Create a sandbox with create_sandbox, run code with run_code,
then read what it printed (read_output), what it wrote to /outputs (list_outputs, read_file)
and its evidence (get_evidence). The operator of this server fixed what you may ask for
(network, hosts, host files, limits); a refusal names the operator's setting. Every call is
recorded in the sandbox's event log."""

SandboxId = Annotated[
    str,
    Field(
        description="a sandbox id, as create_sandbox returned it", pattern=r"^[a-z0-9]{1,64}$", strict=True
    ),
]
RunId = Annotated[
    str, Field(description="a run id like run-001 (run_code returned it)", max_length=32, strict=True)
]
Timeout = Annotated[
    str | None,
    Field(
        description="kill the run after this long, like 30s or 2m (default: the sandbox's timeout)",
        max_length=32,
    ),
]
Hosts = Annotated[
    list[Annotated[str, Field(max_length=300)]],
    Field(
        description="hosts the code may reach over HTTP(S) through aido's egress proxy, like "
        "pypi.org, *.pythonhosted.org or api.example.com:443 (only hosts the operator allows); "
        "every other host, IP address and raw connection stays blocked",
        max_length=256,
    ),
]
Args = Annotated[
    list[Annotated[str, Field(max_length=4096)]],
    Field(description="command-line arguments for the code (sys.argv[1:])", max_length=256),
]
Env = Annotated[
    dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")],
        Annotated[str, Field(max_length=65536)],
    ],
    Field(
        description="environment variables for this run only (names in the event log, values never)",
        max_length=64,
    ),
]
Flag = Annotated[bool, Field(strict=True)]
MaxBytes = Annotated[int, Field(ge=1, le=1 << 20, strict=True, description="read at most this many bytes")]
Offset = Annotated[int, Field(ge=0, strict=True, description="start reading at this byte")]
Path = Annotated[
    str,
    Field(
        description="a path relative to the sandbox: outputs/..., work/... or inputs/... (the task's "
        "/outputs, /work, /inputs); links are never followed",
        min_length=1,
        max_length=4096,
        strict=True,
    ),
]


def _tool_error(exc: AidoError) -> ToolError:
    return ToolError(f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message)


async def _blocking(fn: Callable[[], T]) -> T:
    try:
        return await anyio.to_thread.run_sync(fn)
    except AidoError as exc:
        raise _tool_error(exc) from None


async def _run(fn: Callable[[threading.Event], T]) -> T:
    """A run in a worker thread; cancelling the call (the client's cancel, its timeout, the
    server stopping) stops the run, which records itself as interrupted."""
    cancel = threading.Event()
    try:
        return await anyio.to_thread.run_sync(lambda: fn(cancel), abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        raise
    except AidoError as exc:
        raise _tool_error(exc) from None


def build_server(service: AgentService) -> MCPServer[Any]:
    policy = service.policy
    # Before MCPServer, whose logging.basicConfig is then a no-op: aido's warnings keep
    # aido's format (and stream) in an MCP session, as in every other command.
    aido_log.logger()
    server: MCPServer[Any] = MCPServer(
        "aido", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    logging.getLogger("mcp").setLevel(logging.WARNING)
    Code = Annotated[
        str,
        Field(
            description="the code to run, with the sandbox's runtime "
            f"(at most {policy.max_code_bytes} bytes)",
            min_length=1,
            max_length=policy.max_code_bytes,
            strict=True,
        ),
    ]
    readonly = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    @server.tool(annotations=ToolAnnotations(openWorldHint=False))
    async def create_sandbox(
        runtime: Annotated[
            str, Field(description="python:3.11, node:18, sh or docker://IMAGE", max_length=300, strict=True)
        ] = "python:3.11",
        ttl: Annotated[
            str | None,
            Field(
                description="how long the sandbox lives, like 15m (default 15m, at most the operator's max)",
                max_length=32,
            ),
        ] = None,
        memory: Annotated[str | None, Field(description="memory per run, like 512M", max_length=32)] = None,
        cpus: Annotated[float | None, Field(gt=0, le=256, description="CPUs per run, like 1 or 0.5")] = None,
        timeout: Timeout = None,
        network: Annotated[
            bool,
            Field(strict=True, description="give every run network access (only if the operator allows it)"),
        ] = False,
        writable_inputs: Annotated[
            bool,
            Field(strict=True, description="let runs modify /inputs (only if the operator allows mutations)"),
        ] = False,
        isolation: Annotated[
            Literal["default", "gvisor"], Field(description="gvisor: runs under gVisor's user-space kernel")
        ] = "default",
        name: Annotated[str | None, Field(max_length=63, description="a human-readable name")] = None,
        allowed_hosts: Hosts = [],  # noqa: B006
    ) -> SandboxInfo:
        """Create a sandbox: an isolated place to run code, with its own /work and /outputs.
        It is destroyed when its ttl passes, when you call destroy_sandbox, or when this server
        stops. Limits over the operator's maximums are refused, and nothing is created."""
        ask = SandboxAsk(
            runtime,
            ttl,
            memory,
            cpus,
            timeout,
            network,
            writable_inputs,
            isolation,
            name,
            tuple(allowed_hosts),
        )
        return await _blocking(lambda: service.create_sandbox(ask))

    @server.tool(annotations=ToolAnnotations(openWorldHint=False))
    async def run_code(
        sandbox_id: SandboxId,
        code: Code,
        args: Args = [],  # noqa: B006 -- pydantic copies defaults; a JSON schema needs a literal
        timeout: Timeout = None,
        env: Env = {},  # noqa: B006
        network: Flag = False,
        host_filesystem: Flag = False,
        mutations: Flag = False,
        allowed_hosts: Hosts = [],  # noqa: B006
    ) -> RunOutcome:
        """Run a code string in a fresh container of the sandbox and wait for it. Returns the
        status, exit code, the first 16 KiB of stdout and stderr (read_output has the rest),
        the files it changed and what is in outputs/. Files written to /outputs stay for later
        runs and for read_file. network, host_filesystem (the project read-only at /project)
        and mutations (writable /inputs) are escape hatches, and allowed_hosts adds hosts to the
        sandbox's allowlist for this run: refused unless the operator allowed them."""
        hatches = (network, host_filesystem, mutations)
        ask = RunAsk(list(args), timeout, dict(env), hatches, tuple(allowed_hosts))
        return await _run(lambda cancel: service.run_code(sandbox_id, code, ask, cancel))

    @server.tool(annotations=ToolAnnotations(openWorldHint=False))
    async def run_file(
        sandbox_id: SandboxId,
        path: Path,
        args: Args = [],  # noqa: B006
        timeout: Timeout = None,
        env: Env = {},  # noqa: B006
        network: Flag = False,
        host_filesystem: Flag = False,
        mutations: Flag = False,
        allowed_hosts: Hosts = [],  # noqa: B006
    ) -> RunOutcome:
        """Run a file that is already in the sandbox (one an earlier run wrote to outputs/ or
        work/, or an input) as a task, like run_code. Never a file of the host: the path is
        relative to the sandbox and may not leave it or go through a link."""
        hatches = (network, host_filesystem, mutations)
        ask = RunAsk(list(args), timeout, dict(env), hatches, tuple(allowed_hosts))
        return await _run(lambda cancel: service.run_file(sandbox_id, path, ask, cancel))

    @server.tool(annotations=readonly)
    async def read_output(
        sandbox_id: SandboxId,
        run_id: RunId,
        stream: Literal["stdout", "stderr"] = "stdout",
        offset: Offset = 0,
        max_bytes: MaxBytes = 65536,
    ) -> OutputRead:
        """Read what a run printed (its captured stdout or stderr), from a byte offset."""
        return await _blocking(lambda: service.read_output(sandbox_id, run_id, stream, offset, max_bytes))

    @server.tool(annotations=readonly)
    async def list_outputs(sandbox_id: SandboxId) -> OutputList:
        """List the files runs left in the sandbox's outputs/ (the task's /outputs): paths,
        kinds and sizes. Links are listed with their target, never followed."""
        return await _blocking(lambda: service.list_outputs(sandbox_id))

    @server.tool(annotations=readonly)
    async def read_file(
        sandbox_id: SandboxId, path: Path, offset: Offset = 0, max_bytes: MaxBytes = 65536
    ) -> FileContent:
        """Read a file a run left in the sandbox (outputs/..., work/... or inputs/...): UTF-8
        text, or base64 for binary content. Links, devices and paths leaving the sandbox are refused."""
        return await _blocking(lambda: service.read_file(sandbox_id, path, offset, max_bytes))

    @server.tool(annotations=readonly)
    async def get_evidence(sandbox_id: SandboxId, run_id: RunId) -> Evidence:
        """A run's sealed evidence summary (status, exit code, limits hit, changes, image,
        hardening) and whether its seal verifies."""
        return await _blocking(lambda: service.get_evidence(sandbox_id, run_id))

    @server.tool(annotations=readonly)
    async def list_sandboxes() -> SandboxList:
        """The live sandboxes this server created (the only ones you can use)."""
        return await _blocking(service.list_sandboxes)

    @server.tool(annotations=ToolAnnotations(destructiveHint=True, idempotentHint=False, openWorldHint=False))
    async def destroy_sandbox(sandbox_id: SandboxId) -> Destroyed:
        """Destroy a sandbox: its runs stop, its files go; its evidence is kept for the operator."""
        return await _blocking(lambda: service.destroy_sandbox(sandbox_id))

    params = {name: set(tool.parameters.get("properties", {})) for name, tool in _tools(server).items()}
    # Outermost first: a call the guard refuses is recorded too.
    server.middleware.append(Recorder(service))
    server.middleware.append(Guard(service, params))
    return server


def _tools(server: MCPServer[Any]) -> dict[str, Any]:
    manager = server._tool_manager  # the registered tools, for their parameter names
    return {tool.name: tool for tool in manager.list_tools()}


def serve(service: AgentService, *, http_port: int | None, token: str | None) -> None:
    """Serve until the client goes (stdin closed) or a signal; then stop the runs and
    destroy this server's sandboxes (unless the policy keeps them)."""
    server = build_server(service)
    try:
        if http_port is None:
            server.run()
        else:
            assert token is not None
            _serve_http(server, http_port, token)
    finally:
        # The client stops a server that has not exited 2 s after closing stdin with SIGTERM,
        # then SIGKILL: a SIGTERM must not break off the cleanup halfway (a killed destroy
        # is finished by the next aido command's sweep, and the TTL reaper is the backstop).
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        service.close()


def _serve_http(server: MCPServer[Any], port: int, token: str) -> None:
    import hmac

    import uvicorn

    inner = server.streamable_http_app(host="127.0.0.1")
    expected = f"Bearer {token}".encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            got = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(got, expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"www-authenticate", b"Bearer")],
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"unauthorized: send Authorization: Bearer TOKEN\n",
                    }
                )
                return
        await inner(scope, receive, send)

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, log_config=None
    )
    anyio.run(uvicorn.Server(config).serve)
