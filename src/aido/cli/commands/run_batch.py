"""`aido run` with several tasks (or --parallel N copies of one): a batch, each run's
output shown live with its label, and the combined summary or --json envelope."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aido.cli.outcome import outcome_line, run_payload
from aido.cli.render import Renderer
from aido.cli.text import relative

if TYPE_CHECKING:
    from aido.cli.commands.run import RunOptions
    from aido.cli.observer import TerminalObserver
    from aido.cli.render import PrefixedOutput
    from aido.manager import SandboxManager
    from aido.run.batch import BatchItem, BatchResult
    from aido.run.request import RunHooks


def labels_for(tasks: list[str]) -> list[str]:
    """Each run of a batch by its path as given; a path given more than once (or the copies
    of --parallel N) numbered apart: a.py#1, a.py#2."""
    seen: dict[str, int] = {}
    labels = []
    for task in tasks:
        seen[task] = seen.get(task, 0) + 1
        labels.append(f"{task}#{seen[task]}" if tasks.count(task) > 1 else task)
    return labels


def run_batch(
    manager: SandboxManager,
    out: Renderer,
    observer: TerminalObserver,
    options: RunOptions,
    tasks: list[Path],
    labels: list[str],
    parallel: int,
) -> None:
    """Each task's output is shown live, its lines prefixed with its label (the path as
    given), and each run ends with its outcome line."""
    width = max(len(label) for label in labels)
    sinks: dict[int, PrefixedOutput] = {}

    def hooks_for(item: BatchItem) -> RunHooks:
        if out.json_mode:
            return observer.batch_hooks(None)
        sink = sinks[item.index] = out.prefixed(labels[item.index], width, item.index)
        return observer.batch_hooks(sink)

    def on_result(item: BatchItem) -> None:
        if item.index in sinks:
            sinks.pop(item.index).close()
        if out.json_mode:
            return
        label = labels[item.index]
        if item.result is None:
            out.failure(f"{label}: {item.error}")
            return
        result = item.result
        out.say_result(f"{result.run_id} {label}: {outcome_line(result)}", ok=result.status == "success")

    def on_ready() -> None:
        # Only once every task has been checked: a bad task stops the batch before this line.
        out.say(f"⚡ Running {len(tasks)} tasks, up to {min(parallel, len(tasks))} at a time")

    batch = manager.run_batch(
        tasks,
        list(options.args),
        parallel=parallel,
        sandbox_id=options.sandbox_id,
        timeout=options.timeout,
        env=list(options.env),
        widen=options.widen,
        confirm=observer.confirmer("run the tasks with the permissions above?"),
        on_result=on_result,
        on_ready=on_ready,
        hooks_for=hooks_for,
        **({"cluster": options.cluster, "retries": options.retries} if options.cluster else {}),
    )
    for sink in sinks.values():
        sink.close()
    # The signal that interrupted the batch (if one did) decides its exit code.
    batch = dataclasses.replace(batch, signal_exit=observer.signal_exit())
    _render_batch(out, batch, labels)


def _render_batch(out: Renderer, batch: BatchResult, labels: list[str]) -> None:
    code = batch.process_exit_code
    if out.json_mode:
        out.envelope(
            "run",
            batch.status,
            {
                "exit_code": int(code),
                "parallel": batch.parallel,
                "duration_ms": batch.duration_ms,
                "counts": batch.counts,
                "runs": [
                    {
                        "task": str(item.task),
                        "label": labels[item.index],
                        "status": item.status,
                        "exit_code_of_run": item.exit_code,
                    }
                    | (run_payload(item.result) if item.result is not None else {})
                    | (
                        {"error": {"code": item.error.code, "message": item.error.message}}
                        if item.error is not None
                        else {}
                    )
                    for item in batch.items
                ],
            },
        )
    else:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(batch.counts.items()))
        out.say_result(
            f"{len(batch.items)} runs in {batch.duration_ms / 1000:.2f}s: {counts}",
            ok=batch.status == "success",
        )
        if batch.items and batch.items[0].result is not None:
            out.say(
                f"🧾 Evidence: {relative(batch.items[0].result.evidence_dir.parent)}/ (one folder per run)"
            )
    if code:
        sys.exit(int(code))
