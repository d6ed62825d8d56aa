"""``aido sandbox destroy`` and sandbox expiry, against the real engine."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.engine import assert_no_containers, labelled_containers
from tests.helpers.files import write
from tests.helpers.sandbox import TASK_UID, assert_no_run_consumed, events, sandbox_root, sandbox_up

pytestmark = pytest.mark.docker


def test_destroy_removes_containers_labelled_for_the_sandbox(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    other_id = sandbox_up(aido)
    dangling = []
    try:
        for sid in (sandbox_id, other_id):
            started = subprocess.run(
                [
                    "docker", "run", "-d", "--network", "none",
                    "--label", "aido.managed=true", "--label", f"aido.sandbox={sid}",
                    "debian:bookworm-slim", "sleep", "60",
                ],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            dangling.append(started.stdout.strip())
        assert len(labelled_containers(sandbox_id)) == 1

        result = aido("sandbox", "destroy", sandbox_id)
        assert result.code == 0, result.stderr
        assert f"✓ Sandbox destroyed: {sandbox_id} (1 container removed)" in result.stderr
        assert labelled_containers(sandbox_id) == []
        # Another sandbox's container is not touched.
        assert len(labelled_containers(other_id)) == 1
        last = events(project / ".aido" / "events.log")[-1]
        assert last["event"] == "sandbox_destroyed"
        assert last["sandbox_id"] == sandbox_id
        assert last["containers_removed"] == 1
        assert not sandbox_root(project, sandbox_id).exists()
        assert sandbox_root(project, other_id).is_dir()
    finally:
        subprocess.run(["docker", "rm", "-f", *dangling], capture_output=True, check=False)


def test_destroy_removes_files_the_task_wrote_even_locked_ones(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(
        project / "litter.py",
        "import os\n"
        "for base in ('/work', '/outputs'):\n"
        "    os.makedirs(f'{base}/deep/er/est')\n"
        "    open(f'{base}/deep/er/est/file.txt', 'w').write('x')\n"
        "    os.makedirs(f'{base}/locked/inner')\n"
        "    open(f'{base}/locked/inner/secret', 'w').write('y')\n"
        "    open(f'{base}/readonly.txt', 'w').write('z')\n"
        "    os.chmod(f'{base}/readonly.txt', 0)\n"
        "    os.chmod(f'{base}/locked/inner', 0)\n"
        "    os.chmod(f'{base}/locked', 0)\n"
        "print('littered')\n",
    )
    result = aido("run", "litter.py")
    assert result.code == 0, result.stderr
    root = sandbox_root(project, sandbox_id)
    for base in ("work", "outputs"):
        locked = root / base / "locked"
        assert stat.S_IMODE(locked.lstat().st_mode) == 0
        assert locked.lstat().st_uid == TASK_UID
        assert (root / base / "deep" / "er" / "est").lstat().st_uid == TASK_UID

    destroyed = aido("sandbox", "destroy")
    assert destroyed.code == 0, destroyed.stderr
    assert not root.exists()
    assert_no_containers(sandbox_id)


def test_destroy_all_removes_every_sandbox(aido: Aido, project: Path) -> None:
    ids = [sandbox_up(aido) for _ in range(3)]
    write(project / "hello.py", 'print("hi")\n')
    assert aido("run", "--sandbox", ids[0], "hello.py").code == 0

    result = aido("sandbox", "destroy", "--all")
    assert result.code == 0, result.stderr
    for sandbox_id in ids:
        assert f"✓ Sandbox destroyed: {sandbox_id}" in result.stderr
        assert not sandbox_root(project, sandbox_id).exists()
        assert_no_containers(sandbox_id)
    assert list((project / ".aido" / "sandboxes").iterdir()) == []
    assert not (project / ".aido" / "active").exists()
    destroyed = [
        e["sandbox_id"] for e in events(project / ".aido" / "events.log") if e["event"] == "sandbox_destroyed"
    ]
    assert sorted(destroyed) == sorted(ids)

    again = aido("sandbox", "destroy", "--all")
    assert again.code == 0
    assert "No sandboxes to destroy" in again.stderr


def test_destroying_a_non_active_sandbox_keeps_the_active_one(aido: Aido, project: Path) -> None:
    first = sandbox_up(aido)
    second = sandbox_up(aido)
    assert (project / ".aido" / "active").read_text().strip() == second
    result = aido("sandbox", "destroy", first)
    assert result.code == 0
    assert not sandbox_root(project, first).exists()
    assert (project / ".aido" / "active").read_text().strip() == second


def test_destroy_rejects_bad_arguments(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    unknown = aido("sandbox", "destroy", "zzzzzzzzzzzz")
    assert unknown.code == 3
    assert "no sandbox zzzzzzzzzzzz" in unknown.stderr
    malformed = aido("sandbox", "destroy", "../escape")
    assert malformed.code == 2
    assert "invalid sandbox id" in malformed.stderr
    both = aido("sandbox", "destroy", "--all", sandbox_id)
    assert both.code == 2
    assert sandbox_root(project, sandbox_id).is_dir()


def test_an_expired_sandbox_refuses_to_run(aido: Aido, project: Path) -> None:
    # --no-auto-cleanup keeps it after expiry (otherwise the next command would remove it).
    sandbox_id = sandbox_up(aido, "--ttl", "1s", "--no-auto-cleanup")
    write(project / "hello.py", 'print("hi")\n')
    time.sleep(1.5)
    result = aido("run", "hello.py")
    assert result.code == 3
    assert result.stdout == ""
    assert f"sandbox {sandbox_id} expired" in result.stderr
    assert "ttl was 1s" in result.stderr
    assert "aido sandbox up" in result.stderr
    assert f"aido sandbox destroy {sandbox_id}" in result.stderr
    assert_no_run_consumed(project, sandbox_id)

    as_json = aido("run", "hello.py", "--json")
    assert as_json.code == 3
    assert as_json.json["error"]["code"] == "sandbox_expired"

    listed = aido("sandbox", "list", "--json")
    (item,) = listed.json["sandboxes"]
    assert item["status"] == "expired"

    destroyed = aido("sandbox", "destroy")
    assert destroyed.code == 0
    assert not sandbox_root(project, sandbox_id).exists()
    assert_no_containers(sandbox_id)
