"""Shared by the hostile-task suite: every test runs a real hostile task through the
real CLI, in a real container, under the isolation named by ``AIDO_TEST_ISOLATION``
("default" is runc; CI runs the suite again with ``AIDO_TEST_ISOLATION=gvisor``).

``destroy_every_sandbox`` (tests/e2e/e2e_support.py) is imported here, which makes it
autouse for every test in this directory: after each test no container of its
sandboxes may be left, and every sandbox is destroyed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# e2e_support lives next to the end-to-end tests, which are not a package.
_E2E = str(Path(__file__).resolve().parent.parent / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from e2e_support import Aido, destroy_every_sandbox, sandbox_up  # noqa: E402, F401

ISOLATION = os.environ.get("AIDO_TEST_ISOLATION", "default")
GVISOR = ISOLATION == "gvisor"


def hostile_sandbox(aido: Aido, *args: str, env: dict[str, str] | None = None) -> str:
    """``aido sandbox up --json --isolation ISOLATION ARGS``; returns the new sandbox id."""
    return sandbox_up(aido, "--isolation", ISOLATION, *args, env=env)


def assert_ran_isolated(run_summary: dict[str, Any]) -> None:
    """The run asked for ISOLATION and the engine says it used the matching OCI runtime."""
    assert run_summary["security"]["requested"]["isolation"] == ISOLATION
    assert run_summary["security"]["applied"]["runtime"] == ("runsc" if GVISOR else "runc")
