"""`aido plugins`: the installed plugins (entry-point group ``aido.plugins``), what each
implements and provides, and whether it works."""

from __future__ import annotations

from typing import Any

import click

from aido.cli.options import CONTEXT, global_options
from aido.cli.state import AppState, command_state


@click.command("plugins", context_settings=CONTEXT)
@global_options
@command_state
def plugins(state: AppState) -> None:
    """List the installed plugins: name, distribution and version, the hooks each
    implements, the commands, backends and runtimes it adds, and whether it works.

    \b
    A plugin is broken when it cannot be imported or is not a valid plugin; while
    one is, every `aido run` is refused (exit 126): a plugin may be a security
    policy, so runs fail closed. Fix or uninstall it. A plugin whose command,
    backend or runtime hook fails (or whose runtime is refused: a built-in name, a
    path as interpreter, a bad image) only loses that command, backend or runtime
    (shown as a problem).

    Plugins are Python distributions declaring an `aido.plugins` entry point; see
    the README's "Plugins" section to write one.
    """
    from aido.backends.registry import BUILTIN
    from aido.cli.plugged import AidoGroup
    from aido.plugins.calls import backends
    from aido.plugins.manager import load

    loaded = load()
    root = click.get_current_context().find_root().command
    commands: dict[str, list[str]] = {}
    problems: dict[str, list[str]] = {}
    if isinstance(root, AidoGroup):
        for name, command in root.plugin_commands(warn=False).items():
            owner = getattr(command.callback, "_aido_plugin", None)
            if owner:
                commands.setdefault(owner, []).append(name)
        for plugin, found in root.plugin_problems.items():
            problems.setdefault(plugin, []).extend(found)
    provided, backend_problems = backends()
    for owner, problem in backend_problems.items():
        problems.setdefault(owner, []).append(problem)
    backend_names: dict[str, list[str]] = {}
    for name, (provider, _) in provided.items():
        if name in BUILTIN:
            problems.setdefault(provider.name, []).append(f"backend {name!r} is built in: not replaced")
        else:
            backend_names.setdefault(provider.name, []).append(name)
    from aido.plugins.runtimes import collect

    families, runtime_problems = collect()
    for owner, found in runtime_problems.items():
        problems.setdefault(owner, []).extend(found)
    runtimes: dict[str, list[str]] = {}
    for family in families:
        shown = f"{family.name}:{family.default_version}" if family.default_version else family.name
        runtimes.setdefault(family.plugin, []).append(f"{shown} ({', '.join(family.extensions)})")
    rows: list[dict[str, Any]] = [
        {
            **p.as_json(),
            "commands": sorted(commands.get(p.name, [])),
            "backends": sorted(backend_names.get(p.name, [])),
            "runtimes": [f.as_json() for f in families if f.plugin == p.name],
            "problems": problems.get(p.name, []),
        }
        for p in loaded.plugins
    ]
    out = state.renderer
    if out.json_mode:
        out.envelope("plugins", "success", {"plugins": rows})
        return
    if not rows:
        click.echo("no plugins installed (a plugin is a distribution with an `aido.plugins` entry point)")
        return
    out.table(
        ["NAME", "DISTRIBUTION", "HOOKS", "ADDS", "STATUS"],
        [
            [
                r["name"],
                f"{r['distribution'] or '?'} {r['version'] or ''}".strip(),
                ", ".join(h.removeprefix("aido_") for h in r["hooks"]) or "-",
                ", ".join(
                    [
                        *(f"command {c}" for c in r["commands"]),
                        *(f"backend {b}" for b in r["backends"]),
                        *(f"runtime {rt}" for rt in runtimes.get(r["name"], [])),
                    ]
                )
                or "-",
                r["status"],
            ]
            for r in rows
        ],
    )
    for r in rows:
        if r["error"]:
            click.echo(f"{r['name']}: broken: it {r['error']}")
        for problem in r["problems"]:
            click.echo(f"{r['name']}: {problem}")
