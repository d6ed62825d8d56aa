"""A run's egress allowlist on Docker: one internal network and one Squid proxy per run.

The task's container is attached only to a network of its own, created ``--internal`` with
``inhibit_ipv4`` (the host holds no address on it, so there is no default route and no
host service to reach) and an explicit, random /28 in 198.18.0.0/15 (RFC 2544 benchmark
space: never routed on the internet, refused by the proxy as a destination, and outside
Docker's address pools, so concurrent runs never exhaust them). The only other member is
the proxy, which is also attached to the upstream network (``AIDO_EGRESS_NETWORK``, the
default bridge unless the operator names another) and decides every request by the config
aido.egress.squid generates. The task's resolver is 127.0.0.1 in its own namespace, so
Docker's embedded DNS forwards nothing anywhere (CVE-2024-29018), and IPv6 is disabled in
it. Both are created per run and removed with it, so concurrent runs cannot reach each
other and each run's proxy log is exactly that run's traffic; a sweep removes what a
crashed aido left (labels: aido.run, aido.egress).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aido.backends.base import EgressRecord, ExecOutcome, ExecRequest, Guard, OutputSink
from aido.backends.docker.engine import EngineError
from aido.backends.docker.hostconfig import NO_IPV6
from aido.egress import IMAGE
from aido.errors import ImageUnavailable, RuntimeFailure, RuntimeUnavailable
from aido.values import dataclass

if TYPE_CHECKING:
    from aido.backends.docker.adapter import DockerBackend

IMAGE_HINT = "build it with scripts/bootstrap.sh (offline, from Debian's squid-openssl package)"
IMAGE_BUILD = "squid-openssl-1"  # the image's org.aido.egress label (scripts/bootstrap.sh EGRESS_BUILD)
SUBNETS = ipaddress.ip_network("198.18.0.0/15")
PROXY_USER = "proxy"  # Squid must start unprivileged: as root without capabilities it crashes
READY_LINE = b"HTTP Socket connections at"  # "Accepting SSL bumped HTTP Socket connections at ..."
SHUTDOWN_LINE = b"Preparing for shutdown"
READY_SECONDS = 15.0
STOP_SECONDS = 5.0  # for Squid to begin (or, the task maybe alive, finish) its shutdown
LOG_CAP = 64 << 20  # bytes of access log read back; a flood past it is reported, not kept
LOG_LABEL = {"max-size": "64m", "max-file": "2"}  # what the engine keeps on the host's disk


@dataclass(frozen=True)
class Proxy:
    """One run's egress: its internal network and its proxy container, both running."""

    network_id: str
    network: str
    subnet: str
    address: str  # the proxy's address on the internal network
    container_id: str
    config: str
    image_id: str
    upstream: str
    conf_dir: str  # the host directory holding squid.conf for the proxy's bind mount

    @property
    def url(self) -> str:
        from aido.egress.squid import PORT

        return f"http://{self.address}:{PORT}"

    def task_env(self) -> dict[str, str]:
        """The usual proxy variables, in both cases, so pip, npm, curl, requests just work;
        loopback stays direct (a task's own local servers)."""
        env = {}
        for name in ("http_proxy", "https_proxy", "all_proxy"):
            env[name] = env[name.upper()] = self.url
        for name in ("npm_config_proxy", "npm_config_https_proxy"):
            env[name] = self.url
        env["no_proxy"] = env["NO_PROXY"] = "localhost,127.0.0.1,::1"
        return env

    def facts(self) -> dict[str, Any]:
        return {
            "image": IMAGE,
            "image_id": self.image_id,
            "network": self.network,
            "subnet": self.subnet,
            "proxy": self.url,
            "upstream_network": self.upstream,
            "task_dns": "127.0.0.1 (nothing answers: names are resolved by the proxy only)",
        }


