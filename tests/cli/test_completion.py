"""Shell completion: `aido completion SHELL` prints click's script for bash, zsh and fish,
and completing through it (bash, really sourced) offers aido's commands and sandbox ids."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, aido_env


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F _aido_completion aido"), ("zsh", "#compdef aido"), ("fish", "complete")],
)
def test_each_script_is_generated(aido: Aido, shell: str, marker: str) -> None:
    result = aido("completion", shell)
    assert result.code == 0, result.stderr
    assert marker in result.stdout and "_AIDO_COMPLETE" in result.stdout
    # The same script as click's own environment-variable protocol prints.
    direct = aido(env={"_AIDO_COMPLETE": f"{shell}_source"})
    assert direct.code == 0 and direct.stdout.strip() == result.stdout.strip()


def test_an_unknown_shell_is_a_usage_error(aido: Aido) -> None:
    result = aido("completion", "tcsh")
    assert result.code == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr


def _complete(project: Path, words: str, cword: int) -> list[str]:
    """Complete ``words`` as bash does: source the script, call its function, print COMPREPLY."""
    bin_dir = project / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "aido"  # `aido` on PATH, running this checkout's aido
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m aido "$@"\n')
    wrapper.chmod(0o755)
    script = (
        'eval "$(aido completion bash)"\n'
        f"COMP_WORDS=({words}); COMP_CWORD={cword}\n"
        "_aido_completion aido\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = aido_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    done = subprocess.run(
        ["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_and_sandbox_ids(project: Path) -> None:
    assert _complete(project, "aido sa", 1) == ["sandbox"]
    assert "destroy" in _complete(project, "aido sandbox d", 2)
    # Sandbox ids come from the workspace's directory listing (no engine involved).
    for sid in ("abcdefabcdef", "abc123456789", "zzzzzzzzzzzz"):
        (project / ".aido" / "sandboxes" / sid).mkdir(parents=True)
    (project / ".aido" / "sandboxes" / "not-an-id").mkdir()
    assert _complete(project, "aido sandbox destroy abc", 3) == ["abc123456789", "abcdefabcdef"]
    assert _complete(project, "aido run --sandbox z", 3) == ["zzzzzzzzzzzz"]
