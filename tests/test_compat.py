"""Old import paths and entry points keep working after the architecture step: plugins
written against ``aido.runtimes``, callers of ``aido.sandbox.manager``, reapers started as
``python -m aido.sandbox.reaper``, and the ``aido.cli.main:main`` entry point."""

from __future__ import annotations

import subprocess
import sys

import aido
from aido.backends.base import Backend
from aido.backends.registry import get_backend
from aido.manager import SandboxManager


def test_the_runtimes_names_are_the_backends() -> None:
    from aido.runtimes.base import RuntimeAdapter
    from aido.runtimes.registry import get_runtime

    assert RuntimeAdapter is Backend
    assert get_runtime is get_backend


def test_the_old_manager_module_re_exports_the_public_names() -> None:
    from aido.sandbox import manager as old

    assert old.SandboxManager is SandboxManager is aido.SandboxManager
    for name in ("Widening", "RunHooks", "RunResult", "DestroyResult", "DestroyFailed", "SandboxSummary"):
        assert getattr(old, name) is not None, name
    assert old.RunHooks is aido.RunHooks
    assert old.RunResult is aido.RunResult


def test_a_reaper_started_the_old_way_still_runs_the_reaper() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aido.sandbox.reaper"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "usage: python -m aido.lifecycle.reaper WORKSPACE_ROOT" in result.stderr  # the reaper itself


def test_the_installed_entry_point_still_resolves() -> None:
    from aido.cli import main as entry
    from aido.cli.app import cli

    assert callable(entry.main)  # pyproject's `aido = "aido.cli.main:main"`
    assert entry.cli is cli  # the group, for callers that imported it from here
