"""What a hook is shown of a run: frozen values, copied from aido's own state, so that a
plugin can read everything it needs and change nothing (a policy that could edit the plan
it judges, or the record it adds to, would be no policy)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aido.values import dataclass


def freeze(value: Any) -> Any:
    """A read-only deep copy of JSON-like data: dicts become read-only mappings, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class PlannedRun:
    """A run about to start (``aido_pre_run``): every check passed, no run id yet."""

    sandbox_id: str
    task: str  # the task file's name, as the run records it
    task_path: str  # where it was read from on the host
    task_sha256: str  # of the bytes that will run (read once: the file may change later)
    runtime: str  # "python:3.11", "docker://IMAGE", ...
    image: str
    args: tuple[str, ...]
    env_names: tuple[str, ...]  # names only: values may be secrets
    timeout_seconds: float
    isolation: str  # "default" or "gvisor"
    # network, host_filesystem, dangerous_allow_mutations (flags), allow_hosts (a tuple of hosts)
    widening: Mapping[str, Any]
    warnings: tuple[str, ...]  # every permission wider than the default (sandbox.yaml or flags)
    config: Mapping[str, Any]  # the sandbox's resolved configuration, read-only


@dataclass(frozen=True)
class FinishedRun:
    """A run whose outcome is decided, before its summary is written and it is sealed
    (``aido_post_run``). The paths are for reading only: what a plugin returns is written
    by aido into ``run_dir/plugins/<plugin>/``."""

    sandbox_id: str
    run_id: str
    task: str
    status: str  # success, failed, timeout, oom, error, interrupted, ...
    exit_code: int | None  # the task's own
    exit_code_of_run: int  # aido's, as `aido run` exits
    duration_ms: int | None
    timed_out: bool
    oom_killed: bool
    run_dir: Path  # runs/<run>/: the task file, stdout.log, stderr.log
    outputs_dir: Path  # the sandbox's outputs/ (a task may have planted links there)
    changes: tuple[Mapping[str, Any], ...]  # what the run changed, as summary.json lists it
    config: Mapping[str, Any]
