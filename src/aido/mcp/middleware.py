"""What sees every ``tools/call`` before the SDK parses it (its middleware): the guard
refuses an oversized request or an argument the tool does not take; the recorder writes
the call to aido's event log."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import anyio
import anyio.to_thread
from mcp.types import CallToolResult, TextContent

from aido.mcp.service import AgentService


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


class Guard:
    """Refuses a ``tools/call`` before the SDK parses it: a request larger than any valid
    one (stdio has no size limit), or an argument the tool does not take (the SDK would
    ignore it silently: a misspelt `network` would look granted)."""

    def __init__(self, service: AgentService, params: dict[str, set[str]]) -> None:
        self.limit = 2 * service.policy.max_code_bytes + (256 << 10)
        self.params = params

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method == "tools/call" and ctx.params:
            arguments = ctx.params.get("arguments") or {}
            size = len(json.dumps(arguments, ensure_ascii=False).encode("utf-8", "surrogatepass"))
            name = ctx.params.get("name")
            if size > self.limit:
                return _error(
                    f"Error executing tool {name}: arguments are {size} bytes, "
                    f"over this server's limit of {self.limit}"
                )
            known = self.params.get(str(name))
            if known is not None and isinstance(arguments, dict):
                unknown = sorted(str(k) for k in arguments if k not in known)
                if unknown:
                    return _error(
                        f"Error executing tool {name}: unknown argument{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)[:200]} (it takes: {', '.join(sorted(known))})"
                    )
        return await call_next(ctx)


class Recorder:
    """Every tool call goes to aido's event log as an ``mcp_tool_call`` event: which tool,
    which client, and a summary of its arguments (code as a digest and size, env names
    without values). A call about one of this server's live sandboxes is recorded in that
    sandbox's log before it runs, so the seal of the run it asked for covers it; any other
    call (list_sandboxes, a refused create, an unknown tool) after it, in the sandbox's log
    if it created one, else in the workspace's."""

    def __init__(self, service: AgentService) -> None:
        self.service = service

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call" or not ctx.params:
            return await call_next(ctx)
        service = self.service
        tool = str(ctx.params.get("name"))[:64]
        arguments = ctx.params.get("arguments")
        fields = {"tool": tool, "client": _client(ctx), "arguments": summarize(arguments)}
        sid = arguments.get("sandbox_id") if isinstance(arguments, dict) else None
        sid = sid if isinstance(sid, str) else None
        before = sid is not None and service.events_of(sid) != service.manager.workspace.events
        if before:
            await anyio.to_thread.run_sync(lambda: service.record(sid, "mcp_tool_call", **fields))
        outcome, result, error = "cancelled", None, None
        try:
            result = await call_next(ctx)
            error = _error_text(result)
            outcome = "error" if error is not None else "ok"
            return result
        finally:
            with anyio.CancelScope(shield=True):
                if not before:
                    created = _created(result) if outcome == "ok" else None
                    await anyio.to_thread.run_sync(
                        lambda: service.record(
                            created or sid,
                            "mcp_tool_call",
                            **fields,
                            outcome=outcome,
                            error=error if outcome == "error" else None,
                        )
                    )
                elif outcome != "ok":
                    await anyio.to_thread.run_sync(
                        lambda: service.record(
                            sid,
                            "mcp_tool_failed",
                            tool=tool,
                            outcome=outcome,
                            error=error if outcome == "error" else None,
                        )
                    )


def _client(ctx: Any) -> dict[str, Any] | None:
    shown: dict[str, Any] = {}
    try:
        info = ctx.session.client_params.client_info
        shown.update(name=str(info.name)[:100], version=str(info.version)[:50])
    except AttributeError:
        pass
    session = getattr(getattr(ctx.session, "_connection", None), "session_id", None)
    if session:
        shown["session"] = str(session)[:100]
    return shown or None


def _error_text(result: Any) -> str | None:
    is_error: object
    content: list[Any]
    if isinstance(result, CallToolResult):
        is_error, content = result.is_error, list(result.content)
    elif isinstance(result, dict):
        is_error, content = result.get("isError"), list(result.get("content") or [])
    else:
        return None
    if not is_error:
        return None
    for block in content:
        text = (
            block.text
            if isinstance(block, TextContent)
            else (block.get("text") if isinstance(block, dict) else None)
        )
        if text:
            return str(text)[:500]
    return "error"


def _created(result: Any) -> str | None:
    structured = getattr(result, "structured_content", None)
    if structured is None and isinstance(result, dict):
        structured = result.get("structuredContent")
    if isinstance(structured, dict) and "sandbox_id" in structured and "expires_at" in structured:
        value = structured.get("sandbox_id")
        return value if isinstance(value, str) else None
    return None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def summarize(arguments: object) -> dict[str, Any] | None:
    """The arguments as the event log keeps them: short scalars as given; code, long text
    and args as digest and size (they may hold secrets); env as its names only."""
    if not isinstance(arguments, dict):
        return None
    shown: dict[str, Any] = {}
    for key, value in list(arguments.items())[:32]:
        name = str(key)[:64]
        if name == "env" and isinstance(value, dict):
            shown[name] = {"names": sorted(str(k)[:128] for k in value)[:64]}
        elif (
            isinstance(value, bool | int | float)
            or value is None
            or (isinstance(value, str) and name != "code" and len(value) <= 256)
        ):
            shown[name] = value
        else:
            data = (
                value.encode("utf-8", "surrogatepass")
                if isinstance(value, str)
                else json.dumps(value).encode()
            )
            shown[name] = {"sha256": _digest(data), "bytes": len(data)}
    return shown
