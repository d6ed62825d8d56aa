"""What a caller asks of a run, and the run's policy values: the escape hatches
(``Widening``) and their confirmation, the hooks a caller watches a run with, the ``-e``
flags, the sandbox's widened or unenforced permissions, and the task's user.

Pure values and small checks, cheap to import: the CLI builds these before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aido.errors import ImageUnavailable, NotConfirmed, UsageError
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.backends.base import Backend

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

    def warnings(self) -> list[str]:
        """One line per hatch, shaped like widened_permissions': `<option>: <what the task can do>`."""
        found = []
        if self.network:
            found.append("--network: the task can reach the network, including your local network")
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

    def as_dict(self) -> dict[str, bool]:
        return {
            "network": self.network,
            "host_filesystem": self.host_filesystem,
            "dangerous_allow_mutations": self.mutations,
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
    if permissions.get("network") is True:
        warnings.append("permissions.network: every task can reach the network, including your local network")
    if permissions.get("filesystem") == "readwrite":
        warnings.append("permissions.filesystem: every task can modify the sandbox inputs (/inputs)")
    return warnings


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
