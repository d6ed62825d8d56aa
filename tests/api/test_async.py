"""aido.AsyncSandbox end to end: concurrent runs of one sandbox, output delivered on the
event loop, cancellation that stops the container and records the run as interrupted."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import aido
from tests.helpers.engine import assert_no_containers, labelled_containers

pytestmark = pytest.mark.docker

# Each task waits for the other's flag in the shared /work: both finish only if they overlap.
MEET = (
    "import os, sys, time\nme, other = sys.argv[1:]\nopen(f'/work/flag-{me}', 'w').close()\n"
    "deadline = time.monotonic() + 30\n"
    "while not os.path.exists(f'/work/flag-{other}'):\n"
    "    if time.monotonic() > deadline: sys.exit('never met ' + other)\n"
    "    time.sleep(0.05)\n"
    "print(f'{me} met {other}')\n"
)


def test_async_sandbox_runs_two_snippets_concurrently(engine: None, tmp_path: Path) -> None:
    # Each run's callback keeps its own list: the two runs' chunks interleave at any byte.
    async def main() -> tuple[list[aido.RunOutcome], str, list[tuple[str, bool]], list[tuple[str, bool]]]:
        loop_thread = threading.get_ident()
        seen_a: list[tuple[str, bool]] = []
        seen_b: list[tuple[str, bool]] = []

        async def on_stdout(text: str) -> None:  # a coroutine function is awaited on the loop
            seen_a.append((text, threading.get_ident() == loop_thread))

        async with aido.AsyncSandbox(runtime="python:3.11", workspace=tmp_path) as sb:
            outcomes = await asyncio.gather(
                sb.run_code(MEET, ["a", "b"], on_stdout=on_stdout),
                sb.run_code(
                    MEET,
                    ["b", "a"],
                    on_stdout=lambda text: seen_b.append((text, threading.get_ident() == loop_thread)),
                ),
            )
            again = await aido.AsyncSandbox.open(sb.id, workspace=tmp_path)
            assert [r.run_id for r in await again.runs()] == ["run-001", "run-002"]
            return outcomes, sb.id, seen_a, seen_b

    outcomes, sandbox_id, seen_a, seen_b = asyncio.run(main())
    assert [o.stdout for o in outcomes] == ["a met b\n", "b met a\n"]
    assert all(o.ok for o in outcomes)
    assert "".join(text for text, _ in seen_a) == "a met b\n"
    assert "".join(text for text, _ in seen_b) == "b met a\n"
    assert all(on_loop for _, on_loop in seen_a + seen_b)
    assert not (tmp_path / ".aido" / "sandboxes" / sandbox_id).exists()  # destroyed on exit
    assert_no_containers(sandbox_id)


def test_cancelling_an_awaited_run_stops_it_as_interrupted(engine: None, tmp_path: Path) -> None:
    async def main() -> tuple[aido.AsyncSandbox, list[aido.RunInfo], list[str]]:
        async with aido.AsyncSandbox(runtime="python:3.11", workspace=tmp_path, keep=True) as sb:
            started = asyncio.Event()

            def on_stdout(text: str) -> None:
                started.set()

            task = asyncio.create_task(
                sb.run_code("import time\nprint('up', flush=True)\ntime.sleep(60)", on_stdout=on_stdout)
            )
            await asyncio.wait_for(started.wait(), timeout=60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # By the time the cancellation arrives, the container is gone and the run recorded.
            containers = labelled_containers(sb.id)
            return sb, await sb.runs(), containers

    sb, runs, containers = asyncio.run(main())
    assert containers == []
    [run] = runs
    assert run.status == "interrupted"
    assert run.duration is not None and run.duration < 30
    outcome = sb.sync.get_run(run.run_id)
    assert outcome.interrupted and outcome.stdout == "up\n" and not outcome.ok
    sb.sync.destroy()
