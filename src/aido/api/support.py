"""The plumbing behind aido.Sandbox: keywords to a spec, the manager with the workspace's
settings, streamed output as text, and writing into inputs/."""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido.api.results import FileInfo, RunLogs, RunOutcome
from aido.errors import ConfigError, NotConfirmed, UsageError
from aido.log import log

if TYPE_CHECKING:
    from aido.manager import SandboxManager
    from aido.run.request import Confirm, RunHooks, Widening
    from aido.store.records import SandboxRecord


SOURCE = "Sandbox()"  # where a problem with the keywords is reported: `Sandbox(): memory: ...`
# The spec's key paths by the keyword that sets them, for messages.
KEYWORDS = {"resources.cpu": "cpus", "resources.": "", "permissions.": ""}


def spec_from_keywords(
    *, resources: dict[str, object], permissions: dict[str, object], **top: object
) -> dict[str, Any]:
    """The sandbox.yaml mapping the keywords given describe (None: not given)."""
    spec: dict[str, Any] = {}
    for key, value in top.items():
        if value is None:
            continue
        if key in ("inputs", "outputs"):
            if isinstance(value, str):
                raise UsageError(f"{key}: expected a list of paths, got the string {value!r}")
            value = list(value)  # type: ignore[call-overload]
        elif key == "env":
            value = dict(value)  # type: ignore[call-overload]
        spec[key] = value
    for section, values in (("resources", resources), ("permissions", permissions)):
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            spec[section] = given
    return spec


def network_keyword(network: object) -> object:
    """``Sandbox(network=...)`` as sandbox.yaml's permissions.network (None: the default):
    True, a list of allowlist entries (``{allow: [...]}``), or that mapping itself."""
    from aido.run.request import refuse_a_string

    if network is False:
        return None
    refuse_a_string("network", network, "True, False or a list of hosts")
    if isinstance(network, Sequence):
        return {"allow": list(network)}
    if isinstance(network, Mapping):
        return dict(network)
    return network  # True, or a wrong type that the spec's check reports


def with_hosts(widen: Widening | None, allow_hosts: Sequence[str] | None) -> Widening | None:
    """``widen`` plus a run's ``allow_hosts=`` (checked when the run is planned)."""
    if allow_hosts is None:
        return widen
    from aido.run.request import Widening, refuse_a_string

    refuse_a_string("allow_hosts", allow_hosts, "a list of hosts")
    base = widen or Widening()
    return replace(base, allow_hosts=(*base.allow_hosts, *allow_hosts))


def manager_for(start: Path, *, create: bool) -> SandboxManager:
    """A manager with the workspace's settings (.aido/config.json), after the sweep every
    command does (expired sandboxes go, orphaned runs are closed). ``create``: the
    workspace may not exist yet (create() makes it at ``start``)."""
    from aido.config.settings import load_settings
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace

    workspace = Workspace.find(start) if create else Workspace.require(start)
    config = workspace.config_file if workspace is not None and workspace.config_file.is_file() else None
    settings = load_settings(config)
    manager = SandboxManager(
        workspace, output_limit=settings.output_limit, evidence_retention=settings.evidence_retention
    )
    if workspace is not None:
        manager.sweep()
    return manager


def create(
    manager: SandboxManager,
    spec: dict[str, Any],
    start: Path,
    auto_cleanup: bool,
    confirm: Confirm | None,
    on_pull: Callable[[str], None] | None,
) -> SandboxRecord:
    """``aido sandbox up`` from keywords: the same checks, problems named by keyword."""
    try:
        with api_hints():
            record = manager.create(
                start=start, auto_cleanup=auto_cleanup, confirm=confirm, on_pull=on_pull, given=(SOURCE, spec)
            )
    except ConfigError as exc:
        problems = [replace(p, key=_keyword(p.key)) for p in exc.details]
        raise ConfigError(problems, hint=exc.hint) from None
    manager.start_background(record)
    return record


CONFIRM_HINT = "pass confirm=, a function that gets these warnings and returns True to accept them"


@contextlib.contextmanager
def api_hints() -> Iterator[None]:
    """The CLI's hint for an unconfirmed widening names its prompt and --yes; an API
    caller confirms with ``confirm=``."""
    try:
        yield
    except NotConfirmed as exc:
        raise NotConfirmed(exc.message, hint=CONFIRM_HINT) from None


def _keyword(key: str | None) -> str | None:
    if key is None:
        return None
    for prefix, keyword in KEYWORDS.items():
        if key.startswith(prefix):
            return keyword or key[len(prefix) :]
    return key


