"""What the Python API hands back: frozen, fully typed values, never raw dicts.

``RunOutcome`` is a finished run as an agent reads it: its status and flags, its output
as text, what it changed, where its evidence is. It is built from the pipeline's
``RunResult`` (or a run's summary.json) plus the run's captured stdout/stderr files.
Durations are seconds (float); sizes are bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from aido.run.result import RunResult
from aido.store.workspace import STDERR, STDOUT
from aido.values import dataclass

ChangeKind = Literal["added", "modified", "removed"]
MAX_LOG_BYTES = 64 << 20  # more than the capture keeps (16 MiB a stream by default)


@dataclass(frozen=True)
class Code:
    """A code string, for ``run_many``: plain ``str`` and ``Path`` items are task files.
    ``runtime`` (python, node or sh) picks the interpreter in a sandbox that has none."""

    code: str
    runtime: str | None = None


@dataclass(frozen=True)
class Change:
    """One file a run added, modified or removed, e.g. ``outputs/report.json``.
    ``path`` starts with the tree it is in: work/, outputs/ (or inputs/ when writable)."""

    path: str
    kind: ChangeKind
    file_type: str  # file, symlink, fifo, ... (directories are not listed)
    size: int | None = None  # files only
    sha256: str | None = None  # files only
    target: str | None = None  # symlinks only, as text (never followed)


@dataclass(frozen=True)
class FileInfo:
    """A regular file in a sandbox tree; ``path`` is relative to that tree (outputs/ or inputs/)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class RunLogs:
    """A run's captured output, decoded as UTF-8 (undecodable bytes replaced).
    ``*_truncated``: the task wrote more than the capture keeps."""

    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False


@dataclass(frozen=True)
class RunInfo:
    """One run of a sandbox, as ``runs()`` lists it (running ones too)."""

    run_id: str
    task: str
    status: str
    exit_code: int | None
    started_at: str
    completed_at: str | None
    duration: float | None  # seconds
    evidence_path: Path


@dataclass(frozen=True)
class Verification:
    """What ``verify()`` found: ``verdict`` verified, tampered or unverifiable (as the exit
    code of ``aido verify`` says), and one line per finding."""

    verdict: str
    findings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.verdict == "verified"


@dataclass(frozen=True)
class RunOutcome:
    """One finished run. ``ok`` is True only for a success: exit code 0 and no limit reached.

    ``status`` is aido's verdict: success, failed, timed_out, disk_limit, interrupted,
    expired or error (``message`` says why in words). ``exit_code`` is the task's own (None
    when it never gave one); ``process_exit_code`` what ``aido run`` would exit with.
    """

    sandbox_id: str
    run_id: str
    task: str
    status: str
    exit_code: int | None
    process_exit_code: int
    duration: float  # seconds
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    changes: tuple[Change, ...]
    evidence_path: Path
    outputs_path: Path
    timed_out: bool
    oom_killed: bool
    pids_limit_reached: bool
    interrupted: bool
    limits_exceeded: tuple[str, ...]  # one message per limit reached
    message: str | None  # why the run ended as it did, in words
    error: str | None  # aido's own failure, if any
    outcome: str  # the outcome line `aido run` prints
    # "none", "full" or "allowlist"; with an allowlist, what the egress proxy allowed and
    # denied (each request: the run's network.jsonl in evidence_path, `aido logs --network`).
    network: str = "none"
    requests_allowed: int = 0
    requests_denied: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "success"


def outcome_from(result: RunResult) -> RunOutcome:
    """A RunOutcome from the pipeline's result, with the run's captured output read back."""
    logs = read_logs(result.evidence_dir, result)
    return RunOutcome(
        sandbox_id=result.sandbox_id,
        run_id=result.run_id,
        task=result.task,
        status=result.status,
        exit_code=result.exit_code,
        process_exit_code=result.process_exit_code,
        duration=result.duration_ms / 1000,
        stdout=logs.stdout,
        stderr=logs.stderr,
        stdout_truncated=logs.stdout_truncated,
        stderr_truncated=logs.stderr_truncated,
        changes=tuple(change_from(c) for c in result.changes),
        evidence_path=result.evidence_dir,
        outputs_path=result.outputs_dir,
        timed_out=result.timed_out,
        oom_killed=result.oom_killed,
        pids_limit_reached=result.pids_limit_reached is True,
        interrupted=result.summary.get("interrupted") is True or result.status == "interrupted",
        limits_exceeded=tuple(str(x.get("message", x.get("kind", ""))) for x in result.limits_exceeded),
        message=result.message,
        error=result.error,
        outcome=result.outcome,
        network=result.network.mode,
        requests_allowed=result.network.allowed,
        requests_denied=result.network.denied,
    )


def change_from(item: Mapping[str, object]) -> Change:
    change = item.get("change")
    kind: ChangeKind = "added" if change == "added" else "removed" if change == "removed" else "modified"
    size, sha, target = item.get("size"), item.get("sha256"), item.get("target")
    return Change(
        path=str(item.get("path", "")),
        kind=kind,
        file_type=str(item.get("type", "file")),
        size=size if isinstance(size, int) else None,
        sha256=sha if isinstance(sha, str) else None,
        target=target if isinstance(target, str) else None,
    )


def read_logs(run_dir: Path, result: RunResult | None = None) -> RunLogs:
    """A run's stdout.log and stderr.log, decoded; truncation as its record says."""
    truncated = {s.name: s.truncated for s in result.output} if result is not None else {}
    return RunLogs(
        stdout=read_text(run_dir / STDOUT),
        stderr=read_text(run_dir / STDERR),
        stdout_truncated=truncated.get("stdout", False),
        stderr_truncated=truncated.get("stderr", False),
    )


def read_text(path: Path) -> str:
    """A log aido wrote, never through a link, at most MAX_LOG_BYTES; '' when absent."""
    from aido.host.sandboxfiles import read_own

    return read_own(path, 0, MAX_LOG_BYTES)[0].decode("utf-8", errors="replace")


__all__ = ["Change", "Code", "FileInfo", "RunInfo", "RunLogs", "RunOutcome", "Verification"]
