"""aido's own settings: ``--config PATH``, else ``.aido/config.json`` when it exists.

JSON or YAML (JSON is read by the same safe YAML loader), strict like sandbox.yaml.
Loaded only when a file exists, so a plain ``aido run`` never imports pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aido.config.units import parse_duration, parse_size
from aido.errors import ConfigError, Problem
from aido.values import dataclass, field

DEFAULT_OUTPUT_LIMIT = 16 << 20
DEFAULT_EVIDENCE_RETENTION = 30 * 86400.0
MAX_EVIDENCE_RETENTION = 100 * 365 * 86400.0


@dataclass(frozen=True)
class Settings:
    output_limit: int = DEFAULT_OUTPUT_LIMIT  # bytes kept per stream per run
    source: str | None = None
    # How long a destroyed sandbox's archived evidence is kept, in seconds; None: forever.
    evidence_retention: float | None = DEFAULT_EVIDENCE_RETENTION
    # The Ray cluster `aido run` sends runs to (`--cluster` and AIDO_CLUSTER win); None: local.
    cluster: str | None = None
    # `aido mcp`'s operator policy (the `mcp:` mapping), as written: flags override each key;
    # aido.mcp.policy parses and bounds the values. Empty: every key at its default.
    mcp: dict[str, Any] = field(default_factory=dict)


# The keys of `mcp:` in aido's settings, each also a flag of `aido mcp` (--allow-network, ...).
MCP_KEYS = (
    "allow_network",
    "allow_host_filesystem",
    "allow_mutations",
    "allow_hosts",
    "allow_images",
    "require_gvisor",
    "max_ttl",
    "max_memory",
    "max_cpus",
    "max_timeout",
    "max_sandboxes",
    "max_concurrent_runs",
    "max_code_bytes",
    "keep_sandboxes",
)


def parse_retention(value: object) -> float | None:
    """``evidence_retention``: a duration (30d, 12h), or ``never`` / 0 to keep evidence forever."""
    if (isinstance(value, int) and not isinstance(value, bool) and value == 0) or (
        isinstance(value, str) and value.strip().lower() in ("never", "0")
    ):
        return None
    try:
        return parse_duration(value, maximum=MAX_EVIDENCE_RETENTION)
    except ValueError as exc:
        raise ValueError(f"{exc} (or never, to keep evidence forever)") from None


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

    from aido.config.loader import load_mapping, validation_problems

    class _Mcp(BaseModel):
        # Strict: `allow_network: "yes"` or `max_sandboxes: 4.5` must not quietly mean something.
        model_config = ConfigDict(extra="forbid", strict=True)
        allow_network: StrictBool | None = None
        allow_host_filesystem: StrictBool | None = None
        allow_mutations: StrictBool | None = None
        allow_images: list[StrictStr] | None = None
        allow_hosts: list[StrictStr] | None = None
        require_gvisor: StrictBool | None = None
        max_ttl: StrictStr | None = None
        max_memory: StrictStr | StrictInt | None = None
        max_cpus: float | StrictInt | None = None
        max_timeout: StrictStr | None = None
        max_sandboxes: StrictInt | None = None
        max_concurrent_runs: StrictInt | None = None
        max_code_bytes: StrictStr | StrictInt | None = None
        keep_sandboxes: StrictBool | None = None

    class _File(BaseModel):
        model_config = ConfigDict(extra="forbid")
        output_limit: str | int = Field(default="16M")
        evidence_retention: str | int = Field(default="30d")
        cluster: str | None = None
        mcp: _Mcp | None = None

    data, lines = load_mapping(path, missing_hint="check the --config path")
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            validation_problems(
                exc,
                source=path.name,
                lines=lines,
                fields={"": list(_File.model_fields), "mcp": list(_Mcp.model_fields)},
                expected={
                    "output_limit": "a size like 16M or 1G",
                    "mcp": "a mapping like {allow_network: false, max_sandboxes: 4}",
                    **{f"mcp.{key}": "true or false" for key in MCP_KEYS if not key.startswith("max_")},
                    "mcp.allow_images": "a list of image patterns like [ghcr.io/acme/*]",
                    "mcp.allow_hosts": "a list of hosts like [pypi.org, '*.pythonhosted.org']",
                    "mcp.max_ttl": "a duration like 1h",
                    "mcp.max_timeout": "a duration like 5m",
                    "mcp.max_memory": "a size like 1G",
                    "mcp.max_code_bytes": "a size like 256K",
                    "mcp.max_cpus": "a number of CPUs like 2",
                    "mcp.max_sandboxes": "a whole number like 4",
                    "mcp.max_concurrent_runs": "a whole number like 2",
                },
            )
        ) from None
    try:
        limit = parse_size(parsed.output_limit, minimum=1024, maximum=1 << 34)
    except ValueError as exc:
        line = lines.get(("output_limit",), 1)
        raise ConfigError([Problem(str(exc), path.name, line, "output_limit")]) from None
    try:
        retention = parse_retention(parsed.evidence_retention)
    except ValueError as exc:
        line = lines.get(("evidence_retention",), 1)
        raise ConfigError([Problem(str(exc), path.name, line, "evidence_retention")]) from None
    cluster = parsed.cluster.strip() if parsed.cluster else None
    mcp = parsed.mcp.model_dump(exclude_none=True) if parsed.mcp is not None else {}
    if mcp:
        # Bounds and units are checked here too, at the key's line: a bad policy never starts a server.
        from aido.config.mcp import check_mcp_settings

        for key, message in check_mcp_settings(mcp):
            line = lines.get(("mcp", key), lines.get(("mcp",), 1))
            raise ConfigError([Problem(message, path.name, line, f"mcp.{key}")])
    return Settings(
        output_limit=limit,
        source=str(path),
        evidence_retention=retention,
        cluster=cluster or None,
        mcp=mcp,
    )
