"""`aido --version` alone is answered before the CLI (click, Rich, aido's commands) is
imported, and says exactly what the CLI says."""

from __future__ import annotations

import subprocess

import pytest

import aido
from tests.helpers.cli import aido_argv, aido_env, loaded_modules


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version_alone_loads_no_cli(flag: str) -> None:
    done = loaded_modules(flag, watch=["click", "rich", "aido.cli.app"], entry="aido.cli.main")
    assert done.code == 0 and done.stdout == f"aido {aido.__version__}\n"
    assert done.modules == [], "the fast path imported the CLI"


def test_the_fast_answer_is_the_clis_answer() -> None:
    fast = subprocess.run(aido_argv("--version"), capture_output=True, text=True, env=aido_env(), check=True)
    # With another option the CLI answers (click's eager --version), as before.
    slow = subprocess.run(
        aido_argv("--version", "--verbose"), capture_output=True, text=True, env=aido_env(), check=True
    )
    assert fast.stdout == slow.stdout
    as_json = subprocess.run(
        aido_argv("--version", "--json"), capture_output=True, text=True, env=aido_env(), check=True
    )
    assert f'"version": "{aido.__version__}"' in as_json.stdout


def test_a_closed_pipe_is_not_an_error() -> None:
    done = subprocess.run(
        f"{' '.join(aido_argv('--version'))} | true", shell=True, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr
