"""The warm pool's bookkeeping on disk: which pre-started containers of a sandbox are
starting, ready, or claimed by a run. One empty file per container, named for what a
reader needs without opening it:

    warm/starting/<name>               being created and started by the keeper (by container name)
    warm/ready/<key>.<container>       started and idle; <key> is what it was created with
    warm/claimed/<container>.<run>     taken by that run; gone once the keeper removed it

A run claims a container by renaming its ready file to its claimed name: rename is
atomic, so of any number of concurrent runs exactly one gets each container (the others
find the file gone and try the next). Nothing here talks to the engine.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from aido.values import dataclass

STARTING, READY, CLAIMED = "starting", "ready", "claimed"


@dataclass(frozen=True)
class Claim:
    container_id: str
    run_id: str


class WarmPool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _names(self, kind: str) -> list[str]:
        try:
            return [n for n in os.listdir(self.root / kind) if not n.startswith(".")]
        except FileNotFoundError:
            return []

    def _touch(self, kind: str, name: str) -> None:
        (self.root / kind).mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / kind / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)

    # -- the keeper ------------------------------------------------------------------------

    def add_starting(self, name: str) -> None:
        self._touch(STARTING, name)

    def mark_ready(self, name: str, container_id: str, key: str) -> None:
        (self.root / READY).mkdir(parents=True, exist_ok=True)
        os.rename(self.root / STARTING / name, self.root / READY / f"{key}.{container_id}")

    def starting(self) -> list[str]:
        return self._names(STARTING)

    def ready(self) -> dict[str, str]:
        """Ready containers: id -> the key they were created with."""
        found = {}
        for name in self._names(READY):
            key, _, container_id = name.partition(".")
            if container_id:
                found[container_id] = key
        return found

    def claims(self) -> list[Claim]:
        found = []
        for name in self._names(CLAIMED):
            container_id, _, run_id = name.partition(".")
            if run_id:
                found.append(Claim(container_id, run_id))
        return found

    def withdraw(self, container_id: str) -> bool:
        """Take a ready container out of the pool before removing it, as a run claims one
        (atomically): False if a run took it first."""
        for name in self._names(READY):
            if name.endswith(f".{container_id}"):
                (self.root / CLAIMED).mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(self.root / READY / name, self.root / CLAIMED / f"{container_id}.withdrawn")
                except FileNotFoundError:
                    return False
                return True
        return False

    def forget(self, container_id: str) -> None:
        """Drop every file about the container, by id or, while starting, by name (it is
        removed, or about to be)."""
        for kind in (STARTING, READY, CLAIMED):
            for name in self._names(kind):
                if (
                    name == container_id
                    or name.startswith(f"{container_id}.")
                    or name.endswith(f".{container_id}")
                ):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.root / kind / name)

    def set_error(self, message: str | None) -> None:
        """Why the keeper cannot fill the pool (None: it can), for `aido sandbox list`."""
        path = self.root / "error"
        if message is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        if not self.root.is_dir():
            return
        from aido import fs

        fs.atomic_write_bytes(path, message.encode()[:1000])

    def error(self) -> str | None:
        try:
            return (self.root / "error").read_text(errors="replace")
        except OSError:
            return None

    # -- a run -----------------------------------------------------------------------------

    def claim(self, key: str, run_id: str) -> str | None:
        """Take a ready container created with ``key`` for the run; None if there is none."""
        names = [n for n in self._names(READY) if n.startswith(f"{key}.")]
        if not names:
            return None
        (self.root / CLAIMED).mkdir(parents=True, exist_ok=True)
        start = os.getpid() % len(names)  # concurrent runs start at different files
        for name in names[start:] + names[:start]:
            container_id = name.partition(".")[2]
            try:
                os.rename(self.root / READY / name, self.root / CLAIMED / f"{container_id}.{run_id}")
            except FileNotFoundError:
                continue  # another run took it
            return container_id
        return None
