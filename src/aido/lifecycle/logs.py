"""Reading a run's evidence, live or archived: which run a command means (``run_ref``),
where its evidence is, and its logs, followed while the run is in progress (in this or
another process) until it ends or its aido process turns out to be dead.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import fs
from aido.errors import AidoError, RunNotFound
from aido.lifecycle.sandboxes import resolve_id
from aido.log import log
from aido.store.ids import check_run_id, run_number
from aido.store.records import RunRef, SandboxRecord
from aido.store.workspace import NETWORK_LOG, STDERR, STDOUT, SUMMARY
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.run.context import Context


ORPHAN_CHECK_SECONDS = 2.0  # how often `logs --follow` checks that a running run still has a container


def run_ref(ctx: Context, sandbox_id: str | None, run: str | None) -> tuple[SandboxRecord, RunRef]:
    """A run of the given (live or destroyed) sandbox, or of the active one; the latest
    run without ``run``."""
    record, _ = ctx.store.load_evidence(resolve_id(ctx, sandbox_id))
    if not record.runs:
        raise RunNotFound(f"sandbox {record.id} has no runs yet", hint="run a task with `aido run TASK`")
    if run is None:
        return record, max(record.runs, key=lambda r: run_number(r.run_id) or 0)
    wanted = check_run_id(run)
    ref = record.run(wanted)
    if ref is None:
        raise RunNotFound(
            f"sandbox {record.id} has no run {wanted}",
            hint=f"its runs: {', '.join(r.run_id for r in record.runs)}",
        )
    return record, ref


def run_dir(ctx: Context, sandbox_id: str, run: str) -> Path:
    """Where a run's evidence is: in the sandbox, or in the archive once it was destroyed."""
    return ctx.store.evidence_paths(sandbox_id).run_dir(check_run_id(run))


def stream_logs(
    ctx: Context,
    sandbox_id: str,
    run: str,
    *,
    streams: tuple[int, ...] = (1,),
    follow: bool = False,
    poll: float = 0.1,
) -> Iterator[tuple[int, bytes]]:
    """Yield (stream, bytes) from a run's logs; with ``follow``, keep going as they grow
    until the run has ended (the run may be in progress in another process)."""
    names = {1: STDOUT, 2: STDERR}
    offsets = dict.fromkeys(streams, 0)
    next_check, orphaned = time.monotonic() + ORPHAN_CHECK_SECONDS, 0
    while True:
        ended = not follow or not _running(ctx, sandbox_id, run)
        where = run_dir(ctx, sandbox_id, run)  # again each time: it moves when archived
        for kind in streams:
            try:
                fd = os.open(where / names[kind], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            with os.fdopen(fd, "rb") as handle:
                handle.seek(offsets[kind])
                while chunk := handle.read(65536):
                    offsets[kind] += len(chunk)
                    yield kind, chunk
        if ended:
            return
        if time.monotonic() >= next_check:
            # A run marked running whose container is gone (or stopped) was left by an
            # aido process that died: following it would wait forever.
            next_check = time.monotonic() + ORPHAN_CHECK_SECONDS
            orphaned = orphaned + 1 if not _run_container_alive(ctx, sandbox_id, run) else 0
            if orphaned >= 2:
                log.warning(
                    "%s is marked running but has no running container: the aido process "
                    "that ran it was killed; showing what it captured",
                    run,
                )
                return
        time.sleep(poll)


def _running(ctx: Context, sandbox_id: str, run: str) -> bool:
    """Whether the run is still marked running. Its ``.running`` marker answers with one
    stat while it runs (it goes only after the run's closed line is in the index), so a
    follow polling ten times a second never re-reads an index of thousands of runs."""
    if (ctx.store.paths(sandbox_id).running / run).exists():
        return True
    ref = ctx.store.load_evidence(sandbox_id)[0].run(run)
    return (ref or RunRef(run, "", "error", "")).status == "running"


def _run_container_alive(ctx: Context, sandbox_id: str, run: str) -> bool:
    try:
        found = ctx.backend.list_labelled({"aido.sandbox": sandbox_id, "aido.run": run})
    except AidoError:
        return True  # cannot tell without the engine: keep following
    return any(c.get("state") == "running" for c in found)


@dataclass(frozen=True)
class NetworkLog:
    """A run's network evidence as `aido logs --network` reads it: the summary's
    ``network`` section (what the network was) and the network log's entries."""

    section: dict[str, Any]
    entries: list[dict[str, Any]]
    # Why there is no log to show (no allowlist, the run is in progress, the log was not
    # collected), or None when ``entries`` are the run's log.
    missing: str | None = None


def network_log(ctx: Context, sandbox_id: str, run: str) -> NetworkLog:
    """A run's network evidence (`aido logs --network`), live or archived."""
    return read_network(run_dir(ctx, sandbox_id, run), running=_running(ctx, sandbox_id, run))


def read_network(where: Path, *, running: bool = False) -> NetworkLog:
    """Read the network evidence in a run's directory. A run written before summaries
    said what the network was: what it requested (``security.requested.network``)."""
    if running:
        return NetworkLog({}, [], "the run is in progress: its network log is written when it ends")
    try:
        summary = fs.read_json(where / SUMMARY)
    except FileNotFoundError:
        return NetworkLog({}, [], "it has no summary.json (it never completed)")
    except (OSError, ValueError) as exc:
        return NetworkLog({}, [], f"its summary.json is unreadable ({type(exc).__name__})")
    summary = summary if isinstance(summary, dict) else {}
    section = summary.get("network")
    if not isinstance(section, dict):
        requested = (summary.get("security") or {}).get("requested") or {}
        section = {"mode": "full" if requested.get("network") is True else "none"}
    mode = section.get("mode")
    if mode != "allowlist":
        return NetworkLog(section, [], f"it had no egress allowlist (network: {mode})")
    if not section.get("log"):
        return NetworkLog(section, [], str(section.get("note") or "its proxy's log was not collected"))
    try:
        return NetworkLog(section, list(_entries(where / NETWORK_LOG)))
    except OSError as exc:  # sealed evidence gone or swapped for a link: `aido verify` says more
        return NetworkLog(section, [], f"its {NETWORK_LOG} cannot be read ({type(exc).__name__})")


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    """The network log's lines, each a JSON object; a line that is not (the file was
    damaged) is shown as unparsed rather than hidden. Bounded: aido wrote at most
    evidence.network.MAX_ENTRIES lines, and reads no more."""
    from aido.evidence.network import MAX_ENTRIES

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        for count, raw in enumerate(handle):
            if count >= MAX_ENTRIES:
                return
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = None
            yield entry if isinstance(entry, dict) else {"unparsed": raw.decode("utf-8", "replace")[:512]}
