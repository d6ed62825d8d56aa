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


# Where an egress proxy started by a test resolves names: its own loopback, so nothing.
# A test with its own "internet" gives its DNS server instead (tests/helpers/internet.py).
EGRESS_DNS = "127.0.0.1"


def aido_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the ``aido`` fixture gives its subprocess: no AIDO_* from the
    caller's shell, no colour, an egress proxy that resolves nothing, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDO_")}
    env["NO_COLOR"] = "1"
    env["AIDO_EGRESS_DNS"] = EGRESS_DNS
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


def answer_on_terminal(project: Path, *args: str, answer: bytes, timeout: float = 60) -> tuple[int, str]:
    """Run ``aido ARGS`` with stdin, stdout and stderr on one pseudo-terminal, answer the
    y/N prompt with ``answer``; returns the exit code and everything the terminal showed
    (its CR LF line ends as plain newlines)."""
    import pty
    import select

    master, slave = pty.openpty()
    process = subprocess.Popen(
        aido_argv(*args), cwd=project, env=aido_env(), stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    shown = bytearray()
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                pytest.fail(f"aido {' '.join(args)} did not finish within {timeout}s: {shown!r}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not data:
                    break
                shown += data
            if not answered and b"[y/N]" in shown:
                os.write(master, answer + b"\n")
                answered = True
        code = process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert answered, f"no y/N prompt was shown: {shown!r}"
    return code, shown.decode("utf-8", "replace").replace("\r\n", "\n")


# Runs the CLI through ``entry``'s main and, at exit (whatever the exit code), prints on
# stderr's last line the loaded modules that are, or are under, one of the given names.
_LOADED_PROBE = """
import atexit, json, sys
names = tuple(json.loads(sys.argv[1]))
atexit.register(lambda: print("LOADED", json.dumps(sorted(
    m for m in sys.modules if m in names or m.startswith(tuple(n + "." for n in names)))), file=sys.stderr))
from {entry} import main
main(sys.argv[2:])
"""


@dataclass
class Loaded:
    """One probed command: its exit code and output, and the watched modules it loaded."""

    code: int
    stdout: str
    stderr: str
    modules: list[str]


def loaded_modules(
    *args: str, watch: list[str], cwd: Path | None = None, entry: str = "aido.cli.app", timeout: float = 60
) -> Loaded:
    """Run ``aido ARGS`` in a child interpreter and report which of the ``watch``ed modules
    (and their submodules) it imported: how a test proves a cost is not paid."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_PROBE.format(entry=entry), json.dumps(watch), *args],
        cwd=cwd,
        env=aido_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    label, _, listed = done.stderr.rstrip("\n").rpartition("\n")[2].partition(" ")
    assert label == "LOADED", done.stderr
    return Loaded(done.returncode, done.stdout, done.stderr, json.loads(listed))
