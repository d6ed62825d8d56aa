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


def pool_containers(sandbox_id: str) -> list[str]:
    """The sandbox's warm pool containers (label aido.warm): ready, starting, or used and
    waiting for the keeper to remove them."""
    done = subprocess.run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            f"label=aido.sandbox={sandbox_id}",
            "--filter",
            "label=aido.warm",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def assert_no_containers(sandbox_id: str) -> None:
    assert labelled_containers(sandbox_id) == []
