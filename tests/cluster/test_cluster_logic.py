"""The cluster code's pure parts, without a cluster: where the address comes from, what the
inputs shipped to nodes hold, and how returned outputs are checked and stored."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from aido.cluster import accept, connect, dispatch
from aido.cluster.spec import NodeResult
from aido.config.settings import Settings
from aido.errors import ClusterUnavailable, UsageError
from tests.helpers.cli import aido_env


def test_address_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(connect.ENV, raising=False)
    configured = Settings(cluster="from-settings:6379")
    assert connect.resolve_address(None, None) is None
    assert connect.resolve_address(None, configured) == "from-settings:6379"
    monkeypatch.setenv(connect.ENV, " from-env:6379 ")
    assert connect.resolve_address(None, configured) == "from-env:6379"
    assert connect.resolve_address("flag:1", configured) == "flag:1"


@pytest.mark.parametrize("address", ["host:notaport", "host:0", "ray://host:70000"])
def test_bad_address_is_one_line(address: str) -> None:
    with pytest.raises(ClusterUnavailable) as caught:
        connect._host_port(address)
    assert "expected HOST:PORT" in caught.value.message


def test_address_forms() -> None:
    assert connect._host_port("auto") is None
    assert connect._host_port("ray://10.0.0.5:10001") == ("10.0.0.5", 10001)
    assert connect._host_port("[::1]:6379") == ("::1", 6379)


class _FlakyClientRay:
    """``ray.init`` as Ray Client fails when the head's per-driver server does not start:
    ConnectionAbortedError carrying the head's traceback, ``failures`` times over."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionAbortedError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def init(self, **kwargs: object) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(
                "Initialization failure from server:\nTraceback (most recent call last):\n"
                '  File "proxier.py", line 776, in Datapath\n'
                "RuntimeError: Proxy failed to Connect to backend! Check `ray_client_server.err`\n"
            )


def test_ray_client_server_start_failure_is_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(connect, "CLIENT_RETRY_SECONDS", 0.0)
    ray = _FlakyClientRay(failures=connect.CLIENT_ATTEMPTS - 1)
    with caplog.at_level("WARNING", logger="aido"):
        connect._init(ray, "ray://head:10001")
    assert ray.calls == connect.CLIENT_ATTEMPTS
    said = [r.getMessage() for r in caplog.records]  # the wait is explained, once per retry
    assert len(said) == connect.CLIENT_ATTEMPTS - 1
    assert "Proxy failed to Connect to backend" in said[0] and f"(2 of {connect.CLIENT_ATTEMPTS})" in said[0]


def test_ray_client_failure_names_the_heads_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the heading line alone: the head's last traceback line says what failed."""
    monkeypatch.setattr(connect, "CLIENT_RETRY_SECONDS", 0.0)
    ray = _FlakyClientRay(failures=99)
    with pytest.raises(ClusterUnavailable) as caught:
        connect._init(ray, "ray://head:10001")
    assert ray.calls == connect.CLIENT_ATTEMPTS
    assert caught.value.message == (
        "cannot connect to the Ray cluster at ray://head:10001: Initialization failure from server: "
        "RuntimeError: Proxy failed to Connect to backend! Check `ray_client_server.err`"
    )


@pytest.mark.parametrize(
    ("address", "error"),
    [("127.0.0.1:6379", ConnectionAbortedError), ("ray://head:10001", ConnectionError)],
    ids=["not-ray-client", "other-error"],
)
def test_other_connect_failures_are_not_retried(address: str, error: type[Exception]) -> None:
    ray = _FlakyClientRay(failures=1, error=error)
    with pytest.raises(ClusterUnavailable):
        connect._init(ray, address)
    assert ray.calls == 1


def test_inputs_pack_regular_files_only(tmp_path: Path) -> None:
    root = tmp_path / "inputs"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.csv").write_text("1,2\n")
    (root / "top.txt").write_text("x")
    os.symlink("/etc/passwd", root / "link")
    os.mkfifo(root / "fifo")
    with tarfile.open(fileobj=io.BytesIO(dispatch.pack_inputs(root))) as tar:
        assert sorted(m.name for m in tar.getmembers()) == ["data/a.csv", "top.txt"]
        assert all(m.isreg() for m in tar.getmembers())


