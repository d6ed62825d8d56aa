"""The first stage of a run: every check that can fail before a run id exists (sandbox,
limits, confirmation, timeout, env, task file, runtime, engine, image), giving a frozen
``RunPlan``. A run that cannot start leaves no trace, except a plugin's refusal, which is
recorded as a ``run_refused`` event (run/plugged.py).
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido.errors import SandboxExpired, TaskNotFound, TaskNotRunnable, UsageError
from aido.log import log
from aido.run.request import (
    UP_RUNTIME_HINT,
    Confirm,
    RunHooks,
    Widening,
    check_allow_hosts,
    ensure_image,
    parse_env_flags,
    require_confirmation,
    widened_permissions,
)
from aido.store.records import RunSettings, SandboxRecord
from aido.store.store import read_secrets
from aido.store.workspace import SandboxPaths
from aido.values import dataclass, field

if TYPE_CHECKING:
    from aido.config.runtimes import RuntimeChoice
    from aido.run.context import Context


MAX_TASK_BYTES = 64 << 20
GVISOR_PIDS = 1024


@dataclass(frozen=True)
class Placement:
    """A run a cluster node executes for a driver (aido.cluster.node): it takes the driver's
    run number, its /outputs is outputs/<run> (parallel runs never write the same files),
    and its summary names the node (and the lost run it retries, if it does)."""

    number: int
    node: dict[str, Any]
    retry_of: str | None = None
    git: dict[str, Any] | None = None  # the driver's project, as a local run records its own


@dataclass(frozen=True)
class CodeTask:
    """A task given as a code string (``run -c``, ``run_code``), for a batch; ``runtime``
    picks the interpreter in a sandbox that has none."""

    code: str
    runtime: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, checked before a run id is allocated."""

    record: SandboxRecord
    paths: SandboxPaths
    task: Path
    source: bytes
    args: list[str]
    choice: RuntimeChoice
    image_id: str
    settings: RunSettings
    timeout_seconds: float
    env: dict[str, str]  # from -e flags; the sandbox's own env is in settings
    widen: Widening
    warnings: list[str]  # every permission wider than the default, from the sandbox or the flags
    notes: list[str] = field(default_factory=list)  # other warnings for the run's evidence
    stdin: int | None = None  # host descriptor forwarded to the task (`run -i`); None: closed
    placement: Placement | None = None  # set on a cluster node only
    task_mode: int = 0o644  # the task file's mode in work/ and the evidence (0o755: executable)
    from_code: bool = False  # given as a code string (`run -c`): ``task`` names no host file


