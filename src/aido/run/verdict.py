"""One verdict per run: its status, its message, what aido exits with, and the one line a
person reads, all decided here from the facts of how the run ended.

Before, each was worked out in a different place (the manager's status, the guard's
message, the result's exit code, the CLI's outcome line), and they disagreed: a task
that exited 0 after the kernel OOM-killed one of its processes was ``success`` with the
message "killed: out of memory". Here the rules are:

* A run the engine or aido stopped (timeout, out of memory, the disk or file limit,
  an interruption, an expired or destroyed sandbox) is never ``success``; nor is a run
  that exited 0 after a limit refused it something (a fork, a write). The status is the
  first that applies of: ``interrupted``, ``expired``, ``timed_out``, ``disk_limit``
  (aido killed it at the limit), ``error`` (no exit code: the engine failed), ``failed``
  (out of memory), ``disk_limit`` (the trees ended over their limit), ``failed``
  (the pids limit refused a fork or thread), then ``success``/``failed`` by exit code.
* Every limit reached is listed (``limits_exceeded``: kind, limit, measured) and named in
  the message and the line, whichever one decided the status.
* The exit code: 0 only for ``success``; 124 timed out; 3 expired or destroyed; 125
  engine error; 130/143/129 interrupted; 137 killed at the disk or file limit; otherwise
  the task's own non-zero code, or 137 when the task exited 0 but a limit was reached.

Pure and cheap to import (it is on the ``aido run`` path); tests/sandbox/test_verdict.py
checks every combination.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aido.backends.base import StopReason
from aido.exit_codes import ExitCode
from aido.host.trees import Breach  # a value of the host's meters; re-exported here
from aido.values import dataclass, field

# Stop reasons (ExecOutcome.stop_reason, or a recovered run's) that mean "interrupted".
INTERRUPTING = (
    StopReason.INTERRUPTED,
    StopReason.CANCELLED,
    StopReason.DESTROYED,
    StopReason.AIDO_LOST,
    StopReason.NODE_LOST,
)
DISK_KINDS = ("disk", "files")


@dataclass(frozen=True)
class Facts:
    """How a run ended, as the engine and aido's own meters saw it."""

    exit_code: int | None  # the task's own code; None when it never gave one
    duration_ms: int = 0
    stop_reason: str | None = None  # why aido stopped it: timeout, interrupted, disk_limit, ...
    timed_out: bool = False
    oom_killed: bool = False
    pids_limit_hit: bool | None = None  # None: could not tell
    interrupted: bool = False
    error: str | None = None  # the engine failed
    disk: tuple[Breach, ...] = ()  # disk and file-count breaches, from aido's meter or the filesystem
    memory_bytes: int = 0
    pids_limit: int = 0
    timeout_seconds: float = 0.0
    isolation: str = "default"
    sandbox_id: str = ""
    expires_at: str = ""
    detail: str | None = None  # the caller's words for an ending only it knows (a recovered run)
    signal_exit: int | None = None  # 143/129 when SIGTERM/SIGHUP (not Ctrl-C) interrupted the run


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str | None  # why, in words; None for a plain success or failure
    exit_code: int  # what aido exits with for this run
    line: str  # the human outcome line (without the ✓/✗ mark)
    breaches: tuple[Breach, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def limits_exceeded(self) -> list[dict[str, Any]]:
        return [b.as_dict() for b in self.breaches]


def exit_code_for(
    status: str, exit_code: int | None, stop_reason: str | None, signal_exit: int | None
) -> int:
    """What ``aido run`` exits with for a run that ended in ``status``."""
    if status == "success":
        return int(ExitCode.OK)
    if status == "interrupted":
        if stop_reason == StopReason.DESTROYED:
            return int(ExitCode.SANDBOX_STATE)
        if stop_reason == StopReason.NODE_LOST:  # the infrastructure failed, not the task
            return int(ExitCode.RUNTIME)
        return int(signal_exit or ExitCode.INTERRUPTED)
    if status == "expired":
        return int(ExitCode.SANDBOX_STATE)
    if status == "timed_out":
        return int(ExitCode.TIMED_OUT)
    if status == "error" or (exit_code is None and stop_reason != StopReason.DISK_LIMIT):
        return int(ExitCode.RUNTIME)
    # failed or disk_limit: the task's own code says most; when it said 0 (or nothing,
    # because aido killed it at a limit), 137: it was stopped or refused at a limit.
    return int(exit_code) if exit_code else int(ExitCode.KILLED)


def breaches_of(facts: Facts) -> tuple[Breach, ...]:
    found = []
    if facts.timed_out:
        found.append(
            Breach(
                "timeout",
                facts.timeout_seconds,
                round(facts.duration_ms / 1000, 3),
                "seconds",
                f"it ran past its timeout of {facts.timeout_seconds:g}s",
            )
        )
    if facts.oom_killed:
        mib = facts.memory_bytes >> 20
        found.append(Breach("memory", facts.memory_bytes, None, "bytes", f"out of memory (limit {mib}M)"))
    if facts.pids_limit_hit:
        gvisor = " (gVisor's own included)" if facts.isolation == "gvisor" else ""
        found.append(
            Breach(
                "pids",
                facts.pids_limit,
                None,
                "processes",
                f"it reached its limit of {facts.pids_limit} processes and threads{gvisor}",
            )
        )
    found.extend(facts.disk)
    return tuple(found)


def status_of(facts: Facts, breaches: tuple[Breach, ...]) -> str:
    reason = facts.stop_reason
    if facts.interrupted or reason in INTERRUPTING:
        return "interrupted"
    if reason == StopReason.EXPIRED:
        return "expired"
    if facts.timed_out or reason == StopReason.TIMEOUT:
        return "timed_out"
    if reason == StopReason.DISK_LIMIT:
        return "disk_limit"
    if facts.error is not None or facts.exit_code is None or reason is not None:
        return "error"  # no exit code (the engine failed), or a guard that failed
    if facts.oom_killed:
        return "failed"
    if any(b.kind in DISK_KINDS for b in breaches):
        return "disk_limit"
    if facts.pids_limit_hit:
        return "failed"
    return "success" if facts.exit_code == 0 else "failed"


def decide(facts: Facts) -> Verdict:
    breaches = breaches_of(facts)
    status = status_of(facts, breaches)
    code = exit_code_for(status, facts.exit_code, facts.stop_reason, facts.signal_exit)
    secs = f"{facts.duration_ms / 1000:.2f}s"
    reason = facts.stop_reason

    def texts(*skip: str) -> str:
        return "; ".join(b.text for b in breaches if b.kind not in skip)

    def also(*skip: str) -> str:
        rest = texts(*skip)
        return f" ({rest})" if rest else ""

    message: str | None
    line: str | None = None
    if status == "success":
        message, line = None, f"Task completed (exit code: 0) in {secs}"
    elif status == "interrupted":
        if reason == StopReason.DESTROYED:
            message = f"the task was stopped: sandbox {facts.sandbox_id} was destroyed"
        elif reason == StopReason.CANCELLED:
            message = "the task was stopped: the batch was interrupted"
        elif reason in (StopReason.AIDO_LOST, StopReason.NODE_LOST) and facts.detail:
            message = facts.detail
        else:
            message = "the task was interrupted; the container was stopped and removed"
        message += also()
    elif status == "expired" and not facts.expires_at and facts.detail:
        message = facts.detail  # decided again from a summary: its own words name the time
    elif status == "expired":
        message = f"the task was stopped: sandbox {facts.sandbox_id} expired at {facts.expires_at}" + also()
    elif status == "timed_out":
        limit = f"{facts.timeout_seconds:g}s"
        message = f"the task was killed: it ran past its timeout of {limit}" + also("timeout")
        line = f"Task timed out after {limit} and was killed" + also("timeout")
    elif status == "error":
        if reason is not None and reason.startswith("guard_failed"):
            message = f"the task was stopped: {reason}"
        else:
            why = facts.error or facts.detail or "the engine gave no exit code"
            message = f"the run did not complete: {why}"
        message += also()
        line = f"Task did not complete: {message.split(': ', 1)[1]}"
    elif reason == StopReason.DISK_LIMIT:
        what = texts() or "disk limit exceeded"
        message, line = f"the task was killed: {what}", f"Task killed in {secs}: {what}"
    elif facts.exit_code == 0:
        # Only a limit makes a run that exited 0 anything but a success.
        message = f"the task exited 0 but reached a limit: {texts()}"
        line = f"Task failed in {secs}, although it exited 0: {texts()}"
    elif status == "disk_limit":
        what = texts()
        message = f"the task stopped at its disk limit ({what}; exit code {facts.exit_code})"
        line = f"Task failed (exit code: {facts.exit_code}) in {secs} at its disk limit: {what}"
    elif breaches:  # failed, with the memory or pids limit reached
        if facts.oom_killed:
            message = f"the task was killed: {texts()}"
            line = f"Task killed (exit code: {facts.exit_code}) in {secs}: {texts()}"
        else:
            message = f"the task failed (exit code {facts.exit_code}): {texts()}"
            line = f"Task failed (exit code: {facts.exit_code}) in {secs}: {texts()}"
    else:
        message, line = None, f"Task failed (exit code: {facts.exit_code}) in {secs}"
    if line is None:
        assert message is not None
        line = message[0].upper() + message[1:]
    return Verdict(status, message, code, line, breaches)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def facts_from_summary(summary: Mapping[str, Any]) -> Facts:
    """The facts a summary.json records, for one written before verdicts were (or a partial
    one): enough to decide its verdict again."""
    limits = summary.get("limits") if isinstance(summary.get("limits"), Mapping) else {}
    assert isinstance(limits, Mapping)
    disk = summary.get("disk") if isinstance(summary.get("disk"), Mapping) else {}
    assert isinstance(disk, Mapping)
    breaches = []
    for item in summary.get("limits_exceeded") or []:
        if isinstance(item, Mapping) and item.get("kind") in DISK_KINDS:
            breaches.append(
                Breach(
                    str(item["kind"]),
                    item.get("limit") or 0,
                    item.get("measured"),
                    str(item.get("unit", "")),
                    str(item.get("message", "")),
                )
            )
    if not breaches and isinstance(disk.get("exceeded"), str):
        kind = "files" if disk["exceeded"].startswith("file") else "disk"
        limit = _int(disk.get("limit_files" if kind == "files" else "limit_bytes"))
        breaches.append(Breach(kind, limit, None, "files" if kind == "files" else "bytes", disk["exceeded"]))
    security = summary.get("security") if isinstance(summary.get("security"), Mapping) else {}
    assert isinstance(security, Mapping)
    requested = security.get("requested") if isinstance(security.get("requested"), Mapping) else {}
    assert isinstance(requested, Mapping)
    status = summary.get("status")
    stop_reason = summary.get("stop_reason")
    return Facts(
        exit_code=summary.get("exit_code") if isinstance(summary.get("exit_code"), int) else None,
        duration_ms=_int(summary.get("duration_ms")),
        stop_reason=stop_reason if isinstance(stop_reason, str) else None,
        timed_out=summary.get("timed_out") is True,
        oom_killed=summary.get("oom_killed") is True,
        pids_limit_hit=summary.get("pids_limit_reached") is True,
        interrupted=summary.get("interrupted") is True or (status == "interrupted" and not stop_reason),
        error=summary.get("error") if isinstance(summary.get("error"), str) else None,
        disk=tuple(breaches),
        memory_bytes=_int(limits.get("memory_bytes")),
        pids_limit=_int(limits.get("pids")),
        timeout_seconds=float(limits.get("timeout_seconds") or 0),
        isolation=str(requested.get("isolation", "default")),
        sandbox_id=str(summary.get("sandbox_id", "")),
        detail=summary.get("message") if isinstance(summary.get("message"), str) else None,
    )


def outcome_of_summary(summary: Mapping[str, Any]) -> tuple[str, int, bool]:
    """(outcome line, exit code, ok) of a finished run, from its summary.json: what aido
    recorded there, or, for a summary without it, the verdict decided again."""
    line, code, status = summary.get("outcome"), summary.get("exit_code_of_run"), summary.get("status")
    if isinstance(line, str) and isinstance(code, int) and isinstance(status, str):
        return line, code, status == "success"
    verdict = decide(facts_from_summary(summary))
    return verdict.line, verdict.exit_code, verdict.ok


__all__ = [
    "Breach",
    "Facts",
    "Verdict",
    "decide",
    "exit_code_for",
    "facts_from_summary",
    "outcome_of_summary",
]
