"""Proving an isolation level works: a tiny hardened container, run through the
backend's own ``run()``, must print ``ok``."""

from __future__ import annotations

import secrets
import time

from aido.backends.base import Backend, ExecRequest, Limits
from aido.backends.docker.adapter import OCI_RUNTIMES
from aido.doctor.check import FAIL, OK, WARN, Check, one_line
from aido.doctor.images import IMAGE_FIX, ImageLookup
from aido.errors import AidoError

SMOKE_IMAGES = ("python:3.11-slim", "debian:bookworm-slim")  # the first one present is used
SMOKE_TIMEOUT = 30.0
SMOKE_LABELS = {"aido.managed": "true", "aido.doctor": "true"}
SMOKE_USER = "10001:10001"


def smoke_run(backend: Backend, name: str, isolation: str, found: str, lookup: ImageLookup) -> Check:
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
        problem = f"exit code {outcome.exit_code}" + (f": {one_line(stderr)}" if stderr else "")
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