def stream_hooks(
    on_stdout: Callable[[str], None] | None, on_stderr: Callable[[str], None] | None
) -> tuple[RunHooks, Callable[[], None]]:
    """Hooks that hand the task's output to the callbacks as text, live (a character split
    across chunks is decoded whole), and a flush for what is left at the end. A callback
    that raises is logged and not called again: it never breaks the run."""
    from aido.run.request import RunHooks

    sinks = {fd: sink for fd, sink in ((1, on_stdout), (2, on_stderr)) if sink is not None}
    decoders = {fd: codecs.getincrementaldecoder("utf-8")(errors="replace") for fd in sinks}

    def deliver(fd: int, text: str) -> None:
        sink = sinks.get(fd)
        if sink is None or not text:
            return
        try:
            sink(text)
        except Exception:
            log.exception("the %s callback failed; it gets no more output", "stdout" if fd == 1 else "stderr")
            sinks.pop(fd, None)

    def on_output(fd: int, data: bytes) -> None:
        if fd in decoders:
            deliver(fd, decoders[fd].decode(data))

    def flush() -> None:
        for fd, decoder in decoders.items():
            deliver(fd, decoder.decode(b"", final=True))

    return RunHooks(on_output=on_output if sinks else None), flush


def check_args(args: Sequence[str] | None) -> list[str]:
    if args is None:
        return []
    if isinstance(args, str | bytes):
        raise UsageError("args must be a list of strings, not one string", hint=f"pass [{args!r}]")
    found = list(args)
    for arg in found:
        if not isinstance(arg, str):
            raise UsageError(f"args must be strings, got {type(arg).__name__} {arg!r}")
        if "\0" in arg:
            raise UsageError("args cannot contain NUL bytes")
    return found


def env_flags(env: Mapping[str, str] | None) -> list[str]:
    """A mapping as the CLI's -e KEY=VALUE flags: checked by the same code."""
    if env is None:
        return []
    if not isinstance(env, Mapping):
        raise UsageError(f"env must be a mapping of names to values, got {type(env).__name__}")
    flags = []
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageError(f"env {key!r}: names and values must be strings")
        flags.append(f"{key}={value}")
    return flags


def run_name(run: str | RunOutcome | None) -> str | None:
    return run.run_id if isinstance(run, RunOutcome) else run


def run_id(run: str | RunOutcome) -> str:
    from aido.store.ids import check_run_id

    return check_run_id(run.run_id if isinstance(run, RunOutcome) else run)


def read_json(path: Path) -> dict[str, Any]:
    from aido import fs

    data = fs.read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def logs_with_truncation(run_dir: Path, logs: RunLogs) -> RunLogs:
    """``logs`` with the truncation flags its run's summary.json records (once it has one)."""
    from aido.run.result import streams_from_summary
    from aido.store.workspace import SUMMARY

    try:
        streams = streams_from_summary(read_json(run_dir / SUMMARY).get("output"))
    except (OSError, ValueError):
        return logs
    truncated = {s.name: s.truncated for s in streams}
    return replace(
        logs, stdout_truncated=truncated.get("stdout", False), stderr_truncated=truncated.get("stderr", False)
    )


def put_input(
    manager: SandboxManager, sandbox_id: str, path: str, data: bytes | str | os.PathLike[str]
) -> FileInfo:
    """Write a file into the sandbox's inputs/ (see Sandbox.put_file), under the sandbox's
    lock so that a destroy cannot interleave; recorded as an ``input_written`` event.
    inputs.json is left alone: it describes what `sandbox up` copied, and earlier runs'
    seals hold its digest."""
    from aido.evidence.events import record_event
    from aido.host.inputs import MAX_INPUT_BYTES, hand_over
    from aido.host.sandboxfiles import split_path, write_file
    from aido.lifecycle.sandboxes import live
    from aido.store.records import RunSettings

    parts = split_path(path, "inputs/", example="data/a.csv")
    content = _content(data, MAX_INPUT_BYTES)
    paths = manager.store.paths(sandbox_id)
    with live(manager, sandbox_id) as record:
        settings = RunSettings.from_config(record.config)
        if settings.filesystem == "none":
            raise UsageError(
                f"sandbox {sandbox_id} has permissions.filesystem: none: its tasks see no /inputs",
                hint="write the file into the task's code, or use a sandbox with filesystem readonly",
            )
        write_file(paths.root, ["inputs", *parts], content, mode=0o444)
        if settings.filesystem == "readwrite":
            uid, _, gid = record.task_user.partition(":")
            hand_over(paths.inputs, int(uid), int(gid))
    info = FileInfo("/".join(parts), len(content), hashlib.sha256(content).hexdigest())
    record_event(
        paths.events,
        "input_written",
        sandbox_id=sandbox_id,
        path=f"inputs/{info.path}",
        size=info.size,
        sha256=info.sha256,
    )
    return info


def _content(data: bytes | str | os.PathLike[str], limit: int) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        content = bytes(data)
    elif isinstance(data, str):
        try:
            content = data.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError("the text is not valid UTF-8 (it holds a lone surrogate)") from None
    elif isinstance(data, os.PathLike):
        fd = os.open(os.fspath(data), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UsageError(f"{os.fspath(data)!r} is not a regular file")
            with os.fdopen(os.dup(fd), "rb") as handle:
                content = handle.read(limit + 1)
        finally:
            os.close(fd)
    else:
        raise UsageError(f"data must be bytes, str or a Path, got {type(data).__name__}")
    if len(content) > limit:
        raise UsageError(f"the file is larger than {limit >> 20} MiB", hint="list it under inputs: instead")
    return content
