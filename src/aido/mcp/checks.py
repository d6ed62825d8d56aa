"""An agent's request held against the operator's policy, before anything is created or
run. Each refusal names the limit or the operator's flag; a malformed value gets the
message the CLI gives for it (`expected a duration like 90s, 15m or 2h, got ...`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aido.config.limits import DEFAULT_CPU, DEFAULT_MEMORY, DEFAULT_TIMEOUT, DEFAULT_TTL, MAX_TTL_SECONDS
from aido.config.units import format_duration, format_size, parse_duration, parse_size
from aido.errors import UsageError
from aido.run.request import Widening
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.config.mcp import McpPolicy


class PolicyRefusal(UsageError):
    """An agent asked for more than the operator allows."""

    code = "policy_refused"


def _not_allowed(what: str, flag: str) -> PolicyRefusal:
    return PolicyRefusal(
        f"{what} not allowed by the operator of this server",
        hint=f"the operator can allow it with `aido mcp {flag}`",
    )


@dataclass(frozen=True)
class SandboxAsk:
    """create_sandbox's arguments."""

    runtime: str
    ttl: str | None
    memory: str | None
    cpus: float | None
    timeout: str | None
    network: bool
    writable_inputs: bool
    isolation: str
    name: str | None
    allowed_hosts: tuple[str, ...] = ()  # the sandbox's egress allowlist


@dataclass(frozen=True)
class RunAsk:
    """What run_code and run_file take besides the task: ``widen`` is (network, host
    filesystem, mutations); ``allowed_hosts`` adds to the sandbox's allowlist for the run."""

    args: list[str]
    timeout: str | None
    env: dict[str, str]
    widen: tuple[bool, bool, bool]
    allowed_hosts: tuple[str, ...] = ()


def sandbox_spec(policy: McpPolicy, ask: SandboxAsk) -> tuple[str, dict[str, Any]]:
    """The ttl and the sandbox.yaml keys for create_sandbox's arguments; what is left out
    takes aido's default, lowered to the operator's limit."""
    runtime, network, writable_inputs, cpus = ask.runtime, ask.network, ask.writable_inputs, ask.cpus
    if network and not policy.allow_network:
        raise _not_allowed("network access is", "--allow-network")
    hosts = allowed_hosts(policy, ask.allowed_hosts)
    if hosts and network:
        raise UsageError(
            "allowed_hosts cannot be combined with network: network gives every run the whole network",
            hint="pick one: allowed_hosts for just those hosts, or network for everything",
        )
    if hosts and (ask.isolation == "gvisor" or policy.require_gvisor):
        raise UsageError(
            "allowed_hosts is not available under gVisor (which this sandbox would run under): its "
            "tasks could not reach the egress proxy",
            hint="leave out allowed_hosts, or ask for the default isolation if the operator allows it",
        )
    if writable_inputs and not policy.allow_mutations:
        raise _not_allowed("writable inputs (mutations) are", "--allow-mutations")
    ttl_s = _within("ttl", ask.ttl, DEFAULT_TTL, policy.max_ttl, "--max-ttl", _duration)
    timeout_s = _within(
        "timeout", ask.timeout, DEFAULT_TIMEOUT, policy.max_timeout, "--max-timeout", _duration
    )
    memory_b = _within("memory", ask.memory, DEFAULT_MEMORY, policy.max_memory, "--max-memory", _size)
    cpu = min(DEFAULT_CPU, policy.max_cpus) if cpus is None else cpus
    if cpu > policy.max_cpus:
        raise PolicyRefusal(
            f"cpus {cpu:g} is over the operator's limit of {policy.max_cpus:g}",
            hint=f"ask for at most {policy.max_cpus:g} (the operator sets --max-cpus)",
        )
    from aido.config.runtimes import parse_runtime
    from aido.plugins.runtimes import install

    install()  # the plugins' runtime families, when a plugin is installed
    try:
        choice = parse_runtime(runtime)
    except ValueError as exc:
        raise UsageError(f"runtime: {exc}") from None
    if choice.runtime.startswith("docker://") and not any(
        fnmatch.fnmatchcase(choice.image, pattern) for pattern in policy.allow_images
    ):
        raise PolicyRefusal(
            f"image {choice.image} is not allowed by the operator of this server",
            hint="use a runtime like python:3.11, node:18 or sh; the operator can allow images with "
            "`aido mcp --allow-image PATTERN`",
        )
    spec = {
        "resources": {
            "memory": format_size(int(memory_b)),
            "cpu": cpu,
            "timeout": format_duration(timeout_s),
        },
        "permissions": {
            "network": {"allow": list(hosts)} if hosts else network,
            "filesystem": "readwrite" if writable_inputs else "readonly",
        },
    }
    return format_duration(ttl_s), spec