def upstream_network() -> str:
    """Where the proxy reaches the internet from: the operator's AIDO_EGRESS_NETWORK (a
    user-defined network), else Docker's default bridge. Never the host's namespace."""
    name = os.environ.get("AIDO_EGRESS_NETWORK") or "bridge"
    if name in ("host", "none") or name.startswith("container:"):
        raise RuntimeFailure(
            f"AIDO_EGRESS_NETWORK={name!r} cannot carry the egress proxy",
            hint="name a Docker network (bridge or one you created), or unset it",
        )
    return name


def upstream_dns() -> list[str]:
    """The proxy's resolvers (AIDO_EGRESS_DNS, comma-separated addresses); empty: Docker's."""
    found = []
    for item in (os.environ.get("AIDO_EGRESS_DNS") or "").split(","):
        if item.strip():
            try:
                found.append(str(ipaddress.ip_address(item.strip())))
            except ValueError:
                raise RuntimeFailure(
                    f"AIDO_EGRESS_DNS: {item.strip()!r} is not an IP address",
                    hint="give resolver addresses separated by commas, or unset it",
                ) from None
    return found


def run(
    backend: DockerBackend, request: ExecRequest, on_output: OutputSink, guard: Guard | None
) -> ExecOutcome:
    """Run the task behind its own proxy; the outcome carries the proxy's record. Whatever
    happens, the network and the proxy are removed before this returns (or raises)."""
    proxy = up(backend, request)
    try:
        task = replace(request, env={**request.env, **proxy.task_env()})
        outcome = backend.run_cold(task, on_output, guard, attach=proxy.network)
    except BaseException:
        down(backend, proxy)
        raise
    record, left = down(backend, proxy, task_gone=not outcome.container_left)
    return replace(outcome, egress=record, container_left=outcome.container_left or left)


def up(backend: DockerBackend, request: ExecRequest) -> Proxy:
    from aido.egress.allowlist import parse_allowlist
    from aido.egress.squid import config

    entries = parse_allowlist(list(request.egress), allow_ip_ranges=True)
    upstream, dns = upstream_network(), upstream_dns()
    image_id = _image(backend)
    labels = dict(request.labels)
    network_id, network, subnet = _create_network(backend, f"{request.name}-egress", labels)
    conf_dir = tempfile.mkdtemp(prefix="aido-egress-")
    container_id = ""
    try:
        address = str(next(ipaddress.ip_network(subnet).hosts()) + 1)  # .1 is the (unused) gateway
        # Listen on the internal network only: the upstream network's other containers must
        # not even reach the proxy's port (they would be refused, but need not get that far).
        text = config(entries, subnet, listen=address)
        conf = Path(conf_dir) / "squid.conf"
        conf.write_text(text)
        # Squid reads it as its own unprivileged user; it holds the allowlist, no secret.
        os.chmod(conf_dir, 0o755)  # noqa: S103
        os.chmod(conf, 0o644)
        container_id = _create_proxy(backend, request, labels, network, address, str(conf), dns)
        backend.call("POST", f"/networks/{quote(upstream)}/connect", body={"Container": container_id})
        backend.call("POST", f"/containers/{container_id}/start")
        proxy = Proxy(network_id, network, subnet, address, container_id, text, image_id, upstream, conf_dir)
        _wait_ready(backend, proxy)
        return proxy
    except BaseException as exc:
        _remove(backend, container_id, network_id, conf_dir)
        if isinstance(exc, EngineError):
            raise RuntimeFailure(f"could not start the egress proxy: {exc.message}") from None
        raise


def _image(backend: DockerBackend) -> str:
    """The proxy image's id, once it is known to be the build this aido configures (one
    whose Squid can peek at TLS: scripts/bootstrap.sh labels it)."""
    found = backend.image_inspect(IMAGE)
    if found is None:
        raise ImageUnavailable(f"the egress proxy's image {IMAGE} is missing", hint=IMAGE_HINT)
    build = ((found.get("Config") or {}).get("Labels") or {}).get("org.aido.egress")
    if build != IMAGE_BUILD:
        raise ImageUnavailable(
            f"the egress proxy's image {IMAGE} is build {build!r}, this aido needs {IMAGE_BUILD!r}",
            hint=IMAGE_HINT,
        )
    return str(found["Id"])


