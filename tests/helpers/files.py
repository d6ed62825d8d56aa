"""Files on the host: writing inputs, reading JSON, checking permission bits."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def as_unprivileged(body: Callable[[Path], None]) -> None:
    """Run ``body`` where mode bits apply: as ourselves, or as nobody when we are root
    (root bypasses permission bits, so a mode-000 test as root would prove nothing)."""
    base = Path(tempfile.mkdtemp(prefix="aido-test-"))
    os.chmod(base, 0o777)
    try:
        if os.geteuid() != 0:
            body(base)
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                body(base)
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged check failed (traceback above)"
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o700)
        shutil.rmtree(base, ignore_errors=True)


def in_child(body: Callable[[], None], *, max_fds: int | None = None, max_rss: int | None = None) -> None:
    """Run ``body`` in a forked child, with at most ``max_fds`` descriptors, and check after
    it ran that its peak memory grew by at most ``max_rss`` bytes over what the child had when
    forked: the test process's own size (which grows as the suite imports more) is not the
    body's. (Linux starts a forked child's peak at its resident size then.)"""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            if max_fds is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds))
            body()
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start
            code = 0 if max_rss is None or grown <= max_rss else 3
            if code:
                print(f"peak memory grew by {grown >> 20} MiB, over {max_rss >> 20} MiB", flush=True)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the check in the child failed (see its output)"
