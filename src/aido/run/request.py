"""What a caller asks of a run, and the run's policy values: the escape hatches
(``Widening``) and their confirmation, the hooks a caller watches a run with, the ``-e``
flags, the sandbox's widened or unenforced permissions, and the task's user.

Pure values and small checks, cheap to import: the CLI builds these before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aido.errors import ImageUnavailable, NotConfirmed, UsageError
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.backends.base import Backend
    from aido.store.records import RunSettings

UP_RUNTIME_HINT = (
    "`aido sandbox up --runtime python:VERSION|node:VERSION|sh|docker://IMAGE` (or a plugin's runtime), "
    "or `runtime:` in sandbox.yaml"
)

UNPRIVILEGED_UID = 10001  # the task's uid when aido itself runs as root
HOST_FILESYSTEM_TARGET = "/project"  # where --host-filesystem shows the project directory

# Environment every task gets. The host environment is never passed implicitly.
BASE_ENV = {
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",  # output streams live instead of arriving at exit
    "PYTHONDONTWRITEBYTECODE": "1",  # the root filesystem is read-only
    "XDG_CACHE_HOME": "/tmp/.cache",
    "npm_config_cache": "/tmp/.npm",
    "MPLCONFIGDIR": "/tmp/.mpl",
}


@dataclass(frozen=True)
class Widening:
    """Escape hatches asked for on one run. Each needs confirmation and is recorded."""

    network: bool = False
    host_filesystem: bool = False
    mutations: bool = False
    # --allow-host: entries added to the sandbox's egress allowlist for this run (checked and
    # made canonical by check_allow_hosts when the run is planned).
    allow_hosts: tuple[str, ...] = ()

    def warnings(self) -> list[str]:
        """One line per hatch, shaped like widened_permissions': `<option>: <what the task can do>`."""
        found = []
        if self.network:
            found.append("--network: the task can reach the network, including your local network")
        if self.allow_hosts:
            found.append(
                f"--allow-host: the task can reach {', '.join(self.allow_hosts)} "
                "(through aido's egress proxy)"
            )
        if self.host_filesystem:
            found.append(
                f"--host-filesystem: the task can read the project directory ({HOST_FILESYSTEM_TARGET})"
            )
        if self.mutations:
            found.append(
                "--dangerous-allow-mutations: the task can modify the sandbox inputs (/inputs)"
                + (f" and the project directory ({HOST_FILESYSTEM_TARGET})" if self.host_filesystem else "")
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "host_filesystem": self.host_filesystem,
            "dangerous_allow_mutations": self.mutations,
            "allow_hosts": list(self.allow_hosts),
        }


Confirm = Callable[[list[str]], bool]


@dataclass
class RunHooks:
    """Callbacks the caller (the CLI, a test, an agent) uses to watch a run."""

    on_pull: Callable[[str], None] | None = None
    on_start: Callable[[str, str, str], None] | None = None  # (run_id, task, image)
    on_output: Callable[[int, bytes], None] | None = None
    # The sandbox's own widened permissions, repeated before each run (confirmed at `up`);
    # without it they go to the log.
    on_warning: Callable[[str], None] | None = None
    # What aido exits with when a signal (SIGTERM 143, SIGHUP 129; None for Ctrl-C)
    # interrupted the run: recorded with the run's verdict.
    signal_exit: Callable[[], int | None] | None = None


def task_user() -> tuple[int, int]:
    uid = os.getuid()
    if uid == 0:
        return UNPRIVILEGED_UID, UNPRIVILEGED_UID
    return uid, os.getgid()


def widened_permissions(config: dict[str, Any]) -> list[str]:
    """Warnings for every permission wider than the default, shaped like Widening.warnings:
    `<option>: <what the task can do>`. Each needs confirmation; recorded in the evidence too."""
    permissions = config.get("permissions") or {}
    warnings = []
    from aido.store.records import configured_allowlist

    allow = configured_allowlist(permissions)
    if permissions.get("network") is True:
        warnings.append("permissions.network: every task can reach the network, including your local network")
    elif allow:
        hosts = ", ".join(allow)
        warnings.append(
            f"permissions.network.allow: every task can reach {hosts} "
            "(through aido's egress proxy; everything else is refused)"
        )
    if permissions.get("filesystem") == "readwrite":
        warnings.append("permissions.filesystem: every task can modify the sandbox inputs (/inputs)")
    return warnings


