"""Copy the files a sandbox.yaml lists under ``inputs:`` into the sandbox's ``inputs/``.

The copy is a snapshot taken at ``sandbox up``: later edits to the project do not
leak into a sandbox, and the evidence can name exactly what the task was given.
Patterns are relative to the sandbox.yaml's directory and must stay inside it;
symlinks are not followed, only regular files and directories are copied.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from aido.errors import ConfigError, Problem
from aido.fs import create_new

MAX_INPUT_FILES = 10_000
MAX_INPUT_BYTES = 1 << 30


def _copy_file(source: Path, dest: Path) -> tuple[int, str]:
    fd_in = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd_in)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([Problem(f"{source} is not a regular file", key="inputs")])
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Read-only for everyone, executable only if the source was: no setuid/setgid bits survive.
        mode = 0o555 if st.st_mode & 0o111 else 0o444
        fd_out = create_new(dest, mode=0o600)
        digest = hashlib.sha256()
        size = 0
        try:
            while chunk := os.read(fd_in, 1 << 20):
                digest.update(chunk)
                size += len(chunk)
                os.write(fd_out, chunk)
            os.fchmod(fd_out, mode)
        finally:
            os.close(fd_out)
        return size, digest.hexdigest()
    finally:
        os.close(fd_in)


def match_inputs(
    patterns: list[str], base: Path, *, source: str, lines: dict[tuple[str | int, ...], int] | None = None
) -> list[tuple[Path, Path]]:
    """(file, path relative to base) for every regular file the patterns name.

    Run before anything is created, so a pattern that matches nothing, or too much,
    leaves no half-made sandbox (or workspace) behind. ``lines`` (key path -> line, from
    the loader) puts each problem at its pattern's line.
    """
    base = base.resolve()
    found: dict[Path, Path] = {}
    total = 0
    for index, pattern in enumerate(patterns):

        def problem(message: str, index: int = index) -> ConfigError:
            line = (lines or {}).get(("inputs", index))
            return ConfigError([Problem(message, source, line, f"inputs[{index}]")])

        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise problem(f"expected a file pattern inside {base} like data/*.csv (no '..'), got {pattern!r}")
        matches = sorted(glob.glob(pattern, root_dir=base, recursive=True, include_hidden=False))
        if not matches:
            raise problem(f"{pattern!r} matched no files under {base}")
        usable = 0
        for match in matches:
            path = base / match
            files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if not p.is_dir())
            for file in files:
                # Only regular files, and never through a link out of the project.
                if file.is_symlink() or not file.is_file() or not file.resolve().is_relative_to(base):
                    continue
                usable += 1
                rel = file.relative_to(base)
                if rel in found:
                    continue  # matched by two patterns
                found[rel] = file
                total += file.stat().st_size
                if len(found) > MAX_INPUT_FILES or total > MAX_INPUT_BYTES:
                    raise problem(f"inputs exceed {MAX_INPUT_FILES} files or {MAX_INPUT_BYTES >> 20} MiB")
        if not usable:
            # Not silently nothing: a pattern that names only links (never followed) copies nothing.
            raise problem(
                f"{pattern!r} matched no regular files under {base} "
                "(links, special files and empty folders are not copied)"
            )
    return [(file, rel) for rel, file in found.items()]


def copy_inputs(matches: list[tuple[Path, Path]], dest: Path) -> list[dict[str, Any]]:
    """Copy matched files into ``dest``; their size and SHA-256 as read while copying."""
    copied = []
    for file, rel in matches:
        size, digest = _copy_file(file, dest / rel)
        copied.append({"path": str(rel), "size": size, "sha256": digest})
    return copied


def hand_over(root: Path, uid: int, gid: int) -> None:
    """Make the inputs tree writable by the task's user (``filesystem: readwrite`` or
    ``--dangerous-allow-mutations``). A task of this sandbox may have written it already,
    and may be swapping entries for links right now: the walk goes by directory
    descriptors, every entry is opened with O_NOFOLLOW and changed through that
    descriptor, and links are only ever re-owned themselves, never followed."""
    as_root = os.getuid() == 0

    def adopt(name: str, dir_fd: int | None) -> None:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            # A symlink (ELOOP), or gone: re-own the link itself at most, never its target.
            if as_root:
                with contextlib.suppress(OSError):
                    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            return
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                # Never setuid/setgid, whoever made it.
                os.fchmod(fd, (stat.S_IMODE(st.st_mode) | stat.S_IWUSR) & ~(stat.S_ISUID | stat.S_ISGID))
                if as_root:
                    os.fchown(fd, uid, gid)
        finally:
            os.close(fd)

    for _, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in [*dirs, *files]:
            adopt(name, dir_fd)
    adopt(str(root), None)
