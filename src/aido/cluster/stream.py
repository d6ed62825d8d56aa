"""How a node's items (cluster/spec.py) reach the driver while the run goes on.

A driver on a cluster machine (``HOST:PORT``, ``auto``) gets them from a Ray streaming
generator: one Ray object per item, a few milliseconds behind. Ray Client drivers
(``ray://``) cannot use streaming generators, so there the node puts NODE and OUTPUT items
on one queue actor per command (tagged by run) and returns the last item as the task's
value. Both look the same to the driver: ``poll`` gives the items that arrived.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from aido.cluster.spec import DONE, FAILED, RemoteSpec


def execute_queued(spec: RemoteSpec, inputs: bytes, queue: Any, tag: str) -> tuple[str, Any]:
    """The node's side for a Ray Client driver: live items through ``queue``, the last one
    returned (it may be large: the object store carries it better than the queue actor)."""
    from aido.cluster.node import execute

    items: Iterator[tuple[str, Any]] = execute(spec, inputs)
    for item in items:
        if item[0] in (DONE, FAILED):
            return item
        queue.put((tag, item))
    return (FAILED, {"code": "internal", "message": "the run ended without a result", "exit_code": 70})


class GeneratorStream:
    def __init__(self, function: Any, options: dict[str, Any], spec: RemoteSpec, inputs: Any) -> None:
        self._ref = function.options(num_returns="streaming", **options).remote(spec, inputs)

    def poll(self, timeout: float) -> list[tuple[str, Any]] | None:
        """The next item, or None when none came within ``timeout``; StopIteration at the end."""
        import ray

        ready, _ = ray.wait([self._ref], timeout=timeout)
        if not ready:
            return None
        return [ray.get(next(self._ref))]

    def cancel(self) -> None:
        import ray

        with contextlib.suppress(Exception):  # the task may be gone already
            ray.cancel(self._ref)  # not forced: the node stops the container and cleans up first


class Mailbox:
    """One queue actor for a whole command (creating one costs a worker start), its items
    sorted out to the runs that wait for them."""

    def __init__(self) -> None:
        self._queue: Any = None
        self._boxes: dict[str, collections.deque[tuple[str, Any]]] = collections.defaultdict(
            collections.deque
        )
        self._lock = threading.Lock()

    @property
    def queue(self) -> Any:
        with self._lock:
            if self._queue is None:
                from ray.util.queue import Queue

                self._queue = Queue(actor_options={"num_cpus": 0, "max_restarts": 0})
            return self._queue

    def take(self, tag: str, timeout: float) -> list[tuple[str, Any]]:
        """What arrived for ``tag``, waiting up to ``timeout`` for the queue if nothing had."""
        from ray.util.queue import Empty

        with self._lock:
            box = self._boxes[tag]
            if not box:
                with contextlib.suppress(Empty):
                    queue = self._queue
                    first = queue.get(block=True, timeout=timeout) if timeout > 0 else queue.get_nowait()
                    self._boxes[first[0]].append(first[1])
                    while True:
                        other = queue.get_nowait()
                        self._boxes[other[0]].append(other[1])
            items = list(box)
            box.clear()
            return items


class QueueStream:
    def __init__(
        self, mailbox: Mailbox, options: dict[str, Any], spec: RemoteSpec, inputs: Any, tag: str
    ) -> None:
        import ray

        self._mailbox, self._tag = mailbox, tag
        function = ray.remote(execute_queued).options(**options)
        self._ref = function.remote(spec, inputs, mailbox.queue, tag)
        self._ended = False

    def poll(self, timeout: float) -> list[tuple[str, Any]] | None:
        import ray

        if self._ended:
            raise StopIteration
        items = self._mailbox.take(self._tag, timeout)
        ready, _ = ray.wait([self._ref], timeout=0)
        if ready:
            # Every put finished before the task returned: what is queued now is all there is.
            items += self._mailbox.take(self._tag, 0)
            self._ended = True
            items.append(ray.get(self._ref))
        return items or None

    def cancel(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.cancel(self._ref)
