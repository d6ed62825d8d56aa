"""Symlink-safe snapshots of the task-writable trees (``work/``, ``outputs/``) and
the difference between two of them.

Everything in those trees was written by the task, so the walk trusts nothing:
it descends with directory file descriptors (openat-style), opens each file with
O_NOFOLLOW | O_NONBLOCK and checks it is a regular file on the descriptor it
will read, records symlinks, fifos, sockets and devices without touching their
targets, and stops at bounded counts, depths and sizes. A 1 TiB sparse file is
recorded by its size and not hashed; a million files end the walk early with a
note instead of hanging aido.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from aido.values import dataclass, field

MAX_ENTRIES = 10_000
MAX_DEPTH = 32
HASH_LIMIT = 256 << 20  # larger files are recorded by size only
HASH_BUDGET = 256 << 20  # bytes hashed per snapshot in all; later files are recorded by size only
TEXT_LIMIT = 64 << 10  # files up to this size keep their text for a diff
TEXT_BUDGET = 4 << 20  # total text kept per snapshot
DIFF_LIMIT = 1 << 20  # the unified diff stored per run
NAMES_BUDGET = 16 << 20  # characters of paths and link targets kept per snapshot
MAX_NOTES = 1000  # notes kept per snapshot (then only how many more there were)


@dataclass(frozen=True)
class Entry:
    kind: str  # file | dir | symlink | fifo | socket | device | other
    size: int
    mode: int
    sha256: str | None = None
    target: str | None = None  # symlink target, as text, never followed
    text: str | None = field(default=None, compare=False, repr=False)


@dataclass
class Snapshot:
    entries: dict[str, Entry] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


_UNPRINTABLE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def display_name(name: str) -> str:
    """A file name the task chose, safe to put in evidence: bytes that are not UTF-8 and
    control characters (newlines that could forge diff headers, escapes) become \\xNN."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return text.translate(_UNPRINTABLE)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "other"


CHANGED_TYPE = "changed type while being read"
CHANGING_TRIES = 3  # a task may swap an entry's type between our stat and our read


def _look(
    dir_fd: int, name: str, budget: list[int], hash_budget: list[int]
) -> tuple[Entry, str | None] | None:
    """The entry ``name`` in ``dir_fd`` and a note about it; None if it is gone. A task can
    swap a file for a symlink (or back) between the stat and the read: the entry is then
    looked at again, so its type and content (or target) come from one consistent look."""
    for _ in range(CHANGING_TRIES):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return None
        kind = _kind(st.st_mode)
        mode = stat.S_IMODE(st.st_mode)
        if kind == "file":
            digest, text, note = _read_file(dir_fd, name, budget, hash_budget)
            if note != CHANGED_TYPE:
                return Entry(kind, st.st_size, mode, digest, text=text), note
        elif kind == "symlink":
            try:
                target = display_name(os.readlink(name, dir_fd=dir_fd)[:4096])
            except OSError:
                continue  # no longer a link (or gone): look again
            return Entry(kind, st.st_size, mode, target=target), None
        else:
            # dir, fifo, socket, device: recorded, never opened here (opening a fifo blocks).
            return Entry(kind, 0, mode), None
    return Entry("other", 0, 0), f"changed type while being read, {CHANGING_TRIES} times"


