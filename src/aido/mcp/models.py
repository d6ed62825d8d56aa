"""What the MCP tools return: pydantic models, so each tool has an output schema and its
result is structured content (plus the same JSON as text for clients that read text)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class SandboxInfo(BaseModel):
    sandbox_id: str
    name: str | None = None
    status: str = Field(description="created, running (a run in progress) or expired")
    runtime: str | None = None
    created_at: str
    expires_at: str
    runs: int = Field(description="how many runs it has had")
    ttl: str
    memory: str
    cpus: float
    timeout: str = Field(description="a run's default timeout")
    network: bool = Field(description="full network access")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="the only hosts its tasks can reach, through aido's egress proxy "
        "(permissions.network.allow); empty: none, or full network if network is true",
    )
    writable_inputs: bool


class SandboxList(BaseModel):
    sandboxes: list[SandboxInfo]
    max_sandboxes: int = Field(description="the operator's limit on live sandboxes of this server")


class StreamText(BaseModel):
    text: str = Field(description="the stream's first bytes, decoded as UTF-8 (invalid bytes replaced)")
    bytes_total: int = Field(description="how many bytes the task wrote to the stream")
    truncated: bool = Field(description="true if text is not the whole stream: use read_output for more")


class RunOutcome(BaseModel):
    sandbox_id: str
    run_id: str
    task: str
    status: str = Field(description="success, failed, timeout, error or interrupted")
    exit_code: int | None = Field(description="the task's own exit code; null if it never gave one")
    duration_ms: int
    timed_out: bool
    oom_killed: bool
    interrupted: bool
    outcome: str = Field(description="one line saying how the run went")
    message: str | None = None
    limits_exceeded: list[dict[str, Any]] = Field(default_factory=list)
    network: str = Field(
        default="none", description="the run's network: none, full, or allowlist (through the egress proxy)"
    )
    requests_allowed: int = Field(default=0, description="requests the egress proxy let through (allowlist)")
    requests_denied: int = Field(
        default=0, description="requests the egress proxy refused (get_evidence's summary.network says why)"
    )
    stdout: StreamText
    stderr: StreamText
    changes: list[dict[str, Any]] = Field(
        default_factory=list, description="files the run created, modified or deleted (the first 100)"
    )
    changes_total: int = 0
    outputs: list[str] = Field(default_factory=list, description="files in outputs/ after the run")


class OutputRead(BaseModel):
    sandbox_id: str
    run_id: str
    stream: Literal["stdout", "stderr"]
    offset: int
    text: str = Field(description="the bytes read, decoded as UTF-8 (invalid bytes replaced)")
    bytes_read: int
    bytes_total: int = Field(description="the size of the captured stream")
    eof: bool = Field(description="true if the read reached the end of the captured stream")
    truncated_at_capture: bool = Field(
        description="true if the task wrote more than aido keeps (the output limit)"
    )


class FileEntry(BaseModel):
    path: str = Field(description="relative to the sandbox, like outputs/report.json")
    kind: Literal["file", "dir", "link", "other"]
    size: int | None = None
    link_target: str | None = Field(default=None, description="for a link: where it points (never followed)")


class OutputList(BaseModel):
    sandbox_id: str
    entries: list[FileEntry]
    truncated: bool = Field(description="true if there were more entries than listed")


class FileContent(BaseModel):
    sandbox_id: str
    path: str
    size: int = Field(description="the file's whole size")
    offset: int
    bytes_read: int
    encoding: Literal["utf-8", "base64"] = Field(description="utf-8 text, or base64 for binary content")
    content: str
    eof: bool


class Evidence(BaseModel):
    sandbox_id: str
    run_id: str
    summary: dict[str, Any] = Field(description="the run's summary.json, as sealed in its evidence")
    evidence_dir: str
    verified: bool | None = Field(description="whether the run's seal checks out; null if it was not checked")
    verify_message: str | None = None


class Destroyed(BaseModel):
    sandbox_id: str
    destroyed: bool
    evidence_kept: str | None = Field(default=None, description="where the sandbox's evidence is archived")
