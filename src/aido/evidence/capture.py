"""Capture a task's stdout and stderr into the run's evidence, with a size cap.

Each chunk is written straight to the log file (so ``aido logs --follow`` in
another terminal sees it at once) and handed to an optional echo callback.
Past the cap nothing more is stored or echoed, the rest is only counted, and the
evidence says the stream was truncated: a task printing forever cannot fill the
disk or aido's memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from aido.evidence.redact import StreamMasker
from aido.fs import create_new
from aido.values import dataclass

DEFAULT_LIMIT = 16 << 20  # bytes per stream
STREAM_NAMES = {1: "stdout", 2: "stderr"}


@dataclass
class StreamStats:
    bytes_total: int = 0
    bytes_captured: int = 0
    truncated: bool = False


class OutputCapture:
    def __init__(
        self,
        files: Mapping[int, Path],
        *,
        limit: int = DEFAULT_LIMIT,
        echo: Callable[[int, bytes], None] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.limit = limit
        self.echo = echo
        secrets = list(secrets)
        # Values of secret-looking variables are masked before they reach a log or the
        # terminal, even when the task prints its whole environment.
        self._maskers = {kind: StreamMasker(secrets) for kind in STREAM_NAMES} if secrets else {}
        # Where each stream goes (1 stdout, 2 stderr): named by the caller, who owns the layout.
        self.paths = {kind: files[kind] for kind in STREAM_NAMES}
        self.stats = {kind: StreamStats() for kind in STREAM_NAMES}
        self._fds: dict[int, int] = {}
        try:
            for kind, path in self.paths.items():
                self._fds[kind] = create_new(path)
        except BaseException:
            for fd in self._fds.values():
                os.close(fd)
            raise

    def write(self, kind: int, data: bytes) -> None:
        self.stats[kind].bytes_total += len(data)
        masker = self._maskers.get(kind)
        if masker is not None:
            data = masker.feed(data)
        self._store(kind, data)

    def _store(self, kind: int, data: bytes) -> None:
        if not data:
            return
        stats = self.stats[kind]
        room = self.limit - stats.bytes_captured
        if room <= 0:
            stats.truncated = True
            return
        if len(data) > room:
            data = data[:room]
            stats.truncated = True
        fd = self._fds[kind]
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        stats.bytes_captured += len(data)
        if self.echo is not None:
            self.echo(kind, data)

    def close(self) -> dict[str, dict[str, object]]:
        if self._fds:  # still open: what a masker held back goes to its log
            for kind, masker in self._maskers.items():
                self._store(kind, masker.flush())
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        return {
            STREAM_NAMES[kind]: {
                "path": self.paths[kind].name,
                "bytes_total": s.bytes_total,
                "bytes_captured": s.bytes_captured,
                "truncated": s.truncated,
                "limit": self.limit,
            }
            for kind, s in self.stats.items()
        }
