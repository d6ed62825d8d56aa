"""The seccomp profile the evidence claims is the one that stops the task.

Docker's default seccomp profile refuses ``unshare(CLONE_NEWUSER)`` to a task without
capabilities. Under runc the kernel applies it; under gVisor, runsc applies the OCI
profile inside its own kernel only when it is registered with ``--oci-seccomp``, so
without that flag the same call succeeds. Both runs (CI runs this suite under runc and
again with AIDO_TEST_ISOLATION=gvisor) must refuse it, and ``security.applied.seccomp``
must never claim a profile that the engine's runtime does not enforce.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.hostile import GVISOR, assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import run_dir, summary

pytestmark = pytest.mark.docker

UNSHARE_USER = r"""
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
ctypes.set_errno(0)
rc = libc.unshare(0x10000000)  # CLONE_NEWUSER
print(json.dumps({"rc": rc, "errno": errno.errorcode.get(ctypes.get_errno())}))
"""


def _runsc_args() -> list[str]:
    import subprocess

    found = subprocess.run(
        ["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True, check=True
    )
    runtimes = json.loads(found.stdout)
    return list((runtimes.get("runsc") or {}).get("runtimeArgs") or [])


def test_unshare_user_namespace_is_refused_by_seccomp(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "userns.py", UNSHARE_USER)
    result = aido("run", "userns.py", "--timeout", "60s", "--json", timeout=90)
    assert result.code == 0, (result.stdout, result.stderr)
    report = json.loads((run_dir(project, sandbox_id) / "stdout.log").read_text())
    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    seccomp = run_summary["security"]["applied"]["seccomp"]
    # The evidence says what the engine enforces, and the task's experience agrees with it.
    if GVISOR and "--oci-seccomp" not in _runsc_args():
        assert seccomp == "not enforced (runsc without --oci-seccomp)"
    else:
        assert seccomp == "default"
    assert report == {"rc": -1, "errno": "EPERM"}, (seccomp, report)
