"""One exception root for everything aido reports to a user.

Each error carries a one-line message that names the problem, an optional hint
that names the fix, a stable machine-readable ``code`` for ``--json`` output and
the process exit code. The CLI maps these in exactly one place (cli/main.py).
"""

from __future__ import annotations

from aido.exit_codes import ExitCode


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


class NotConfirmed(UsageError):
    """An escape hatch or a widened sandbox.yaml was not confirmed."""

    code = "not_confirmed"


class ConfigError(AidoError):
    """An invalid sandbox.yaml or config file; ``problems`` has one line per issue."""

    code = "config_invalid"
    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = problems
        message = problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n" + "\n".join(problems)
        super().__init__(message, hint=hint)


class WorkspaceError(AidoError):
    code = "workspace"
    exit_code = ExitCode.SANDBOX_STATE


class SandboxNotFound(AidoError):
    code = "sandbox_not_found"
    exit_code = ExitCode.SANDBOX_STATE


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


class Interrupted(AidoError):
    code = "interrupted"
    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str, *, exit_code: int = ExitCode.INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(exit_code)