def down(backend: DockerBackend, proxy: Proxy, *, task_gone: bool = True) -> tuple[EgressRecord, bool]:
    """Read the proxy's log, then remove it and the network. Returns the record and whether
    something was left for a sweep.

    Squid logs a request when its connection closes. Once the task's container is gone
    (``task_gone``), every client connection has been closed by the task's death (the
    kernel closes its sockets before the namespace goes), so the proxy is told to shut
    down and, as soon as it says so (its signal is handled after the I/O that came
    before), its log is complete: it is read and the proxy killed, without waiting the
    second or two Squid's own shutdown takes. If the task may still run (the engine failed
    to remove it), the proxy is let shut down fully, which closes and logs what is open."""
    facts = proxy.facts()
    cid = proxy.container_id
    error = _died(backend, cid)
    if error is None:
        with contextlib.suppress(EngineError, RuntimeUnavailable):
            backend.call("POST", f"/containers/{cid}/kill", query={"signal": "TERM"})
            if task_gone:
                _wait_for_line(backend, cid, SHUTDOWN_LINE, STOP_SECONDS)
            else:
                backend.call("POST", f"/containers/{cid}/wait", timeout=STOP_SECONDS)
    log, dropped = b"", 0
    try:
        log, dropped = _read_log(backend, cid)
    except (EngineError, OSError) as exc:
        error = error or f"could not read the proxy's log: {exc}"
    if dropped:
        facts["log_truncated"] = dropped  # bytes of log past LOG_CAP, counted and not kept
    if error:
        facts["error"] = error
    left = not _remove(backend, cid, proxy.network_id, proxy.conf_dir)
    return EgressRecord(config=proxy.config, log=log.decode("utf-8", "replace"), facts=facts), left


def _died(backend: DockerBackend, container_id: str) -> str | None:
    """Why the proxy is no longer running (it crashed or was OOM-killed during the run:
    requests after that were refused, never let through), or None while it runs."""
    try:
        state = _state(backend, container_id)
    except (EngineError, RuntimeUnavailable) as exc:
        return f"could not inspect the proxy: {exc}"
    if state.get("Running"):
        return None
    oom = bool(state.get("OOMKilled"))
    return f"the proxy stopped during the run (exit {state.get('ExitCode')}, OOM: {oom})"


def _state(backend: DockerBackend, container_id: str) -> dict[str, Any]:
    """The proxy container's state (``docker inspect``'s State)."""
    return dict((backend.call("GET", f"/containers/{container_id}/json") or {}).get("State") or {})


def _create_network(backend: DockerBackend, name: str, labels: dict[str, str]) -> tuple[str, str, str]:
    """An internal network with a random free /28; another one if the engine says it overlaps."""
    pool = list(SUBNETS.subnets(new_prefix=28))
    last = ""
    for _ in range(20):
        subnet = str(secrets.choice(pool))
        body = {
            "Name": name,
            "CheckDuplicate": True,
            "Driver": "bridge",
            "Internal": True,
            "EnableIPv6": False,
            "Attachable": False,
            "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet}]},
            "Options": {
                "com.docker.network.bridge.inhibit_ipv4": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "false",
            },
            "Labels": {**labels, "aido.egress": "network"},
        }
        try:
            created = backend.call("POST", "/networks/create", body=body)
        except EngineError as exc:
            last = exc.message
            if "overlap" in exc.message.lower():
                continue
            raise RuntimeFailure(f"could not create the run's egress network: {exc.message}") from None
        return str(created["Id"]), name, subnet
    raise RuntimeFailure(f"could not find a free subnet for the run's egress network: {last}")


