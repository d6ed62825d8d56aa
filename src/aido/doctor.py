"""``aido doctor``: check that this machine can run aido's sandboxes, and say how to fix what is not.

Each check is independent: it catches its own errors, so one broken piece (an engine
that answers ``/version`` but not ``/info``, an unreadable directory) never hides the
others. When the engine cannot be reached at all, the checks that need it are still
listed, as skipped (status ``skipped``, "skipped: engine unreachable"), so the report
always has the same rows; a skipped check proves nothing, so it is counted apart from the
checks that passed. With ``smoke=True`` every isolation level the engine offers is proven by
running a tiny hardened container through the adapter's own ``run()``.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

from aido.backends.base import ISOLATION_DEFAULT, Backend, ExecRequest, Limits
from aido.backends.docker.adapter import GVISOR_HINT, OCI_RUNTIMES
from aido.backends.docker.hostconfig import SECCOMP_FLAGS
from aido.errors import AidoError
from aido.store.workspace import DIRNAME, Workspace

OK = "ok"
WARN = "warn"
FAIL = "fail"
SKIP = "skipped"  # not checked, because a check it depends on failed
STATUSES = (OK, WARN, FAIL, SKIP)

DEFAULT_IMAGES: tuple[str, ...] = ("python:3.11-slim", "node:18-alpine", "debian:bookworm-slim")
SMOKE_IMAGES = ("python:3.11-slim", "debian:bookworm-slim")  # the first one present is used
SMOKE_TIMEOUT = 30.0
SMOKE_LABELS = {"aido.managed": "true", "aido.doctor": "true"}
SMOKE_USER = "10001:10001"
MIN_PYTHON = (3, 11)

SKIPPED = "skipped: engine unreachable"
SKIPPED_FIX = "fix the engine first (see the engine check)"
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
IMAGE_FIX = "build or load it (scripts/bootstrap.sh builds local stand-ins), or `docker pull {image}`"
BUG_FIX = "this is a bug in aido doctor: please report it with this output"
ENGINE_FIX = "check the engine answers: `docker info` (DOCKER_HOST selects which engine aido uses)"

REQUIRED_OCI = "runc"
# OCI runtime -> the isolation level that runs on it ("default" is the engine's default runtime).
OCI_ISOLATION = {REQUIRED_OCI: ISOLATION_DEFAULT, **{oci: level for level, oci in OCI_RUNTIMES.items()}}
INSTALL_FIX = {"runsc": GVISOR_HINT}  # how to install an optional runtime (missing: a warning)
OCI_LABELS = {"runc": "runc", "runsc": "gVisor"}

_MARKS = {OK: "✓", WARN: "!", FAIL: "✗", SKIP: "-"}
_ENGINE_NAMES = {"docker": "Docker", "podman": "Podman"}


@dataclass(frozen=True)
class Check:
    name: str  # stable id, e.g. "engine", "oci_runtime:runc", "image:python:3.11-slim"
    status: str  # "ok" | "warn" | "fail" | "skipped"
    detail: str  # one line: what was found
    fix: str | None  # one line: how to fix it; None when ok


# -- the checks ------------------------------------------------------------------------------


def run_checks(
    backend: Backend | None = None,
    *,
    start: Path | None = None,
    images: Sequence[str] = DEFAULT_IMAGES,
    smoke: bool = True,
) -> list[Check]:
    """Every check, in a stable order: engine, OCI runtimes, cgroup limits, images, workspace, python."""
    if backend is None:
        try:
            from aido.backends.registry import get_backend

            backend = get_backend()
        except Exception as exc:
            engine = _failed("engine", exc, ENGINE_FIX)
    if backend is not None:
        engine = _guarded("engine", lambda: check_engine(backend), ENGINE_FIX)
    checks = [engine]
    if backend is None or engine.status == FAIL:
        checks += [Check(name, SKIP, SKIPPED, SKIPPED_FIX) for name in _engine_dependent(images)]
    else:
        checks += _engine_checks(backend, images, smoke)
    checks.append(_guarded("workspace", lambda: check_workspace(start)))
    checks.append(_guarded("python", check_python))
    return checks


def _engine_dependent(images: Sequence[str]) -> list[str]:
    return [
        *(f"oci_runtime:{oci}" for oci in OCI_ISOLATION),
        "cgroup_limits",
        *(f"image:{i}" for i in images),
    ]


def _engine_checks(backend: Backend, images: Sequence[str], smoke: bool) -> list[Check]:
    """The checks that need a reachable engine: OCI runtimes (smoke runs), cgroup limits, images."""
    checks: list[Check] = []
    lookup = _ImageLookup(backend)

    def image_checks() -> list[Check]:
        return [_guarded(f"image:{image}", partial(check_image, lookup, image)) for image in images]

    try:
        facts = dict(backend.diagnose() or {})
    except Exception as exc:
        why = "cannot read the engine's facts: "
        return [_failed(name, exc, ENGINE_FIX, why) for name in _engine_dependent(())] + image_checks()
    for oci in OCI_ISOLATION:
        checks.append(
            _guarded(f"oci_runtime:{oci}", partial(check_oci_runtime, backend, oci, facts, lookup, smoke))
        )
    checks.append(_guarded("cgroup_limits", lambda: check_cgroup_limits(facts), CGROUP_FIX))
    return checks + image_checks()


def check_engine(backend: Backend) -> Check:
    info = backend.info()
    engine = _ENGINE_NAMES.get(info.engine, info.engine or backend.name)
    detail = f"{engine} {info.version or '(unknown version)'}"
    if info.api_version:
        detail += f", API {info.api_version}"
    return Check("engine", OK, detail, None)


def check_oci_runtime(
    backend: Backend, oci: str, facts: dict[str, Any], lookup: _ImageLookup, smoke: bool
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
        checked = _smoke(backend, name, isolation, found, lookup)
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


def check_image(lookup: _ImageLookup, image: str) -> Check:
    name = f"image:{image}"
    if not lookup.supported:
        return Check(
            name,
            WARN,
            f"not checked: the {lookup.backend} backend cannot look images up",
            "make sure the image is available to the backend before `aido run`",
        )
    image_id = lookup.get(image)
    if image_id is None:
        return Check(
            name,
            WARN,
            "not available locally: `aido run` will try to pull it",
            IMAGE_FIX.format(image=image),
        )
    return Check(name, OK, f"present ({_short_id(image_id)})", None)


def check_workspace(start: Path | None = None) -> Check:
    """The workspace's ``.aido/`` must be writable; without one, the directory that would hold it."""
    name = "workspace"
    here = (start or Path.cwd()).resolve()
    workspace = Workspace.find(here)
    if workspace is not None:
        target = workspace.dir
        problem = _probe_writable(target)
        if problem is None:
            return Check(name, OK, f"{target} is writable", None)
        return Check(
            name,
            FAIL,
            f"{target} is not writable: {problem}",
            f"make it writable by this user (`chmod u+rwx {target}`, or fix its owner)",
        )
    problem = _probe_writable(here)
    if problem is None:
        return Check(
            name, OK, f"no workspace yet; `aido sandbox up` will create {here / DIRNAME} (writable)", None
        )
    return Check(
        name,
        FAIL,
        f"no workspace yet, and {here} is not writable, so `aido sandbox up` cannot create one: {problem}",
        "run aido from a project directory you can write to",
    )


def check_python() -> Check:
    from aido import __version__

    version = ".".join(str(part) for part in sys.version_info[:3])
    detail = f"Python {version} ({sys.executable or 'unknown interpreter'}), aido {__version__}"
    if sys.version_info[:2] < MIN_PYTHON:
        wanted = ".".join(str(part) for part in MIN_PYTHON)
        return Check("python", FAIL, detail, f"install aido under Python {wanted} or newer")
    return Check("python", OK, detail, None)


# -- output ----------------------------------------------------------------------------------


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings are fine), else 1."""
    return 1 if any(check.status == FAIL for check in checks) else 0


def counts(checks: Sequence[Check]) -> dict[str, int]:
    """How many checks passed, warned, failed and were skipped (each status, even at 0)."""
    return {status: sum(check.status == status for check in checks) for status in STATUSES}


def summary_line(checks: Sequence[Check]) -> str:
    """The human verdict: ``ready`` or how many failed, then every non-zero count by status."""
    found = counts(checks)
    parts = [f"{found[OK]} passed"]
    if found[WARN]:
        parts.append(f"{found[WARN]} warning(s)")
    if found[SKIP]:
        parts.append(f"{found[SKIP]} skipped")
    if found[FAIL]:
        return f"{found[FAIL]} check(s) failed; " + ", ".join(parts)
    return f"ready ({', '.join(parts)})"


def render_rows(checks: Sequence[Check]) -> list[list[str]]:
    """Rows of [mark, name, detail] for a table (✓ ok, ! warn, ✗ fail, - skipped)."""
    return [[_MARKS.get(check.status, "?"), check.name, check.detail] for check in checks]


def as_json(checks: Sequence[Check]) -> list[dict[str, Any]]:
    """One plain dict per check: name, status, detail, fix."""
    return [asdict(check) for check in checks]


# -- helpers ---------------------------------------------------------------------------------


class _ImageLookup:
    """``image_id`` through the adapter when it has one (Docker-specific), each image asked once."""

    def __init__(self, backend: Backend) -> None:
        found = getattr(backend, "image_id", None)
        self._image_id = cast("Callable[[str], str | None] | None", found if callable(found) else None)
        self.backend = backend.name or "runtime"
        self._cache: dict[str, str | None] = {}

    @property
    def supported(self) -> bool:
        return self._image_id is not None

    def get(self, image: str) -> str | None:
        """The image's id, or None when it is not available locally; errors propagate."""
        if self._image_id is None:
            return None
        if image not in self._cache:
            found = self._image_id(image)
            self._cache[image] = str(found) if found else None
        return self._cache[image]

    def present(self, image: str) -> bool | None:
        """True/False, or None when it cannot be told (no lookup, or the lookup failed)."""
        if self._image_id is None:
            return None
        try:
            return self.get(image) is not None
        except Exception:
            return None


def _smoke(backend: Backend, name: str, isolation: str, found: str, lookup: _ImageLookup) -> Check:
    """Prove an isolation level works: a tiny hardened container must print ``ok``."""
    image = next((i for i in SMOKE_IMAGES if lookup.present(i)), None)
    if image is None:
        if lookup.supported and all(lookup.present(i) is False for i in SMOKE_IMAGES):
            return Check(
                name,
                WARN,
                f"present ({found}); smoke run skipped: none of {', '.join(SMOKE_IMAGES)} is available",
                IMAGE_FIX.format(image=SMOKE_IMAGES[0]),
            )
        image = SMOKE_IMAGES[0]  # cannot tell: try it, run() reports a missing image
    output: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}

    def sink(kind: int, data: bytes) -> None:
        output.setdefault(kind, bytearray()).extend(data)

    request = ExecRequest(
        image=image,
        argv=["sh", "-c", "echo ok"],
        env={},
        mounts=[],
        limits=Limits(cpus=0.5, memory_bytes=64 << 20),
        timeout_seconds=SMOKE_TIMEOUT,
        labels=dict(SMOKE_LABELS),
        name=f"aido-doctor-{secrets.token_hex(4)}",
        user=SMOKE_USER,
        isolation=isolation,
    )
    began = time.monotonic()
    try:
        outcome = backend.run(request, sink)
    except AidoError as exc:
        return Check(
            name,
            FAIL,
            f"present ({found}), but the smoke run (isolation {isolation}) failed: {exc.message}",
            exc.hint or _smoke_fix(isolation),
        )
    took = time.monotonic() - began
    if outcome.interrupted:
        raise KeyboardInterrupt  # Ctrl-C stops the doctor, it is not a finding
    stdout = bytes(output.get(1, b""))
    stderr = bytes(output.get(2, b"")).decode("utf-8", "replace").strip()
    problem = None
    if outcome.error:
        problem = outcome.error
    elif outcome.timed_out:
        problem = f"timed out after {SMOKE_TIMEOUT:g}s"
    elif outcome.stop_reason:
        problem = f"stopped: {outcome.stop_reason}"
    elif outcome.oom_killed:
        problem = "killed by the out-of-memory killer"
    elif outcome.exit_code != 0:
        problem = f"exit code {outcome.exit_code}" + (f": {_one_line(stderr)}" if stderr else "")
    elif stdout != b"ok\n":
        problem = f"unexpected output {stdout[:60]!r}"
    applied = outcome.applied.get("runtime") if outcome.applied else None
    expected = OCI_RUNTIMES.get(isolation)
    if problem is None and expected and applied and applied != expected:
        problem = f"the engine ran it under {applied}, not {expected}"
    if problem is not None:
        return Check(
            name,
            FAIL,
            f"present ({found}), but the smoke run (isolation {isolation}, {image}) failed: {problem}",
            _smoke_fix(isolation),
        )
    under = f" under {applied}" if applied else ""
    return Check(name, OK, f"present ({found}); smoke run{under} ok in {took:.2f}s", None)


def _smoke_fix(isolation: str) -> str:
    oci = OCI_RUNTIMES.get(isolation)
    runtime = f" --runtime={oci}" if oci else ""
    return (
        f"try `docker run --rm{runtime} --user {SMOKE_USER} --network none {SMOKE_IMAGES[-1]} echo ok` "
        "and read the engine's log (`journalctl -u docker`, or dockerd's output)"
    )


def _probe_writable(directory: Path) -> str | None:
    """Create and delete a file in ``directory``; None when that worked, else why not."""
    probe = directory / f".aido-doctor-{secrets.token_hex(4)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(probe, flags, 0o600)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError as exc:
        return f"created {probe.name} but cannot delete it: {exc.strerror or exc}"
    return None


def _guarded(name: str, check: Callable[[], Check], fix: str = BUG_FIX) -> Check:
    """Run one check; any error becomes that check's failure instead of ending the doctor."""
    try:
        return check()
    except Exception as exc:
        return _failed(name, exc, fix)


def _failed(name: str, exc: Exception, fix: str = BUG_FIX, prefix: str = "") -> Check:
    """A check that raised: aido's errors carry their own message and fix; others are named."""
    if isinstance(exc, AidoError):
        return Check(name, FAIL, _one_line(prefix + exc.message), exc.hint or fix)
    message = getattr(exc, "message", None) or str(exc)  # e.g. the engine's EngineError
    return Check(name, FAIL, _one_line(f"{prefix}{type(exc).__name__}: {message}"), fix)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _short_id(image_id: str) -> str:
    algorithm, _, digest = image_id.partition(":")
    return f"{algorithm}:{digest[:12]}" if digest else image_id[:19]
