"""`aido run -i`: the host's stdin, copied to the task through the container's attach stream."""

from __future__ import annotations

import os
import threading

from aido.backends.docker.engine import AttachStream


def forward_stdin(fd: int, stream: AttachStream, name: str) -> None:
    """Copy the host's stdin to the task until end-of-file, then close the task's stdin.
    A daemon thread: it may sit in a read of a terminal after the task has ended."""

    def pump() -> None:
        import select

        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:  # a stdin left non-blocking by whoever started aido
                    select.select([fd], [], [])
                    continue
                if not chunk:
                    break
                stream.send(chunk)
        except OSError:
            return  # the task ended (or the stream closed): nothing left to feed
        stream.close_stdin()

    threading.Thread(target=pump, name=f"aido-stdin-{name}", daemon=True).start()
