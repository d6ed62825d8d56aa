"""Evidence of what a run changed and where it ran: file changes, diffs, git context, symlinks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aido.evidence.gitinfo import find_repository
from tests.helpers.cli import Aido
from tests.helpers.engine import assert_no_containers
from tests.helpers.files import sha256, write
from tests.helpers.sandbox import record, run_dir, sandbox_root, sandbox_up, summary

pytestmark = pytest.mark.docker


def git(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=aido tests", "-c", "user.email=tests@example.invalid", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_summary_records_the_git_commit_and_dirty_status(aido: Aido, project: Path) -> None:
    git(project, "init", "-q")
    write(project / "README.md", "version one\n")
    write(project / "hello.py", 'print("hi")\n')
    git(project, "add", "README.md", "hello.py")
    git(project, "commit", "-q", "-m", "initial")
    head = git(project, "rev-parse", "HEAD")
    branch = git(project, "rev-parse", "--abbrev-ref", "HEAD")
    write(project / "README.md", "version two, uncommitted\n")
    write(project / "untracked.txt", "new\n")

    sandbox_id = sandbox_up(aido)
    result = aido("run", "hello.py")
    assert result.code == 0, result.stderr
    git_info = summary(project, sandbox_id)["git"]
    assert git_info["commit"] == head
    assert len(git_info["commit"]) == 40
    assert git_info["branch"] == branch
    assert Path(git_info["repository"]).resolve() == project.resolve()
    assert git_info["dirty"] is True
    assert " M README.md" in git_info["status"]
    assert "?? untracked.txt" in git_info["status"]
    # The workspace ignores itself: aido's own files never make the project dirty.
    assert not any(".aido" in line for line in git_info["status"])
    assert_no_containers(sandbox_id)


def test_summary_of_a_clean_repository_is_not_dirty(aido: Aido, project: Path) -> None:
    git(project, "init", "-q")
    write(project / "hello.py", 'print("hi")\n')
    git(project, "add", "hello.py")
    git(project, "commit", "-q", "-m", "initial")
    sandbox_id = sandbox_up(aido)
    assert aido("run", "hello.py").code == 0
    git_info = summary(project, sandbox_id)["git"]
    assert git_info["dirty"] is False
    assert git_info["status"] == []
    assert git(project, "status", "--porcelain") == ""


def test_outside_a_repository_git_is_null_and_the_run_succeeds(aido: Aido, project: Path) -> None:
    if find_repository(project.resolve()) is not None:
        pytest.skip("the temporary directory is inside a git repository on this machine")
    sandbox_id = sandbox_up(aido)
    write(project / "hello.py", 'print("hi")\n')
    result = aido("run", "hello.py")
    assert result.code == 0, result.stderr
    assert summary(project, sandbox_id)["git"] is None


FIRST = (
    "import os\n"
    "open('/outputs/report.txt', 'w').write('alpha\\nbeta\\ngamma\\n')\n"
    "open('/outputs/remove-me.txt', 'w').write('short-lived\\n')\n"
    "open('/outputs/data.bin', 'wb').write(bytes(range(256)))\n"
    "os.makedirs('/work/notes')\n"
    "open('/work/notes/todo.md', 'w').write('- one\\n')\n"
)
SECOND = (
    "import os\n"
    "open('/outputs/report.txt', 'w').write('alpha\\nBETA\\ngamma\\n')\n"
    "os.remove('/outputs/remove-me.txt')\n"
    "open('/work/new.txt', 'w').write('fresh\\n')\n"
)


def test_changes_list_added_modified_and_removed_files_with_hashes(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "first.py", FIRST)
    write(project / "second.py", SECOND)
    first = aido("run", "first.py", "--json")
    assert first.code == 0, first.stderr

    changes = {c["path"]: c for c in summary(project, sandbox_id, "run-001")["changes"]}
    assert first.json["changes"] == summary(project, sandbox_id, "run-001")["changes"]
    assert set(changes) == {
        "outputs/report.txt",
        "outputs/remove-me.txt",
        "outputs/data.bin",
        "work/notes/todo.md",
    }  # the task file itself, copied in before the run, is not a change
    assert changes["outputs/report.txt"] == {
        "path": "outputs/report.txt",
        "change": "added",
        "type": "file",
        "size": len("alpha\nbeta\ngamma\n"),
        "sha256": sha256("alpha\nbeta\ngamma\n"),
    }
    assert changes["outputs/data.bin"]["sha256"] == sha256(bytes(range(256)))
    assert changes["outputs/data.bin"]["size"] == 256
    assert changes["work/notes/todo.md"]["change"] == "added"
    diff1 = (run_dir(project, sandbox_id, "run-001") / "changes.diff").read_text()
    assert "+++ b/outputs/report.txt" in diff1
    assert "+beta\n" in diff1
    assert "data.bin" not in diff1  # binary content is hashed, not diffed

    second = aido("run", "second.py")
    assert second.code == 0, second.stderr
    changes = {c["path"]: c for c in summary(project, sandbox_id, "run-002")["changes"]}
    assert set(changes) == {"outputs/report.txt", "outputs/remove-me.txt", "work/new.txt"}
    assert changes["outputs/report.txt"]["change"] == "modified"
    assert changes["outputs/report.txt"]["sha256"] == sha256("alpha\nBETA\ngamma\n")
    assert changes["outputs/remove-me.txt"]["change"] == "removed"
    assert changes["outputs/remove-me.txt"]["sha256"] == sha256("short-lived\n")
    assert changes["outputs/remove-me.txt"]["size"] == len("short-lived\n")
    assert changes["work/new.txt"] == {
        "path": "work/new.txt",
        "change": "added",
        "type": "file",
        "size": 6,
        "sha256": sha256("fresh\n"),
    }

    diff2 = (run_dir(project, sandbox_id, "run-002") / "changes.diff").read_text()
    assert "--- a/outputs/report.txt\n+++ b/outputs/report.txt\n" in diff2
    assert "-beta\n+BETA\n" in diff2
    assert " alpha\n" in diff2
    assert "--- a/outputs/remove-me.txt\n+++ /dev/null\n" in diff2
    assert "--- /dev/null\n+++ b/work/new.txt\n" in diff2
    assert "runs/run-002/changes.diff" in summary(project, sandbox_id, "run-002")["artifacts"]
    assert "runs/run-002/changes.diff" in record(project, sandbox_id)["runs"][1]["artifacts"]
    assert_no_containers(sandbox_id)


def test_a_run_that_changes_nothing_has_no_diff(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / "quiet.py", "pass\n")
    assert aido("run", "quiet.py").code == 0
    assert summary(project, sandbox_id)["changes"] == []
    assert not (run_dir(project, sandbox_id) / "changes.diff").exists()


def test_symlinks_the_task_plants_are_recorded_never_followed(
    aido: Aido, project: Path, tmp_path: Path
) -> None:
    secret_content = "TOP-SECRET-HOST-CONTENT-4711\n"
    secret = write(tmp_path / "host-secret.txt", secret_content)
    host_dir = tmp_path / "host-dir"
    write(host_dir / "precious.txt", "keep me\n")
    write(project / "sandbox.yaml", "outputs:\n  - leak\n")
    sandbox_id = sandbox_up(aido)
    write(
        project / "plant.py",
        "import os\n"
        f"os.symlink({str(secret)!r}, '/outputs/leak')\n"
        f"os.symlink({str(host_dir)!r}, '/outputs/dirlink')\n"
        f"os.symlink({str(host_dir)!r}, '/work/worklink')\n"
        "print('planted')\n",
    )
    result = aido("run", "plant.py")
    assert result.code == 0, result.stderr

    changes = {c["path"]: c for c in summary(project, sandbox_id)["changes"]}
    assert changes["outputs/leak"] == {
        "path": "outputs/leak",
        "change": "added",
        "type": "symlink",
        "target": str(secret),
    }
    assert changes["outputs/dirlink"]["type"] == "symlink"
    assert changes["work/worklink"]["type"] == "symlink"
    assert not any(path.startswith(("outputs/dirlink/", "work/worklink/")) for path in changes)

    evidence = run_dir(project, sandbox_id)
    everything = "".join(p.read_text() for p in evidence.rglob("*") if p.is_file())
    assert "TOP-SECRET-HOST-CONTENT" not in everything
    assert sha256(secret_content) not in everything
    assert "keep me" not in everything

    # A later run snapshots the tree again without following the links either.
    write(project / "quiet.py", "pass\n")
    assert aido("run", "quiet.py").code == 0
    later = (run_dir(project, sandbox_id, "run-002") / "summary.json").read_text()
    assert "TOP-SECRET-HOST-CONTENT" not in later
    assert sha256(secret_content) not in later

    destroyed = aido("sandbox", "destroy")
    assert destroyed.code == 0, destroyed.stderr
    assert not sandbox_root(project, sandbox_id).exists()
    assert secret.read_text() == secret_content
    assert (host_dir / "precious.txt").read_text() == "keep me\n"
    assert_no_containers(sandbox_id)


def test_a_symlink_left_at_the_task_name_is_replaced_not_followed(
    aido: Aido, project: Path, tmp_path: Path
) -> None:
    victim = write(tmp_path / "victim.txt", "original host file\n")
    sandbox_id = sandbox_up(aido)
    # A first task plants a symlink where the next task's file will be copied.
    write(project / "plant.py", f"import os\nos.symlink({str(victim)!r}, '/work/task.py')\n")
    assert aido("run", "plant.py").code == 0
    assert (sandbox_root(project, sandbox_id) / "work" / "task.py").is_symlink()
    write(project / "task.py", "print('ok')\n")
    second = aido("run", "task.py")
    assert second.code == 0, second.stderr
    assert second.stdout == "ok\n"
    assert victim.read_text() == "original host file\n"
    assert not (sandbox_root(project, sandbox_id) / "work" / "task.py").is_symlink()


def test_the_task_cannot_rewrite_the_file_that_is_running(aido: Aido, project: Path) -> None:
    """The task file is mounted read-only from the run's evidence: task_sha256 is what ran."""
    sandbox_id = sandbox_up(aido)
    source = (
        "import os\n"
        "for attempt in (lambda: open('/work/self.py', 'w').write('forged'),\n"
        "                lambda: os.remove('/work/self.py'),\n"
        "                lambda: os.rename('/work/self.py', '/work/moved.py')):\n"
        "    try:\n"
        "        attempt()\n"
        "        print('CHANGED')\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
    )
    write(project / "self.py", source)
    result = aido("run", "self.py")
    assert result.code == 0, result.stderr
    assert "CHANGED" not in result.stdout
    assert result.stdout.count("refused") == 3
    evidence_copy = run_dir(project, sandbox_id) / "task" / "self.py"
    assert evidence_copy.read_text() == source
    assert summary(project, sandbox_id)["task_sha256"] == sha256(source)
    assert "runs/run-001/task/self.py" in summary(project, sandbox_id)["artifacts"]


def test_output_beyond_the_configured_limit_is_truncated_and_flagged(aido: Aido, project: Path) -> None:
    sandbox_id = sandbox_up(aido)
    write(project / ".aido" / "config.json", '{"output_limit": "1K"}\n')
    write(
        project / "loud.py",
        "import sys\nsys.stdout.write('x' * 5000 + '\\n')\nprint('small', file=sys.stderr)\n",
    )
    result = aido("run", "loud.py")
    assert result.code == 0, result.stderr
    assert result.stdout == "x" * 1024  # only what was kept is echoed
    assert "warning: stdout was truncated at 1024 bytes (5001 written)" in result.stderr
    assert (run_dir(project, sandbox_id) / "stdout.log").read_bytes() == b"x" * 1024
    output = summary(project, sandbox_id)["output"]
    assert output["stdout"] == {
        "path": "stdout.log",
        "bytes_total": 5001,
        "bytes_captured": 1024,
        "truncated": True,
        "limit": 1024,
    }
    assert output["stderr"]["truncated"] is False
    assert (run_dir(project, sandbox_id) / "stderr.log").read_text() == "small\n"
