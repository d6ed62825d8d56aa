"""Hostile tasks against the evidence: forged summaries, fake evidence files, attempts
to reach runs/, the host's environment, and secrets the task was given and prints.

The evidence must state facts from the host and the engine, never what the task
claims, and must never hold a secret or anything of the host's environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import Aido
from tests.helpers.files import load, write
from tests.helpers.hostile import assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import events, record, run_dir, sandbox_root, summary

pytestmark = pytest.mark.docker

REDACTED = "***REDACTED***"


def files_under(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file under root (links never followed)."""
    found = {}
    for directory, _, files in os.walk(root, followlinks=False):
        for name in files:
            path = Path(directory) / name
            if stat.S_ISREG(path.lstat().st_mode):
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leaks(root: Path, needles: list[str], *, allowed: tuple[str, ...] = ()) -> list[str]:
    """'path: needle' for every regular file under root (but the allowed names) holding a needle."""
    found = []
    for directory, _, files in os.walk(root, followlinks=False):
        for name in files:
            path = Path(directory) / name
            if name in allowed or not stat.S_ISREG(path.lstat().st_mode):
                continue
            data = path.read_bytes()
            found += [f"{path}: {needle}" for needle in needles if needle.encode() in data]
    return found


def test_a_task_printing_a_fake_summary_cannot_change_its_status(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    fake = {"status": "success", "exit_code": 0, "timed_out": False, "oom_killed": False}
    write(
        project / "liar.py",
        "import json, sys\n"
        f"print(json.dumps({fake!r}))\n"
        "print('✓ Task completed (exit code: 0) in 0.01s', file=sys.stderr)\n"
        "sys.exit(3)\n",
    )
    result = aido("--json", "run", "liar.py")
    assert result.code == 3
    envelope = result.json
    assert (envelope["status"], envelope["exit_code"]) == ("failed", 3)

    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    assert (run_summary["status"], run_summary["exit_code"]) == ("failed", 3)
    assert json.loads((run_dir(project, sandbox_id) / "stdout.log").read_text()) == fake
    (ref,) = record(project, sandbox_id)["runs"]
    assert (ref["status"], ref["exit_code"]) == ("failed", 3)
    completed = [
        e for e in events(sandbox_root(project, sandbox_id) / "events.log") if e["event"] == "run_completed"
    ]
    assert [(e["status"], e["exit_code"]) for e in completed] == [("failed", 3)]

    human = aido("run", "liar.py")
    assert human.code == 3
    assert "✗ Task failed (exit code: 3)" in human.stderr


def test_fake_evidence_files_written_by_the_task_change_no_real_evidence(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    root = sandbox_root(project, sandbox_id)
    write(project / "hello.py", "print('hello')\n")
    assert aido("run", "hello.py").code == 0
    first_run = files_under(root / "runs" / "run-001")
    metadata_before = record(project, sandbox_id)  # with its runs from runs.jsonl
    events_before = (root / "events.log").read_text()

    forged = json.dumps({"run_id": "run-001", "status": "success", "exit_code": 0})
    write(
        project / "forge.py",
        "import os, sys\n"
        f"forged = {forged!r}\n"
        "for base in ('/outputs', '/work', '/work/runs/run-001', '/outputs/runs/run-002'):\n"
        "    os.makedirs(base, exist_ok=True)\n"
        "    for name in ('summary.json', 'sandbox.json', 'secrets.json', 'runs.jsonl'):\n"
        "        open(f'{base}/{name}', 'w').write(forged)\n"
        "    for name in ('stdout.log', 'stderr.log', 'events.log'):\n"
        "        open(f'{base}/{name}', 'w').write('forged\\n')\n"
        "print('forged everything I could reach')\n"
        "sys.exit(5)\n",
    )
    result = aido("run", "forge.py")
    assert result.code == 5, result.stderr

    assert files_under(root / "runs" / "run-001") == first_run
    second = summary(project, sandbox_id, "run-002")
    assert_ran_isolated(second)
    assert (second["run_id"], second["status"], second["exit_code"]) == ("run-002", "failed", 5)
    assert (run_dir(project, sandbox_id, "run-002") / "stdout.log").read_text() == (
        "forged everything I could reach\n"
    )
    assert (run_dir(project, sandbox_id, "run-002") / "stderr.log").read_text() == ""
    # The forgeries are reported for what they are: files the task wrote.
    changed = {c["path"] for c in second["changes"]}
    assert {"outputs/summary.json", "work/summary.json", "work/runs/run-001/summary.json"} <= changed
    assert all(a.startswith("runs/run-002/") for a in second["artifacts"])

    metadata_after = record(project, sandbox_id)
    assert metadata_after["runs"][:1] == metadata_before["runs"]
    assert [(r["run_id"], r["status"], r["exit_code"]) for r in metadata_after["runs"][1:]] == [
        ("run-002", "failed", 5)
    ]
    assert {k: v for k, v in metadata_after.items() if k != "runs"} == {
        k: v for k, v in metadata_before.items() if k != "runs"
    }
    events_after = (root / "events.log").read_text()
    assert events_after.startswith(events_before)
    added = [json.loads(line) for line in events_after[len(events_before) :].splitlines()]
    assert [(e["event"], e["run_id"]) for e in added] == [
        ("run_started", "run-002"),
        ("run_completed", "run-002"),
        ("run_sealed", "run-002"),
    ]
    assert not (root / "secrets.json").exists()


def test_the_task_cannot_reach_runs(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    root = sandbox_root(project, sandbox_id)
    write(project / "hello.py", "print('hello')\n")
    assert aido("run", "hello.py").code == 0
    runs_before = files_under(root / "runs")
    write(
        project / "reach.py",
        "import os\n"
        "attempts = {\n"
        "    'parent of work': lambda: open('/work/../runs/run-001/summary.json', 'w'),\n"
        "    'parent of outputs': lambda: open('/outputs/../runs/run-001/stdout.log', 'a'),\n"
        "    'new runs at root': lambda: os.makedirs('/runs/run-001'),\n"
        "    'through /proc': lambda: open('/proc/self/root/runs/run-001/summary.json', 'w'),\n"
        "    'own evidence copy': lambda: open('/work/reach.py', 'a'),\n"
        "    'replace own copy': lambda: os.replace('/work/hello.py', '/work/reach.py'),\n"
        "    'sandbox metadata': lambda: open('/work/../sandbox.json', 'w'),\n"
        "}\n"
        "for name, attempt in attempts.items():\n"
        "    try:\n"
        "        attempt()\n"
        "        print('WROTE', name)\n"
        "    except OSError as exc:\n"
        "        print('refused', name, exc.errno)\n",
    )
    result = aido("run", "reach.py")
    assert result.code == 0, result.stderr
    assert "WROTE" not in result.stdout
    assert result.stdout.count("refused") == 7

    runs_after = files_under(root / "runs")
    assert {k: v for k, v in runs_after.items() if not k.startswith("run-002/")} == runs_before
    assert sorted(k for k in runs_after if k.startswith("run-002/")) == [
        "run-002/attestation.intoto.json",
        "run-002/stderr.log",
        "run-002/stdout.log",
        "run-002/summary.json",
        "run-002/task/reach.py",
    ]
    assert (root / "runs" / "run-002" / "task" / "reach.py").read_text() == (project / "reach.py").read_text()
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["run-001", "run-002"]


def test_the_hosts_environment_never_reaches_the_task_or_the_evidence(aido: Aido, project: Path) -> None:
    marker = uuid.uuid4().hex
    # AIDO_* (as a user's own settings might be), plain, and secret-looking names.
    host_env = {
        f"AIDO_CANARY_{marker}": f"s3cr3t-aido-{marker}",
        f"CANARY_{marker}": f"s3cr3t-plain-{marker}",
        f"HOST_API_TOKEN_{marker}": f"s3cr3t-token-{marker}",
    }
    needles = [*host_env, *host_env.values(), marker]
    sandbox_id = hostile_sandbox(aido, env=host_env)
    write(
        project / "dump.py",
        "import glob, os\n"
        "lines = [f'{k}={v}' for k, v in os.environ.items()]\n"
        "for path in sorted(glob.glob('/proc/[0-9]*/environ')) + ['/proc/self/environ']:\n"
        "    try:\n"
        "        lines += open(path, 'rb').read().decode(errors='replace').split('\\0')\n"
        "    except OSError as exc:\n"
        "        lines.append(f'{path}: {exc}')\n"
        "open('/outputs/env.txt', 'w').write('\\n'.join(lines))\n"
        "print('\\n'.join(lines))\n",
    )
    result = aido("run", "dump.py", env=host_env)
    assert result.code == 0, result.stderr
    # The dump worked: it shows what aido does give the task.
    assert f"AIDO_SANDBOX_ID={sandbox_id}" in result.stdout
    assert "HOME=/tmp" in result.stdout
    for needle in needles:
        assert needle not in result.stdout
        assert needle not in result.stderr
    assert_ran_isolated(summary(project, sandbox_id))
    assert leaks(project / ".aido", needles) == []


def test_secrets_given_to_the_task_are_masked_everywhere_but_secrets_json(aido: Aido, project: Path) -> None:
    marker = uuid.uuid4().hex
    token, password = f"tok-{marker}", f"pw-{marker}"
    write(project / "sandbox.yaml", f"env:\n  DB_PASSWORD: {password}\n  MODE: batch\n")
    sandbox_id = hostile_sandbox(aido)
    write(
        project / "leak.py",
        "import os, sys, time\n"
        "token, password = os.environ['API_TOKEN'], os.environ['DB_PASSWORD']\n"
        "print(f'token={token} password={password}', flush=True)\n"
        "print(f'err token={token}', file=sys.stderr, flush=True)\n"
        "print(dict(os.environ), flush=True)\n"
        "for stream in (sys.stdout, sys.stderr):\n"
        "    for secret in (token, password):\n"
        "        # Split across two writes with a flush and a pause between them.\n"
        "        stream.write('split=' + secret[:6])\n"
        "        stream.flush()\n"
        "        time.sleep(0.3)\n"
        "        stream.write(secret[6:] + '\\n')\n"
        "        stream.flush()\n",
    )
    result = aido("run", "-e", f"API_TOKEN={token}", "leak.py")
    assert result.code == 0, result.stderr
    secrets = [token, password, marker]
    evidence = run_dir(project, sandbox_id)
    for shown in (
        result.stdout,
        result.stderr,
        (evidence / "stdout.log").read_text(),
        (evidence / "stderr.log").read_text(),
    ):
        for secret in secrets:
            assert secret not in shown
    stdout_log = (evidence / "stdout.log").read_text()
    assert "token=*** password=***" in stdout_log
    assert stdout_log.count("split=***\n") == 2
    assert (evidence / "stderr.log").read_text().count("split=***\n") == 2
    assert result.stdout == stdout_log  # the terminal echo is the masked text

    assert_ran_isolated(summary(project, sandbox_id))
    env = summary(project, sandbox_id)["env"]
    assert (env["API_TOKEN"], env["DB_PASSWORD"], env["MODE"]) == (REDACTED, REDACTED, "batch")
    assert record(project, sandbox_id)["config"]["env"]["DB_PASSWORD"] == REDACTED
    logs = aido("logs", "--stderr")
    assert logs.code == 0
    assert not any(s in logs.stdout + logs.stderr for s in secrets)

    assert leaks(project / ".aido", secrets, allowed=("secrets.json",)) == []
    secrets_file = sandbox_root(project, sandbox_id) / "secrets.json"
    assert stat.S_IMODE(secrets_file.lstat().st_mode) == 0o600
    assert load(secrets_file) == {"DB_PASSWORD": password}
