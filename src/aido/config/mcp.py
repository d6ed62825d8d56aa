"""`aido mcp`'s operator policy: what an agent connected over MCP may ask for.

Fixed when the server starts, from `aido mcp`'s flags over the `mcp:` mapping of aido's
settings over the defaults below; no tool can change it. Pure values (no SDK, no
pydantic), so the settings loader checks a file's `mcp:` keys with the same rules as the
flags.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from aido.config.limits import (
    MAX_CPU,
    MAX_MEMORY_BYTES,
    MAX_TIMEOUT_SECONDS,
    MAX_TTL_SECONDS,
    MIN_MEMORY_BYTES,
)
from aido.config.units import format_duration, format_size, parse_duration, parse_size
from aido.values import dataclass

MAX_CODE_BYTES_CEILING = 16 << 20  # a code string larger than this is not code


@dataclass(frozen=True)
class McpPolicy:
    allow_network: bool = False
    allow_host_filesystem: bool = False
    allow_mutations: bool = False
    max_ttl: float = 3600.0  # seconds
    max_memory: int = 1 << 30  # bytes
    max_cpus: float = 2.0
    max_timeout: float = 300.0  # seconds, per run
    max_sandboxes: int = 4  # alive at once, created by this server
    max_concurrent_runs: int = 2
    max_code_bytes: int = 256 << 10
    keep_sandboxes: bool = False  # keep this server's sandboxes when it stops (their ttl still applies)
    # docker://IMAGE runtimes an agent may ask for (glob patterns); none by default: an agent
    # choosing an image could make the engine pull anything from a registry and run it.
    allow_images: tuple[str, ...] = ()
    require_gvisor: bool = False  # every sandbox of this server runs under gVisor, whatever is asked
    # Hosts an agent may let a sandbox or a run reach through the egress proxy (allowlist
    # entries, canonical): an agent's entry must be covered by one of these. allow_network
    # covers every host.
    allow_hosts: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The policy as a client or the event log sees it (units as a user writes them)."""
        shown = asdict(self)
        shown.update(
            max_ttl=format_duration(self.max_ttl),
            max_timeout=format_duration(self.max_timeout),
            max_memory=format_size(self.max_memory),
            max_code_bytes=format_size(self.max_code_bytes),
        )
        return shown

    def lines(self) -> list[str]:
        """The effective policy, one line each, as `aido mcp` prints it at start."""
        allowed = [
            name
            for name, on in (
                ("network", self.allow_network),
                ("host filesystem", self.allow_host_filesystem),
                ("mutations", self.allow_mutations),
            )
            if on
        ]
        hosts = (
            "every host (network is allowed)"
            if self.allow_network
            else ", ".join(self.allow_hosts)
            if self.allow_hosts
            else "none"
        )
        return [
            "escape hatches an agent may ask for: " + (", ".join(allowed) if allowed else "none"),
            "hosts an agent may allow (egress allowlist): " + hosts,
            "runtimes: python, node, sh and plugins' families"
            + (f"; docker:// images matching {' '.join(self.allow_images)}" if self.allow_images else ""),
            "isolation: "
            + ("gVisor for every sandbox" if self.require_gvisor else "as asked (default or gvisor)"),
            f"limits: ttl {format_duration(self.max_ttl)}, memory {format_size(self.max_memory)}, "
            f"cpus {self.max_cpus:g}, run timeout {format_duration(self.max_timeout)}, "
            f"{self.max_sandboxes} sandboxes, {self.max_concurrent_runs} concurrent runs, "
            f"code {format_size(self.max_code_bytes)}",
            "sandboxes are "
            + (
                "kept when the server stops (until their ttl)"
                if self.keep_sandboxes
                else "destroyed when the server stops"
            ),
        ]


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _images(value: object) -> tuple[str, ...]:
    """Image patterns like ``ghcr.io/acme/*`` or ``python:3.12-slim`` (fnmatch globs)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"expected a list of image patterns like ghcr.io/acme/*, got {value!r}")
    patterns = tuple(item.strip() for item in items)
    for pattern in patterns:
        blank = not pattern.strip("*?")  # "*" alone would allow every image: say which instead
        if blank or any(c.isspace() for c in pattern) or len(pattern) > 255:
            raise ValueError(f"invalid image pattern {pattern!r}: name the images, like ghcr.io/acme/*")
    return patterns


def _hosts(value: object) -> tuple[str, ...]:
    """Allowlist entries (pypi.org, *.pythonhosted.org, api.example.com:443), canonical."""
    from aido.egress.allowlist import MAX_ENTRIES, BadEntry, dedupe, parse_host_entry

    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of hosts like [pypi.org, '*.pythonhosted.org'], got {value!r}")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"at most {MAX_ENTRIES} hosts, got {len(value)}")
    entries = []
    for item in value:
        try:
            entries.append(str(parse_host_entry(item)))
        except BadEntry as exc:
            raise ValueError(str(exc)) from None
    return dedupe(entries)


def _count(value: object, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise ValueError(f"expected a whole number from 1 to {top}, got {value!r}")
    return value


def _cpus(value: object) -> float:
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not math.isfinite(number)
        or not 0 < number <= MAX_CPU
    ):
        raise ValueError(f"expected a number of CPUs like 2 (more than 0, at most {MAX_CPU}), got {value!r}")
    return float(number)


def _parse(key: str, value: object) -> object:
    if key in ("allow_network", "allow_host_filesystem", "allow_mutations", "keep_sandboxes"):
        return _bool(value)
    if key == "require_gvisor":
        return _bool(value)
    if key == "allow_images":
        return _images(value)
    if key == "allow_hosts":
        return _hosts(value)
    if key == "max_ttl":
        return parse_duration(value, maximum=MAX_TTL_SECONDS)
    if key == "max_timeout":
        return parse_duration(value, maximum=MAX_TIMEOUT_SECONDS)
    if key == "max_memory":
        return parse_size(value, minimum=MIN_MEMORY_BYTES, maximum=MAX_MEMORY_BYTES)
    if key == "max_code_bytes":
        return parse_size(value, minimum=1, maximum=MAX_CODE_BYTES_CEILING)
    if key == "max_cpus":
        return _cpus(value)
    if key == "max_sandboxes":
        return _count(value, 1000)
    if key == "max_concurrent_runs":
        return _count(value, 64)
    raise ValueError(f"unknown key {key!r}")


def check_mcp_settings(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, problem) for every value of ``values`` that the policy would refuse."""
    problems = []
    for key, value in values.items():
        try:
            _parse(key, value)
        except ValueError as exc:
            problems.append((key, str(exc)))
    return problems


def policy_from(values: dict[str, Any]) -> McpPolicy:
    """The policy for ``values`` (keys as in McpPolicy, values as a user writes them: 1h, 1G);
    ValueError("KEY: problem") for the first bad one."""
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        try:
            parsed[key] = _parse(key, value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return McpPolicy(**parsed)