def _create_proxy(
    backend: DockerBackend,
    request: ExecRequest,
    labels: dict[str, str],
    network: str,
    address: str,
    conf: str,
    dns: list[str],
) -> str:
    body = {
        "Image": IMAGE,
        "User": PROXY_USER,
        "Labels": {**labels, "aido.egress": "proxy"},
        "NetworkDisabled": False,
        "NetworkingConfig": {"EndpointsConfig": {network: {"IPAMConfig": {"IPv4Address": address}}}},
        "HostConfig": {
            "NetworkMode": network,
            "Dns": dns,
            "Sysctls": dict(NO_IPV6),
            "CapDrop": ["ALL"],
            "CapAdd": [],
            "SecurityOpt": ["no-new-privileges:true"],
            "Privileged": False,
            "ReadonlyRootfs": True,
            "Mounts": [{"Type": "bind", "Source": conf, "Target": "/etc/squid/squid.conf", "ReadOnly": True}],
            "Memory": 256 << 20,
            "MemorySwap": 256 << 20,
            "NanoCpus": int(1e9),
            "PidsLimit": 64,
            "Ulimits": [{"Name": "nofile", "Soft": 4096, "Hard": 4096}],
            "IpcMode": "private",  # Squid keeps small shared-memory segments in /dev/shm
            "ShmSize": 8 << 20,
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": dict(LOG_LABEL)},
            "AutoRemove": False,
        },
    }
    try:
        created = backend.call(
            "POST", "/containers/create", query={"name": f"{request.name}-proxy"}, body=body
        )
    except EngineError as exc:
        raise RuntimeFailure(f"the engine refused the egress proxy's container: {exc.message}") from None
    return str(created["Id"])


def _wait_ready(backend: DockerBackend, proxy: Proxy) -> None:
    """Until Squid says it accepts connections (its own word, on stderr: nothing connects)."""
    text = _wait_for_line(backend, proxy.container_id, READY_LINE, READY_SECONDS)
    if READY_LINE not in text:
        tail = text.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeFailure(
            "the egress proxy did not start: " + (" | ".join(tail) or "no output"),
            hint="`aido doctor` checks the proxy image; scripts/bootstrap.sh rebuilds it",
        )


def _wait_for_line(backend: DockerBackend, container_id: str, line: bytes, seconds: float) -> bytes:
    """Poll the proxy's stderr until it holds ``line``, the proxy stops, or ``seconds`` pass;
    what it said by then."""
    deadline = time.monotonic() + seconds
    while True:
        raw = backend.engine.call_raw(
            "GET", f"/containers/{container_id}/logs", query={"stderr": 1, "stdout": 0}, limit=1 << 20
        )[0]
        text = _demux(raw)
        if line in text or time.monotonic() > deadline:
            return text
        if not _state(backend, container_id).get("Running"):
            return text
        time.sleep(0.02)


def _read_log(backend: DockerBackend, container_id: str) -> tuple[bytes, int]:
    raw, dropped = backend.engine.call_raw(
        "GET", f"/containers/{container_id}/logs", query={"stdout": 1, "stderr": 0}, limit=LOG_CAP
    )
    return _demux(raw), dropped


def _demux(raw: bytes) -> bytes:
    """The engine's multiplexed log stream (8-byte frame headers) as plain bytes."""
    out, pos = bytearray(), 0
    while pos + 8 <= len(raw):
        size = int.from_bytes(raw[pos + 4 : pos + 8], "big")
        out += raw[pos + 8 : pos + 8 + size]
        pos += 8 + size
    return bytes(out)


def _remove(backend: DockerBackend, container_id: str, network_id: str, conf_dir: str) -> bool:
    """Remove the proxy, then its network; False if either may remain (the sweep retries)."""
    ok = backend.remove(container_id) if container_id else True
    if network_id:
        ok = remove_network(backend, network_id) and ok
    shutil.rmtree(conf_dir, ignore_errors=True)
    return ok


def remove_network(backend: DockerBackend, network_id: str) -> bool:
    for attempt in range(5):
        try:
            backend.call("DELETE", f"/networks/{network_id}", ok=(204, 404))
            return True
        except EngineError as exc:
            # A container being removed can hold its endpoint a moment longer.
            if exc.status != 403 and "active endpoints" not in exc.message:
                return False
            time.sleep(0.1 * (attempt + 1))
        except RuntimeUnavailable:
            return False
    return False
