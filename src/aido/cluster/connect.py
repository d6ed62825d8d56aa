"""Which Ray cluster a run goes to, and the connection to it.

The address is what Ray accepts (``host:6379``, ``ray://host:10001``, ``auto``), from
``--cluster``, else ``AIDO_CLUSTER``, else ``cluster:`` in aido's settings file. Every way
of failing to use it is one ``ClusterUnavailable`` (exit 125) that says what to do.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from aido.errors import ClusterUnavailable
from aido.log import log

if TYPE_CHECKING:
    from aido.config.settings import Settings

ENV = "AIDO_CLUSTER"
RESOURCE = "aido"  # the custom Ray resource a node advertises: how many runs it takes at once
NAMESPACE = "aido"
JOIN_HINT = (
    "start aido nodes with `ray start --address=HEAD:PORT --resources='{\"aido\": 2}'` "
    "on machines with a Docker engine and aido installed (README: Running on a Ray cluster)"
)
PROBE_SECONDS = 3.0
CLIENT_ATTEMPTS = 3  # Ray Client: the head's per-driver server did not start (see _init)
CLIENT_RETRY_SECONDS = 1.0

_connected: str | None = None
_session = 0  # counts connections: what a driver cached under another one is gone


def resolve_address(flag: str | None, settings: Settings | None = None) -> str | None:
    """The cluster to use: the flag, else AIDO_CLUSTER, else the settings file; None: local."""
    for value in (flag, os.environ.get(ENV), settings.cluster if settings else None):
        if value is not None and value.strip():
            return value.strip()
    return None


def token_required() -> bool:
    """Whether this process talks to the cluster with Ray token authentication."""
    return os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token"


def _host_port(address: str) -> tuple[str, int] | None:
    """Where to knock before handing the address to Ray (which may wait a minute on a dead
    one); None for ``auto`` and forms Ray resolves itself."""
    rest = address.removeprefix("ray://")
    if rest == "auto" or ":" not in rest:
        return None
    host, _, port = rest.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterUnavailable(
            f"--cluster {address!r}: expected HOST:PORT, ray://HOST:PORT or auto",
            hint="the head's address as `ray start --head` printed it",
        )
    return host.strip("[]"), int(port)


def _knock(address: str) -> None:
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterUnavailable(
            f"cannot reach the Ray cluster at {address}: {reason}",
            hint="check the address and that its head is up (`ray status --address ...` on it), "
            "or run without --cluster (and without AIDO_CLUSTER) to run locally",
        ) from None


def connect(address: str) -> int:
    """Connect this process to the cluster (once; reconnects when the address changes),
    and make sure some node takes aido runs. Returns the connection's number."""
    global _connected, _session
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(
            "--cluster needs Ray, which is not installed", hint="pip install 'aido[ray]'"
        ) from None
    if _connected != address:
        if ray.is_initialized():
            ray.shutdown()
        _knock(address)
        _quiet_ray()
        _init(ray, address)
        _connected = address
        _session += 1
    if ray.cluster_resources().get(RESOURCE, 0) <= 0:  # type: ignore[no-untyped-call]
        raise ClusterUnavailable(
            f"no node of the Ray cluster at {address} takes aido runs (none has the {RESOURCE!r} resource)",
            hint=JOIN_HINT,
        )
    return _session


def _init(ray: Any, address: str) -> None:
    """``ray.init``, once more when Ray Client's head could not start this driver's server.

    Through ``ray://`` the head starts a server process per driver. On a busy head that
    process sometimes dies as it starts (Ray 2.60: "Starting Ray client server failed",
    seen in CI and in 2 of 9 connections while the machine was starting Docker); Ray says
    so after ~40 s, having closed the half-made connection (``ConnectionAbortedError``), and
    a new connection gets a new server. Every other failure is final: a wrong address, a
    refused token, a version mismatch do not mend on retry."""
    for attempt in range(1, CLIENT_ATTEMPTS + 1):
        try:
            ray.init(
                address=address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=True,
            )
            return
        except ConnectionAbortedError as exc:
            if attempt == CLIENT_ATTEMPTS or not address.startswith("ray://"):
                raise _unavailable(address, exc) from None
            log.debug("ray client init failed: %s", str(exc)[-4000:])
            log.warning(
                "the Ray cluster's head could not start a Ray Client server for this driver "
                "(%s); trying again (%d of %d)",
                _reason(exc),
                attempt + 1,
                CLIENT_ATTEMPTS,
            )
            time.sleep(CLIENT_RETRY_SECONDS * attempt)
        except Exception as exc:  # ConnectionError, RuntimeError, grpc errors: all one answer
            raise _unavailable(address, exc) from None


def _unavailable(address: str, exc: BaseException) -> ClusterUnavailable:
    hint = "check the address and the cluster's token (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN)"
    if _auth_failed(exc):
        reason = "the cluster refused this driver's token (or its lack of one)"
        hint = "set RAY_AUTH_MODE=token and the cluster's RAY_AUTH_TOKEN before starting aido"
    else:
        reason = _reason(exc)
    return ClusterUnavailable(f"cannot connect to the Ray cluster at {address}: {reason}", hint=hint)


def _reason(exc: BaseException) -> str:
    """One line of Ray's error. Ray Client sends the head's whole traceback after a
    heading line ("Initialization failure from server:"): its last line says what failed."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0]
    if first.endswith(":") and len(lines) > 1:
        first = f"{first} {lines[-1]}"
    return first[:300]


def _auth_failed(exc: BaseException) -> bool:
    """Ray says a token problem only in a chained AuthenticationError, after ~20 s."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if "Authentication" in type(seen).__name__ or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _quiet_ray() -> None:
    """Ray prints its cluster's own error messages (a raylet died, ...) straight to this
    process's stderr, between the task's lines. aido reports what they mean for each run
    itself (a lost node is a run recorded node_lost), so they go to aido's debug log."""
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - another Ray layout: its messages stay
        return

    def to_log(data: dict[str, object], *args: object, **kwargs: object) -> None:
        lines = data.get("lines") if isinstance(data, dict) else None
        for line in lines if isinstance(lines, list) else []:
            log.debug("ray: %s", str(line)[:2000])

    if hasattr(worker, "print_to_stdstream"):
        worker.print_to_stdstream = to_log


def disconnect() -> None:
    global _connected
    if _connected is None:
        return
    import ray

    ray.shutdown()
    _connected = None
