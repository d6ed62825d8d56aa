"""Secrets too short to mask: aido says so, naming the variable (never the value), at `run`
and at `sandbox up`, and the run's evidence records the warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.sandbox import run_dir, sandbox_up, summary

pytestmark = pytest.mark.docker

PRINT_ENV = """\
import os
for k in ("DB_PASSWORD", "API_TOKEN", "AUTH_SECRET"):
    print(k, os.environ.get(k))
"""
SHORT = "shorter than 4 characters: too short to mask"


def test_a_short_secret_is_warned_about_by_name_and_recorded(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "env.py", PRINT_ENV)
    result = aido("run", "env.py", "-e", "DB_PASSWORD=q7z", "-e", "API_TOKEN=long-enough-value")
    assert result.code == 0, result.stderr
    assert f"warning: secret-looking variable DB_PASSWORD is {SHORT}" in result.stderr
    assert "q7z" not in result.stderr  # the warning names the variable, never the value
    assert "API_TOKEN" not in result.stderr  # long enough: masked, nothing to warn about
    # The rule the warning is about: the short value is shown, the long one masked.
    assert "DB_PASSWORD q7z" in result.stdout
    assert "API_TOKEN ***" in result.stdout
    warnings = summary(project, sandbox_id)["warnings"]
    assert [w for w in warnings if "secret-looking" in w] == [
        f"secret-looking variable DB_PASSWORD is {SHORT}, it is shown as is wherever the task prints it"
    ]
    assert "q7z" not in (run_dir(project, sandbox_id) / "summary.json").read_text()


def test_an_empty_secret_is_warned_about(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "env.py", PRINT_ENV)
    result = aido("run", "env.py", "-e", "AUTH_SECRET=", "--json")
    assert result.code == 0, result.stderr
    assert "warning: secret-looking variable AUTH_SECRET is empty" in result.stderr
    assert "secret-looking variable AUTH_SECRET is empty" in summary(project, sandbox_id)["warnings"]


def test_sandbox_yaml_short_secret_is_warned_about_at_up_and_at_each_run(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", 'env:\n  API_TOKEN: "x1"\n  MODE: "ab"\n')
    up = aido("sandbox", "up")
    assert up.code == 0, up.stderr
    assert f"warning: secret-looking variable API_TOKEN is {SHORT}" in up.stderr
    assert "MODE" not in up.stderr  # not secret-looking
    assert "x1" not in up.stderr
    sandbox_id = up.stdout.strip()
    write(project / "env.py", PRINT_ENV)
    result = aido("run", "env.py")
    assert result.code == 0, result.stderr
    assert f"warning: secret-looking variable API_TOKEN is {SHORT}" in result.stderr
    assert any("API_TOKEN" in w for w in summary(project, sandbox_id)["warnings"])
