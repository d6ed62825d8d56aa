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

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from aido.backends.base import Backend
from aido.doctor.check import (
    BUG_FIX,
    FAIL,
    OK,
    SKIP,
    STATUSES,
    WARN,
    Check,
    as_json,
    counts,
    exit_code,
    failed,
    guarded,
    render_rows,
    summary_line,
)
from aido.doctor.engine import (
    CGROUP_FIX,
    OCI_ISOLATION,
    check_cgroup_limits,
    check_engine,
    check_oci_runtime,
)
from aido.doctor.host import check_python, check_signing_key, check_workspace
from aido.doctor.images import DEFAULT_IMAGES, ImageLookup, check_egress_proxy, check_image

__all__ = [
    "BUG_FIX",
    "CGROUP_FIX",
    "DEFAULT_IMAGES",
    "ENGINE_FIX",
    "FAIL",
    "OK",
    "SKIP",
    "SKIPPED",
    "SKIPPED_FIX",
    "STATUSES",
    "WARN",
    "Check",
    "as_json",
    "check_cgroup_limits",
    "check_engine",
    "check_image",
    "check_oci_runtime",
    "check_python",
    "check_signing_key",
    "check_workspace",
    "counts",
    "exit_code",
    "render_rows",
    "run_checks",
    "summary_line",
]

SKIPPED = "skipped: engine unreachable"
SKIPPED_FIX = "fix the engine first (see the engine check)"
ENGINE_FIX = "check the engine answers: `docker info` (DOCKER_HOST selects which engine aido uses)"


# -- the checks ------------------------------------------------------------------------------


def run_checks(
    backend: Backend | None = None,
    *,
    start: Path | None = None,
    images: Sequence[str] = DEFAULT_IMAGES,
    smoke: bool = True,
) -> list[Check]:
    """Every check, in a stable order: engine, OCI runtimes, cgroup limits, images, workspace,
    python, signing key."""
    if backend is None:
        try:
            from aido.backends.registry import get_backend

            backend = get_backend()
        except Exception as exc:
            engine = failed("engine", exc, ENGINE_FIX)
    if backend is not None:
        engine = guarded("engine", lambda: check_engine(backend), ENGINE_FIX)
    checks = [engine]
    if backend is None or engine.status == FAIL:
        checks += [Check(name, SKIP, SKIPPED, SKIPPED_FIX) for name in _engine_dependent(images)]
    else:
        checks += _engine_checks(backend, images, smoke)
    checks.append(guarded("workspace", lambda: check_workspace(start)))
    checks.append(guarded("python", check_python))
    checks.append(guarded("signing key", check_signing_key))
    return checks


def _engine_dependent(images: Sequence[str]) -> list[str]:
    return [
        *(f"oci_runtime:{oci}" for oci in OCI_ISOLATION),
        "cgroup_limits",
        *(f"image:{i}" for i in images),
        "egress_proxy",
    ]


def _engine_checks(backend: Backend, images: Sequence[str], smoke: bool) -> list[Check]:
    """The checks that need a reachable engine: OCI runtimes (smoke runs), cgroup limits, images."""
    checks: list[Check] = []
    lookup = ImageLookup(backend)

    def image_checks() -> list[Check]:
        from aido.egress import IMAGE as EGRESS_IMAGE

        return [
            *(guarded(f"image:{image}", partial(check_image, lookup, image)) for image in images),
            guarded("egress_proxy", partial(check_egress_proxy, lookup, EGRESS_IMAGE)),
        ]

    try:
        facts = dict(backend.diagnose() or {})
    except Exception as exc:
        why = "cannot read the engine's facts: "
        facts_checks = [name for name in _engine_dependent(()) if name != "egress_proxy"]
        return [failed(name, exc, ENGINE_FIX, why) for name in facts_checks] + image_checks()
    for oci in OCI_ISOLATION:
        checks.append(
            guarded(f"oci_runtime:{oci}", partial(check_oci_runtime, backend, oci, facts, lookup, smoke))
        )
    checks.append(guarded("cgroup_limits", lambda: check_cgroup_limits(facts), CGROUP_FIX))
    return checks + image_checks()
