"""`aido mcp`: serve aido's tools to an AI agent over the Model Context Protocol.

The operator's policy (what an agent may ask for) comes from the flags over the `mcp:`
mapping of aido's settings, is printed to stderr at start and cannot be changed by any
tool. The MCP SDK (the `mcp` extra) is imported only here, once the flags are checked, so
`aido run` and `--help` never load it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from aido.cli.options import CONTEXT, global_options
from aido.cli.state import AppState, command_state
from aido.errors import UsageError

LOOPBACK = ("127.0.0.1", "localhost")
F = TypeVar("F", bound=Callable[..., Any])


def _flag(name: str, help_text: str) -> Callable[[F], F]:
    return click.option(f"--{name}/--no-{name}", default=None, help=help_text)


@click.command("mcp", context_settings=CONTEXT)
@click.option(
    "--http",
    "http_port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve streamable HTTP on 127.0.0.1:PORT/mcp (bearer token: AIDO_MCP_TOKEN, else generated "
    "and printed to stderr) instead of stdio.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="With --http: only 127.0.0.1 (loopback) is served."
)
@click.option(
    "--workspace",
    "workspace_dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="The project whose .aido/ workspace the sandboxes live in (default: the current directory, "
    "or the nearest parent with a .aido/).",
)
@_flag("allow-network", "Let an agent ask for network access (a sandbox's or a run's). Default: refused.")
@_flag(
    "allow-host-filesystem", "Let an agent's runs see the project read-only at /project. Default: refused."
)
@_flag("allow-mutations", "Let an agent make /inputs (and /project) writable. Default: refused.")
@click.option(
    "--allow-image",
    "allow_images",
    multiple=True,
    metavar="PATTERN",
    help="Let an agent ask for docker://IMAGE runtimes matching this glob (repeatable), e.g. "
    "'ghcr.io/acme/*'. Default: only python, node, sh (and plugins' runtimes).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Let an agent give a sandbox or a run an egress allowlist of hosts this covers (repeatable), "
    "e.g. pypi.org, '*.pythonhosted.org'. Narrower than --allow-network, which covers every host. "
    "Default: none.",
)
@_flag("require-gvisor", "Run every sandbox of this server under gVisor, whatever the agent asks.")
@click.option("--max-ttl", metavar="DURATION", help="Longest ttl an agent may ask for (default 1h).")
@click.option("--max-memory", metavar="SIZE", help="Most memory per run (default 1G).")
@click.option("--max-cpus", metavar="N", help="Most CPUs per run (default 2).")
@click.option("--max-timeout", metavar="DURATION", help="Longest run timeout (default 5m).")
@click.option(
    "--max-sandboxes", type=int, metavar="N", help="Live sandboxes of this server at once (default 4)."
)
@click.option("--max-concurrent-runs", type=int, metavar="N", help="Runs at once (default 2); others wait.")
@click.option("--max-code-bytes", metavar="SIZE", help="Largest code string or file to run (default 256K).")
@_flag("keep-sandboxes", "Keep this server's sandboxes when it stops (their ttl still ends them).")
@global_options
@command_state
def mcp(
    state: AppState,
    http_port: int | None,
    host: str,
    workspace_dir: Path | None,
    allow_network: bool | None,
    allow_host_filesystem: bool | None,
    allow_mutations: bool | None,
    allow_images: tuple[str, ...],
    allow_hosts: tuple[str, ...],
    require_gvisor: bool | None,
    max_ttl: str | None,
    max_memory: str | None,
    max_cpus: str | None,
    max_timeout: str | None,
    max_sandboxes: int | None,
    max_concurrent_runs: int | None,
    max_code_bytes: str | None,
    keep_sandboxes: bool | None,
) -> None:
    """Serve aido to an AI agent over MCP (stdio; --http PORT for streamable HTTP on loopback).

    \b
    Tools: create_sandbox, run_code, run_file, read_output, list_outputs, read_file,
    get_evidence, list_sandboxes, destroy_sandbox. An agent sees only the sandboxes this
    server created; every tool call is recorded in the sandbox's events.log (calls about
    no sandbox in the workspace's).

    \b
    The operator decides, once, at start (flags, else `mcp:` in aido's settings):
      --allow-network --allow-host-filesystem --allow-mutations   (all refused by default)
      --allow-image PATTERN (docker:// images; none by default)   --require-gvisor
      --allow-host HOST[:PORT] (hosts an agent may allowlist; none by default)
      --max-ttl 1h --max-memory 1G --max-cpus 2 --max-timeout 5m
      --max-sandboxes 4 --max-concurrent-runs 2 --max-code-bytes 256K
    A request over a limit, or for an escape hatch not allowed, is an error result naming
    the setting, and nothing is created. The effective policy is printed to stderr.

    When the client disconnects, runs in progress stop (recorded as interrupted) and this
    server's sandboxes are destroyed, their evidence kept; --keep-sandboxes keeps them.
    Needs the extra: pip install 'aido[mcp]'.
    """
    if host not in LOOPBACK:
        raise UsageError(
            f"--host {host}: aido mcp serves only on loopback (127.0.0.1)",
            hint="reach it from elsewhere through an SSH tunnel or an authenticating proxy",
        )
    if importlib.util.find_spec("mcp") is None:
        raise UsageError("aido mcp needs the MCP SDK: pip install 'aido[mcp]'")
    from aido.cli.workspace import load_settings, sweep
    from aido.config.mcp import policy_from
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace

    start = (workspace_dir or Path.cwd()).resolve()
    if workspace_dir is not None and not start.is_dir():
        raise UsageError(f"--workspace {workspace_dir}: no such directory")
    found = Workspace.find(start)
    if found is None and start == Path(start.anchor):
        # GUI clients often start servers in /: never make a workspace there unasked.
        raise UsageError(
            f"no aido workspace in {start}",
            hint="give the project with --workspace DIR in the client's config",
        )
    workspace = found or Workspace.find_or_create(start)
    settings = load_settings(state, workspace)
    flags: dict[str, object] = {
        "allow_network": allow_network,
        "allow_host_filesystem": allow_host_filesystem,
        "allow_mutations": allow_mutations,
        "allow_images": list(allow_images) or None,
        "allow_hosts": list(allow_hosts) or None,
        "require_gvisor": require_gvisor,
        "max_ttl": max_ttl,
        "max_memory": max_memory,
        "max_cpus": max_cpus,
        "max_timeout": max_timeout,
        "max_sandboxes": max_sandboxes,
        "max_concurrent_runs": max_concurrent_runs,
        "max_code_bytes": max_code_bytes,
        "keep_sandboxes": keep_sandboxes,
    }
    values = dict(settings.mcp)
    for key, value in flags.items():
        if value is not None:
            values[key] = value
    try:
        policy = policy_from(values)
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        flag = {"allow_images": "--allow-image", "allow_hosts": "--allow-host"}.get(
            key, f"--{key.replace('_', '-')}"
        )
        origin = flag if flags.get(key) is not None else f"mcp.{key} in {settings.source}"
        raise UsageError(f"{origin}: {problem}") from None
    manager = SandboxManager(
        workspace, output_limit=settings.output_limit, evidence_retention=settings.evidence_retention
    )
    sweep(manager)
    token = None
    if http_port is not None:
        _check_port(http_port)
        token = os.environ.get("AIDO_MCP_TOKEN") or None
        if token is not None and len(token) < 16:
            raise UsageError("AIDO_MCP_TOKEN is shorter than 16 characters", hint="use a long random token")
    from aido.mcp.service import AgentService

    service = AgentService(manager, policy)
    say = sys.stderr
    say.write(f"aido mcp: workspace {workspace.root}\n")
    for line in policy.lines():
        say.write(f"aido mcp: {line}\n")
    if http_port is not None:
        if token is None:
            import secrets

            token = secrets.token_urlsafe(32)
            say.write(f"aido mcp: bearer token (set AIDO_MCP_TOKEN to choose one): {token}\n")
        say.write(f"aido mcp: serving http://127.0.0.1:{http_port}/mcp\n")
    else:
        say.write("aido mcp: serving on stdio\n")
    say.flush()
    from aido.mcp.server import serve

    serve(service, http_port=http_port, token=token)
    sys.stderr.flush()


def _check_port(port: int) -> None:
    """A port already taken is the operator's usage error, said before the server starts."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(
                f"--http {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror})",
                hint="choose another port",
            ) from None
