"""Output capture with a size cap (evidence/capture.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aido.evidence.capture import DEFAULT_LIMIT, OutputCapture
from aido.store.workspace import STDERR as STDERR_LOG
from aido.store.workspace import STDOUT as STDOUT_LOG

STDOUT, STDERR = 1, 2


def _files(run_dir: Path) -> dict[int, Path]:
    """Where a run's streams go, as the run pipeline names them (store/workspace.py)."""
    return {STDOUT: run_dir / STDOUT_LOG, STDERR: run_dir / STDERR_LOG}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_captures_both_streams_to_their_own_files(tmp_path: Path) -> None:
    echoed: list[tuple[int, bytes]] = []
    capture = OutputCapture(_files(tmp_path), echo=lambda kind, data: echoed.append((kind, data)))
    capture.write(STDOUT, b"out 1\n")
    capture.write(STDERR, b"err 1\n")
    capture.write(STDOUT, b"out 2\n")
    summary = capture.close()
    assert (tmp_path / "stdout.log").read_bytes() == b"out 1\nout 2\n"
    assert (tmp_path / "stderr.log").read_bytes() == b"err 1\n"
    assert echoed == [(STDOUT, b"out 1\n"), (STDERR, b"err 1\n"), (STDOUT, b"out 2\n")]
    assert summary == {
        "stdout": {
            "path": "stdout.log",
            "bytes_total": 12,
            "bytes_captured": 12,
            "truncated": False,
            "limit": DEFAULT_LIMIT,
        },
        "stderr": {
            "path": "stderr.log",
            "bytes_total": 6,
            "bytes_captured": 6,
            "truncated": False,
            "limit": DEFAULT_LIMIT,
        },
    }


def test_default_limit() -> None:
    assert DEFAULT_LIMIT == 16 << 20


def test_caps_at_limit_marks_truncated_and_counts_everything(tmp_path: Path) -> None:
    echoed: list[bytes] = []
    capture = OutputCapture(_files(tmp_path), limit=10, echo=lambda kind, data: echoed.append(data))
    capture.write(STDOUT, b"0123456")  # 7: fits
    capture.write(STDOUT, b"789ABCDEF")  # only "789" fits
    capture.write(STDOUT, b"more and more")  # nothing fits
    capture.write(STDOUT, b"")
    summary = capture.close()
    assert (tmp_path / "stdout.log").read_bytes() == b"0123456789"
    # The echo callback sees exactly what was captured, never the dropped rest.
    assert echoed == [b"0123456", b"789"]
    assert b"".join(echoed) == (tmp_path / "stdout.log").read_bytes()
    assert summary["stdout"] == {
        "path": "stdout.log",
        "bytes_total": 7 + 9 + 13,
        "bytes_captured": 10,
        "truncated": True,
        "limit": 10,
    }
    assert summary["stderr"]["truncated"] is False


def test_exactly_at_limit_is_not_truncated(tmp_path: Path) -> None:
    capture = OutputCapture(_files(tmp_path), limit=5)
    capture.write(STDERR, b"12345")
    assert capture.stats[STDERR].truncated is False
    capture.write(STDERR, b"6")
    assert capture.stats[STDERR].truncated is True
    summary = capture.close()
    assert summary["stderr"]["bytes_captured"] == 5
    assert summary["stderr"]["bytes_total"] == 6
    assert (tmp_path / "stderr.log").read_bytes() == b"12345"


def test_streams_are_capped_independently(tmp_path: Path) -> None:
    capture = OutputCapture(_files(tmp_path), limit=4)
    capture.write(STDOUT, b"aaaaaaaa")
    capture.write(STDERR, b"bb")
    summary = capture.close()
    assert summary["stdout"]["truncated"] is True
    assert summary["stderr"] == {
        "path": "stderr.log",
        "bytes_total": 2,
        "bytes_captured": 2,
        "truncated": False,
        "limit": 4,
    }


def test_a_flood_is_bounded_on_disk(tmp_path: Path) -> None:
    capture = OutputCapture(_files(tmp_path), limit=64 << 10)
    chunk = b"x" * (1 << 20)
    for _ in range(50):  # 50 MiB written by the "task"
        capture.write(STDOUT, chunk)
    summary = capture.close()
    assert (tmp_path / "stdout.log").stat().st_size == 64 << 10
    assert summary["stdout"]["bytes_total"] == 50 << 20
    assert summary["stdout"]["truncated"] is True


def test_written_at_once_for_followers(tmp_path: Path) -> None:
    # `aido logs --follow` in another process sees each chunk as soon as it is written.
    capture = OutputCapture(_files(tmp_path))
    capture.write(STDOUT, b"first\n")
    assert (tmp_path / "stdout.log").read_bytes() == b"first\n"
    capture.close()


def test_echo_is_optional(tmp_path: Path) -> None:
    capture = OutputCapture(_files(tmp_path), limit=3)
    capture.write(STDOUT, b"abcdef")
    assert capture.close()["stdout"]["bytes_captured"] == 3


def test_pre_existing_stdout_log_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "stdout.log").write_bytes(b"forged by someone")
    with pytest.raises(FileExistsError):
        OutputCapture(_files(tmp_path))
    assert (tmp_path / "stdout.log").read_bytes() == b"forged by someone"


def test_planted_symlink_log_is_an_error_and_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    (tmp_path / "stdout.log").symlink_to(target)
    with pytest.raises(FileExistsError):
        OutputCapture(_files(tmp_path))
    assert not target.exists()


def test_files_are_new_each_time(tmp_path: Path) -> None:
    OutputCapture(_files(tmp_path)).close()
    with pytest.raises(FileExistsError):
        OutputCapture(_files(tmp_path))


def test_pre_existing_stderr_log_leaks_no_descriptor(tmp_path: Path) -> None:
    (tmp_path / "stderr.log").write_bytes(b"")
    before = _open_fds()
    with pytest.raises(FileExistsError):
        OutputCapture(_files(tmp_path))
    # stdout.log was opened before stderr.log failed: that descriptor must be closed.
    assert _open_fds() == before
