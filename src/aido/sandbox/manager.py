"""The old home of the facade, kept so that ``from aido.sandbox.manager import ...`` keeps
working: every public name that lived here, re-exported from where it lives now."""

from __future__ import annotations

from aido.lifecycle.destroy import DESTROY_WAIT_SECONDS, DestroyFailed, DestroyResult
from aido.lifecycle.logs import ORPHAN_CHECK_SECONDS
from aido.lifecycle.sandboxes import CHOICES_SHOWN, RunSummary, SandboxSummary
from aido.manager import SandboxManager
from aido.run.guard import DISK_CHECK_SECONDS
from aido.run.plan import GVISOR_PIDS, MAX_TASK_BYTES
from aido.run.request import (
    BASE_ENV,
    HOST_FILESYSTEM_TARGET,
    UNPRIVILEGED_UID,
    UP_RUNTIME_HINT,
    Confirm,
    RunHooks,
    Widening,
    parse_env_flags,
    task_user,
    unenforced_permissions,
    widened_permissions,
)
from aido.run.result import RunResult

__all__ = [
    "BASE_ENV",
    "CHOICES_SHOWN",
    "DESTROY_WAIT_SECONDS",
    "DISK_CHECK_SECONDS",
    "GVISOR_PIDS",
    "HOST_FILESYSTEM_TARGET",
    "MAX_TASK_BYTES",
    "ORPHAN_CHECK_SECONDS",
    "UNPRIVILEGED_UID",
    "UP_RUNTIME_HINT",
    "Confirm",
    "DestroyFailed",
    "DestroyResult",
    "RunHooks",
    "RunResult",
    "RunSummary",
    "SandboxManager",
    "SandboxSummary",
    "Widening",
    "parse_env_flags",
    "task_user",
    "unenforced_permissions",
    "widened_permissions",
]
