"""The hostile-task suite (tests/security) runs under the isolation named by
``AIDO_TEST_ISOLATION`` ("default" is runc; CI runs the suite again with
``AIDO_TEST_ISOLATION=gvisor``)."""

from __future__ import annotations

import os
from typing import Any

from tests.helpers.cli import Aido
from tests.helpers.sandbox import sandbox_up

ISOLATION = os.environ.get("AIDO_TEST_ISOLATION", "default")
GVISOR = ISOLATION == "gvisor"


def hostile_sandbox(aido: Aido, *args: str, env: dict[str, str] | None = None) -> str:
    """``aido sandbox up --json --isolation ISOLATION ARGS``; returns the new sandbox id."""
    return sandbox_up(aido, "--isolation", ISOLATION, *args, env=env)


def assert_ran_isolated(run_summary: dict[str, Any]) -> None:
    """The run asked for ISOLATION and the engine says it used the matching OCI runtime."""
    assert run_summary["security"]["requested"]["isolation"] == ISOLATION
    assert run_summary["security"]["applied"]["runtime"] == ("runsc" if GVISOR else "runc")
