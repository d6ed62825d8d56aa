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


def labelled_containers(sandbox_id: str, *, pool: bool = True) -> list[str]:
    """Container ids (any state) that aido labelled for this sandbox, straight from the engine;
    ``pool=False`` leaves out its warm pool's (label aido.warm), which wait for runs by design."""
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=aido.sandbox={sandbox_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    found = done.stdout.split()
    if pool or not found:
        return found
    labels = subprocess.run(
        ["docker", "inspect", "--format", '{{.Id}} {{index .Config.Labels "aido.warm"}}', *found],
        capture_output=True,
        text=True,
        check=False,
    )
    warm = {line.split()[0][:12] for line in labels.stdout.splitlines() if len(line.split()) > 1}
    return [c for c in found if c[:12] not in warm]


def assert_no_containers(sandbox_id: str) -> None:
    assert labelled_containers(sandbox_id) == []
