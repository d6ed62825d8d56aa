"""aido.Sandbox end to end against the real engine: runs, results, files, streaming,
lifetime, and arguments refused with the CLI's messages."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

import aido
from aido.errors import ConfigError, FileNotInSandbox, NotConfirmed, SandboxNotFound, UsageError
from tests.helpers.engine import assert_no_containers
from tests.helpers.sandbox import events

pytestmark = pytest.mark.docker


def test_the_readme_snippet_works_as_written_and_the_sandbox_goes_on_exit(
    engine: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with aido.Sandbox(ttl="30m", runtime="python:3.11") as sb:
        r = sb.run_code("print(1)")
        r.exit_code, r.stdout, r.changes  # noqa: B018 -- the snippet, as the issue wrote it
    assert (r.exit_code, r.stdout, r.changes, r.ok) == (0, "1\n", (), True)
    assert r.status == "success" and r.task.startswith("snippet-") and r.duration > 0
    assert not (r.timed_out or r.oom_killed or r.pids_limit_reached or r.interrupted)
    assert r.evidence_path == tmp_path / ".aido" / "sandboxes" / sb.id / "runs" / "run-001"
    # Left the block: destroyed, its evidence archived, no container.
    assert not (tmp_path / ".aido" / "sandboxes" / sb.id).exists()
    assert (tmp_path / ".aido" / "archive" / sb.id / "runs" / "run-001" / "summary.json").is_file()
    assert_no_containers(sb.id)


def test_keep_and_open_attach_to_a_sandbox_that_outlives_the_block(engine: None, tmp_path: Path) -> None:
    with aido.Sandbox(runtime="python:3.11", workspace=tmp_path, keep=True) as first:
        first.run_code("open('/outputs/kept.txt', 'w').write('still here')")
    with aido.Sandbox.open(first.id, workspace=tmp_path) as again:
        assert again.get_file("kept.txt") == b"still here"
        assert [r.run_id for r in again.runs()] == ["run-001"]
        assert again.run_code("print(2)").run_id == "run-002"
    # Opened: kept on exit too, until destroyed explicitly.
    assert (tmp_path / ".aido" / "sandboxes" / first.id).is_dir()
    again.destroy()
    assert not (tmp_path / ".aido" / "sandboxes" / first.id).exists()
    with pytest.raises(SandboxNotFound, match=f"no sandbox {first.id}"):
        aido.Sandbox.open(first.id, workspace=tmp_path)


def test_run_a_file_with_arguments_and_environment(sb: aido.Sandbox, tmp_path: Path) -> None:
    task = tmp_path / "greet.py"
    task.write_text("import os, sys\nprint(os.environ['WHO'], *sys.argv[1:])\nsys.exit(3)\n")
    r = sb.run(task, ["a b", "--c"], env={"WHO": "hello"})
    assert r.stdout == "hello a b --c\n"
    assert (r.exit_code, r.process_exit_code, r.status, r.ok) == (3, 3, "failed", False)
    assert r.task == "greet.py"
    summary = json.loads((r.evidence_path / "summary.json").read_text())
    assert summary["task_source"] == "file" and summary["args"] == ["a b", "--c"]


def test_a_code_string_is_kept_in_the_evidence_and_verifies(sb: aido.Sandbox) -> None:
    code = "import sys\nprint('to err', file=sys.stderr)\nopen('/outputs/r.json', 'w').write('[1]')\n"
    r = sb.run_code(code)
    digest = hashlib.sha256(code.encode()).hexdigest()
    assert r.task == f"snippet-{digest[:12]}.py"
    assert (r.evidence_path / "task" / r.task).read_text() == code
    assert json.loads((r.evidence_path / "summary.json").read_text())["task_sha256"] == digest
    assert (r.stdout, r.stderr) == ("", "to err\n")
    [change] = [c for c in r.changes if c.path == "outputs/r.json"]
    assert change == aido.Change(
        "outputs/r.json", "added", "file", size=3, sha256=hashlib.sha256(b"[1]").hexdigest()
    )
    assert sb.verify(r).ok and sb.verify().verdict == "verified"
    assert sb.logs(r) == aido.RunLogs("", "to err\n")
    assert sb.get_run(r.run_id) == r


def test_run_many_runs_files_and_code_in_order(sb: aido.Sandbox, tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("import sys\nprint('file', sys.argv[1])\n")
    outcomes = sb.run_many(
        [aido.Code("import sys\nprint('code', sys.argv[1])"), tmp_path / "t.py"], ["x"], parallel=2
    )
    assert [o.stdout for o in outcomes] == ["code x\n", "file x\n"]
    first, second = (int(o.run_id.removeprefix("run-")) for o in outcomes)
    assert second == first + 1
    with pytest.raises(UsageError, match="run_many takes a list"):
        sb.run_many("t.py")  # type: ignore[arg-type]


def test_put_file_is_seen_at_inputs_and_recorded(sb: aido.Sandbox, tmp_path: Path) -> None:
    host = tmp_path / "host.bin"
    host.write_bytes(b"\x00\x01binary")
    assert sb.put_file("data/a.txt", "héllo") == aido.FileInfo(
        "data/a.txt", 6, hashlib.sha256("héllo".encode()).hexdigest()
    )
    sb.put_file("./data//b.bin", host)
    sb.put_file("data/a.txt", b"replaced")  # a second put replaces the file
    r = sb.run_code(
        "import os\nprint(open('/inputs/data/a.txt').read(), open('/inputs/data/b.bin', 'rb').read())\n"
        "open('/inputs/data/a.txt', 'w')"
    )
    assert r.stdout.startswith("replaced b'\\x00\\x01binary'\n")
    assert "Read-only file system" in r.stderr  # the sandbox's inputs stay read-only
    written = [e for e in events(sb.path / "events.log") if e["event"] == "input_written"]
    assert [e["path"] for e in written] == ["inputs/data/a.txt", "inputs/data/b.bin", "inputs/data/a.txt"]
    assert written[-1]["sha256"] == hashlib.sha256(b"replaced").hexdigest()
    assert sb.verify().ok  # inputs.json and earlier seals are untouched


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../escape.txt", "leaves inputs/"),
        ("data/../../escape.txt", "leaves inputs/"),
        ("/etc/passwd", "is absolute"),
        ("", "expected a relative path"),
        ("a\0b", "expected a relative path"),
        (".", "names inputs/ itself"),
    ],
)
def test_put_file_refuses_paths_leaving_inputs(sb: aido.Sandbox, path: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        sb.put_file(path, "x")
    assert not (sb.path / "escape.txt").exists()


def test_put_file_never_follows_a_link_left_in_inputs(sb: aido.Sandbox, tmp_path: Path) -> None:
    # What a task of a readwrite sandbox could leave behind: links out of inputs/.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("untouched")
    inputs = sb.path / "inputs"
    os.symlink(outside, inputs / "dirlink")
    os.symlink(outside / "victim.txt", inputs / "filelink")
    with pytest.raises(UsageError, match=r"cannot write inputs/dirlink/x\.txt"):
        sb.put_file("dirlink/x.txt", "x")
    sb.put_file("filelink", "new")  # the link itself is replaced
    assert (outside / "victim.txt").read_text() == "untouched"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert not (inputs / "filelink").is_symlink() and (inputs / "filelink").read_text() == "new"


def test_get_file_and_list_outputs_read_outputs_only(sb: aido.Sandbox) -> None:
    r = sb.run_code(
        "import os\nos.makedirs('/outputs/sub', exist_ok=True)\n"
        "open('/outputs/sub/report.json', 'w').write('{\"ok\": true}')\n"
        "os.symlink('/etc/passwd', '/outputs/link')\nos.symlink('/outputs/sub', '/outputs/dirlink')\n"
    )
    assert r.ok, r.stderr
    listed = {f.path: f for f in sb.list_outputs()}
    assert listed["sub/report.json"].size == 12
    assert listed["sub/report.json"].sha256 == hashlib.sha256(b'{"ok": true}').hexdigest()
    assert "link" not in listed and "dirlink" not in listed
    assert json.loads(sb.get_file("sub/report.json")) == {"ok": True}
    with pytest.raises(FileNotInSandbox, match="symbolic link"):
        sb.get_file("link")
    with pytest.raises(FileNotInSandbox):
        sb.get_file("dirlink/report.json")
    with pytest.raises(FileNotInSandbox, match="not a regular file"):
        sb.get_file("sub")
    with pytest.raises(FileNotInSandbox, match="outputs/missing: no such file"):
        sb.get_file("missing")
    with pytest.raises(UsageError, match="leaves outputs/"):
        sb.get_file("../sandbox.json")
    with pytest.raises(UsageError, match="more than the 4 asked for"):
        sb.get_file("sub/report.json", max_bytes=4)


def test_output_streams_to_the_callbacks_while_the_task_runs(sb: aido.Sandbox) -> None:
    chunks: list[tuple[str, float]] = []
    errs: list[str] = []
    r = sb.run_code(
        "import sys, time\nprint('first', flush=True)\nprint('é' * 3, file=sys.stderr, flush=True)\n"
        "time.sleep(2)\nprint('last')",
        on_stdout=lambda text: chunks.append((text, time.monotonic())),
        on_stderr=errs.append,
    )
    ended = time.monotonic()
    assert "".join(text for text, _ in chunks) == "first\nlast\n" == r.stdout
    assert "".join(errs) == "ééé\n"
    first_seen = next(at for text, at in chunks if "first" in text)
    assert ended - first_seen > 1.5  # delivered live, not at the end


def test_a_failing_callback_does_not_break_the_run(sb: aido.Sandbox) -> None:
    def broken(text: str) -> None:
        raise RuntimeError("callback bug")

    r = sb.run_code("print('fine')", on_stdout=broken)
    assert r.ok and r.stdout == "fine\n"


def test_limit_flags(sb: aido.Sandbox) -> None:
    slow = sb.run_code("import time\ntime.sleep(30)", timeout="1s")
    assert (slow.status, slow.timed_out, slow.ok, slow.process_exit_code) == ("timed_out", True, False, 124)
    hungry = sb.run_code("x = b'x' * (256 << 20)")
    assert hungry.oom_killed and not hungry.ok
    assert any("memory" in line for line in hungry.limits_exceeded)


def test_bad_arguments_are_refused_with_the_clis_messages(
    engine: None, tmp_path: Path, sb: aido.Sandbox
) -> None:
    with pytest.raises(ConfigError) as caught:
        aido.Sandbox(memory="lots", ttl="soon", cpus=0, workspace=tmp_path)
    assert caught.value.problems == [
        "Sandbox(): ttl: expected a duration like 90s, 15m or 2h, got 'soon'",
        "Sandbox(): cpus: expected a number of CPUs like 1 or 0.5 (more than 0, at most 256), got 0",
        "Sandbox(): memory: expected a size like 512M or 1G, got 'lots'",
    ]
    with pytest.raises(ConfigError, match=r"Sandbox\(\): runtime: unknown runtime 'cobol'"):
        aido.Sandbox(runtime="cobol", workspace=tmp_path)
    with pytest.raises(NotConfirmed, match="refusing to widen the sandbox without confirmation") as refused:
        aido.Sandbox(network=True, workspace=tmp_path)
    assert refused.value.hint is not None and refused.value.hint.startswith("pass confirm=")
    assert not (tmp_path / ".aido" / "sandboxes").exists() or not any(
        (tmp_path / ".aido" / "sandboxes").iterdir()
    )
    runs = len(sb.runs())
    with pytest.raises(UsageError, match="the code string is empty"):
        sb.run_code("")
    with pytest.raises(UsageError, match="args must be a list of strings"):
        sb.run_code("print(1)", "x")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--timeout: expected a duration"):
        sb.run_code("print(1)", timeout="5")
    with pytest.raises(UsageError, match=r"-e '1X=y': expected KEY=VALUE"):
        sb.run_code("print(1)", env={"1X": "y"})
    with pytest.raises(UsageError, match=r"runs everything with python:3\.11"):
        sb.run_code("console.log(1)", runtime="node")
    with pytest.raises(NotConfirmed, match="--network: the task can reach the network") as refused:
        sb.run_code("print(1)", widen=aido.Widening(network=True))
    assert refused.value.hint is not None and refused.value.hint.startswith("pass confirm=")
    assert len(sb.runs()) == runs  # nothing refused left a run behind
