"""`aido cluster`: the Ray cluster `aido run --cluster` sends runs to: its nodes, and their keys.

Nothing here imports Ray at module level: `aido --help` lists this group without loading it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from aido.cli.observer import TerminalObserver
from aido.cli.options import CONTEXT, global_options
from aido.cli.state import AppState, command_state
from aido.errors import NotConfirmed, UsageError

# = aido.cluster.probe.PROBE_TIMEOUT (a test checks): importing that module here would cost
# every aido command ~13 ms at start-up, for a default only --help shows.
PROBE_TIMEOUT = 30.0
F = TypeVar("F", bound=Callable[..., Any])


@click.group("cluster", context_settings=CONTEXT)
def cluster() -> None:
    """See and trust the nodes of a Ray cluster that aido runs on (`aido run --cluster`).

    \b
    A node is a machine with a Docker engine, aido (the same version as the
    driver's) and Ray (`pip install 'aido[ray]'`). It takes aido runs when it
    advertises the Ray resource `aido`, whose count is how many runs it takes
    at once; nodes without it (the head, below) never get one. Use token
    authentication: without it, anything that can reach the cluster's ports can
    run code on every node, and every node holds Docker.

    \b
    Once: make a token and copy it to every node and driver, kept secret:
      ray get-auth-token --generate          # writes ~/.ray/auth_token
    The head (it takes no runs itself):
      RAY_AUTH_MODE=token ray start --head --port=6379
    Each node (2: the runs it takes at once; its user's aido key seals them):
      RAY_AUTH_MODE=token ray start --address=HEAD:6379 --resources='{"aido": 2}'
    The driver (the machine that runs aido):
      export RAY_AUTH_MODE=token             # the token: ~/.ray/auth_token or RAY_AUTH_TOKEN
      aido cluster status --cluster HEAD:6379
      aido cluster trust --cluster HEAD:6379 # accept the nodes' seals, once per node key
      aido run --cluster HEAD:6379 task.py

    \b
    The address: --cluster, else AIDO_CLUSTER, else `cluster:` in aido's settings
    file; HOST:PORT on a machine that runs a Ray node, ray://HOST:10001 (Ray
    Client) from anywhere else.
    """


def _address(state: AppState, flag: str | None) -> str:
    from aido.cli.workspace import load_settings
    from aido.cluster.connect import resolve_address
    from aido.store.workspace import Workspace

    address = resolve_address(flag, load_settings(state, Workspace.find()))
    if address is None:
        raise UsageError(
            "no cluster given",
            hint="pass --cluster HOST:PORT (or ray://HOST:10001), set AIDO_CLUSTER, "
            "or `cluster:` in aido's settings file",
        )
    return address


def _cluster_options(func: F) -> F:
    func = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=PROBE_TIMEOUT,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for the nodes' answers; a node silent that long is shown as such.",
    )(func)
    return click.option(
        "--cluster",
        "address",
        metavar="ADDRESS",
        help="The Ray cluster: HOST:PORT, ray://HOST:10001 or auto (default: AIDO_CLUSTER, settings).",
    )(func)


@cluster.command("status", context_settings=CONTEXT)
@_cluster_options
@global_options
@command_state
def cluster_status(state: AppState, address: str | None, timeout: float) -> None:
    """List the cluster's nodes: engine, isolation levels, capacity, runs in flight, key.

    \b
    ENGINE     the node's Docker engine as aido sees it there ("unreachable": its
               runs would fail; "no answer": the node did not reply in --timeout)
    ISOLATION  the `isolation:` a sandbox may ask for there: default (runc), gvisor
    CAPACITY   the node's `aido` resource: runs it takes at once (0: never gets runs)
    IN FLIGHT  aido runs holding a slot on it now
    KEY        the key that seals its runs, and whether this machine trusts it
               (untrusted: its runs are refused here; see `aido cluster trust`)

    Exits 125 if the cluster cannot be reached or no node takes aido runs.
    """
    from aido.cluster.status import COLUMNS, problems, summary, table_rows
    from aido.cluster.status import cluster_status as status

    data = status(_address(state, address), timeout)
    out = state.renderer
    for warning in data["warnings"]:
        out.warn(warning)
    if out.json_mode:
        out.envelope("cluster status", "success", data)
        return
    out.table(COLUMNS, table_rows(data["nodes"]))
    for line in problems(data["nodes"]):
        out.say(f"  {line}")
    out.say(summary(data))


@cluster.command("trust", context_settings=CONTEXT)
@_cluster_options
@click.option("-y", "--yes", is_flag=True, help="Trust without asking (needed without a terminal).")
@global_options
@command_state
def cluster_trust(state: AppState, address: str | None, timeout: float, yes: bool) -> None:
    """Trust the keys that seal runs on the cluster's aido nodes.

    Asks every node with the `aido` resource for its public key (each node seals
    its runs with the key of the user its Ray node runs as), shows the key ids
    with the nodes that use them, and after y/N (or --yes; needed without a
    terminal) adds the new ones to your trusted keys, as `aido key trust` does:
    the runs those nodes seal then verify here. `aido key forget` undoes it.
    """
    from aido.cluster.connect import token_required
    from aido.cluster.status import UNAUTHENTICATED_KEYS, describe_key, node_keys, trust_keys
    from aido.cluster.status import cluster_status as status

    data = status(_address(state, address), timeout)
    out = state.renderer
    for warning in data["warnings"]:
        out.warn(warning)
    entries, missing = node_keys(data["nodes"])
    for line in missing:
        out.warn(f"cannot trust {line}")
    fresh = [e for e in entries if not e["trusted"]]
    if fresh:
        warnings = [f"seals made with {describe_key(e)} will verify as genuine" for e in fresh]
        if not token_required():
            warnings.insert(0, UNAUTHENTICATED_KEYS)
        confirm = TerminalObserver(out, state, yes=yes).confirmer(
            f"trust {'this key' if len(fresh) == 1 else f'these {len(fresh)} keys'}?"
        )
        if not confirm(warnings):
            raise NotConfirmed("no key was trusted", hint="check the key ids on the nodes, then pass --yes")
    trust_keys(entries)
    if out.json_mode:
        keys = [{k: v for k, v in e.items() if k != "public_key"} for e in entries]
        out.envelope(
            "cluster trust", "success", {"address": data["address"], "keys": keys, "missing": missing}
        )
        return
    for entry in entries:
        if entry["new"]:
            out.success(f"trusted {describe_key(entry)}: {entry['path']}")
        else:
            out.say(f"already trusted: {describe_key(entry)}")
