"""``aido verify [RUN | SANDBOX | BUNDLE]``: check sealed evidence (signatures by trusted
keys, every digest, the events chain, the agreement of the records, nothing extra)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aido.cli.options import CONTEXT, global_options
from aido.cli.state import AppState, command_state
from aido.errors import UsageError

if TYPE_CHECKING:
    from aido.cli.render import Renderer
    from aido.lifecycle.verify import Verified

_COUNTED = (("FAIL", "failure"), ("WARN", "warning"))
_VERDICT_LINE = {
    "verified": "verified",
    "tampered": "TAMPERED or invalid",
    "unverifiable": "unverifiable",
}


def key_option(func: Any) -> Any:
    return click.option(
        "--key",
        "key_files",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        metavar="PEM",
        help="Also trust this public key (SPKI PEM) for this command; repeatable.",
    )(func)


@click.command("verify", context_settings=CONTEXT)
@click.argument("target", required=False, metavar="[RUN | SANDBOX | BUNDLE]")
@click.option("--sandbox", "sandbox_id", metavar="ID", help="Sandbox of RUN (default: the active one).")
@click.option("--strict", is_flag=True, help="Warnings and unverifiable records fail too (exit 1).")
@key_option
@global_options
@command_state
def verify(
    state: AppState, target: str | None, sandbox_id: str | None, strict: bool, key_files: tuple[Path, ...]
) -> None:
    """Check that sealed evidence is exactly what aido recorded: the signature (by a key
    you trust), every file's SHA-256, the events.log chain, summary.json, sandbox.json
    and the run index against the sealed record, run numbers without gaps, and no file
    that should not be there.

    \b
      aido verify                  the active sandbox: every run
      aido verify run-003          one run (also: 3; --sandbox ID for another sandbox)
      aido verify SANDBOX_ID       a sandbox, live or destroyed (its archive)
      aido verify run.tar.gz       a bundle from `aido export`, without any workspace

    \b
    Exit codes: 0 verified · 1 tampered or invalid (each finding names the file, what
    was expected and what was found) · 4 unverifiable (a run not sealed or still
    running, a signature by a key you do not trust: `aido key trust PUB` or --key) ·
    2 usage · 3 not found. Lines written to events.log after the last seal are
    reported as a warning (--strict: a failure).
    """
    from aido.lifecycle.verify import trusted, verify_bundle

    keys = trusted(key_files)
    out = state.renderer
    bundle, run, sandbox = _target(target, sandbox_id)
    if bundle is not None:
        result = verify_bundle(bundle, keys=keys, strict=strict)
    else:
        from aido.cli.workspace import open_manager

        manager = open_manager(state)
        state.context["sandbox_id"] = sid = manager.resolve_id(sandbox)
        result = manager.verify(sid, run, keys=keys, strict=strict)
    show(out, "verify", result)
    sys.exit(result.exit_code)


def _target(target: str | None, sandbox_id: str | None) -> tuple[Path | None, str | None, str | None]:
    """(bundle, run, sandbox) from the argument: a bundle by its name or as an existing file,
    else a sandbox id (12 letters or digits), else a run id (run-003 or 3)."""
    from aido.evidence.bundle import is_bundle_name
    from aido.store.ids import check_run_id, is_sandbox_id

    if target is None:
        return None, None, sandbox_id
    if is_bundle_name(target):
        return Path(target), None, None
    if is_sandbox_id(target):
        if sandbox_id and sandbox_id != target:
            raise UsageError(f"{target} is a sandbox, and --sandbox names another", hint="give one sandbox")
        return None, None, target
    try:
        return None, check_run_id(target), sandbox_id
    except UsageError:
        if Path(target).is_file():
            return Path(target), None, None
        raise UsageError(
            f"{target!r} is not a run (run-003 or 3), a sandbox id or a bundle (.tar.gz, .tgz, .tar)",
            hint="see `aido verify --help`",
        ) from None


def summary_line(result: Verified) -> str:
    what = (
        f"bundle {result.bundle}"
        if result.bundle
        else f"{result.runs[0]} of sandbox {result.sandbox_id}"
        if len(result.runs) == 1
        else f"sandbox {result.sandbox_id} ({len(result.runs)} runs)"
    )
    counts = {word: sum(f.level == level for f in result.findings) for level, word in _COUNTED}
    detail = ", ".join(f"{n} {word}{'s' if n > 1 else ''}" for word, n in counts.items() if n)
    signers = f"; signed by key {', '.join(k[:16] for k in result.signers)}" if result.signers else ""
    return (
        f"{_VERDICT_LINE.get(result.verdict, result.verdict)}: {what}"
        + (f" ({detail})" if detail else "")
        + (signers if result.exit_code == 0 else "")
    )


def show(
    out: Renderer,
    command: str,
    result: Verified,
    *,
    verdict: bool = True,
    error: tuple[str, str | None] | None = None,
) -> None:
    """The findings, one line each, then the verdict (or one JSON envelope; ``error``:
    its error's message and hint instead of the verdict's)."""
    from aido.cli.show import clean

    if out.json_mode:
        data: dict[str, Any] = {
            "exit_code": result.exit_code,
            "verdict": result.verdict,
            "sandbox_id": result.sandbox_id,
            "runs": result.runs,
            "bundle": result.bundle,
            "signers": result.signers,
            "findings": [f.as_json() for f in result.findings],
        }
        problem = None
        if error is not None:
            problem = {"code": "not_exported", "message": error[0], "hint": error[1]}
        elif result.exit_code:
            hint = (
                "trust the signer (`aido key trust signer.pub`) or give --key PEM, if you know whose it is"
                if any(f.code == "untrusted_key" for f in result.findings)
                else None
            )
            problem = {"code": result.verdict, "message": summary_line(result), "hint": hint}
        out.envelope(command, "success" if not result.exit_code else "error", data, problem)
        return
    for finding in result.findings:
        click.echo(clean(finding.line()))
    if verdict:
        out.say_result(clean(summary_line(result)), ok=result.exit_code == 0)
