"""``resources.disk_quota: hard``: work/ and outputs/ on a filesystem of their own, so a
disk flood stops at the limit exactly (ENOSPC), with the mounts managed over the
sandbox's whole life: created at ``up``, restored after a reboot, removed by destroy
and by the TTL reaper. Needs aido to run as root (CI does)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from aido.errors import ConfigError
from aido.host import volume
from tests.helpers.cli import Aido, wait_for
from tests.helpers.files import as_unprivileged, write
from tests.helpers.hostile import hostile_sandbox
from tests.helpers.sandbox import record, sandbox_root, summary

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.getuid() != 0, reason="a hard disk quota mounts a filesystem: root only"),
]

MiB = 1 << 20
HARD_20M = "resources:\n  disk: 20M\n  disk_quota: hard\n"

FILL_MANY = """\
import itertools
chunk = b"\\xab" * (1 << 20)
for n in itertools.count():  # a new file whenever one write fails, until the disk is full
    try:
        with open(f"/outputs/fill-{n:04d}", "wb") as f:
            while True:
                f.write(chunk)
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC: the quota, not the file-size limit
            raise
"""


def mounts_under(path: Path) -> list[str]:
    table = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in table if line.split()[4].startswith(str(path))]


def disk_usage(path: Path) -> int:
    done = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def test_a_flood_stops_at_the_limit_and_is_reported(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", HARD_20M)
    sandbox_id = hostile_sandbox(aido)
    write(project / "fill.py", FILL_MANY)
    result = aido("run", "fill.py", "--timeout", "60s")
    assert result.code == 1, result.stderr  # the task died of its own uncaught ENOSPC
    assert "No space left on device" in result.stderr
    assert "disk quota reached" in result.stderr

    root = sandbox_root(project, sandbox_id)
    used = disk_usage(root / "outputs")
    # The host never holds more than the limit (ext4 rounding: within a few percent).
    assert used <= 20 * MiB * 1.05, f"{used} bytes on the host for a 20M hard quota"
    assert disk_usage(root / volume.IMAGE) <= 20 * MiB * 1.15  # the sparse image itself

    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "disk_limit"
    assert run_summary["exit_code"] == 1
    assert run_summary["disk"]["quota"] == "hard"
    assert run_summary["disk"]["exceeded"].startswith("disk quota reached")
    assert record(project, sandbox_id)["runs"][0]["status"] == "disk_limit"


def test_the_mounts_live_and_die_with_the_sandbox(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", HARD_20M)
    sandbox_id = hostile_sandbox(aido)
    root = sandbox_root(project, sandbox_id)
    assert sorted(mounts_under(root)) == sorted(
        [str(root / volume.MOUNT), str(root / "work"), str(root / "outputs")]
    )
    # The task's files are on the sandbox's filesystem, not the project's.
    write(project / "note.py", "open('/outputs/note.txt', 'w').write('kept')\n")
    assert aido("run", "note.py").code == 0
    assert (root / volume.MOUNT / "outputs" / "note.txt").read_text() == "kept"

    destroyed = aido("sandbox", "destroy", sandbox_id)
    assert destroyed.code == 0, destroyed.stderr
    assert mounts_under(root) == []
    assert not root.exists()
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    assert str(root) not in loops


def test_mounts_lost_in_a_reboot_are_restored_with_their_data(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", HARD_20M)
    sandbox_id = hostile_sandbox(aido)
    root = sandbox_root(project, sandbox_id)
    write(project / "put.py", "open('/work/state.txt', 'w').write('before the reboot')\n")
    assert aido("run", "put.py").code == 0
    for target in ("work", "outputs", volume.MOUNT):  # what a reboot does to them
        subprocess.run(["umount", str(root / target)], check=True)
    assert mounts_under(root) == []
    assert not (root / "work" / "state.txt").exists()

    write(project / "get.py", "print(open('/work/state.txt').read())\n")
    result = aido("run", "get.py")
    assert result.code == 0, result.stderr
    assert result.stdout == "before the reboot\n"
    assert len(mounts_under(root)) == 3


def test_the_reaper_unmounts_an_expired_sandbox(aido: Aido, project: Path) -> None:
    write(project / "sandbox.yaml", HARD_20M)
    sandbox_id = hostile_sandbox(aido, "--ttl", "2s", env={"AIDO_REAPER_INTERVAL": "1"})
    root = sandbox_root(project, sandbox_id)
    assert mounts_under(root)
    wait_for(lambda: not root.exists(), timeout=30, what="the reaper to destroy the expired sandbox")
    assert mounts_under(root) == []


def test_a_hard_quota_is_refused_without_root_before_anything_is_made() -> None:
    def body(base: Path) -> None:
        with pytest.raises(ConfigError) as caught:
            volume.check_possible()
        assert "needs aido to run as root" in caught.value.message
        assert caught.value.hint is not None and "disk_quota: soft" in caught.value.hint

    as_unprivileged(body)


def test_an_unmountable_image_leaves_no_half_made_sandbox(aido: Aido, project: Path, tmp_path: Path) -> None:
    # A PATH whose mkfs.ext4 fails: `sandbox up` must fail cleanly, nothing left mounted.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mkfs.ext4").write_text("#!/bin/sh\necho 'mkfs: no space' >&2\nexit 1\n")
    (fake / "mkfs.ext4").chmod(0o755)
    write(project / "sandbox.yaml", HARD_20M)
    started = time.monotonic()
    result = aido("sandbox", "up", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert result.code == 125, result.stderr
    assert "mkfs.ext4" in result.stderr and "no space" in result.stderr
    assert time.monotonic() - started < 30
    sandboxes = project / ".aido" / "sandboxes"
    assert not sandboxes.exists() or list(sandboxes.iterdir()) == []
    assert mounts_under(project) == []
