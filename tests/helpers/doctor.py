"""Doctor checks without an engine: the Docker backend with the engine's answers scripted."""

from __future__ import annotations

from typing import Any

from aido.backends.base import ExecOutcome, ExecRequest, Guard, OutputSink, RuntimeInfo
from aido.backends.docker.adapter import DockerBackend
from aido.doctor import DEFAULT_IMAGES, Check
from aido.egress import IMAGE as EGRESS_IMAGE


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


GOOD_FACTS: dict[str, Any] = {
    "oci_runtimes": ["runc", "runsc"],
    "default_oci_runtime": "runc",
    "runc_version": "1.1.5",
    "cgroup_version": "2",
    "cgroup_driver": "systemd",
    "memory_limit": True,
    "swap_limit": True,
    "pids_limit": True,
    "cpu_limit": True,
    "rootless": False,
}


class DoctorBackend(DockerBackend):
    """The Docker adapter with the engine replaced: facts, images and run results are given."""

    def __init__(
        self,
        facts: dict[str, Any] | None = None,
        images: set[str] | None = None,
        stdout: bytes = b"ok\n",
        exit_code: int = 0,
    ) -> None:
        super().__init__("unix:///nonexistent.sock")
        self.facts = dict(GOOD_FACTS if facts is None else facts)
        self.images = {*DEFAULT_IMAGES, EGRESS_IMAGE} if images is None else images
        self.stdout = stdout
        self.code = exit_code
        self.requests: list[ExecRequest] = []

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(name="docker", engine="docker", version="99.0", api_version="1.45")

    def diagnose(self) -> dict[str, Any]:
        return dict(self.facts)

    def image_id(self, image: str) -> str | None:
        return f"sha256:{'ab' * 32}" if image in self.images else None

    def run(self, request: ExecRequest, on_output: OutputSink, guard: Guard | None = None) -> ExecOutcome:
        self.requests.append(request)
        on_output(1, self.stdout)
        if self.code:
            on_output(2, b"sh: boom\n")
        runtime = "runsc" if request.isolation == "gvisor" else "runc"
        return ExecOutcome(
            exit_code=self.code,
            started_at="",
            finished_at="",
            duration_ms=5,
            applied={"runtime": runtime},
        )
