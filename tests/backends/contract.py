"""The contract every runtime adapter must fulfil (see aido/backends/base.py).

Subclass ``RuntimeContract`` in a ``test_*.py`` module and provide the ``adapter``
fixture (and, if the default does not suit the backend, ``image`` and
``missing_image``). Every test here then runs against that adapter and the real
backend: nothing is mocked. The image must provide ``sh`` and ``python3``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aido.backends.base import Backend, ExecOutcome, ExecRequest, Limits, Mount, RuntimeInfo
from aido.errors import ImageUnavailable

MIB = 1 << 20
RequestFactory = Callable[..., ExecRequest]


@dataclass
class Captured:
    """What ``on_output`` received, by stream."""

    chunks: list[tuple[int, bytes]] = field(default_factory=list)

    def __call__(self, kind: int, data: bytes) -> None:
        self.chunks.append((kind, data))

    def text(self, kind: int) -> str:
        return b"".join(d for k, d in self.chunks if k == kind).decode("utf-8", "replace")

    @property
    def stdout(self) -> str:
        return self.text(1)

    @property
    def stderr(self) -> str:
        return self.text(2)


def task_ids() -> tuple[int, int]:
    """The uid:gid a task runs as: never root (aido uses 10001 when it runs as root itself)."""
    if os.getuid() == 0:
        return 10001, 10001
    return os.getuid(), os.getgid()


class RuntimeContract:
    """Behaviour every Backend must show against its real backend."""

    reports_pids = False  # True: the adapter must say whether the pids limit was reached

    # -- what a concrete suite provides --------------------------------------------------

    @pytest.fixture
    def adapter(self) -> Backend:
        raise NotImplementedError("a runtime contract suite must provide the `adapter` fixture")

    @pytest.fixture
    def image(self) -> str:
        """A locally present image with sh and python3."""
        return "python:3.11-slim"

    @pytest.fixture
    def missing_image(self) -> str:
        """An image that is neither present nor pullable."""
        return f"aido-contract/no-such-image-{uuid.uuid4().hex[:8]}:never"

    # -- helpers ---------------------------------------------------------------------------

    @pytest.fixture
    def labels(self, adapter: Backend) -> Iterator[dict[str, str]]:
        """Labels unique to this test; anything left carrying them is removed afterwards."""
        unique = {"aido.contract": uuid.uuid4().hex}
        yield unique
        leftover = adapter.list_labelled(unique)
        if leftover:
            adapter.remove_labelled(unique)
        assert leftover == [], f"containers left behind: {leftover}"

    @pytest.fixture
    def request_for(self, image: str, labels: dict[str, str]) -> RequestFactory:
        """Build an ExecRequest with hardened defaults; keyword arguments override fields."""

        def build(argv: list[str], **overrides: object) -> ExecRequest:
            uid, gid = task_ids()
            fields: dict[str, object] = {
                "image": image,
                "argv": argv,
                "env": {"HOME": "/tmp", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
                "mounts": [],
                "limits": Limits(cpus=1.0, memory_bytes=256 * MIB, pids=128),
                "timeout_seconds": 60.0,
                "labels": labels,
                "name": f"aido-contract-{uuid.uuid4().hex[:12]}",
                "user": f"{uid}:{gid}",
                "workdir": "/tmp",
            }
            fields.update(overrides)
            return ExecRequest(**fields)  # type: ignore[arg-type]

        return build

    @staticmethod
    def run(adapter: Backend, request: ExecRequest) -> tuple[ExecOutcome, Captured]:
        captured = Captured()
        outcome = adapter.run(request, captured)
        return outcome, captured

    @staticmethod
    def writable_dir(path: Path) -> Path:
        """A host directory the task's uid may write to."""
        path.mkdir(parents=True, exist_ok=True)
        uid, gid = task_ids()
        if os.getuid() == 0:
            os.chown(path, uid, gid)
        return path

    # -- info and images -------------------------------------------------------------------

    def test_info_answers_with_name_and_version(self, adapter: Backend) -> None:
        info = adapter.info()
        assert isinstance(info, RuntimeInfo)
        assert info.name == adapter.name
        assert info.name
        assert info.version
        assert info.api_version

    def test_ensure_image_of_a_present_image_returns_its_id(self, adapter: Backend, image: str) -> None:
        image_id = adapter.ensure_image(image)
        assert isinstance(image_id, str)
        assert image_id
        # Asking again is idempotent.
        assert adapter.ensure_image(image) == image_id

    def test_ensure_image_of_a_missing_image_raises_image_unavailable_with_a_hint(
        self, adapter: Backend, missing_image: str
    ) -> None:
        started = time.monotonic()
        with pytest.raises(ImageUnavailable) as caught:
            adapter.ensure_image(missing_image)
        assert missing_image in caught.value.message
        assert caught.value.hint
        assert missing_image in caught.value.hint or "--runtime" in caught.value.hint
        assert time.monotonic() - started < 60

    # -- running ---------------------------------------------------------------------------

    def test_trivial_command_exits_zero_and_streams_stdout_and_stderr_separately(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        request = request_for(["sh", "-c", "echo to-stdout; echo to-stderr >&2"])
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0
        assert outcome.error is None
        assert not outcome.timed_out
        assert not outcome.oom_killed
        assert not outcome.interrupted
        assert captured.stdout == "to-stdout\n"
        assert captured.stderr == "to-stderr\n"
        assert {kind for kind, _ in captured.chunks} == {1, 2}
        assert outcome.started_at
        assert outcome.finished_at >= outcome.started_at
        assert outcome.duration_ms >= 0
        assert outcome.container_id
        assert outcome.image_id

    def test_large_output_arrives_complete_and_in_order(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        request = request_for(["python3", "-c", "import sys\nfor i in range(20000): print(i)"])
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0
        assert captured.stdout.splitlines() == [str(i) for i in range(20000)]

    def test_non_zero_exit_code_is_propagated(self, adapter: Backend, request_for: RequestFactory) -> None:
        outcome, _ = self.run(adapter, request_for(["sh", "-c", "exit 42"]))
        assert outcome.exit_code == 42
        assert outcome.error is None
        assert not outcome.timed_out

    def test_timeout_kills_the_task_promptly(self, adapter: Backend, request_for: RequestFactory) -> None:
        request = request_for(["sh", "-c", "echo started; sleep 30; echo never"], timeout_seconds=1.0)
        started = time.monotonic()
        outcome, captured = self.run(adapter, request)
        elapsed = time.monotonic() - started
        assert outcome.timed_out is True
        assert outcome.exit_code is None
        assert elapsed < 10, f"the timeout took {elapsed:.1f}s to take effect"
        assert captured.stdout == "started\n"

    def test_timeout_applies_to_a_task_that_closed_its_output(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        request = request_for(["sh", "-c", "exec >/dev/null 2>&1; sleep 30"], timeout_seconds=1.0)
        started = time.monotonic()
        outcome, _ = self.run(adapter, request)
        assert outcome.timed_out is True
        assert outcome.exit_code is None
        assert time.monotonic() - started < 10

    def test_a_background_child_does_not_keep_the_run_alive(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        request = request_for(["sh", "-c", "sleep 30 & echo main-done"], timeout_seconds=60.0)
        started = time.monotonic()
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0
        assert captured.stdout == "main-done\n"
        assert time.monotonic() - started < 10

    def test_memory_limit_is_enforced_by_an_oom_kill(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        request = request_for(
            ["python3", "-c", "data = b'x' * (256 << 20)\nprint(len(data))"],
            limits=Limits(cpus=1.0, memory_bytes=32 * MIB, pids=128),
        )
        outcome, captured = self.run(adapter, request)
        assert outcome.oom_killed is True
        assert outcome.exit_code != 0
        assert str(256 << 20) not in captured.stdout
        assert not outcome.timed_out

    def test_guard_reason_stops_the_task_and_is_reported(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        started = time.monotonic()
        calls: list[float] = []

        def guard() -> str | None:
            calls.append(time.monotonic())
            return "disk_limit" if calls[-1] - calls[0] > 1.0 else None

        captured = Captured()
        outcome = adapter.run(request_for(["sh", "-c", "echo up; sleep 30"]), captured, guard)
        assert outcome.stop_reason == "disk_limit"
        assert outcome.exit_code is None
        assert not outcome.timed_out and not outcome.interrupted
        assert captured.stdout == "up\n"
        assert time.monotonic() - started < 10
        assert len(calls) >= 3, "the guard must be polled several times a second"

    def test_a_guard_that_raises_still_stops_the_task(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        def guard() -> str | None:
            raise OSError("the sandbox directory vanished")

        captured = Captured()
        outcome = adapter.run(request_for(["sh", "-c", "sleep 30"], timeout_seconds=30.0), captured, guard)
        assert outcome.stop_reason is not None
        assert "vanished" in outcome.stop_reason
        assert outcome.exit_code is None

    def test_a_quiet_guard_changes_nothing(self, adapter: Backend, request_for: RequestFactory) -> None:
        captured = Captured()
        outcome = adapter.run(request_for(["sh", "-c", "echo fine"]), captured, lambda: None)
        assert outcome.exit_code == 0
        assert outcome.stop_reason is None

    def test_default_isolation_is_always_available(self, adapter: Backend) -> None:
        assert "default" in adapter.isolation_levels()

    def test_an_unknown_isolation_is_refused_with_the_fix(
        self, adapter: Backend, request_for: RequestFactory, labels: dict[str, str]
    ) -> None:
        from aido.errors import RuntimeUnavailable

        with pytest.raises(RuntimeUnavailable) as caught:
            self.run(adapter, request_for(["true"], isolation="teleport"))
        assert "teleport" in caught.value.message
        assert caught.value.hint
        assert adapter.list_labelled(labels) == []
        # Asked before any container exists (the manager does, before a run id exists).
        with pytest.raises(RuntimeUnavailable) as asked:
            adapter.check_isolation("teleport")
        assert "teleport" in asked.value.message
        assert asked.value.hint
        adapter.check_isolation("default")

    def test_file_size_limit_is_enforced(self, adapter: Backend, request_for: RequestFactory) -> None:
        write = (
            "import errno\n"
            "f = open('/tmp/big', 'wb')\n"
            "try:\n"
            "    for _ in range(64):\n"
            "        f.write(b'x' * (1 << 20)); f.flush()\n"
            "    print('wrote 64M')\n"
            "except OSError as exc:\n"
            "    print('stopped', errno.errorcode[exc.errno], f.tell())\n"
        )
        request = request_for(
            ["python3", "-c", write],
            limits=Limits(cpus=1.0, memory_bytes=256 * MIB, pids=128, fsize_bytes=8 * MIB),
        )
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0, captured.stderr
        assert captured.stdout.split()[:2] == ["stopped", "EFBIG"]
        assert int(captured.stdout.split()[2]) <= 8 * MIB
        assert {"Name": "fsize", "Soft": 8 * MIB, "Hard": 8 * MIB} in outcome.applied["ulimits"]

    def test_masked_path_hides_a_mounted_directory(
        self, adapter: Backend, request_for: RequestFactory, tmp_path: Path
    ) -> None:
        project = tmp_path / "project"
        (project / ".aido").mkdir(parents=True)
        (project / ".aido" / "secrets.json").write_text("{}")
        (project / "visible.txt").write_text("seen")
        project.chmod(0o755)
        tmp_path.chmod(0o755)
        request = request_for(
            [
                "sh",
                "-c",
                "cat /project/visible.txt; echo; ls -A /project/.aido | wc -l; touch /project/.aido/x",
            ],
            mounts=[Mount(str(project), "/project", read_only=True)],
            masked_paths=["/project/.aido"],
        )
        outcome, captured = self.run(adapter, request)
        assert captured.stdout.splitlines()[:2] == ["seen", "0"]
        assert outcome.exit_code != 0, "the masked path must not be writable"
        assert sorted(p.name for p in (project / ".aido").iterdir()) == ["secrets.json"]

    def test_process_and_open_file_limits_are_enforced(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        spawn = (
            "import threading, time\n"
            "started = 0\n"
            "try:\n"
            "    for _ in range(200):\n"
            "        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
            "        started += 1\n"
            "except RuntimeError:\n"
            "    pass\n"
            "print(started)\n"
        )
        request = request_for(
            ["sh", "-c", 'ulimit -n; python3 -c "$0"', spawn],
            limits=Limits(cpus=1.0, memory_bytes=256 * MIB, pids=16, nofile=256),
        )
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0, captured.stderr
        nofile, threads = captured.stdout.split()
        assert nofile == "256"
        assert 0 < int(threads) < 16

    def test_reaching_the_pids_limit_is_reported(self, adapter: Backend, request_for: RequestFactory) -> None:
        # Forks until the limit refuses one, then stays a moment so that a runtime that
        # watches while the task runs sees it; the task itself exits 0.
        fork = (
            "import os, time\n"
            "children = []\n"
            "try:\n"
            "    while len(children) < 500:\n"
            "        pid = os.fork()\n"
            "        if pid == 0:\n"
            "            time.sleep(5)\n"
            "            os._exit(0)\n"
            "        children.append(pid)\n"
            "except OSError:\n"
            "    pass\n"
            "print(len(children), flush=True)\n"
            "time.sleep(0.5)\n"
        )
        request = request_for(
            ["python3", "-c", fork], limits=Limits(cpus=1.0, memory_bytes=256 * MIB, pids=24)
        )
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0, captured.stderr
        assert int(captured.stdout) < 24
        assert outcome.pids_limit_hit in (True, None)  # None: this runtime cannot tell
        if self.reports_pids:
            assert outcome.pids_limit_hit is True

    def test_a_task_within_its_pids_limit_is_not_reported(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        outcome, captured = self.run(adapter, request_for(["sh", "-c", "sleep 0.3; echo ok"]))
        assert captured.stdout == "ok\n"
        assert outcome.pids_limit_hit in (False, None)
        if self.reports_pids:
            assert outcome.pids_limit_hit is False

    def test_network_is_disabled(self, adapter: Backend, request_for: RequestFactory) -> None:
        probe = (
            "import socket\n"
            "try:\n"
            "    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
            "    print('CONNECTED')\n"
            "except OSError as exc:\n"
            "    print('BLOCKED', exc)\n"
            "print('--- /proc/net/dev ---')\n"
            "print(open('/proc/net/dev').read())\n"
        )
        outcome, captured = self.run(adapter, request_for(["python3", "-c", probe]))
        assert outcome.exit_code == 0, captured.stderr
        assert "BLOCKED" in captured.stdout
        assert "CONNECTED" not in captured.stdout
        net_dev = captured.stdout.split("--- /proc/net/dev ---", 1)[1]
        interfaces = [line.split(":", 1)[0].strip() for line in net_dev.splitlines() if ":" in line]
        assert interfaces == ["lo"]

    def test_runs_as_the_requested_non_root_user(self, adapter: Backend, request_for: RequestFactory) -> None:
        uid, gid = task_ids()
        outcome, captured = self.run(adapter, request_for(["sh", "-c", "id -u; id -g"]))
        assert outcome.exit_code == 0
        assert captured.stdout.split() == [str(uid), str(gid)]
        assert uid != 0

    def test_root_filesystem_is_read_only_but_tmp_is_writable(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        script = (
            "if echo x > /etc/x; then echo ETC-WRITTEN; else echo ETC-REFUSED; fi; "
            "if touch /x 2>/dev/null; then echo ROOT-WRITTEN; else echo ROOT-REFUSED; fi; "
            "echo scratch > /tmp/scratch && cat /tmp/scratch"
        )
        outcome, captured = self.run(adapter, request_for(["sh", "-c", script]))
        assert outcome.exit_code == 0, captured.stderr
        assert captured.stdout.split() == ["ETC-REFUSED", "ROOT-REFUSED", "scratch"]
        # EROFS under runc; gVisor answers EACCES for the same refusal.
        assert any(m in captured.stderr.lower() for m in ("read-only file system", "permission denied"))

    def test_read_only_mount_cannot_be_written(
        self, adapter: Backend, request_for: RequestFactory, tmp_path: Path
    ) -> None:
        source = self.writable_dir(tmp_path / "ro")
        (source / "given.txt").write_text("original\n")
        os.chmod(source / "given.txt", 0o666)
        request = request_for(
            [
                "sh",
                "-c",
                "cat /data/given.txt; "
                "if echo changed > /data/given.txt; then echo MODIFIED; else echo REFUSED-MODIFY; fi; "
                "if echo new > /data/new.txt; then echo CREATED; else echo REFUSED-CREATE; fi",
            ],
            mounts=[Mount(str(source), "/data", read_only=True)],
        )
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0
        assert captured.stdout.split() == ["original", "REFUSED-MODIFY", "REFUSED-CREATE"]
        assert (source / "given.txt").read_text() == "original\n"
        assert sorted(p.name for p in source.iterdir()) == ["given.txt"]

    def test_read_write_mount_can_be_written(
        self, adapter: Backend, request_for: RequestFactory, tmp_path: Path
    ) -> None:
        target = self.writable_dir(tmp_path / "rw")
        request = request_for(
            ["sh", "-c", "echo from-task > /out/result.txt && mkdir /out/sub && echo deep > /out/sub/f"],
            mounts=[Mount(str(target), "/out", read_only=False)],
        )
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0, captured.stderr
        assert (target / "result.txt").read_text() == "from-task\n"
        assert (target / "sub" / "f").read_text() == "deep\n"
        assert (target / "result.txt").stat().st_uid == task_ids()[0]

    def test_environment_is_exactly_what_was_requested(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        os.environ["AIDO_CONTRACT_HOST_ONLY"] = "host-value"
        try:
            request = request_for(
                ["sh", "-c", 'echo "greeting=$GREETING"; echo "spaced=$SPACED"; env'],
                env={"GREETING": "hello", "SPACED": "a b  c"},
            )
            outcome, captured = self.run(adapter, request)
        finally:
            del os.environ["AIDO_CONTRACT_HOST_ONLY"]
        assert outcome.exit_code == 0
        lines = captured.stdout.splitlines()
        assert lines[0] == "greeting=hello"
        assert lines[1] == "spaced=a b  c"
        assert "AIDO_CONTRACT_HOST_ONLY" not in captured.stdout
        assert "host-value" not in captured.stdout

    def test_arguments_are_passed_as_a_list_without_shell_interpretation(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        tricky = ["$(id)", "a;b", "'quoted'", "two words", "*"]
        request = request_for(["python3", "-c", "import sys\nfor a in sys.argv[1:]: print(a)", *tricky])
        outcome, captured = self.run(adapter, request)
        assert outcome.exit_code == 0
        assert captured.stdout.splitlines() == tricky

    def test_applied_settings_are_read_back_from_the_engine(
        self, adapter: Backend, request_for: RequestFactory
    ) -> None:
        limits = Limits(cpus=0.5, memory_bytes=96 * MIB, pids=1077)
        request = request_for(["true"], limits=limits)
        outcome, _ = self.run(adapter, request)
        assert outcome.exit_code == 0
        applied = outcome.applied
        assert applied["cap_drop"] == ["ALL"]
        assert not applied["cap_add"]
        assert any(opt.startswith("no-new-privileges") for opt in applied["security_opt"])
        assert applied["readonly_rootfs"] is True
        assert applied["network_mode"] == "none"
        assert applied["memory_bytes"] == limits.memory_bytes
        assert applied["memory_swap_bytes"] == applied["memory_bytes"]
        assert applied["pids_limit"] == limits.pids
        assert applied["cpus"] == pytest.approx(limits.cpus)
        assert applied["init"] is True
        assert applied["privileged"] is False
        assert applied["user"] == request.user
        assert "/tmp" in applied["tmpfs"]

    def test_container_is_removed_after_the_run(
        self, adapter: Backend, request_for: RequestFactory, labels: dict[str, str]
    ) -> None:
        outcome, _ = self.run(adapter, request_for(["sh", "-c", "exit 3"]))
        assert outcome.exit_code == 3
        assert adapter.list_labelled(labels) == []

    def test_container_is_removed_after_a_timeout(
        self, adapter: Backend, request_for: RequestFactory, labels: dict[str, str]
    ) -> None:
        outcome, _ = self.run(adapter, request_for(["sleep", "30"], timeout_seconds=1.0))
        assert outcome.timed_out
        assert adapter.list_labelled(labels) == []

    def test_ctrl_c_stops_the_task_and_returns_an_interrupted_outcome(
        self, adapter: Backend, request_for: RequestFactory, labels: dict[str, str]
    ) -> None:
        """SIGINT reaches the main thread while it waits on the task, as Ctrl-C would."""
        main = threading.main_thread().ident
        assert main is not None and threading.get_ident() == main, "needs the main thread"
        fired = threading.Event()

        def interrupt_soon(kind: int, data: bytes) -> None:
            if not fired.is_set():
                fired.set()
                threading.Timer(0.3, signal.pthread_kill, args=(main, signal.SIGINT)).start()

        request = request_for(["sh", "-c", "echo ready; sleep 30"], timeout_seconds=60.0)
        started = time.monotonic()
        try:
            outcome = adapter.run(request, interrupt_soon)
        except KeyboardInterrupt:
            pytest.fail("run() let KeyboardInterrupt escape instead of returning interrupted=True")
        assert fired.is_set()
        assert outcome.interrupted is True
        assert outcome.exit_code is None
        assert time.monotonic() - started < 15
        assert adapter.list_labelled(labels) == []

    # -- labelled containers ----------------------------------------------------------------

    def test_list_and_remove_labelled_handle_a_leftover_container(
        self, adapter: Backend, image: str, labels: dict[str, str]
    ) -> None:
        (key, value) = next(iter(labels.items()))
        started = subprocess.run(
            ["docker", "run", "-d", "--label", f"{key}={value}", "--network", "none", image, "sleep", "60"],
            capture_output=True,
            text=True,
            check=True,
        )
        container_id = started.stdout.strip()
        try:
            listed = adapter.list_labelled(labels)
            assert [c["id"] for c in listed] == [container_id]
            assert listed[0]["labels"][key] == value
            assert listed[0]["state"] == "running"
            # Labels are matched all together: an extra label that this container lacks excludes it.
            assert adapter.list_labelled({**labels, "aido.contract.other": "x"}) == []

            removed = adapter.remove_labelled(labels)
            assert removed == [container_id]
            assert adapter.list_labelled(labels) == []
            gone = subprocess.run(
                ["docker", "ps", "-aq", "--no-trunc", "--filter", f"id={container_id}"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert gone.stdout.strip() == ""
        finally:
            subprocess.run(["docker", "rm", "-f", container_id], capture_output=True, check=False)

    def test_remove_labelled_with_nothing_to_remove_returns_empty(
        self, adapter: Backend, labels: dict[str, str]
    ) -> None:
        assert adapter.remove_labelled(labels) == []
        assert adapter.list_labelled(labels) == []