def _read_file(
    dir_fd: int, name: str, budget: list[int], hash_budget: list[int]
) -> tuple[str | None, str | None, str | None]:
    """(sha256, text, note) for a regular file, read through one O_NOFOLLOW descriptor."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, None, CHANGED_TYPE  # swapped for a symlink since the stat
        return None, None, f"unreadable: {exc.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, None, CHANGED_TYPE
        if st.st_size > HASH_LIMIT:
            return None, None, f"not hashed: larger than {HASH_LIMIT >> 20} MiB"
        if st.st_size > (1 << 20) and st.st_blocks * 512 < st.st_size // 2:
            # Mostly holes: hashing would read gigabytes of zeros the task wrote for free.
            return None, None, f"not hashed: sparse ({st.st_size} bytes, {st.st_blocks * 512} on disk)"
        if st.st_size > hash_budget[0]:
            return None, None, f"not hashed: over the {HASH_BUDGET >> 20} MiB hashing budget of this run"
        hash_budget[0] -= st.st_size
        digest = hashlib.sha256()
        keep = st.st_size <= TEXT_LIMIT and budget[0] >= st.st_size
        kept = bytearray()
        remaining = HASH_LIMIT
        while remaining > 0:
            chunk = os.read(fd, min(1 << 20, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            digest.update(chunk)
            if keep:
                kept += chunk
                if len(kept) > TEXT_LIMIT:
                    keep, kept = False, bytearray()
        text = None
        if keep and b"\0" not in kept:
            try:
                text = kept.decode("utf-8")
                budget[0] -= len(kept)
            except UnicodeDecodeError:
                text = None
        return digest.hexdigest(), text, None
    finally:
        os.close(fd)


def snapshot(
    root: Path,
    *,
    max_entries: int = MAX_ENTRIES,
    max_depth: int = MAX_DEPTH,
    exclude: frozenset[str] = frozenset(),
) -> Snapshot:
    """Every entry below ``root`` (up to the bounds), walked depth first: a directory is
    walked as soon as it is met, so at most ``max_depth`` directories (and their listings)
    are open at once however wide the tree, and no listing is ever held in memory whole."""
    result = Snapshot()
    notes = _Notes(result.notes)
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        notes.add(f"{root.name}: not walked: {exc.strerror}")
        return result
    budget = [TEXT_BUDGET]
    hash_budget = [HASH_BUDGET]
    names_left = NAMES_BUDGET
    levels: list[tuple[int, str, int, Iterator[os.DirEntry[str]]]] = []  # (fd, prefix, depth, listing)
    try:
        _push(levels, top, "", 0, notes)
        while levels:
            dir_fd, prefix, depth, listing = levels[-1]
            try:
                item = next(listing, None)
            except OSError as exc:
                notes.add(f"{prefix or '.'}: not listed completely: {exc.strerror}")
                item = None
            if item is None:
                _pop(levels)
                continue
            name = item.name
            if depth == 0 and name in exclude:
                continue
            if len(result.entries) >= max_entries:
                notes.final(f"stopped after {max_entries} entries")
                break
            rel = f"{prefix}{display_name(name)}"
            if len(rel) > names_left:
                count = len(result.entries)
                notes.final(f"stopped after {count} entries: their names passed {NAMES_BUDGET} characters")
                break
            looked = _look(dir_fd, name, budget, hash_budget)
            if looked is None:
                continue
            entry, note = looked
            if note:
                notes.add(f"{rel}: {note}")
            result.entries[rel] = entry
            names_left -= len(rel) + len(entry.target or "")
            if entry.kind == "dir":
                if depth + 1 >= max_depth:
                    notes.add(f"{rel}: not descended: deeper than {max_depth} levels")
                    continue
                try:
                    sub = os.open(
                        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
                    )
                except OSError as exc:
                    notes.add(f"{rel}: not walked: {exc.strerror}")
                    continue
                _push(levels, sub, f"{rel}/", depth + 1, notes)
    finally:
        while levels:
            _pop(levels)
    notes.close()
    return result


def _push(
    levels: list[tuple[int, str, int, Iterator[os.DirEntry[str]]]],
    dir_fd: int,
    prefix: str,
    depth: int,
    notes: _Notes,
) -> None:
    """Start listing the open directory ``dir_fd`` (closed here if it cannot be listed)."""
    try:
        listing = os.scandir(dir_fd)
    except OSError as exc:
        notes.add(f"{prefix or '.'}: not listed: {exc.strerror}")
        os.close(dir_fd)
        return
    levels.append((dir_fd, prefix, depth, listing))


def _pop(levels: list[tuple[int, str, int, Iterator[os.DirEntry[str]]]]) -> None:
    dir_fd, _, _, listing = levels.pop()
    close = getattr(listing, "close", None)
    if close is not None:
        close()
    os.close(dir_fd)


class _Notes:
    """The walk's notes, at most MAX_NOTES of them (then how many more there were): a
    tree of a million odd entries must not make a summary of a million lines."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.dropped = 0
        self.last: str | None = None

    def add(self, note: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(note)
        else:
            self.dropped += 1

    def final(self, note: str) -> None:
        self.last = note  # why the walk stopped: always kept

    def close(self) -> None:
        if self.dropped:
            self.notes.append(f"{self.dropped} more notes not kept")
        if self.last:
            self.notes.append(self.last)


def _describe(path: str, entry: Entry, change: str) -> dict[str, object]:
    item: dict[str, object] = {"path": path, "change": change, "type": entry.kind}
    if entry.kind == "file":
        item["size"] = entry.size
        item["sha256"] = entry.sha256
    elif entry.kind == "symlink":
        item["target"] = entry.target
    return item


def compare(before: Snapshot, after: Snapshot, *, prefix: str) -> tuple[list[dict[str, object]], str]:
    """(changes, unified diff) between two snapshots of one tree; paths get ``prefix``."""
    changes: list[dict[str, object]] = []
    diff_parts: list[str] = []
    for path in sorted(set(before.entries) | set(after.entries)):
        old, new = before.entries.get(path), after.entries.get(path)
        shown = f"{prefix}/{path}"
        if old is None and new is not None:
            if new.kind != "dir":
                changes.append(_describe(shown, new, "added"))
        elif new is None and old is not None:
            if old.kind != "dir":
                changes.append(_describe(shown, old, "removed"))
        elif old is not None and new is not None and old != new:
            if old.kind == "dir" and new.kind == "dir":
                continue
            changes.append(_describe(shown, new, "modified"))
        else:
            continue
        old_text = old.text if old is not None else ""
        new_text = new.text if new is not None else ""
        if (
            old_text is not None
            and new_text is not None
            and (old is None or old.kind == "file")
            and (new is None or new.kind == "file")
        ):
            import difflib  # only when a text file changed: not on every run's path

            diff_parts.extend(
                difflib.unified_diff(
                    old_text.splitlines(keepends=True),
                    new_text.splitlines(keepends=True),
                    fromfile=f"a/{shown}" if old is not None else "/dev/null",
                    tofile=f"b/{shown}" if new is not None else "/dev/null",
                )
            )
    diff = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in diff_parts
    )
    if len(diff) > DIFF_LIMIT:
        diff = diff[:DIFF_LIMIT] + "\n[diff truncated by aido]\n"
    return changes, diff
