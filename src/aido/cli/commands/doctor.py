"""`aido doctor`: can this machine run sandboxes, and how to fix what cannot."""

from __future__ import annotations

import sys

import click

from aido.cli.options import CONTEXT, global_options
from aido.cli.state import AppState, command_state


@click.command("doctor", context_settings=CONTEXT)
@click.option("--no-smoke", is_flag=True, help="Do not start test containers (faster, proves less).")
@global_options
@command_state
def doctor(state: AppState, no_smoke: bool) -> None:
    """Check this machine can run sandboxes, and say how to fix what cannot.

    \b
    Checks: the engine answers (and its version); the runtimes (runc, and gVisor's
    runsc for --isolation gvisor), each proven with a tiny hardened container; that
    memory, CPU and process limits are enforceable; the default images; that the
    workspace is writable. Checks that need an engine that cannot be reached are
    skipped, and counted as skipped, not as passed. Exits 1 if any check failed
    (warnings and skipped checks do not count).
    """
    from aido.doctor import as_json, counts, exit_code, render_rows, run_checks, summary_line

    checks = run_checks(smoke=not no_smoke)
    code = exit_code(checks)
    out = state.renderer
    if out.json_mode:
        payload = {"checks": as_json(checks), "counts": counts(checks)}
        out.envelope("doctor", "success" if code == 0 else "failed", payload, exit_code=code)
    else:
        out.table(["", "CHECK", "DETAIL"], render_rows(checks))
        for check in checks:
            if check.fix and check.status not in ("ok", "skipped"):  # skipped: see what failed
                out.say(f"  {check.name}: fix: {check.fix}")
        if code:
            out.failure(summary_line(checks))
        else:
            out.success(summary_line(checks))
    if code:
        sys.exit(code)
