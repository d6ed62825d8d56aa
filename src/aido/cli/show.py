"""``aido show [RUN]``: one run, read back from its evidence.

Everything comes from the run's own directory (summary.json, the logs' presence,
changes.diff), never from the sandbox's trees, and from the run's entry in
sandbox.json when there is no summary yet (a run in progress). summary.json is
written by aido, but much of it echoes what the task chose (file names, its
arguments, messages that quote them), so every value is escaped before it
reaches a terminal, and every key is read defensively: older, newer or partial
summaries (a run that never started) still show what they have.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from aido.cli.text import relative
from aido.config.units import format_duration, format_size
from aido.store.records import configured_allowlist
from aido.store.workspace import CHANGES, NETWORK_LOG, STDERR, STDOUT, SUMMARY

FIRST_PATHS = 5  # changed paths listed by name; the rest are counted
_MARKS = {"added": "+", "modified": "~", "removed": "-"}
_HATCH_FLAGS = {
    "network": "--network",
    "host_filesystem": "--host-filesystem",
    "dangerous_allow_mutations": "--dangerous-allow-mutations",
}


def clean(value: object) -> str:
    """``value`` as text that cannot act on a terminal: control characters (C0, DEL, C1),
    format characters (bidi overrides, zero-width) and line separators are shown escaped,
    so a file named ``a\\x1b[2Jb`` reads as exactly that instead of clearing the screen.
    Unlike TerminalFilter (which filters a task's output stream and keeps colours), no
    escape sequence survives here: these are one-line fields, not the task's output."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    shown = []
    for char in text:
        if char != " " and unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            code = ord(char)
            shown.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
        else:
            shown.append(char)
    return "".join(shown)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    # Bounded: a 400-digit integer would overflow the float arithmetic of format_size.
    ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 63
    return value if ok else None


def _number(value: Any) -> float | None:
    """A finite number, or None: json.loads accepts Infinity, NaN and 400-digit integers."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def read_summary(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The run's summary.json, or None and why not (not written yet, or unreadable)."""
    try:
        fd = os.open(run_dir / SUMMARY, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            data = json.loads(handle.read())
    except FileNotFoundError:
        return None, "summary.json is not written yet (the run is in progress or never completed)"
    except (OSError, ValueError) as exc:
        return None, f"summary.json is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(data, dict):
        return None, "summary.json is not a JSON object"
    return data, None


def limits_hit(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every limit the run reached, as its verdict listed them (summary.json's
    ``limits_exceeded``: kind, limit, measured, unit, message; decided again from the
    recorded facts for a summary written without it), then each truncated output stream in
    the same shape. Never decided here: run/verdict.py is the one place that does."""
    recorded = summary.get("limits_exceeded")
    if isinstance(recorded, list):
        hits = [dict(item) for item in recorded if isinstance(item, dict)]
    else:
        from aido.run.verdict import decide, facts_from_summary

        try:
            hits = decide(facts_from_summary(summary)).limits_exceeded
        except (TypeError, ValueError, KeyError, AttributeError, AssertionError, OverflowError):
            hits = []  # a damaged summary: show what it records, decide nothing
    for stream, stats in _dict(summary.get("output")).items():
        stats = _dict(stats)
        if stats.get("truncated") is True:
            limit, total = _int(stats.get("limit")), _int(stats.get("bytes_total"))
            shown = (
                f"{stream} truncated at {format_size(limit)}" if limit is not None else f"{stream} truncated"
            )
            shown += f" ({format_size(total)} written)" if total is not None else ""
            hits.append(
                {
                    "kind": f"output:{stream}",
                    "limit": limit,
                    "measured": total,
                    "unit": "bytes",
                    "message": shown,
                }
            )
    return hits


def _changes(summary: dict[str, Any]) -> dict[str, Any]:
    entries = [_dict(c) for c in _list(summary.get("changes"))]
    counts = Counter(str(c.get("change", "?")) for c in entries)
    return {
        "added": counts.pop("added", 0),
        "modified": counts.pop("modified", 0),
        "removed": counts.pop("removed", 0),
        **({"other": dict(counts)} if counts else {}),
        "total": len(entries),
        "first": [
            {"path": c.get("path"), "change": c.get("change"), "type": c.get("type")}
            for c in entries[:FIRST_PATHS]
        ],
        "notes": _list(summary.get("changes_notes")),
    }


def _evidence(run_dir: Path) -> dict[str, str | None]:
    def present(name: str) -> str | None:
        return relative(run_dir / name) if os.path.lexists(run_dir / name) else None

    return {
        "run_dir": relative(run_dir),
        "summary": present(SUMMARY),
        "stdout": present(STDOUT),
        "stderr": present(STDERR),
        "changes_diff": present(CHANGES),
        "network_log": present(NETWORK_LOG),  # an egress allowlist's requests (aido logs --network)
        "task": present("task"),
    }


def build_view(sandbox_id: str, ref: Any, run_dir: Path) -> dict[str, Any]:
    """The stable ``--json`` object for one run (keys pinned in tests/e2e/test_e2e_show.py)."""
    summary, problem = read_summary(run_dir)
    known = summary or {}

    def fact(key: str) -> Any:
        # The summary is the record; the run's entry in sandbox.json stands in until it exists.
        return known.get(key) if summary is not None else getattr(ref, key, None)

    security = _dict(known.get("security"))
    hatches = _dict(known.get("escape_hatches"))
    return {
        "sandbox_id": sandbox_id,
        "run_id": ref.run_id,
        "status": fact("status"),
        "message": known.get("message"),
        "error": known.get("error"),
        "stop_reason": known.get("stop_reason"),
        "exit_code": fact("exit_code"),
        "started_at": fact("started_at"),
        "completed_at": fact("completed_at"),
        "duration_ms": fact("duration_ms"),
        "task": fact("task"),
        "args": _list(known.get("args")),
        "task_sha256": known.get("task_sha256"),
        "task_source": known.get("task_source"),  # "code": a code string (run -c); older runs: None
        "runtime": known.get("runtime"),
        "start": known.get("start"),  # "warm" (a pre-started container) or "cold"; older runs: None
        "start_detail": _dict(known.get("start_detail")),
        "image": known.get("image"),
        "image_id": known.get("image_id"),
        "limits": _dict(known.get("limits")),
        "limits_hit": limits_hit(known),
        "disk": known.get("disk"),
        "output": _dict(known.get("output")),
        "security": {"requested": security.get("requested"), "applied": security.get("applied")},
        # What the network was (none, full or allowlist) and, for an allowlist, the proxy's
        # counts (evidence/network.py); None for runs from before summaries recorded it.
        "network": known.get("network") if isinstance(known.get("network"), dict) else None,
        "escape_hatches": [name for name, on in hatches.items() if on is True],
        # --allow-host's entries (an escape hatch with values, not a flag); older runs: []
        "allow_hosts": [str(h) for h in _list(hatches.get("allow_hosts"))],
        "permissions": _dict(known.get("permissions")),
        "warnings": _list(known.get("warnings")),
        "changes": _changes(known),
        "declared_outputs": _list(known.get("declared_outputs")),
        "evidence": _evidence(run_dir),
        "summary_problem": problem,
    } | (
        {"node": node, "retry_of": known.get("retry_of")}
        if isinstance(node := known.get("node"), dict)
        else {}
    )


# -- human ------------------------------------------------------------------------------------


def _seconds(ms: Any) -> str:
    value = _number(ms)
    if value is None:
        return "?"
    return f"{value / 1000:.2f}s" if value < 60_000 else format_duration(value / 1000)


def _when(moment: Any) -> str:
    return clean(moment).replace("T", " ").removesuffix("Z") + " UTC" if isinstance(moment, str) else "?"


def _limits_line(view: dict[str, Any]) -> str:
    limits, disk = view["limits"], _dict(view["disk"])
    parts = []
    if (memory := _int(limits.get("memory_bytes"))) is not None:
        parts.append(f"memory {format_size(memory)}")
    if (cpus := _number(limits.get("cpus"))) is not None:
        parts.append(f"cpus {cpus:g}")
    if (pids := _int(limits.get("pids"))) is not None:
        parts.append(f"pids {pids}")
    if (timeout := _number(limits.get("timeout_seconds"))) is not None:
        parts.append(f"timeout {format_duration(timeout)}")
    if (disk_bytes := _int(disk.get("limit_bytes"))) is not None:
        parts.append(f"disk {format_size(disk_bytes)}")
    if (files := _int(disk.get("limit_files"))) is not None:
        parts.append(f"files {files}")
    output = {_int(_dict(s).get("limit")) for s in view["output"].values()} - {None}
    if len(output) == 1:
        parts.append(f"output {format_size(output.pop() or 0)} per stream")
    return ", ".join(parts) or "not recorded"


def _security_lines(view: dict[str, Any]) -> list[str]:
    applied = _dict(view["security"]["applied"])
    requested = _dict(view["security"]["requested"])
    if not applied:
        return ["not recorded (the container never started)"]
    options = [str(o) for o in _list(applied.get("security_opt"))]
    first = [
        f"runtime {applied.get('runtime') or '?'}",
        f"isolation {requested.get('isolation') or 'default'}",
        f"network {applied.get('network_mode') or '?'}",
        f"user {applied.get('user') or '?'}",
    ]
    second = [
        "cap_drop " + (",".join(str(c) for c in _list(applied.get("cap_drop"))) or "none"),
        "cap_add " + (",".join(str(c) for c in _list(applied.get("cap_add"))) or "none"),
        f"seccomp {applied.get('seccomp') or 'none'}",
        "no-new-privileges"
        if any(o.startswith("no-new-privileges") for o in options)
        else "new privileges allowed",
        "read-only root" if applied.get("readonly_rootfs") is True else "writable root",
    ]
    if applied.get("privileged") is True:
        second.append("PRIVILEGED")
    mounts = [
        f"{m.get('target')} ({'ro' if m.get('read_only') else 'rw'})"
        for m in (_dict(m) for m in _list(applied.get("mounts")))
    ]
    return [", ".join(first), ", ".join(second)] + (["mounts " + ", ".join(mounts)] if mounts else [])


def render(view: dict[str, Any]) -> None:
    """The readable view, on stdout (it is what was asked for: `aido show | less` works)."""
    lines: list[str] = []

    def field(name: str, *values: str) -> None:
        for i, value in enumerate(values or ("-",)):
            lines.append(f"  {name if i == 0 else '':<10} {value}")

    status = clean(view["status"] or "unknown")
    code = view["exit_code"]
    mark = "✓" if status == "success" else "…" if status == "running" else "✗"
    lines.append(f"{mark} {view['run_id']} of sandbox {view['sandbox_id']}: {status}")
    field("status", f"{status} ({f'exit code {clean(code)}' if code is not None else 'no exit code'})")
    why = view["message"] or view["error"]
    if why:
        field("why", clean(why))
    elif status == "failed" and code is not None:
        field("why", f"the task exited with code {clean(code)}")
    task = shlex.join([str(view["task"] or "?"), *(["--"] if view["args"] else []), *map(str, view["args"])])
    field("task", clean(task) + ("  (a code string)" if view.get("task_source") == "code" else ""))
    if isinstance(node := view.get("node"), dict):  # a run on a Ray cluster's node
        ray_id, engine = clean(str(node.get("id", ""))[:12]), clean(node.get("engine_version"))
        where = f"{clean(node.get('hostname'))} (Ray node {ray_id}, docker {engine})"
        field("node", where + (f", retry of {clean(view['retry_of'])}" if view.get("retry_of") else ""))
    if view["image"]:
        image_id = str(view["image_id"] or "")
        field("image", clean(view["image"]) + (f" ({clean(image_id[:19])})" if image_id else ""))
    timing = f"{_when(view['started_at'])}, took {_seconds(view['duration_ms'])}"
    field("started", timing if view["duration_ms"] is not None else _when(view["started_at"]))
    if view.get("start"):
        detail = view["start_detail"]
        how = clean(view["start"]) + (f" ({clean(detail['reason'])})" if detail.get("reason") else "")
        if detail.get("task_file_changed"):
            how += "; the task file in work/ changed while it ran: what ran may differ from task_sha256"
        field("container", how)
    field("limits", _limits_line(view))
    field("hit", *([clean(h.get("message") or h.get("kind")) for h in view["limits_hit"]] or ["none"]))
    disk = _dict(view["disk"])
    if (used := _int(disk.get("bytes_used"))) is not None:
        field("disk", f"{format_size(used)} used, {clean(disk.get('files', '?'))} files (work/ and outputs/)")
    streams = [
        f"{clean(name)} {format_size(total)}"
        for name, stats in view["output"].items()
        if (total := _int(_dict(stats).get("bytes_total"))) is not None
    ]
    if streams:
        field("output", ", ".join(streams))
    field("security", *map(clean, _security_lines(view)))
    if view["network"] is not None:
        from aido.cli.network import show_line

        field("network", show_line(view["network"]))
    hatches = [_HATCH_FLAGS.get(h, h) for h in view["escape_hatches"]]
    if view["allow_hosts"]:
        hatches.append(f"--allow-host {', '.join(view['allow_hosts'])}")
    permissions = view["permissions"]
    allowlist = configured_allowlist(permissions)
    widened = [
        *(["network (sandbox.yaml)"] if permissions.get("network") is True else []),
        *([f"network allow {', '.join(allowlist)} (sandbox.yaml)"] if allowlist else []),
        *(["filesystem readwrite (sandbox.yaml)"] if permissions.get("filesystem") == "readwrite" else []),
    ]
    field("escapes", *(map(clean, hatches + widened) if hatches or widened else ["none"]))
    changes = view["changes"]
    summary_line = f"{changes['added']} added, {changes['modified']} modified, {changes['removed']} removed"
    paths = [f"{_MARKS.get(str(c['change']), '?')} {clean(c['path'])}" for c in changes["first"]]
    if changes["total"] > len(paths):
        paths.append(f"... and {changes['total'] - len(paths)} more (see summary.json)")
    field("changes", summary_line, *paths, *(clean(n) for n in changes["notes"]))
    missing = [
        f"declared output {clean(d.get('path'))!s} was not produced"
        for d in map(_dict, view["declared_outputs"])
        if d.get("present") is False
    ]
    field("warnings", *([clean(w) for w in view["warnings"]] + missing or ["none"]))
    evidence = view["evidence"]
    files = [
        Path(str(evidence[key])).name
        for key in ("summary", "stdout", "stderr", "changes_diff", "network_log")
        if evidence.get(key)
    ]
    field("evidence", clean(evidence["run_dir"]) + "/" + (f" ({', '.join(files)})" if files else ""))
    if view["summary_problem"]:
        lines.append(f"  note: {clean(view['summary_problem'])}")
    print("\n".join(lines), flush=True)
