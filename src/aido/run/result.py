"""What a run hands back: a frozen value with the fields a caller shows or decides on.

The CLI, the batch and the Python API read these fields, never the raw summary dict
(which stays available as ``summary`` for callers that want the whole record). The
JSON-shaped fields (``changes``, ``limits_exceeded``) are passed through to ``--json``
exactly as ``summary.json`` records them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aido.values import dataclass, field

JsonObject = Mapping[str, object]


@dataclass(frozen=True)
class StreamStats:
    """One captured stream (stdout or stderr), as summary.json's ``output`` records it."""

    name: str
    path: str
    bytes_total: int
    bytes_captured: int
    truncated: bool
    limit: int

    def as_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "bytes_total": self.bytes_total,
            "bytes_captured": self.bytes_captured,
            "truncated": self.truncated,
            "limit": self.limit,
        }


@dataclass(frozen=True)
class DeclaredOutput:
    """An output the sandbox.yaml declared, and whether the run produced it."""

    path: str
    present: bool


@dataclass(frozen=True)
class NetworkUse:
    """What the run's network was (summary.json's ``network``): ``none``, ``full``, or
    ``allowlist`` with how many requests the egress proxy allowed and denied."""

    mode: str = "none"
    allowed: int = 0
    denied: int = 0


@dataclass(frozen=True)
class RunResult:
    """One finished run. ``process_exit_code`` is what ``aido run`` exits with."""

    sandbox_id: str
    run_id: str
    task: str
    status: str
    exit_code: int | None  # the task's own code; None when it never gave one
    duration_ms: int
    timed_out: bool
    oom_killed: bool
    evidence_dir: Path
    outputs_dir: Path
    artifacts: tuple[str, ...]
    summary: JsonObject = field(repr=False)
    error: str | None = None
    # What aido exits with when a signal (SIGTERM 143, SIGHUP 129; None for Ctrl-C)
    # interrupted the run: given when the result is made, never set afterwards.
    signal_exit: int | None = None
    stop_reason: str | None = None
    message: str | None = None  # why the run ended as it did, in words (see verdict.py)
    outcome: str = ""  # the human outcome line, as `aido run` and `aido logs --follow` print it
    pids_limit_reached: bool | None = None
    limits_exceeded: tuple[JsonObject, ...] = ()
    output: tuple[StreamStats, ...] = ()
    changes: tuple[JsonObject, ...] = ()
    declared_outputs: tuple[DeclaredOutput, ...] = ()
    network: NetworkUse = field(default_factory=NetworkUse)

    @property
    def process_exit_code(self) -> int:
        """What ``aido run`` exits with: the task's own code, or aido's documented codes."""
        from aido.run.verdict import exit_code_for

        return exit_code_for(self.status, self.exit_code, self.stop_reason, self.signal_exit)

    def output_json(self) -> dict[str, object]:
        """``output`` as summary.json and ``run --json`` show it: stream name -> stats."""
        return {stats.name: stats.as_json() for stats in self.output}


def streams_from_summary(output: object) -> tuple[StreamStats, ...]:
    """summary.json's ``output`` object as typed stream stats (what the record says)."""
    if not isinstance(output, Mapping):
        return ()
    found = []
    for name, stats in output.items():
        if isinstance(stats, Mapping):
            found.append(
                StreamStats(
                    name=str(name),
                    path=str(stats.get("path", "")),
                    bytes_total=_int(stats.get("bytes_total")),
                    bytes_captured=_int(stats.get("bytes_captured")),
                    truncated=bool(stats.get("truncated")),
                    limit=_int(stats.get("limit")),
                )
            )
    return tuple(found)


def network_from_summary(network: object) -> NetworkUse:
    """summary.json's ``network`` section as a typed value (absent: none)."""
    if not isinstance(network, Mapping):
        return NetworkUse()
    requests = network.get("requests")
    counts = requests if isinstance(requests, Mapping) else {}
    return NetworkUse(
        str(network.get("mode") or "none"), _int(counts.get("allowed")), _int(counts.get("denied"))
    )


def declared_from_summary(declared: object) -> tuple[DeclaredOutput, ...]:
    if not isinstance(declared, list):
        return ()
    return tuple(
        DeclaredOutput(path=str(item.get("path", "")), present=bool(item.get("present")))
        for item in declared
        if isinstance(item, Mapping)
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def result_from_summary(
    summary: Mapping[str, object], *, evidence_dir: Path, outputs_dir: Path, artifacts: tuple[str, ...]
) -> RunResult:
    """The result of a run whose outcome exists only as its summary.json (a run closed
    without an outcome, or one a cluster node ran): the same fields collect gives."""
    exit_code = summary.get("exit_code")
    reason = summary.get("stop_reason")
    pids = summary.get("pids_limit_reached")
    limits = summary.get("limits_exceeded")
    changes = summary.get("changes")
    return RunResult(
        sandbox_id=str(summary.get("sandbox_id", "")),
        run_id=str(summary.get("run_id", "")),
        task=str(summary.get("task", "")),
        status=str(summary.get("status", "error")),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
        duration_ms=_int(summary.get("duration_ms")),
        timed_out=summary.get("timed_out") is True,
        oom_killed=summary.get("oom_killed") is True,
        evidence_dir=evidence_dir,
        outputs_dir=outputs_dir,
        artifacts=artifacts,
        summary=summary,
        error=_str(summary.get("error")),
        stop_reason=_str(reason),
        message=_str(summary.get("message")),
        outcome=_str(summary.get("outcome")) or "",
        pids_limit_reached=pids if isinstance(pids, bool) else None,
        limits_exceeded=tuple(x for x in limits if isinstance(x, Mapping))
        if isinstance(limits, list)
        else (),
        output=streams_from_summary(summary.get("output")),
        changes=tuple(x for x in changes if isinstance(x, Mapping)) if isinstance(changes, list) else (),
        declared_outputs=declared_from_summary(summary.get("declared_outputs")),
        network=network_from_summary(summary.get("network")),
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
