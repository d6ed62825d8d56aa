"""The Docker adapter against the runtime contract, plus its engine client's failure modes."""

from __future__ import annotations

import pytest

from aido.backends.base import Backend, ExecRequest, Limits
from aido.backends.docker.adapter import DockerBackend
from aido.backends.docker.engine import MAX_API, MIN_API, Engine, EngineError
from aido.backends.docker.images import split_image
from aido.errors import RuntimeUnavailable
from tests.backends.contract import RequestFactory, RuntimeContract

pytestmark = pytest.mark.docker

NO_SOCKET = "unix:///nonexistent.sock"


@pytest.mark.usefixtures("engine")
class TestDockerRuntime(RuntimeContract):
    reports_pids = True  # a local engine: the container's pids cgroup is readable

    @pytest.fixture
    def adapter(self) -> Backend:
        return DockerBackend()

    def test_gvisor_is_offered_when_runsc_is_registered(self, adapter: DockerBackend) -> None:
        runtimes = adapter.diagnose()["oci_runtimes"]
        assert ("gvisor" in adapter.isolation_levels()) == ("runsc" in runtimes)

    def test_adapter_is_registered_as_docker(self) -> None:
        from aido.backends.registry import get_backend

        assert isinstance(get_backend("docker"), DockerBackend)
        assert DockerBackend.name == "docker"


@pytest.mark.usefixtures("engine")
class TestDockerRuntimeUnderGVisor(RuntimeContract):
    """The same contract with every request under gVisor (runsc), as `isolation: gvisor` runs."""

    reports_pids = True

    @pytest.fixture
    def adapter(self) -> Backend:
        adapter = DockerBackend()
        if "gvisor" not in adapter.isolation_levels():
            pytest.fail("runsc is not registered with the engine: run scripts/bootstrap.sh")
        return adapter

    @pytest.fixture
    def request_for(self, image: str, labels: dict[str, str]) -> RequestFactory:
        build = RuntimeContract.request_for.__wrapped__(self, image, labels)  # type: ignore[attr-defined]

        def gvisor(argv: list[str], **overrides: object) -> ExecRequest:
            overrides.setdefault("isolation", "gvisor")
            if "limits" not in overrides:
                # gVisor's own threads count against the pids cgroup (see manager.GVISOR_PIDS).
                overrides["limits"] = Limits(cpus=1.0, memory_bytes=256 << 20, pids=1024)
            return build(argv, **overrides)

        return gvisor

    def test_process_and_open_file_limits_are_enforced(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        """Under gVisor the pids cgroup counts the sandbox kernel's threads, not the task's
        processes, so only the open-file limit is the task's own; a thread storm must
        still end within the run (contained by the cgroup, whatever gVisor reports)."""
        spawn = (
            "import threading, time\n"
            "for _ in range(5000):\n"
            "    try:\n"
            "        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
            "    except RuntimeError:\n"
            "        break\n"
        )
        request = request_for(
            ["sh", "-c", 'ulimit -n; python3 -c "$0"', spawn],
            limits=Limits(cpus=1.0, memory_bytes=256 << 20, pids=1024, nofile=256),
            timeout_seconds=30.0,
        )
        outcome, captured = self.run(adapter, request)
        assert captured.stdout.split()[:1] == ["256"]
        assert not outcome.timed_out

    def test_reaching_the_pids_limit_is_reported(self, adapter: Backend, request_for: RequestFactory) -> None:
        pytest.skip(
            "under gVisor a task's forks are the sandbox kernel's own tasks, not host processes:"
            " they never reach the host's pids cgroup (the task within the limit is still checked)"
        )


# -- the engine client, directly ----------------------------------------------------------------


def test_engine_negotiates_an_api_version_within_the_supported_range(engine: None) -> None:
    client = Engine()
    version = client.negotiate()
    major, minor = (int(p) for p in version.split("."))
    assert MIN_API <= (major, minor) <= MAX_API
    assert client.call("GET", "/version")["ApiVersion"]


def test_engine_reports_http_errors_with_their_status(engine: None) -> None:
    with pytest.raises(EngineError) as caught:
        Engine().call("GET", "/containers/aido-no-such-container-0000/json")
    assert caught.value.status == 404
    assert caught.value.message


def test_unreachable_socket_is_an_engine_error_with_status_zero() -> None:
    client = Engine(NO_SOCKET)
    with pytest.raises(EngineError) as caught:
        client.negotiate()
    assert caught.value.status == 0
    assert "/nonexistent.sock" in caught.value.message


def test_unreachable_socket_makes_info_raise_runtime_unavailable_with_a_hint() -> None:
    with pytest.raises(RuntimeUnavailable) as caught:
        DockerBackend(host=NO_SOCKET).info()
    assert "unreachable" in caught.value.message
    assert "/nonexistent.sock" in caught.value.message
    assert caught.value.hint
    assert "DOCKER_HOST" in caught.value.hint


def test_unreachable_docker_host_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_SOCKET)
    with pytest.raises(RuntimeUnavailable) as caught:
        DockerBackend().info()
    assert "/nonexistent.sock" in caught.value.message


def test_unreachable_engine_makes_every_adapter_call_runtime_unavailable() -> None:
    adapter = DockerBackend(host=NO_SOCKET)
    with pytest.raises(RuntimeUnavailable):
        adapter.ensure_image("python:3.11-slim")
    with pytest.raises(RuntimeUnavailable):
        adapter.list_labelled({"aido.sandbox": "nothing"})
    with pytest.raises(RuntimeUnavailable):
        adapter.remove_labelled({"aido.sandbox": "nothing"})


@pytest.mark.parametrize("host", ["ssh://user@remote", "npipe:////./pipe/docker_engine", "tcp://"])
def test_unsupported_docker_host_scheme_is_named_in_the_message(host: str) -> None:
    with pytest.raises(EngineError) as caught:
        Engine(host)
    assert caught.value.status == 0
    assert "unsupported DOCKER_HOST" in caught.value.message
    assert host in caught.value.message
    assert "unix://" in caught.value.message
    assert "tcp://" in caught.value.message


def test_unsupported_docker_host_scheme_surfaces_as_runtime_unavailable() -> None:
    with pytest.raises(RuntimeUnavailable) as caught:
        DockerBackend(host="ssh://user@remote").info()
    assert "unsupported DOCKER_HOST" in caught.value.message
    assert caught.value.hint


def test_tcp_with_tls_verification_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    with pytest.raises(EngineError) as caught:
        Engine("tcp://127.0.0.1:2376")
    assert caught.value.status == 0
    assert "TLS" in caught.value.message


def test_closed_tcp_port_is_an_engine_error_with_status_zero() -> None:
    with pytest.raises(EngineError) as caught:
        Engine("tcp://127.0.0.1:1", timeout=5).negotiate()
    assert caught.value.status == 0


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("python:3.11-slim", ("python", "3.11-slim")),
        ("debian", ("debian", "latest")),
        ("localhost:5000/team/img", ("localhost:5000/team/img", "latest")),
        ("localhost:5000/team/img:v2", ("localhost:5000/team/img", "v2")),
        ("img@sha256:" + "a" * 64, ("img", "sha256:" + "a" * 64)),
    ],
)
def test_split_image_separates_name_and_tag(image: str, expected: tuple[str, str]) -> None:
    assert split_image(image) == expected