def plan_run(
    ctx: Context,
    sid: str,
    task: Path | None,
    args: list[str] | None = None,
    *,
    timeout: str | None = None,
    env: list[str] | None = None,
    widen: Widening | None = None,
    confirm: Confirm | None = None,
    hooks: RunHooks | None = None,
    remote: bool = False,
    code: str | None = None,
    runtime: str | None = None,
) -> RunPlan:
    """Check everything a run needs (sandbox, task, engine, image, confirmation)
    before a run id exists: a run that cannot start leaves no trace. ``sid`` is resolved
    (see lifecycle.sandboxes.resolve_id). ``remote``: a cluster node runs it, so this
    machine's engine and images are not asked (the node checks its own).

    ``code`` instead of a ``task`` file (None then) runs a code string: it becomes the task
    ``snippet-<sha256 prefix>.<ext>`` and from there is a task file like any other. It runs
    with the sandbox's runtime, or with ``runtime`` when the sandbox has none."""
    from aido.config.runtimes import family_for_task, known_extensions, runtime_for_task
    from aido.config.units import parse_duration
    from aido.plugins.runtimes import install

    install()  # the plugins' runtime families, when a plugin is installed

    args = list(args or [])
    widen = widen or Widening()
    store = ctx.store
    record = store.load(sid)
    paths = store.paths(sid)
    if record.expired():
        raise SandboxExpired(
            f"sandbox {sid} expired at {record.expires_at} (its ttl was {record.config.get('ttl')})",
            hint=f"create a new sandbox with `aido sandbox up`, or remove this one with "
            f"`aido sandbox destroy {sid}`",
        )
    settings = RunSettings.from_config(record.config)
    settings = replace(settings, env={**settings.env, **read_secrets(paths)})
    from aido.host.trees import check_room

    # What an earlier run left over a limit would stop this one at once: refuse it now.
    check_room(paths, settings, sid)
    # Widened by the sandbox's spec: confirmed at `sandbox up`, repeated here so it is seen.
    spec_warnings = widened_permissions(record.config)
    for warning in spec_warnings:
        if hooks is not None and hooks.on_warning is not None:
            hooks.on_warning(warning)
        else:
            log.warning("%s", warning)
    if settings.isolation == "gvisor" and widen.network:
        raise UsageError(
            "--network is not available with isolation gvisor: runsc is registered with "
            "--network=none, so the task could not reach the network anyway",
            hint="use a sandbox with the default isolation for tasks that need the network",
        )
    widen = check_allow_hosts(widen, settings, sid)
    hatch_warnings = widen.warnings()
    require_confirmation(hatch_warnings, confirm)
    timeout_seconds = settings.timeout_seconds
    if timeout is not None:
        try:
            timeout_seconds = parse_duration(timeout, maximum=24 * 3600)
        except ValueError as exc:
            raise UsageError(f"--timeout: {exc}") from None
    extra_env = parse_env_flags(env or [])
    from aido.evidence.redact import short_secret_warnings

    env_warnings = short_secret_warnings({**settings.env, **extra_env})
    for warning in env_warnings:
        log.warning("%s", warning)
    if code is not None:
        source = check_code(code)
        choice = code_runtime(settings.runtime, runtime, sid)
        task, mode = snippet_path(source, choice), 0o644
    elif task is None:
        raise UsageError("no task given", hint="give a task file, or a code string (aido run -c CODE)")
    else:
        if runtime is not None:
            raise UsageError("--runtime picks the interpreter of a code string (-c) only")
        source, mode = check_task(task)
        if settings.runtime:
            choice = stored_runtime(settings.runtime, sid)
        else:
            found = runtime_for_task(task.name)
            if found is None:
                raise UsageError(
                    f"cannot tell how to run {task.name!r} from its extension",
                    hint=f"use a {known_extensions()} file, or set `runtime:` in sandbox.yaml "
                    "(e.g. docker://IMAGE to run the file itself)",
                )
            choice = found
    notes = []
    by_extension = family_for_task(task.name)
    if choice.interpreter and by_extension and by_extension != choice.runtime.partition(":")[0]:
        # The sandbox's runtime wins; a .js file fed to python is almost always a mistake.
        notes.append(
            f"{str(task)!r} looks like a {by_extension} task but the sandbox's runtime is "
            f"{choice.runtime}: it runs with {choice.interpreter}"
        )
        log.warning("%s", notes[-1])
    image_id = ""
    if not remote:
        # Engine, isolation and image before a run id exists: a missing engine leaves no trace.
        backend = ctx.backend  # its first call reports an unreachable engine
        backend.check_isolation(settings.isolation)
        # Checked at `sandbox up` too, but the image may have been removed since.
        image_id = ensure_image(
            backend,
            choice.image,
            (hooks or RunHooks()).on_pull,
            other=f"or create a sandbox with another runtime: {UP_RUNTIME_HINT}",
        )
    plan = RunPlan(
        record,
        paths,
        task,
        source,
        args,
        choice,
        image_id,
        settings,
        timeout_seconds,
        extra_env,
        widen,
        spec_warnings + hatch_warnings,
        env_warnings + notes,
        task_mode=mode,
        from_code=code is not None,
    )
    from aido.run.plugged import check_pre_run

    # Last: a plugin judges the run as it would start; a refusal is recorded (run_refused).
    check_pre_run(plan)
    return plan


