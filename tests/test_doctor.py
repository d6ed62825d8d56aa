"""aido doctor (doctor.py): every check against the real engine, and each failure path on its own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aido import doctor
from aido.backends.docker.adapter import ENGINE_HINT, GVISOR_HINT, DockerBackend
from aido.doctor import (
    CGROUP_FIX,
    DEFAULT_IMAGES,
    FAIL,
    OK,
    SKIP,
    SKIPPED,
    WARN,
    Check,
    as_json,
    check_workspace,
    exit_code,
    render_rows,
    run_checks,
)
from aido.errors import RuntimeFailure
from aido.store.workspace import DIRNAME, Workspace
from tests.helpers.doctor import GOOD_FACTS, DoctorBackend, by_name
from tests.helpers.files import as_unprivileged

NAMES = [
    "engine",
    "oci_runtime:runc",
    "oci_runtime:runsc",
    "cgroup_limits",
    *(f"image:{image}" for image in DEFAULT_IMAGES),
    "egress_proxy",
    "workspace",
    "python",
    "signing key",
]
ENGINE_DEPENDENT = NAMES[1:-3]


def doctor_containers() -> set[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", "label=aido.doctor"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


# -- against the real engine -----------------------------------------------------------------


@pytest.mark.docker
def test_every_check_passes_on_this_machine(engine: None, tmp_path: Path) -> None:
    checks = run_checks(start=tmp_path)
    assert [check.name for check in checks] == NAMES
    failing = [check for check in checks if check.status != OK]
    assert not failing, failing
    assert all(check.fix is None for check in checks)
    assert exit_code(checks) == 0
    found = by_name(checks)
    assert found["engine"].detail.startswith("Docker ")
    assert ", API 1." in found["engine"].detail
    # Each isolation level was proven by a real container, under the runtime it names.
    assert "smoke run under runc ok in " in found["oci_runtime:runc"].detail
    assert "gVisor" in found["oci_runtime:runsc"].detail
    assert "smoke run under runsc ok in " in found["oci_runtime:runsc"].detail
    assert found["image:python:3.11-slim"].detail.startswith("present (sha256:")
    assert "no workspace yet" in found["workspace"].detail
    assert str(tmp_path.resolve() / DIRNAME) in found["workspace"].detail
    assert not (tmp_path / DIRNAME).exists(), "the doctor must not create the workspace"
    assert found["python"].detail.startswith("Python 3.")
    assert "aido " in found["python"].detail


@pytest.mark.docker
def test_smoke_runs_leave_no_container_behind(engine: None, tmp_path: Path) -> None:
    before = doctor_containers()
    checks = run_checks(start=tmp_path, images=())
    assert by_name(checks)["oci_runtime:runc"].status == OK
    assert doctor_containers() - before == set()


@pytest.mark.docker
def test_without_smoke_no_container_is_run(engine: None, tmp_path: Path) -> None:
    checks = by_name(run_checks(start=tmp_path, images=(), smoke=False))
    assert checks["oci_runtime:runc"].status == OK
    assert checks["oci_runtime:runc"].detail.startswith("present (runc")
    assert "smoke" not in checks["oci_runtime:runc"].detail
    assert "smoke" not in checks["oci_runtime:runsc"].detail


@pytest.mark.docker
def test_a_missing_image_is_a_warning(engine: None, tmp_path: Path) -> None:
    missing = "aido-doctor-test/never-built:0"
    checks = run_checks(start=tmp_path, images=(missing, "python:3.11-slim"), smoke=False)
    found = by_name(checks)
    check = found[f"image:{missing}"]
    assert check.status == WARN
    assert "not available locally" in check.detail
    assert check.fix is not None
    assert f"`docker pull {missing}`" in check.fix
    assert "scripts/bootstrap.sh" in check.fix
    assert found["image:python:3.11-slim"].status == OK
    assert exit_code(checks) == 0  # a warning does not fail the doctor


def test_an_unreachable_engine_fails_and_skips_what_needs_it(tmp_path: Path) -> None:
    checks = run_checks(DockerBackend("unix:///nonexistent.sock"), start=tmp_path)
    assert [check.name for check in checks] == NAMES
    found = by_name(checks)
    assert found["engine"].status == FAIL
    assert "unreachable" in found["engine"].detail
    assert "/nonexistent.sock" in found["engine"].detail
    assert found["engine"].fix == ENGINE_HINT
    for name in ENGINE_DEPENDENT:
        assert found[name].status == SKIP
        assert found[name].detail == SKIPPED
        assert found[name].fix
    assert found["workspace"].status == OK
    assert found["python"].status == OK
    assert exit_code(checks) == 1


def test_the_default_runtime_follows_docker_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    found = by_name(run_checks(start=tmp_path))
    assert found["engine"].status == FAIL
    assert found["engine"].fix == ENGINE_HINT
    assert found["cgroup_limits"].detail == SKIPPED


# -- the workspace -----------------------------------------------------------------------------


def test_an_existing_workspace_is_probed_and_left_clean(tmp_path: Path) -> None:
    workspace = Workspace.find_or_create(tmp_path)
    before = sorted(os.listdir(workspace.dir))
    deeper = tmp_path / "src" / "pkg"
    deeper.mkdir(parents=True)
    check = check_workspace(deeper)  # found like git finds .git: from a subdirectory too
    assert check.status == OK, check
    assert check.detail == f"{workspace.dir} is writable"
    assert sorted(os.listdir(workspace.dir)) == before


def test_without_a_workspace_the_directory_is_probed(tmp_path: Path) -> None:
    check = check_workspace(tmp_path)
    assert check.status == OK
    assert "no workspace yet" in check.detail
    assert str(tmp_path.resolve() / DIRNAME) in check.detail
    assert os.listdir(tmp_path) == []


def test_a_read_only_workspace_fails() -> None:
    def body(base: Path) -> None:  # as nobody when we are root: mode bits apply
        project = base / "project"
        project.mkdir()
        workspace = Workspace.find_or_create(project)
        os.chmod(workspace.dir, 0o500)
        check = check_workspace(project)
        assert check.status == FAIL, check
        assert f"{workspace.dir} is not writable" in check.detail
        assert check.fix is not None
        assert "chmod" in check.fix

    as_unprivileged(body)


def test_a_read_only_workspace_fails_in_process(tmp_path: Path) -> None:
    workspace = Workspace.find_or_create(tmp_path)
    os.chmod(workspace.dir, 0o500)
    try:
        check = check_workspace(tmp_path)
    finally:
        os.chmod(workspace.dir, 0o700)
    if os.getuid() == 0:
        return  # root writes through mode bits; test_a_read_only_workspace_fails covers it as nobody
    assert check.status == FAIL


def test_an_unwritable_directory_without_a_workspace_fails() -> None:
    def body(base: Path) -> None:
        project = base / "project"
        project.mkdir()
        os.chmod(project, 0o500)
        check = check_workspace(project)
        assert check.status == FAIL, check
        assert "cannot create one" in check.detail
        assert check.fix == "run aido from a project directory you can write to"

    as_unprivileged(body)


def test_a_refused_probe_fails_the_workspace_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = Workspace.find_or_create(tmp_path)
    real_open = os.open
    probes: list[str] = []

    def refuse(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        if ".aido-doctor-" in str(path):
            probes.append(str(path))
            assert flags & os.O_EXCL and flags & os.O_NOFOLLOW and flags & os.O_CREAT
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)  # the module doctor.py uses
    checks = run_checks(DockerBackend("unix:///nonexistent.sock"), start=tmp_path)
    check = by_name(checks)["workspace"]
    assert check.status == FAIL
    assert check.detail == f"{workspace.dir} is not writable: Permission denied"
    assert check.fix is not None
    assert str(workspace.dir) in check.fix
    assert probes and probes[0].startswith(str(workspace.dir) + "/")
    assert by_name(checks)["python"].status == OK  # the failure hid nothing


# -- with a stand-in adapter: each failure path, no engine needed ------------------------------


def test_the_smoke_request_is_tiny_hardened_and_labelled(tmp_path: Path) -> None:
    runtime = DoctorBackend()
    checks = run_checks(runtime, start=tmp_path)
    assert exit_code(checks) == 0, checks
    assert [r.isolation for r in runtime.requests] == ["default", "gvisor"]
    for request in runtime.requests:
        assert request.image == "python:3.11-slim"
        assert request.argv == ["sh", "-c", "echo ok"]
        assert request.mounts == []
        assert request.env == {}
        assert request.limits.cpus == 0.5
        assert request.limits.memory_bytes == 64 << 20
        assert request.timeout_seconds == 30
        assert request.labels == {"aido.managed": "true", "aido.doctor": "true"}
        assert request.user == "10001:10001"
        assert request.network is False
        assert request.name.startswith("aido-doctor-")
        assert len(request.name) == len("aido-doctor-") + 8
    assert runtime.requests[0].name != runtime.requests[1].name
    found = by_name(checks)
    assert found["engine"].detail == "Docker 99.0, API 1.45"
    assert found["oci_runtime:runc"].detail.startswith("present (runc 1.1.5, engine default); smoke run")
    cgroup = found["cgroup_limits"].detail
    assert cgroup == "memory (no swap), cpu and pids limits enforced (cgroup v2, systemd)"


def test_the_smoke_run_falls_back_to_debian(tmp_path: Path) -> None:
    runtime = DoctorBackend(images={"debian:bookworm-slim"})
    run_checks(runtime, start=tmp_path, images=())
    assert {r.image for r in runtime.requests} == {"debian:bookworm-slim"}


def test_without_a_smoke_image_the_runtime_is_a_warning(tmp_path: Path) -> None:
    runtime = DoctorBackend(images=set())
    found = by_name(run_checks(runtime, start=tmp_path, images=()))
    assert runtime.requests == []
    assert found["oci_runtime:runc"].status == WARN
    assert "smoke run skipped" in found["oci_runtime:runc"].detail
    assert found["oci_runtime:runc"].fix is not None


@pytest.mark.parametrize(
    ("stdout", "code", "expected"),
    [(b"ok\n", 1, "exit code 1: sh: boom"), (b"nope\n", 0, "unexpected output b'nope\\n'")],
)
def test_a_failed_smoke_run_fails(tmp_path: Path, stdout: bytes, code: int, expected: str) -> None:
    checks = run_checks(DoctorBackend(stdout=stdout, exit_code=code), start=tmp_path, images=())
    check = by_name(checks)["oci_runtime:runsc"]
    assert check.status == FAIL
    assert expected in check.detail
    assert check.fix is not None
    assert "--runtime=runsc" in check.fix
    assert exit_code(checks) == 1


def test_missing_runc_fails_and_missing_gvisor_warns(tmp_path: Path) -> None:
    runtime = DoctorBackend(facts={**GOOD_FACTS, "oci_runtimes": ["crun"], "default_oci_runtime": "crun"})
    found = by_name(run_checks(runtime, start=tmp_path, images=()))
    assert found["oci_runtime:runc"].status == FAIL
    assert "the engine has: crun" in found["oci_runtime:runc"].detail
    assert found["oci_runtime:runsc"].status == WARN
    assert "--isolation gvisor" in found["oci_runtime:runsc"].detail
    assert found["oci_runtime:runsc"].fix == GVISOR_HINT
    assert runtime.requests == []  # nothing to prove


def test_unenforceable_limits_fail_and_swap_warns(tmp_path: Path) -> None:
    no_limits = {**GOOD_FACTS, "memory_limit": False, "pids_limit": False, "rootless": True}
    check = by_name(run_checks(DoctorBackend(facts=no_limits), start=tmp_path, images=()))["cgroup_limits"]
    assert check.status == FAIL
    assert check.detail == "not enforceable: memory, pids limits (cgroup v2, systemd, rootless engine)"
    assert check.fix == CGROUP_FIX

    no_swap = {**GOOD_FACTS, "swap_limit": False}
    check = by_name(run_checks(DoctorBackend(facts=no_swap), start=tmp_path, images=()))["cgroup_limits"]
    assert check.status == WARN
    assert "memory+swap" in check.detail
    assert check.fix


def test_a_broken_diagnose_fails_only_what_needs_it(tmp_path: Path) -> None:
    class Broken(DoctorBackend):
        def diagnose(self) -> dict[str, Any]:
            raise RuntimeFailure("the engine said 500")

    checks = run_checks(Broken(), start=tmp_path)
    assert [check.name for check in checks] == NAMES
    found = by_name(checks)
    assert found["engine"].status == OK
    for name in ("oci_runtime:runc", "oci_runtime:runsc", "cgroup_limits"):
        assert found[name].status == FAIL
        assert found[name].detail == "cannot read the engine's facts: the engine said 500"
        assert found[name].fix
    assert found["image:python:3.11-slim"].status == OK
    assert found["workspace"].status == OK


def test_an_unexpected_error_in_one_check_hides_no_other(tmp_path: Path) -> None:
    class Crashing(DoctorBackend):
        def image_id(self, image: str) -> str | None:
            if image == "node:18-alpine":
                raise ValueError("surprise")
            return super().image_id(image)

    checks = run_checks(Crashing(), start=tmp_path)
    found = by_name(checks)
    assert found["image:node:18-alpine"].status == FAIL
    assert found["image:node:18-alpine"].detail == "ValueError: surprise"
    assert found["image:node:18-alpine"].fix == doctor.BUG_FIX
    assert [c.name for c in checks if c.status != OK] == ["image:node:18-alpine"]


def test_a_backend_that_cannot_tell_is_a_warning(tmp_path: Path) -> None:
    class Opaque(DoctorBackend):
        image_id = None  # type: ignore[assignment]  # a backend without image lookups

        def diagnose(self) -> dict[str, Any]:
            return {}

    runtime = Opaque()
    checks = run_checks(runtime, start=tmp_path)
    found = by_name(checks)
    for name in ENGINE_DEPENDENT:
        assert found[name].status == WARN, found[name]
        assert found[name].fix
    assert "cannot look images up" in found["image:python:3.11-slim"].detail
    assert exit_code(checks) == 0


# -- output --------------------------------------------------------------------------------------

HAND_MADE = [
    Check("engine", OK, "Docker 20.10.24, API 1.41", None),
    Check("oci_runtime:runsc", WARN, "gVisor is not installed", "install gVisor"),
    Check("workspace", FAIL, "/x/.aido is not writable: Permission denied", "chmod u+rwx /x/.aido"),
]


def test_render_rows() -> None:
    assert render_rows(HAND_MADE) == [
        ["✓", "engine", "Docker 20.10.24, API 1.41"],
        ["!", "oci_runtime:runsc", "gVisor is not installed"],
        ["✗", "workspace", "/x/.aido is not writable: Permission denied"],
    ]
    assert render_rows([]) == []


def test_as_json() -> None:
    assert as_json(HAND_MADE) == [
        {"name": "engine", "status": "ok", "detail": "Docker 20.10.24, API 1.41", "fix": None},
        {
            "name": "oci_runtime:runsc",
            "status": "warn",
            "detail": "gVisor is not installed",
            "fix": "install gVisor",
        },
        {
            "name": "workspace",
            "status": "fail",
            "detail": "/x/.aido is not writable: Permission denied",
            "fix": "chmod u+rwx /x/.aido",
        },
    ]


def test_exit_code() -> None:
    assert exit_code([]) == 0
    assert exit_code(HAND_MADE[:1]) == 0
    assert exit_code(HAND_MADE[:2]) == 0  # warnings pass
    assert exit_code(HAND_MADE) == 1


def test_python_check() -> None:
    check = doctor.check_python()
    assert check.status == OK
    assert check.name == "python"
    assert check.fix is None


def test_signing_key_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aido.doctor.host import check_signing_key
    from aido.evidence.keys import signing_key

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("AIDO_SIGNING_KEY", raising=False)
    first = check_signing_key()
    assert first.status == OK and "the first run makes one" in first.detail
    assert not (tmp_path / "cfg" / "aido" / "keys" / "signing.key").exists()  # doctor makes nothing
    keyid = signing_key().public.keyid
    assert keyid[:16] in check_signing_key().detail
    (tmp_path / "cfg" / "aido" / "keys" / "signing.key").chmod(0o644)
    unsafe = check_signing_key()
    assert unsafe.status == FAIL and "can be read by others" in unsafe.detail and unsafe.fix
