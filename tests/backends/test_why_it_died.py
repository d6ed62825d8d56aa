"""Why a container the task ran in died, from the engine's events (pure logic: a stand-in
engine answers the /events queries)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aido.backends.docker import probes
from aido.backends.docker.probes import why_it_died


class LateEvents:
    """An engine whose `oom` event shows up only from its ``late``-th /events query on,
    as on a busy machine where the event is logged a moment after the exit."""

    def __init__(self, late: int, action: str = "oom") -> None:
        self.late, self.action, self.queries = late, action, 0

    def stream_json(self, method: str, path: str, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        assert (method, path) == ("GET", "/events")
        self.queries += 1
        if self.queries >= self.late:
            yield {"Action": self.action, "Actor": {"Attributes": {"signal": "9"}}}


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes.time, "sleep", lambda seconds: None)


def test_a_late_oom_event_is_still_found_for_a_sigkilled_task() -> None:
    engine = LateEvents(late=3)
    assert why_it_died(engine, "c1", 0.0, 137) == (True, None)  # type: ignore[arg-type]
    assert engine.queries == 3


def test_an_unexplained_sigkill_is_looked_at_a_bounded_number_of_times() -> None:
    engine = LateEvents(late=99)
    assert why_it_died(engine, "c1", 0.0, 137) == (False, None)  # type: ignore[arg-type]
    assert engine.queries == 1 + len(probes.SIGKILL_EVENT_WAITS)


def test_another_failure_is_looked_at_once() -> None:
    engine = LateEvents(late=2)
    assert why_it_died(engine, "c1", 0.0, 1) == (False, None)  # type: ignore[arg-type]
    assert engine.queries == 1


def test_a_stop_from_outside_is_named() -> None:
    oom, error = why_it_died(LateEvents(late=1, action="kill"), "c1", 0.0, 137)  # type: ignore[arg-type]
    assert not oom and error is not None and "stopped from outside aido (signal 9)" in error
