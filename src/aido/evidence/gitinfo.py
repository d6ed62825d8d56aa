"""Git context of a run: the commit and working-tree status of the project, if it is a repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

GIT_TIMEOUT = 10.0


def find_repository(start: Path) -> Path | None:
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _git(repo: Path, *args: str) -> str | None:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            # fsmonitor and hooks are code from the repository's config: never run them.
            ["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-C", str(repo), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "replace")


def git_context(project: Path) -> dict[str, Any] | None:
    """None outside a repository (or without git); otherwise commit, branch and pre-run status."""
    repo = find_repository(project)
    if repo is None:
        return None
    commit = _git(repo, "rev-parse", "--verify", "-q", "HEAD")
    status = _git(repo, "status", "--porcelain=v1", "--untracked-files=normal")
    if status is None:
        return None
    branch = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    lines = [line for line in status.splitlines() if line.strip()]
    return {
        "repository": str(repo),
        "commit": commit.strip() if commit else None,
        "branch": branch.strip() if branch and branch.strip() != "HEAD" else None,
        "dirty": bool(lines),
        "status": lines[:1000],
    }
