"""Running the real ``aido`` command in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


# The ``aido`` fixture: run ``python -m aido ARGS`` (keywords: cwd, env, timeout, input).
Aido = Callable[..., Result]


def aido_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the ``aido`` fixture gives its subprocess: no AIDO_* from the
    caller's shell, no colour, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDO_")}
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def aido_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "aido", *args]


def run_aido(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> Result:
    """Run ``python -m aido ARGS`` in ``cwd`` to completion; returns code, stdout, stderr."""
    done = subprocess.run(
        aido_argv(*args),
        cwd=cwd,
        env=aido_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def spawn(project: Path, *args: str, **popen: Any) -> subprocess.Popen[Any]:
    """Start ``aido ARGS`` in the background (stdout and stderr piped unless given)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(aido_argv(*args), cwd=project, env=aido_env(), **popen)


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