def allowed_hosts(policy: McpPolicy, asked: tuple[str, ...]) -> tuple[str, ...]:
    """An agent's allowlist entries, canonical, each covered by the operator's --allow-host
    entries (or by --allow-network, which covers every host); else refused, naming it."""
    if not asked:
        return ()
    from aido.egress.allowlist import MAX_ENTRIES, BadEntry, covers, dedupe, parse_entry, parse_host_entry

    if len(asked) > MAX_ENTRIES:
        raise UsageError(f"allowed_hosts: at most {MAX_ENTRIES} entries, got {len(asked)}")
    operator = [parse_entry(text) for text in policy.allow_hosts]
    entries = []
    for text in asked:
        try:
            entry = parse_host_entry(text)
        except BadEntry as exc:
            raise UsageError(f"allowed_hosts: {exc.problem}", hint=exc.fix) from None
        if not policy.allow_network and not any(covers(mine, entry) for mine in operator):
            shown = ", ".join(policy.allow_hosts) or "none"
            raise PolicyRefusal(
                f"host {entry} is not allowed by the operator of this server (allowed: {shown})",
                hint=f"the operator can allow it with `aido mcp --allow-host {entry}`",
            )
        entries.append(str(entry))
    return dedupe(entries)


def widening(
    policy: McpPolicy, asked: tuple[bool, bool, bool], hosts: tuple[str, ...] = ()
) -> Widening | None:
    """The escape hatches asked for one run (network, host filesystem, mutations, hosts),
    each refused unless the operator allowed it."""
    network, host_filesystem, mutations = asked
    allow_hosts = allowed_hosts(policy, hosts)
    if not any(asked) and not allow_hosts:
        return None
    for wanted, allowed, what, flag in (
        (network, policy.allow_network, "network access is", "--allow-network"),
        (host_filesystem, policy.allow_host_filesystem, "the host filesystem is", "--allow-host-filesystem"),
        (mutations, policy.allow_mutations, "mutations are", "--allow-mutations"),
    ):
        if wanted and not allowed:
            raise _not_allowed(what, flag)
    return Widening(
        network=network, host_filesystem=host_filesystem, mutations=mutations, allow_hosts=allow_hosts
    )


def run_timeout(policy: McpPolicy, timeout: str | None) -> str | None:
    """A run's timeout, normalised; None keeps the sandbox's own (within the limit: this
    server created the sandbox)."""
    if timeout is None:
        return None
    return format_duration(
        _within("timeout", timeout, DEFAULT_TIMEOUT, policy.max_timeout, "--max-timeout", _duration)
    )


def code_size(policy: McpPolicy, size: int, what: str = "code") -> None:
    if size > policy.max_code_bytes:
        raise PolicyRefusal(
            f"{what} is {size} bytes, over the operator's limit of {policy.max_code_bytes} bytes",
            hint="send less (the operator sets --max-code-bytes)",
        )


def _duration(value: str) -> float:
    return parse_duration(value, maximum=MAX_TTL_SECONDS)


def _size(value: str) -> float:
    return float(parse_size(value))


def _within(
    key: str, value: str | None, default: str, limit: float, flag: str, parse: Callable[[str], float]
) -> float:
    """``value`` (else aido's default, lowered to the limit) parsed; refused over the limit."""
    if value is None:
        return min(parse(default), limit)
    try:
        parsed = parse(value)
    except ValueError as exc:
        raise UsageError(f"{key}: {exc}") from None
    if parsed > limit:
        shown = format_size(int(limit)) if key == "memory" else format_duration(limit)
        raise PolicyRefusal(
            f"{key} {value} is over the operator's limit of {shown}",
            hint=f"ask for at most {shown} (the operator sets {flag})",
        )
    return parsed
