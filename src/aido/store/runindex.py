"""``runs.jsonl``: a sandbox's runs, one line per change, appended and never rewritten.

sandbox.json used to list every run and was rewritten two or three times per run (about
210 ms per ``aido run`` at 10,000 runs). The index is appended to instead, under the
sandbox's lock: one compact RunRef object per line, the running entry when a run starts
and the closed one when it ends; the LAST line for a run id is its current entry. A run's
cost stays flat however many runs came before, and only what wants the runs (lists,
``show``, ``logs``, a sweep that recovers a run) reads the file.

A crash mid-append leaves a torn last line (no final newline): readers ignore it, and the
next append (under the lock) cuts it off first. Any other bad line is an error naming the
file and line: only aido writes the index, so a bad line means it was edited or damaged.

A run marked running also has an empty file ``.running/<run-id>``, made before its running
entry and removed after its closed one: the sweep on every command lists that small
directory instead of reading the index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from aido.errors import MetadataError
from aido.log import log
from aido.store.ids import run_number
from aido.store.records import RunRef, _checked_run

_CHUNK = 65536


def encode(ref: RunRef) -> bytes:
    return (json.dumps(vars(ref), ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def parse(data: bytes, source: str) -> list[RunRef]:
    """The runs of an index's bytes, each as its last line has it, in the order they first
    appear. ``source`` names the file in errors."""
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline, as aido leaves it
    if torn:
        log.debug("%s: ignoring a torn last line (%d bytes; a crash mid-append)", source, len(torn))
    runs: dict[str, RunRef] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ref = RunRef(**_checked_run(json.loads(line)))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise MetadataError(
                f"{source}:{number} is invalid: {exc}", hint="restore it or destroy the sandbox"
            ) from None
        runs[ref.run_id] = ref
    return list(runs.values())


def read(path: Path) -> list[RunRef]:
    """The runs in the index at ``path`` ([] when there is none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise MetadataError(f"{path} is unreadable: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        return parse(handle.read(), str(path))


def merged(first: Iterable[RunRef], then: Iterable[RunRef]) -> list[RunRef]:
    """``first`` overlaid with ``then``: a run in both is as ``then`` has it (a schema-1
    sandbox.json's runs list with the index over it, as after a migration cut short)."""
    runs = {ref.run_id: ref for ref in first}
    runs.update((ref.run_id, ref) for ref in then)
    return list(runs.values())


def append(path: Path, refs: Iterable[RunRef]) -> None:
    """Append entries (the caller holds the sandbox's lock), after cutting off a torn last
    line a crash left; one write(2), then fdatasync, as sandbox.json was fsynced."""
    data = b"".join(encode(ref) for ref in refs)
    if not data:
        return
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            _cut_torn_tail(fd, size, path)
        while data:
            data = data[os.write(fd, data) :]
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _cut_torn_tail(fd: int, size: int, path: Path) -> None:
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            keep = start + found + 1
            break
        end = start
    else:
        keep = 0
    log.debug("%s: cutting off a torn last line (%d bytes)", path, size - keep)
    os.ftruncate(fd, keep)


# -- runs marked running ------------------------------------------------------------------


def marked(running: Path) -> list[str]:
    """Run ids with a marker in ``running`` (the ``.running`` directory): one listdir."""
    try:
        names = os.listdir(running)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n for n in names if run_number(n) is not None)


def mark(running: Path, rid: str) -> None:
    running.mkdir(mode=0o755, exist_ok=True)
    fd = os.open(running / rid, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    os.close(fd)


def unmark(running: Path, rid: str) -> None:
    try:
        os.unlink(running / rid)
    except FileNotFoundError:
        pass
