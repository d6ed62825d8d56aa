"""`aido run -i`: the host's stdin, copied to the task through the container's attach stream."""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

from aido.backends.docker.engine import AttachStream


def forward_stdin(fd: int, stream: AttachStream, name: str) -> Callable[[], None]:
    """Copy the host's stdin to the task until end-of-file, then close the task's stdin.
    Returns the function that stops the copy (the run calls it when the task has ended):
    the thread waits on the stop pipe too, so it never takes input meant for whatever
    reads the same descriptor next (a second run in the same process, say)."""
    stop_r, stop_w = os.pipe()

    def pump() -> None:
        try:
            while True:
                ready, _, _ = select.select([fd, stop_r], [], [])
                if stop_r in ready:
                    return  # the run is over: leave the rest of stdin unread
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:  # a stdin left non-blocking by whoever started aido
                    continue
                if not chunk:
                    break
                stream.send(chunk)
            stream.close_stdin()
        except OSError:
            return  # the task ended (or the stream closed): nothing left to feed
        finally:
            os.close(stop_r)

    thread = threading.Thread(target=pump, name=f"aido-stdin-{name}", daemon=True)
    thread.start()

    def stop() -> None:
        try:
            os.write(stop_w, b"x")
        except OSError:
            pass  # the copy has ended already (end of file, or the task went first)
        finally:
            os.close(stop_w)
        thread.join(timeout=5)

    return stop
