"""`aido key`: the key that seals runs, and the keys whose seals `aido verify` accepts."""

from __future__ import annotations

from pathlib import Path

import click

from aido.cli.observer import TerminalObserver
from aido.cli.options import CONTEXT, global_options
from aido.cli.state import AppState, command_state
from aido.errors import NotConfirmed, UsageError


@click.group("key", context_settings=CONTEXT)
def key() -> None:
    """Show your signing key; trust, list and forget others' public keys.

    \b
    Every run is sealed with your key (an Ed25519 key made on first use, kept in
    ~/.config/aido/keys/ with mode 0600; AIDO_SIGNING_KEY names another one, for CI).
    `aido verify` accepts seals by your key and by the keys you trust here: give your
    public key (`aido key show --pem > me.pub`) to whoever verifies your bundles, and
    trust theirs with `aido key trust their.pub`.
    """


@key.command("show", context_settings=CONTEXT)
@click.option("--pem", "pem_only", is_flag=True, help="Print only the public key in PEM, to share or save.")
@global_options
@command_state
def key_show(state: AppState, pem_only: bool) -> None:
    """Show the public key that seals your runs and its id (makes the key on first use)."""
    from aido.evidence.keys import describe, key_dir, signing_key

    existed = (key_dir() / "signing.key").exists()
    signer = signing_key()
    out = state.renderer
    info = describe(signer.public)
    if out.json_mode:
        out.envelope("key show", "success", {**info, "created": not existed})
        return
    if pem_only:
        click.echo(signer.public.pem(), nl=False)
        return
    if not existed and not signer.source.startswith("AIDO_SIGNING_KEY"):
        out.say(f"created a signing key in {signer.source}")
    out.say(f"key id:  {signer.public.keyid}")
    out.say(f"source:  {signer.source}")
    click.echo(signer.public.pem(), nl=False)


@key.command("list", context_settings=CONTEXT)
@global_options
@command_state
def key_list(state: AppState) -> None:
    """List the keys whose seals `aido verify` accepts: yours and the ones you trusted."""
    from aido.evidence.keys import describe, trusted_keys

    keys = trusted_keys()
    out = state.renderer
    if out.json_mode:
        out.envelope("key list", "success", {"keys": [describe(k) for k in keys.values()]})
        return
    if not keys:
        out.say("no keys yet: your key is made by your first run (or `aido key show`)")
        return
    out.table(["KEY ID", "SOURCE"], [[k.keyid[:16], k.source] for k in keys.values()])


@key.command("trust", context_settings=CONTEXT)
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-y", "--yes", is_flag=True, help="Trust without asking (needed without a terminal).")
@global_options
@command_state
def key_trust(state: AppState, path: Path, yes: bool) -> None:
    """Accept seals made with the public key in PATH (a PEM file, e.g. a colleague's
    or a CI signer's `aido key show --pem`).

    Check the key id with its owner first: anything sealed with that key will verify.
    Asks y/N (without a terminal it needs --yes).
    """
    from aido.evidence.keys import public_key_from_pem, trust

    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise UsageError(
            f"cannot read {path}: {exc.strerror}", hint="give the path of a PEM public key"
        ) from None
    candidate = public_key_from_pem(text, str(path))
    confirm = TerminalObserver(state.renderer, state, yes=yes).confirmer("trust this key?")
    warning = f"seals made with key {candidate.keyid} ({path}) will verify as genuine"
    if not confirm([warning]):
        raise NotConfirmed("the key was not trusted", hint="check its key id with its owner, then pass --yes")
    public, kept, new = trust(path)
    out = state.renderer
    if out.json_mode:
        out.envelope("key trust", "success", {"keyid": public.keyid, "path": str(kept), "new": new})
        return
    out.success(f"trusted key {public.keyid}" + ("" if new else " (already trusted)") + f": {kept}")


@key.command("forget", context_settings=CONTEXT)
@click.argument("keyid")
@global_options
@command_state
def key_forget(state: AppState, keyid: str) -> None:
    """Stop trusting a key you trusted (give its id, or its first 16 characters)."""
    from aido.evidence.keys import trusted_dir, trusted_keys

    matches = [k for k in trusted_keys().values() if k.keyid.startswith(keyid.lower()) and len(keyid) >= 8]
    kept = [Path(k.source) for k in matches if Path(k.source).parent == trusted_dir()]
    if not kept:
        raise UsageError(
            f"no trusted key {keyid}",
            hint="list them with `aido key list` (your own key cannot be forgotten)",
        )
    for path in kept:
        path.unlink(missing_ok=True)
    out = state.renderer
    if out.json_mode:
        out.envelope("key forget", "success", {"forgotten": [str(p) for p in kept]})
        return
    out.success(f"no longer trusted: {', '.join(p.name for p in kept)}")
