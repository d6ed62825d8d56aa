"""``aido export RUN -o FILE.tar.gz``: a self-contained, reproducible bundle of one
sealed run that `aido verify FILE.tar.gz` (or openssl, jq and sha256sum) checks anywhere."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from aido.cli.commands.verify import key_option, show
from aido.cli.options import CONTEXT, global_options
from aido.cli.state import AppState, command_state
from aido.errors import UsageError


@click.command("export", context_settings=CONTEXT)
@click.argument("run_id", metavar="RUN")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="The bundle to write: FILE.tar.gz (or .tgz, or .tar uncompressed).",
)
@click.option("--sandbox", "sandbox_id", metavar="ID", help="Sandbox of RUN (default: the active one).")
@click.option(
    "--no-outputs",
    is_flag=True,
    help="Leave outputs/ out of the bundle (needed when an output changed after the run).",
)
@key_option
@global_options
@command_state
def export(
    state: AppState,
    run_id: str,
    output: Path,
    sandbox_id: str | None,
    no_outputs: bool,
    key_files: tuple[Path, ...],
) -> None:
    """Write one sealed run as a bundle: its original signed envelope
    (attestation.intoto.json, never re-signed), the signer's public key (signer.pub),
    events.log up to the seal, inputs.json, the run's evidence (runs/RUN/...) and the
    outputs it sealed (outputs/...). Never secrets.json.

    \b
      aido export 3 -o run-003.tar.gz
      aido verify run-003.tar.gz    on any machine that trusts your key

    The run is verified first; a run that does not verify is not exported (exit 1, or 4
    when it is unverifiable), and neither is one whose outputs changed after it (unless
    --no-outputs). The bundle is reproducible: the same run exported twice gives the
    same bytes. It is written under a temporary name and renamed: never half a bundle.
    """
    from aido.cli.workspace import open_manager
    from aido.evidence.bundle import is_bundle_name
    from aido.lifecycle.verify import ExportRefused, trusted
    from aido.store.ids import check_run_id

    run = check_run_id(run_id)
    if not is_bundle_name(output.name):
        raise UsageError(
            f"{output}: a bundle's name ends in .tar.gz, .tgz or .tar", hint="e.g. -o run.tar.gz"
        )
    if output.is_dir() or not output.parent.is_dir():
        raise UsageError(
            f"{output}: " + ("is a directory" if output.is_dir() else f"no directory {output.parent}"),
            hint="give the path of the file to write",
        )
    keys = trusted(key_files)
    manager = open_manager(state)
    out = state.renderer
    state.context["sandbox_id"] = sid = manager.resolve_id(sandbox_id)
    state.context["run_id"] = run
    try:
        done = manager.export(sid, run, output, keys=keys, outputs=not no_outputs)
    except ExportRefused as refused:
        result = refused.verified
        show(out, "export", result, verdict=not refused.drift, error=(refused.message, refused.hint))
        if not out.json_mode:
            out.error(refused.message, refused.hint)
        sys.exit(result.exit_code)
    if out.json_mode:
        out.envelope(
            "export",
            "success",
            {
                "sandbox_id": done.sandbox_id,
                "run_id": done.run_id,
                "path": str(done.path),
                "sha256": done.sha256,
                "members": done.members,
            },
        )
        return
    files = f"{len(done.members)} files, sha256 {done.sha256[:16]}…"
    out.success(f"exported {done.run_id} of sandbox {done.sandbox_id} to {done.path} ({files})")