def test_inputs_too_large_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "MAX_INPUTS", 10)
    root = tmp_path / "inputs"
    root.mkdir()
    (root / "big").write_bytes(b"x" * 11)
    with pytest.raises(UsageError, match="too large to send"):
        dispatch.pack_inputs(root)


def test_returned_outputs_must_be_sealed_and_the_runs_own() -> None:
    good = b"42\n"
    sealed = {"digests": {"outputs/run-003/r.txt": hashlib.sha256(good).hexdigest()}}
    result = NodeResult(
        b"",
        [
            ("outputs/run-003/r.txt", good),
            ("outputs/run-003/r.txt.forged", b"not sealed"),
            ("outputs/run-002/other.txt", good),
            ("outputs/run-003/../../escape", good),
        ],
        [],
    )
    kept, refused = accept._outputs(result, "run-003", sealed)
    assert kept == [("outputs/run-003/r.txt", good)]
    assert len(refused) == 3


def test_stored_outputs_never_overwrite_and_say_what_was_not_returned(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    (root / "run-003").mkdir(parents=True)
    (root / "run-003" / "taken.txt").write_text("someone else's")
    sealed = {
        "digests": {
            "outputs/run-003/new.txt": "x",
            "outputs/run-003/taken.txt": "y",
            "outputs/run-003/huge.bin": "z",
        }
    }
    outputs = [("outputs/run-003/new.txt", b"new"), ("outputs/run-003/taken.txt", b"mine")]
    reasons = [{"path": "outputs/run-003/huge.bin", "bytes": 1 << 30, "reason": "over the return limit"}]
    stored, missing = accept._store_outputs(root, outputs, sealed, reasons)
    assert stored == 1
    assert (root / "run-003" / "new.txt").read_bytes() == b"new"
    assert (root / "run-003" / "taken.txt").read_text() == "someone else's"
    by_path = {m["path"]: m for m in missing}
    assert by_path["outputs/run-003/taken.txt"]["reason"].startswith("not stored")
    assert by_path["outputs/run-003/huge.bin"] == reasons[0]


def test_output_directories_are_never_followed_through_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    (root / "run-003").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "run-003" / "sub")
    stored, missing = accept._store_outputs(
        root, [("outputs/run-003/sub/f.txt", b"x")], {"digests": {"outputs/run-003/sub/f.txt": "d"}}, []
    )
    assert stored == 0 and missing[0]["reason"].startswith("not stored")
    assert not any(elsewhere.iterdir())


def _aido_in_child(project: Path, setup: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``aido ARGV`` in a fresh interpreter, after ``setup`` (Python) has run in it."""
    (project / "t.py").write_text("print(1)\n")
    probe = f"import sys\n{setup}\nfrom aido.cli.main import main\nsys.argv = {['aido', *argv]!r}\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", probe],
        cwd=project,
        env=aido_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.docker
def test_a_local_run_never_imports_ray(sandbox: str, project: Path) -> None:
    """Ray is an optional extra and costs ~0.5 s to import: only --cluster may load it."""
    report = (
        "import atexit\n"
        "atexit.register(lambda: print('RAY' if 'ray' in sys.modules else 'NO-RAY', file=sys.stderr))"
    )
    done = _aido_in_child(project, report, "run", "t.py")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "NO-RAY"


@pytest.mark.docker
def test_without_ray_installed_a_cluster_run_says_how_to_get_it(sandbox: str, project: Path) -> None:
    no_ray = "sys.modules['ray'] = None  # as if `pip install aido` without the [ray] extra"
    done = _aido_in_child(project, no_ray, "run", "--cluster", "127.0.0.1:6379", "t.py")
    assert done.returncode == 125, done.stderr
    assert "needs Ray" in done.stderr and "pip install 'aido[ray]'" in done.stderr
    assert not any((project / ".aido" / "sandboxes" / sandbox / "runs").iterdir()), "nothing ran"
