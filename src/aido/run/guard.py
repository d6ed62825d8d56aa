"""The guard a backend polls while a task runs: it says when aido must stop the task
(cancelled, sandbox destroyed or expired, disk or file-count limit), meters the task's
trees, and hands the facts of the ending to run/verdict.py, which alone decides.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from aido.backends.base import StopReason
from aido.run.plan import RunPlan, pids_limit
from aido.store.store import peek

if TYPE_CHECKING:
    from aido.backends.base import ExecOutcome
    from aido.run.verdict import Breach, Verdict

DISK_CHECK_SECONDS = 0.05  # the shortest interval between two disk-usage checks of a running task


class RunGuard:
    """Polled by the runtime adapter while a task runs: says when aido must stop it."""

    def __init__(self, plan: RunPlan, cancel: threading.Event | None) -> None:
        from aido.store.records import parse_time

        self.plan = plan
        self.paths = plan.paths
        self.cancel = cancel
        self.expires = parse_time(plan.record.expires_at).timestamp()
        self.expires_at = plan.record.expires_at
        self.next_disk_check = 0.0
        self.usage: Any = None
        self.exceeded: str | None = None
        self.breaches: tuple[Breach, ...] = ()

    def __call__(self) -> str | None:
        if self.cancel is not None and self.cancel.is_set():
            return StopReason.CANCELLED
        if self.paths.going():
            return StopReason.DESTROYED
        if time.time() >= self.expires and not self._extended():
            return StopReason.EXPIRED
        now = time.monotonic()
        if self.plan.settings.disk_quota == "hard":
            return None  # the sandbox's own filesystem enforces the limit: writes fail with ENOSPC
        if now >= self.next_disk_check:
            self.check_disk()
            # A big tree costs more to walk: check it less often rather than load the host.
            self.next_disk_check = time.monotonic() + max(DISK_CHECK_SECONDS, 4 * (time.monotonic() - now))
            if self.exceeded:
                return StopReason.DISK_LIMIT
        return None

    def _extended(self) -> bool:
        """At the expiry the run started with: whether `aido sandbox extend` has moved it
        later since (read once, at that moment, not on every poll)."""
        from aido.store.records import parse_time

        data = peek(self.paths)
        try:
            later = parse_time(data["expires_at"]).timestamp()
        except (TypeError, KeyError, ValueError, AttributeError):
            return False
        if later <= self.expires:
            return False
        self.expires, self.expires_at = later, data["expires_at"]
        return time.time() < later

    def check_disk(self, *, final: bool = False) -> None:
        from aido.host.diskusage import exceeded, measure

        settings = self.plan.settings
        self.usage = measure(
            [self.paths.work, self.paths.outputs],
            # While the task runs, stop at the limit; at the end, measure all it left
            # (still bounded by the file count, so a million files cost little).
            stop_bytes=None if final else settings.disk_bytes,
            stop_files=settings.max_files,
        )
        self.exceeded = exceeded(self.usage, max_bytes=settings.disk_bytes, max_files=settings.max_files)

    def disk_report(self) -> dict[str, Any]:
        """Disk use at the end (what the task left), and every disk or file-count limit
        breached: while it ran (why the guard killed it) or by what it left."""
        from aido.host.trees import breaches

        settings = self.plan.settings
        while_running = (
            breaches(self.paths, settings, self.usage) if self.exceeded and self.usage is not None else []
        )
        self.check_disk(final=True)  # once more, after the task ended: what it left behind
        found = breaches(self.paths, settings, self.usage)
        kinds = {b.kind for b in found}
        self.breaches = tuple(found + [b for b in while_running if b.kind not in kinds])
        self.exceeded = "; ".join(b.text for b in self.breaches) or None
        return {
            "quota": settings.disk_quota,
            "limit_bytes": settings.disk_bytes,
            "limit_files": settings.max_files,
            "bytes_used": self.usage.bytes_used,
            "files": self.usage.files,
            "measured_completely": self.usage.complete,
            "exceeded": self.exceeded,
        }

    def verdict(self, outcome: ExecOutcome, signal_exit: int | None) -> Verdict:
        """The run's one verdict (status, message, exit code, line): see verdict.py."""
        from aido.run.verdict import Facts, decide

        plan = self.plan
        return decide(
            Facts(
                exit_code=outcome.exit_code,
                duration_ms=outcome.duration_ms,
                stop_reason=outcome.stop_reason,
                timed_out=outcome.timed_out,
                oom_killed=outcome.oom_killed,
                pids_limit_hit=outcome.pids_limit_hit,
                interrupted=outcome.interrupted,
                error=outcome.error,
                disk=self.breaches,
                memory_bytes=plan.settings.memory_bytes,
                pids_limit=pids_limit(plan.settings),
                timeout_seconds=plan.timeout_seconds,
                isolation=plan.settings.isolation,
                sandbox_id=plan.record.id,
                expires_at=self.expires_at,
                signal_exit=signal_exit,
            )
        )
