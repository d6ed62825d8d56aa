"""One exception root for everything aido reports to a user.

Each error carries a one-line message that names the problem, an optional hint
that names the fix, a stable machine-readable ``code`` for ``--json`` output and
the process exit code. The CLI maps these in exactly one place (cli/main.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aido.exit_codes import ExitCode
from aido.values import dataclass


class AidoError(Exception):
    code = "error"
    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(AidoError):
    code = "usage"
    exit_code = ExitCode.USAGE


class SigningKeyError(UsageError):
    """A signing or trusted key is missing, unsafe or not an Ed25519 key."""

    code = "signing_key"


class NotConfirmed(UsageError):
    """An escape hatch or a widened sandbox.yaml was not confirmed."""

    code = "not_confirmed"


@dataclass(frozen=True)
class Problem:
    """One problem in a config file (or flag): where it is and what is wrong.

    Shown as one line, ``sandbox.yaml:7: resources.memory: expected ...``; with ``--json``
    as an object, so that a program need not parse that line.
    """

    message: str
    file: str | None = None
    line: int | None = None
    key: str | None = None  # the key path (resources.memory, inputs[0]) or the flag (--ttl)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file and self.line else self.file
        return ": ".join([part for part in (where, self.key) if part] + [self.message])

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "key": self.key, "message": self.message}


class ConfigError(AidoError):
    """An invalid sandbox.yaml or config file; ``problems`` has one line per issue and
    ``details`` the same problems as Problem objects (a plain string is a Problem with only
    a message)."""

    code = "config_invalid"
    exit_code = ExitCode.USAGE

    def __init__(self, problems: Sequence[str | Problem], *, hint: str | None = None) -> None:
        self.details = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        self.problems = [str(p) for p in self.details]
        lines = self.problems
        message = lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n" + "\n".join(lines)
        super().__init__(message, hint=hint)


class WorkspaceError(AidoError):
    code = "workspace"
    exit_code = ExitCode.SANDBOX_STATE


class SandboxNotFound(AidoError):
    code = "sandbox_not_found"
    exit_code = ExitCode.SANDBOX_STATE


class NoActiveSandbox(SandboxNotFound):
    """A command that defaults to the active sandbox found none, yet sandboxes exist: aido
    never picks one for the user. ``sandboxes`` lists them (id, name, status) to choose from."""

    code = "no_active_sandbox"

    def __init__(self, message: str, *, hint: str | None = None, sandboxes: list[dict[str, object]]) -> None:
        super().__init__(message, hint=hint)
        self.sandboxes = sandboxes


class SandboxExpired(AidoError):
    code = "sandbox_expired"
    exit_code = ExitCode.SANDBOX_STATE


class SandboxBusy(AidoError):
    """The sandbox has a run in progress, and the command would change what it uses."""

    code = "sandbox_busy"
    exit_code = ExitCode.SANDBOX_STATE


class SandboxOverLimit(AidoError):
    """work/ and outputs/ already breach the sandbox's limits: a run would be stopped at once."""

    code = "sandbox_over_limit"
    exit_code = ExitCode.SANDBOX_STATE


class RunNotFound(AidoError):
    code = "run_not_found"
    exit_code = ExitCode.SANDBOX_STATE


class FileNotInSandbox(AidoError):
    """A file asked for in a sandbox tree (outputs/) is not there as a regular file."""

    code = "file_not_found"
    exit_code = ExitCode.SANDBOX_STATE


class MetadataError(AidoError):
    """sandbox.json is unreadable, corrupt or from a newer aido."""

    code = "metadata_invalid"
    exit_code = ExitCode.SANDBOX_STATE


class TaskNotFound(AidoError):
    code = "task_not_found"
    exit_code = ExitCode.NOT_FOUND


class TaskNotRunnable(AidoError):
    code = "task_not_runnable"
    exit_code = ExitCode.NOT_EXECUTABLE


class RuntimeUnavailable(AidoError):
    """The engine cannot be reached or the runtime is not installed."""

    code = "runtime_unavailable"
    exit_code = ExitCode.RUNTIME


class ImageUnavailable(AidoError):
    code = "image_unavailable"
    exit_code = ExitCode.RUNTIME


class RuntimeFailure(AidoError):
    """The engine failed while running a task (never reported as task success)."""

    code = "runtime_error"
    exit_code = ExitCode.RUNTIME


class ClusterUnavailable(AidoError):
    """A Ray cluster cannot be used: Ray missing, address unreachable, no aido node."""

    code = "cluster_unavailable"
    exit_code = ExitCode.RUNTIME


class RunRefused(AidoError):
    """A plugin's pre-run hook refused the run (or failed, or a plugin is broken: runs fail
    closed, since the plugin may be a security policy). Recorded as a ``run_refused`` event."""

    code = "run_refused"
    exit_code = ExitCode.NOT_EXECUTABLE

    def __init__(self, message: str, *, hint: str | None = None, plugin: str, reason: str) -> None:
        super().__init__(message, hint=hint)
        self.plugin = plugin
        self.reason = reason


class PluginError(AidoError):
    """A plugin failed outside a run: its command crashed, or it clashes with aido."""

    code = "plugin_error"
    exit_code = ExitCode.INTERNAL


class Interrupted(AidoError):
    code = "interrupted"
    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str, *, exit_code: int = ExitCode.INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(exit_code)
