"""Asking the real Docker engine directly (not through aido)."""

from __future__ import annotations

import subprocess


def engine_ok() -> bool:
    """Whether ``docker info`` answers."""
    try:
        return (
            subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def labelled_containers(sandbox_id: str) -> list[str]:
    """Container ids (any state) that aido labelled for this sandbox, straight from the engine."""
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=aido.sandbox={sandbox_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def run_containers(sandbox_id: str) -> list[str]:
    """The sandbox's containers (any state) other than its warm pool's (label aido.warm:
    ready, starting, or used and waiting for the keeper). One listing, so that a pool
    container the keeper removes meanwhile is never mistaken for another."""
    done = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=aido.sandbox={sandbox_id}",
            "--format",
            '{{.ID}} {{.Label "aido.warm"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split()[0] for line in done.stdout.splitlines() if len(line.split()) == 1]


def assert_no_containers(sandbox_id: str) -> None:
    assert labelled_containers(sandbox_id) == []