def check_task(task: Path) -> tuple[bytes, int]:
    """The task file's bytes, and its mode for work/ and the evidence: 0o755 when it is
    executable (a docker:// image may run it itself), else 0o644; read from one descriptor."""
    try:
        fd = os.open(task, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TaskNotFound(f"task file {str(task)!r} not found", hint="check the path") from None
    except PermissionError:
        raise TaskNotRunnable(f"task file {str(task)!r} is not readable") from None
    try:
        # Checked on the descriptor: on Linux a directory opens fine with O_RDONLY.
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise TaskNotRunnable(f"task {str(task)!r} is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise TaskNotRunnable(f"task {str(task)!r} is not a regular file")
        if st.st_size > MAX_TASK_BYTES:
            raise TaskNotRunnable(f"task file {str(task)!r} is larger than {MAX_TASK_BYTES >> 20} MiB")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), 0o755 if st.st_mode & 0o111 else 0o644
    finally:
        os.close(fd)


CODE_RUNTIME_HINT = (
    "pass --runtime python|node|sh (or a plugin's runtime; API: runtime=...), or use a sandbox "
    "created with --runtime"
)


def stored_runtime(runtime: str, sid: str) -> RuntimeChoice:
    """The sandbox's runtime, checked when it was created: it fails now only when it came
    from a plugin that is gone (or now refused)."""
    from aido.config.runtimes import parse_runtime

    try:
        return parse_runtime(runtime)
    except ValueError as exc:
        raise UsageError(
            f"sandbox {sid}'s runtime {runtime!r} is not available: {exc}",
            hint="install the plugin that provides it again (`aido plugins` lists them), "
            "or create a sandbox with another runtime",
        ) from None


def code_runtime(sandbox_runtime: str | None, asked: str | None, sid: str) -> RuntimeChoice:
    """The runtime a code string runs with: the sandbox's, else ``asked``. A code string
    has no extension to pick an interpreter by, and a docker:// image has no interpreter."""
    from aido.config.runtimes import parse_runtime

    choice = stored_runtime(sandbox_runtime, sid) if sandbox_runtime else None
    if asked is not None:
        try:
            wanted = parse_runtime(asked)
        except ValueError as exc:
            raise UsageError(
                f"--runtime: {exc}", hint="a code string runs with python, node, sh or a plugin's runtime"
            ) from None
        if choice is not None and wanted.runtime != choice.runtime:
            raise UsageError(
                f"--runtime {asked}: sandbox {sid} runs everything with {choice.runtime}",
                hint="leave out --runtime (the sandbox's runtime is used), or use a sandbox "
                "created without one",
            )
        choice = wanted
    if choice is None:
        raise UsageError(
            f"a code string needs a runtime, and sandbox {sid} has none (it picks one by file extension)",
            hint=CODE_RUNTIME_HINT,
        )
    if choice.interpreter is None:
        raise UsageError(
            f"a code string cannot run with runtime {choice.runtime}: an image has no interpreter for it",
            hint="put the code in a file and run that (aido run FILE), or use a python, node or sh sandbox",
        )
    return choice


def check_code(code: object) -> bytes:
    """A code string as the task file's bytes: a non-empty str, UTF-8, within MAX_TASK_BYTES."""
    if not isinstance(code, str):
        raise UsageError(f"code must be a string, got {type(code).__name__}")
    if not code.strip():
        raise UsageError("the code string is empty", hint="give the code to run, e.g. -c 'print(42)'")
    try:
        source = code.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("the code string is not valid UTF-8 (it holds a lone surrogate)") from None
    if len(source) > MAX_TASK_BYTES:
        raise UsageError(
            f"the code string is larger than {MAX_TASK_BYTES >> 20} MiB",
            hint="put it in a file and pass the file in the sandbox's inputs",
        )
    return source


def snippet_path(source: bytes, choice: RuntimeChoice) -> Path:
    """The task name of a code string: by content, so that concurrent snippets never
    replace each other's work/ file, and the same snippet is the same task."""
    import hashlib

    from aido.config.runtimes import code_extension

    assert choice.interpreter is not None
    digest = hashlib.sha256(source).hexdigest()[:12]
    return Path(f"snippet-{digest}{code_extension(choice)}")


def pids_limit(settings: RunSettings) -> int:
    """The task's pids limit. Under gVisor the pids cgroup also counts the sandbox kernel's
    own threads: 256 would leave a task about 30 processes. Memory still bounds a fork bomb."""
    from aido.backends.base import Limits

    return GVISOR_PIDS if settings.isolation == "gvisor" else Limits.pids
