"""The host checks: the workspace is writable, and the Python aido runs under."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from aido.doctor.check import FAIL, OK, Check
from aido.store.workspace import DIRNAME, Workspace

MIN_PYTHON = (3, 11)


def check_workspace(start: Path | None = None) -> Check:
    """The workspace's ``.aido/`` must be writable; without one, the directory that would hold it."""
    name = "workspace"
    here = (start or Path.cwd()).resolve()
    workspace = Workspace.find(here)
    if workspace is not None:
        target = workspace.dir
        problem = _probe_writable(target)
        if problem is None:
            return Check(name, OK, f"{target} is writable", None)
        return Check(
            name,
            FAIL,
            f"{target} is not writable: {problem}",
            f"make it writable by this user (`chmod u+rwx {target}`, or fix its owner)",
        )
    problem = _probe_writable(here)
    if problem is None:
        return Check(
            name, OK, f"no workspace yet; `aido sandbox up` will create {here / DIRNAME} (writable)", None
        )
    return Check(
        name,
        FAIL,
        f"no workspace yet, and {here} is not writable, so `aido sandbox up` cannot create one: {problem}",
        "run aido from a project directory you can write to",
    )


def _probe_writable(directory: Path) -> str | None:
    """Create and delete a file in ``directory``; None when that worked, else why not."""
    probe = directory / f".aido-doctor-{secrets.token_hex(4)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(probe, flags, 0o600)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError as exc:
        return f"created {probe.name} but cannot delete it: {exc.strerror or exc}"
    return None


def check_python() -> Check:
    from aido import __version__

    version = ".".join(str(part) for part in sys.version_info[:3])
    detail = f"Python {version} ({sys.executable or 'unknown interpreter'}), aido {__version__}"
    if sys.version_info[:2] < MIN_PYTHON:
        wanted = ".".join(str(part) for part in MIN_PYTHON)
        return Check("python", FAIL, detail, f"install aido under Python {wanted} or newer")
    return Check("python", OK, detail, None)


def check_signing_key() -> Check:
    """The key that seals runs: usable, or made by the first run. Never made by doctor."""
    from aido.errors import SigningKeyError
    from aido.evidence.keys import ENV_KEY, key_dir, signing_key

    name = "signing key"
    if not os.environ.get(ENV_KEY) and not (key_dir() / "signing.key").exists():
        return Check(name, OK, f"none yet: the first run makes one in {key_dir()}", None)
    try:
        key = signing_key(create=False)
    except SigningKeyError as exc:
        return Check(name, FAIL, exc.message, exc.hint or f"fix or remove the key named by {ENV_KEY}")
    return Check(name, OK, f"{key.public.keyid[:16]} ({key.source})", None)
