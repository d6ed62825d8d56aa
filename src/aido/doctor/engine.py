"""The engine checks: the engine answers, its OCI runtimes (each proven by a smoke run),
their seccomp registration, and whether cgroup limits are enforceable."""

from __future__ import annotations

from typing import Any

from aido.backends.base import ISOLATION_DEFAULT, Backend
from aido.backends.docker.adapter import GVISOR_HINT, OCI_RUNTIMES
from aido.backends.docker.hostconfig import SECCOMP_FLAGS
from aido.doctor.check import FAIL, OK, WARN, Check
from aido.doctor.images import ImageLookup
from aido.doctor.smoke import smoke_run

CGROUP_FIX = (
    "enable the memory, cpu and pids cgroup controllers for the engine (cgroup v1: boot with "
    "`cgroup_enable=memory swapaccount=1`; cgroup v2 or rootless: delegate them, e.g. systemd "
    "`Delegate=cpu memory pids`), then restart the engine"
)
SWAP_FIX = (
    "enable swap accounting (cgroup v1: boot with `swapaccount=1`; cgroup v2: enable the memory "
    "controller's swap support) or turn swap off on this host"
)
SECCOMP_FIX = (
    'add "{flag}" to runtimes.{oci}.runtimeArgs in /etc/docker/daemon.json (keep "--network=none"), '
    "then reload dockerd (`sudo kill -HUP $(pidof dockerd)`); scripts/bootstrap.sh does this"
)

REQUIRED_OCI = "runc"
# OCI runtime -> the isolation level that runs on it ("default" is the engine's default runtime).
OCI_ISOLATION = {REQUIRED_OCI: ISOLATION_DEFAULT, **{oci: level for level, oci in OCI_RUNTIMES.items()}}
INSTALL_FIX = {"runsc": GVISOR_HINT}  # how to install an optional runtime (missing: a warning)
OCI_LABELS = {"runc": "runc", "runsc": "gVisor"}
_ENGINE_NAMES = {"docker": "Docker", "podman": "Podman"}


def check_engine(backend: Backend) -> Check:
    info = backend.info()
    engine = _ENGINE_NAMES.get(info.engine, info.engine or backend.name)
    detail = f"{engine} {info.version or '(unknown version)'}"
    if info.api_version:
        detail += f", API {info.api_version}"
    return Check("engine", OK, detail, None)


def check_oci_runtime(
    backend: Backend, oci: str, facts: dict[str, Any], lookup: ImageLookup, smoke: bool
) -> Check:
    name = f"oci_runtime:{oci}"
    label = OCI_LABELS.get(oci, oci)
    isolation = OCI_ISOLATION[oci]
    if "oci_runtimes" not in facts:
        return Check(
            name,
            WARN,
            f"unknown: the {backend.name or 'runtime'} backend does not report its OCI runtimes",
            f"check by hand that a task runs in `aido sandbox up --isolation {isolation}`",
        )
    present = [str(r) for r in facts.get("oci_runtimes") or []]
    if oci not in present:
        install = (
            INSTALL_FIX.get(oci) or f"install {oci} (`sudo apt-get install {oci}`) and restart the engine"
        )
        if oci != REQUIRED_OCI:
            return Check(
                name, WARN, f"{label} is not installed: `--isolation {isolation}` is unavailable", install
            )
        found = f" (the engine has: {', '.join(present)})" if present else ""
        return Check(name, FAIL, f"{label} is not registered with the engine{found}", install)
    parts = [
        f"{label} {facts['runc_version']}" if oci == REQUIRED_OCI and facts.get("runc_version") else label
    ]
    default = facts.get("default_oci_runtime")
    if default == oci:
        parts.append("engine default")
    elif oci == REQUIRED_OCI and default:
        parts.append(f"but the engine's default runtime is {default}")
    found = ", ".join(parts)
    checked = Check(name, OK, f"present ({found})", None)
    if smoke:
        checked = smoke_run(backend, name, isolation, found, lookup)
    return _check_seccomp_flag(checked, oci, facts)


def _check_seccomp_flag(checked: Check, oci: str, facts: dict[str, Any]) -> Check:
    """A runtime that applies the seccomp profile only with a flag (runsc: --oci-seccomp) and is
    registered without it runs tasks without the profile: a warning, as the evidence says too."""
    flag = SECCOMP_FLAGS.get(oci)
    args = (facts.get("oci_runtime_args") or {}).get(oci)
    if flag is None or args is None or flag in args or checked.status == FAIL:
        return checked
    detail = (
        f"{checked.detail}; but registered without {flag}: the seccomp profile is not applied "
        f"to tasks under {OCI_LABELS.get(oci, oci)}"
    )
    return Check(checked.name, WARN, detail, checked.fix or SECCOMP_FIX.format(flag=flag, oci=oci))


def check_cgroup_limits(facts: dict[str, Any]) -> Check:
    name = "cgroup_limits"
    wanted = {"memory": "memory_limit", "pids": "pids_limit", "cpu": "cpu_limit"}
    if not any(key in facts for key in (*wanted.values(), "swap_limit")):
        return Check(
            name,
            WARN,
            "unknown: the runtime backend does not report whether limits are enforced",
            "check by hand that memory, cpu and pids limits are enforced",
        )
    cgroup = []
    if facts.get("cgroup_version"):
        cgroup.append(f"cgroup v{facts['cgroup_version']}")
    if facts.get("cgroup_driver"):
        cgroup.append(str(facts["cgroup_driver"]))
    if facts.get("rootless"):
        cgroup.append("rootless engine")
    where = f" ({', '.join(cgroup)})" if cgroup else ""
    missing = [what for what, key in wanted.items() if not facts.get(key)]
    if missing:
        return Check(name, FAIL, f"not enforceable: {', '.join(missing)} limits{where}", CGROUP_FIX)
    if not facts.get("swap_limit"):
        return Check(
            name,
            WARN,
            f"memory, cpu and pids limits enforced, but not memory+swap: a task may swap past its "
            f"memory limit{where}",
            SWAP_FIX,
        )
    return Check(name, OK, f"memory (no swap), cpu and pids limits enforced{where}", None)
