"""``aido run`` as a user meets it, against the real engine through the real CLI: several
tasks at once (labels, run ids in argument order, prefixed live output, no banner before
every task is checked), the `--` hint, stdin (closed, or forwarded with -i), the warning
for a task whose extension does not match the sandbox's runtime, and the context kept in
JSON envelopes.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.helpers.cli import Aido, aido_argv, aido_env
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import write
from tests.helpers.sandbox import assert_no_run_consumed, record, summary

# -- several tasks at once ----------------------------------------------------------------------


def test_batch_run_ids_follow_the_argument_order(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up_python(aido)
    tasks = []
    for n in range(16):
        tasks.append(f"t{n:02d}.py")
        # The first tasks run longest: finishing order is the reverse of argument order.
        write(project / tasks[-1], f"import time\ntime.sleep({(16 - n) * 0.03:.2f})\nprint({n})\n")
    result = aido("run", *tasks, "--json", timeout=300)
    assert result.code == 0, result.stderr
    runs = result.json["runs"]
    assert [r["task"] for r in runs] == tasks
    assert [r["run_id"] for r in runs] == [f"run-{n:03d}" for n in range(1, 17)]
    refs = {r["run_id"]: r["task"] for r in record(project, sandbox_id)["runs"]}
    assert [refs[f"run-{n:03d}"] for n in range(1, 17)] == tasks

    # With fewer workers than tasks, too.
    again = aido("run", "--parallel", "3", *tasks[:6], "--json", timeout=300)
    assert again.code == 0, again.stderr
    assert [r["run_id"] for r in again.json["runs"]] == [f"run-{n:03d}" for n in range(17, 23)]


def test_batch_output_is_streamed_with_each_task_s_path_as_given(aido: Aido, project: Path) -> None:
    sandbox_up_python(aido)
    task = (
        "import sys\nprint('out', sys.argv[1])\nprint('err', sys.argv[1], file=sys.stderr)\n"
        "sys.stdout.write('end')\n"
    )
    write(project / "a.py", task)
    write(project / "sub" / "a.py", task + "sys.exit(3)\n")
    result = aido("run", "./a.py", "sub/a.py", "--", "x")
    assert result.code == 3, result.stderr
    # Each line of each task, prefixed with its label padded to the longest; an unfinished
    # last line is still shown, on its own line.
    assert sorted(result.stdout.splitlines()) == [
        "./a.py   | end",
        "./a.py   | out x",
        "sub/a.py | end",
        "sub/a.py | out x",
    ]
    err = result.stderr.splitlines()
    assert "./a.py   | err x" in err
    assert "sub/a.py | err x" in err
    # Outcome lines name the path as given, not the basename.
    assert any(line.startswith("✓ run-001 ./a.py: Task completed") for line in err), err
    assert any(line.startswith("✗ run-002 sub/a.py: Task failed (exit code: 3)") for line in err), err


def test_batch_copies_are_labelled_apart(aido: Aido, project: Path) -> None:
    sandbox_up_python(aido)
    write(project / "a.py", "print('hi')\n")
    result = aido("run", "--parallel", "2", "a.py")
    assert result.code == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["a.py#1 | hi", "a.py#2 | hi"]
    labels = aido("run", "--parallel", "2", "a.py", "--json")
    assert [r["label"] for r in labels.json["runs"]] == ["a.py#1", "a.py#2"]
    twice = aido("run", "a.py", "./a.py", "a.py", "--json")
    assert [r["label"] for r in twice.json["runs"]] == ["a.py#1", "./a.py", "a.py#2"]


def test_a_bad_task_stops_the_batch_before_its_banner(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up_python(aido)
    write(project / "a.py", "print('a')\n")
    (project / "folder.py").mkdir()
    for bad, code in (("missing.py", 127), ("folder.py", 126)):
        result = aido("run", "a.py", bad, "a.py")
        assert result.code == code, result.stderr
        assert bad in result.stderr
        assert "Running" not in result.stderr
        assert result.stdout == ""
        assert_no_run_consumed(project, sandbox_id)
    assert_no_containers(sandbox_id)


# -- arguments and stdin ------------------------------------------------------------------------


def test_an_argument_without_dashdash_gets_a_hint(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up_python(aido)
    write(project / "a.py", "print('a')\n")
    result = aido("run", "a.py", "5", "--verbose")
    assert result.code == 127
    assert "task file '5' not found" in result.stderr
    assert "aido run a.py -- 5 --verbose" not in result.stderr  # --verbose is aido's own flag
    assert "hint: arguments for the task go after `--`: aido run a.py -- 5" in result.stderr
    envelope = aido("run", "a.py", "5", "two words", "--json").json
    assert envelope["error"]["hint"] == "arguments for the task go after `--`: aido run a.py -- 5 'two words'"
    # A missing task that looks like one keeps the plain hint.
    missing = aido("run", "a.py", "b.py")
    assert missing.code == 127
    assert "-- " not in missing.stderr
    assert_no_run_consumed(project, sandbox_id)


READ_STDIN = "import sys\ndata = sys.stdin.read()\nprint(repr(data.upper()))\n"


def test_stdin_is_closed_unless_forwarded_with_i(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up_python(aido)
    write(project / "up.py", READ_STDIN)
    closed = aido("run", "up.py", input="hello\n")
    assert closed.code == 0, closed.stderr
    assert closed.stdout == "''\n"
    assert summary(project, sandbox_id, "run-001")["security"]["requested"]["stdin"] == "closed"

    forwarded = aido("run", "-i", "up.py", input="hello\nworld\n")
    assert forwarded.code == 0, forwarded.stderr
    assert forwarded.stdout == "'HELLO\\nWORLD\\n'\n"
    assert summary(project, sandbox_id, "run-002")["security"]["requested"]["stdin"] == "forwarded"

    empty = aido("run", "--interactive", "up.py", input="")
    assert empty.code == 0, empty.stderr
    assert empty.stdout == "''\n"


def test_i_forwards_a_large_stream_and_does_not_hang_on_a_task_that_ignores_it(
    aido: Aido, project: Path
) -> None:
    sandbox_up_python(aido)
    write(project / "count.py", "import sys\nprint(len(sys.stdin.buffer.read()))\n")
    big = "x" * (3 << 20)
    result = aido("run", "-i", "count.py", input=big)
    assert result.code == 0, result.stderr
    assert result.stdout == f"{len(big)}\n"

    # The host's stdin never ends (`yes |`), the task exits without reading it: aido exits too.
    write(project / "quick.py", "print('done')\n")
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        assert yes.stdout is not None
        done = subprocess.run(
            aido_argv("run", "-i", "quick.py"),
            stdin=yes.stdout,
            env=aido_env(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=project,
            check=False,
        )
    finally:
        yes.kill()
        yes.wait()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"


def test_i_is_for_one_task_and_needs_a_stdin(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up_python(aido)
    write(project / "up.py", READ_STDIN)
    for args in (("up.py", "up.py"), ("--parallel", "2", "up.py")):
        result = aido("run", "-i", *args)
        assert result.code == 2
        assert "one task" in result.stderr
    no_stdin = subprocess.run(
        aido_argv("run", "-i", "up.py"),
        env=aido_env(),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.close(0),  # `aido run -i up.py <&-`
    )
    assert no_stdin.returncode == 2, no_stdin.stderr
    assert "no stdin to forward" in no_stdin.stderr
    assert_no_run_consumed(project, sandbox_id)


def test_i_waits_on_a_non_blocking_stdin(aido: Aido, project: Path) -> None:
    sandbox_up_python(aido)
    write(project / "up.py", READ_STDIN)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)  # as some parents leave it: reads fail with EAGAIN
    try:
        process = subprocess.Popen(
            aido_argv("run", "-i", "up.py"),
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=aido_env(),
            cwd=project,
            text=True,
        )
        try:
            time.sleep(2)
            os.write(write_end, b"late\n")
            os.close(write_end)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        os.close(read_end)
    assert process.returncode == 0, stderr
    assert stdout == "'LATE\\n'\n"


# -- runtime and extension ----------------------------------------------------------------------


def test_an_extension_that_does_not_match_the_runtime_is_warned_and_recorded(
    aido: Aido, project: Path
) -> None:
    sandbox_id = sandbox_up_python(aido)
    write(project / "x.js", "print('valid python too')\n")
    result = aido("run", "x.js")
    assert result.code == 0, result.stderr
    assert result.stdout == "valid python too\n"
    warning = "'x.js' looks like a node task but the sandbox's runtime is python:3.11: it runs with python"
    assert [line for line in result.stderr.splitlines() if "looks like" in line] == [
        f"aido: warning: {warning}"
    ]
    assert summary(project, sandbox_id, "run-001")["warnings"] == [warning]

    write(project / "y.py", "print('y')\n")
    fine = aido("run", "y.py")
    assert fine.code == 0, fine.stderr
    assert "looks like" not in fine.stderr
    assert summary(project, sandbox_id, "run-002")["warnings"] == []


# -- JSON envelopes -----------------------------------------------------------------------------


def test_envelopes_carry_the_exit_code_and_the_context_they_know(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up_python(aido)
    up_again = aido("sandbox", "list", "--json")
    assert up_again.code == 0
    assert up_again.json["exit_code"] == 0

    missing = aido("run", "nope.py", "--json")
    assert missing.code == 127
    assert missing.json["status"] == "error"
    assert missing.json["exit_code"] == 127
    assert missing.json["sandbox_id"] == sandbox_id
    assert missing.json["error"]["code"] == "task_not_found"

    write(project / "a.py", "print('a')\n")
    ok = aido("run", "a.py", "--json")
    assert ok.code == 0, ok.stderr
    assert ok.json["exit_code"] == 0
    assert ok.json["sandbox_id"] == sandbox_id
    assert ok.json["run_id"] == "run-001"


def sandbox_up_python(aido: Aido) -> str:
    result = aido("sandbox", "up", "--runtime", "python:3.11", "--json")
    assert result.code == 0, result.stderr
    sandbox_id = result.json["sandbox_id"]
    assert isinstance(sandbox_id, str)
    return sandbox_id


def test_a_forwarded_stdin_is_left_alone_once_the_run_has_ended(aido: Aido, project: Path) -> None:
    """Through the Python API, two runs in one process forward the same pipe: the first task
    reads nothing, so what is written after it ended belongs to the second one (the old
    forwarding thread outlived its run and took it)."""
    from aido.manager import SandboxManager
    from aido.store.workspace import Workspace

    sandbox_id = sandbox_up_python(aido)
    write(project / "ignores.py", "print('no input read')\n")
    write(project / "up.py", READ_STDIN)
    manager = SandboxManager(Workspace(project))
    read_end, write_end = os.pipe()
    try:
        first = manager.run(project / "ignores.py", sandbox_id=sandbox_id, stdin=read_end)
        assert first.exit_code == 0
        os.write(write_end, b"hello\n")
        os.close(write_end)
        second = manager.run(project / "up.py", sandbox_id=sandbox_id, stdin=read_end)
    finally:
        os.close(read_end)
    assert second.exit_code == 0
    log = (second.evidence_dir / "stdout.log").read_text()
    assert log == "'HELLO\\n'\n"