def refuse_a_string(name: str, value: object, expected: str) -> None:
    """A single host given where a list belongs (the API's ``allow_hosts=``, ``network=``):
    a string is a sequence too, of characters."""
    if isinstance(value, str):
        raise UsageError(
            f"{name}: expected {expected}, got the string {value!r}", hint=f"write {name}=[{value!r}]"
        )


def check_allow_hosts(widen: Widening, settings: RunSettings, sid: str) -> Widening:
    """``widen`` with its --allow-host entries checked (against the run's other hatches and
    the sandbox) and made canonical; a refusal is a UsageError naming the fix."""
    if not widen.allow_hosts:
        return widen
    refuse_a_string("allow_hosts", widen.allow_hosts, "a list of hosts")
    if widen.network:
        raise UsageError(
            "--allow-host cannot be combined with --network: --network gives the task the whole network",
            hint="pick one: --allow-host HOST for just those hosts, or --network for everything",
        )
    if settings.network:
        raise UsageError(
            f"--allow-host: sandbox {sid} has permissions.network: true, so its tasks reach the whole "
            "network already",
            hint="leave out --allow-host",
        )
    if settings.isolation == "gvisor":
        raise UsageError(
            "--allow-host is not available with isolation gvisor: runsc is registered with "
            "--network=none, so the task could not reach the egress proxy",
            hint="use a sandbox with the default isolation for tasks that need the network",
        )
    from aido.egress.allowlist import IP_OPT_IN, MAX_ENTRIES, BadEntry, dedupe, parse_entry

    if len(widen.allow_hosts) > MAX_ENTRIES:
        raise UsageError(f"--allow-host: at most {MAX_ENTRIES} entries, got {len(widen.allow_hosts)}")
    entries = []
    for text in widen.allow_hosts:
        try:
            entries.append(str(parse_entry(text)))
        except BadEntry as exc:
            hint = exc.fix
            if exc.fix == IP_OPT_IN:
                hint = (
                    "IP addresses and ranges are allowed in sandbox.yaml only: list them under "
                    "permissions.network.allow with allow_ip_ranges: true"
                )
            raise UsageError(f"--allow-host: {exc.problem}", hint=hint) from None
    return replace(widen, allow_hosts=dedupe(entries))


def ensure_image(backend: Backend, image: str, on_pull: Callable[[str], None] | None, *, other: str) -> str:
    """The image's id, pulled if need be; when it cannot be had, the runtime's hint (how to
    provide it) plus ``other``: how to choose another image from the command at hand."""
    try:
        return backend.ensure_image(image, on_pull)
    except ImageUnavailable as exc:
        raise ImageUnavailable(exc.message, hint=f"{exc.hint}, {other}" if exc.hint else other) from None


def unenforced_permissions(config: dict[str, Any]) -> list[str]:
    """Notes on permissions the spec accepts but aido does not enforce. They widen nothing,
    so they are not asked about: said once at `sandbox up`, and recorded in the evidence
    (the sandbox_created event and each run's summary) so that nobody reads them as granted."""
    permissions = config.get("permissions") or {}
    notes = []
    if permissions.get("aws"):
        notes.append(
            "permissions.aws: recorded only, not enforced: tasks get no AWS access or credentials from it"
        )
    return notes


def require_confirmation(warnings: list[str], confirm: Confirm | None) -> None:
    """Widening the sandbox needs a yes: from a prompt, ``--yes``, or the API caller."""
    if not warnings:
        return
    if confirm is None or not confirm(warnings):
        raise NotConfirmed(
            f"refusing to widen the sandbox without confirmation: {'; '.join(warnings)}",
            hint="answer y at the prompt, or pass --yes to confirm without a terminal",
        )


def parse_env_flags(values: list[str]) -> dict[str, str]:
    """``-e KEY=VALUE`` sets a value; ``-e KEY`` copies that one host variable, explicitly."""
    import re

    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", key):
            raise UsageError(f"-e {item!r}: expected KEY=VALUE with a name of letters, digits and '_'")
        if not sep:
            if key not in os.environ:
                raise UsageError(
                    f"-e {key}: no such variable in your environment", hint=f"use -e {key}=VALUE"
                )
            value = os.environ[key]
        if "\0" in value:
            raise UsageError(f"-e {key}: values cannot contain NUL bytes")
        env[key] = value
    return env
