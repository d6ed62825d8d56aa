"""The container's hardened HostConfig, and what the engine says it applied.

Pure functions of the request or of ``docker inspect``: no engine calls here, so the
settings aido asks for and the facts it records can be read (and tested) on their own.
"""

from __future__ import annotations

from typing import Any

from aido.backends.base import ExecRequest

# An OCI runtime that applies the container's seccomp profile only when registered with a flag:
# runsc without --oci-seccomp runs the task under gVisor's own syscall table, and the engine's
# profile (which refuses unshare(CLONE_NEWUSER), among others) is not applied inside the sandbox.
SECCOMP_FLAGS = {"runsc": "--oci-seccomp"}


def host_config(request: ExecRequest, egress_network: str | None = None) -> dict[str, Any]:
    """The hardened HostConfig. Every field is set explicitly rather than trusting engine defaults.
    ``egress_network``: the run's internal network to its egress proxy (egress.py)."""
    limits = request.limits
    return {
        "NetworkMode": egress_network or ("bridge" if request.network else "none"),
        **(_egress_settings() if egress_network else {}),
        "CapDrop": ["ALL"],
        "CapAdd": [],
        "SecurityOpt": ["no-new-privileges:true"],
        "Privileged": False,
        "ReadonlyRootfs": True,
        "Tmpfs": {
            "/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_bytes}",
            **{path: "ro,noexec,nosuid,nodev,size=4k" for path in request.masked_paths},
        },
        "Mounts": [
            {
                "Type": "bind",
                "Source": m.source,
                "Target": m.target,
                "ReadOnly": m.read_only,
                "BindOptions": {"Propagation": "rprivate"},
            }
            for m in request.mounts
        ],
        "Memory": limits.memory_bytes,
        "MemorySwap": limits.memory_bytes,  # equal: no swap on top of the memory limit
        "NanoCpus": int(limits.cpus * 1e9),
        "PidsLimit": limits.pids,
        "Ulimits": [
            {"Name": "nofile", "Soft": limits.nofile, "Hard": limits.nofile},
            *(
                [{"Name": "fsize", "Soft": limits.fsize_bytes, "Hard": limits.fsize_bytes}]
                if limits.fsize_bytes
                else []
            ),
        ],
        "Init": True,  # reaps zombies; PID 1 forwards signals
        "RestartPolicy": {"Name": "no"},
        "LogConfig": {"Type": "none", "Config": {}},  # output comes through attach; the engine keeps none
        "IpcMode": "private",
        "PidMode": "",  # the container's own pid namespace, never the host's
        "UsernsMode": "",
        "Devices": [],
        "OomKillDisable": False,
        "AutoRemove": False,  # removed by us after we read its final state
    }


# No IPv6 at all in a container on an egress network, the task's and the proxy's: link-local
# addresses would reach the bridge's host side, and the allowlist is enforced over IPv4 only.
NO_IPV6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}


def _egress_settings() -> dict[str, Any]:
    """A task behind the egress proxy: its resolver is its own loopback, where nothing
    answers, so Docker's embedded DNS forwards no name anywhere (only the proxy resolves);
    and no IPv6 at all (link-local addresses would reach the bridge's host side)."""
    return {
        "Dns": ["127.0.0.1"],
        "DnsOptions": [],
        "DnsSearch": [],
        "Sysctls": dict(NO_IPV6),
    }


def seccomp_applied(security_opt: list[str], oci: str | None, oci_args: list[str] | None) -> str:
    """The seccomp profile in force: the container's (``default`` unless a SecurityOpt names one),
    unless its OCI runtime ignores profiles without a flag that it was not registered with."""
    profile = next((o.split("=", 1)[1] for o in security_opt if o.startswith("seccomp")), "default")
    flag = SECCOMP_FLAGS.get(oci or "")
    if flag is None or profile == "unconfined":
        return profile
    if oci_args is None:
        return f"unknown (could not read {oci}'s registration with the engine)"
    return profile if flag in oci_args else f"not enforced ({oci} without {flag})"


def applied_settings(inspect: dict[str, Any], oci_args: list[str] | None = None) -> dict[str, Any]:
    """What the engine actually applied, from `docker inspect` and, for an OCI runtime other
    than the default, the arguments it is registered with (``oci_args``). Never includes Config.Env."""
    hc = inspect.get("HostConfig") or {}
    security_opt = hc.get("SecurityOpt") or []
    return {
        "user": (inspect.get("Config") or {}).get("User", ""),
        "network_mode": hc.get("NetworkMode"),
        "dns": hc.get("Dns") or [],
        "sysctls": hc.get("Sysctls") or {},
        "privileged": hc.get("Privileged"),
        "cap_drop": hc.get("CapDrop") or [],
        "cap_add": hc.get("CapAdd") or [],
        "security_opt": security_opt,
        "seccomp": seccomp_applied(security_opt, hc.get("Runtime"), oci_args),
        "apparmor_profile": inspect.get("AppArmorProfile") or None,
        "readonly_rootfs": hc.get("ReadonlyRootfs"),
        "tmpfs": hc.get("Tmpfs") or {},
        "memory_bytes": hc.get("Memory"),
        "memory_swap_bytes": hc.get("MemorySwap"),
        "cpus": (hc.get("NanoCpus") or 0) / 1e9,
        "pids_limit": hc.get("PidsLimit"),
        "ulimits": hc.get("Ulimits") or [],
        "init": hc.get("Init"),
        "runtime": hc.get("Runtime"),
        "restart_policy": (hc.get("RestartPolicy") or {}).get("Name"),
        "log_driver": (hc.get("LogConfig") or {}).get("Type"),
        "ipc_mode": hc.get("IpcMode"),
        "pid_mode": hc.get("PidMode") or "private",
        "userns_mode": hc.get("UsernsMode") or "default",
        "devices": hc.get("Devices") or [],
        # Sorted: the engine lists mounts in no stable order, and evidence must not vary.
        "mounts": sorted(
            (
                {
                    "source": m.get("Source"),
                    "target": m.get("Destination"),
                    "read_only": not m.get("RW", True),
                }
                for m in inspect.get("Mounts") or []
            ),
            key=lambda m: (str(m["target"]), str(m["source"])),
        ),
        "workdir": (inspect.get("Config") or {}).get("WorkingDir"),
    }
