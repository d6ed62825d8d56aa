"""Where a run meets the plugins (aido.plugins): the pre-run hooks at the end of planning,
which may refuse the run, and the post-run hooks in collect, whose files aido writes into
the run's evidence before it is sealed. Plugins are shown frozen views and never get a
path to write to; every refusal, file and failure is recorded in the sandbox's events.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido import fs
from aido.errors import RunRefused
from aido.evidence.events import record_event
from aido.log import log
from aido.values import dataclass, field

if TYPE_CHECKING:
    from aido.backends.base import ExecOutcome
    from aido.run.plan import RunPlan
    from aido.run.verdict import Verdict

PLUGINS_DIR = "plugins"  # runs/<run>/plugins/<plugin>/<file>


def check_pre_run(plan: RunPlan) -> None:
    """Ask every plugin whether this run may start; a refusal (or a broken plugin: runs
    fail closed) is recorded as a ``run_refused`` event and raised as RunRefused."""
    if not _any_plugin():
        return  # the common case: nothing but a listing of sys.path was paid for
    from aido.plugins.calls import pre_run
    from aido.plugins.views import PlannedRun, freeze

    digest = hashlib.sha256(plan.source).hexdigest()
    view = PlannedRun(
        sandbox_id=plan.record.id,
        task=plan.task.name,
        task_path=str(plan.task),
        task_sha256=digest,
        runtime=plan.choice.runtime,
        image=plan.choice.image,
        args=tuple(plan.args),
        env_names=tuple(sorted({*plan.settings.env, *plan.env})),
        timeout_seconds=plan.timeout_seconds,
        isolation=plan.settings.isolation,
        widening=freeze(plan.widen.as_dict()),
        warnings=tuple(plan.warnings),
        config=freeze(plan.record.config),
    )
    refusal = pre_run(view)
    if refusal is None:
        return
    record_event(
        plan.paths.events,
        "run_refused",
        sandbox_id=plan.record.id,
        task=plan.task.name,
        task_sha256="sha256:" + digest,
        plugin=refusal.plugin,
        reason=refusal.reason,
        plugin_failed=refusal.failed or None,
    )
    if refusal.failed:
        raise RunRefused(
            f"{refusal.label} failed, so the run is refused (runs fail closed: a plugin may be a "
            f"security policy): {refusal.reason}",
            hint="fix or uninstall the plugin; `aido plugins` lists them with their errors",
            plugin=refusal.plugin,
            reason=refusal.reason,
        )
    raise RunRefused(
        f"{refusal.label} refused the run: {refusal.reason}",
        hint="the refusal is recorded in the sandbox's events.log (run_refused); "
        "`aido plugins` lists the plugins",
        plugin=refusal.plugin,
        reason=refusal.reason,
    )


def _any_plugin() -> bool:
    from aido.plugins.manager import load

    return bool(load().plugins)


@dataclass
class Added:
    """What the post-run hooks added: run-directory paths for the summary's artifacts, and
    per plugin its files or its error, for the summary's ``plugins`` list."""

    artifacts: list[str] = field(default_factory=list)
    plugins: list[dict[str, Any]] = field(default_factory=list)


def add_plugin_evidence(
    plan: RunPlan,
    run_id: str,
    run_dir: Path,
    outcome: ExecOutcome,
    verdict: Verdict,
    changes: list[dict[str, object]],
) -> Added:
    """Run the post-run hooks and write their files under runs/<run>/plugins/<plugin>/.
    A failing plugin adds nothing but a ``plugin_failed`` event and a warning."""
    added = Added()
    if not _any_plugin():
        return added
    from aido.plugins.calls import post_run
    from aido.plugins.views import FinishedRun, freeze

    view = FinishedRun(
        sandbox_id=plan.record.id,
        run_id=run_id,
        task=plan.task.name,
        status=verdict.status,
        exit_code=outcome.exit_code,
        exit_code_of_run=verdict.exit_code,
        duration_ms=outcome.duration_ms,
        timed_out=outcome.timed_out,
        oom_killed=outcome.oom_killed,
        run_dir=run_dir,
        outputs_dir=plan.paths.outputs,
        changes=freeze(changes),
        config=freeze(plan.record.config),
    )
    events = plan.paths.events
    for given in post_run(view):
        error = given.error
        written: list[str] = []
        if error is None:
            try:
                _write(run_dir, given.plugin, given.files, written)
            except OSError as exc:
                error = f"its files could not be written: {exc.strerror or exc}"
        added.artifacts += [f"{PLUGINS_DIR}/{given.plugin}/{name}" for name in written]
        if written:
            record_event(
                events,
                "plugin_evidence",
                sandbox_id=plan.record.id,
                run_id=run_id,
                plugin=given.plugin,
                files=written,
                bytes=sum(len(data) for name, data in given.files if name in written),
            )
        entry: dict[str, Any] = {"plugin": given.plugin, "files": written}
        if error is not None:
            entry["error"] = error
            log.warning(
                "%s: aido_post_run failed: %s (the run's evidence is complete without it)", given.label, error
            )
            record_event(
                events,
                "plugin_failed",
                sandbox_id=plan.record.id,
                run_id=run_id,
                plugin=given.plugin,
                hook="aido_post_run",
                error=error,
            )
        added.plugins.append(entry)
    return added


def _write(run_dir: Path, plugin: str, files: tuple[tuple[str, bytes], ...], written: list[str]) -> None:
    """Write one plugin's (checked) files, each created exclusively, never through a link;
    ``written`` names those written (all of them, unless this raises)."""
    base = run_dir / PLUGINS_DIR
    try:
        os.mkdir(base, 0o755)
    except FileExistsError:
        pass
    os.mkdir(base / plugin, 0o755)
    for name, data in files:
        fs.write_new(base / plugin / name, data)
        written.append(name)
