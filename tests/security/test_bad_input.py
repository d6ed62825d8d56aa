"""Hostile input to aido itself: ids that are paths, image names that are options,
YAML that tries to run code or explode, numbers that are not numbers, a spec that asks
for the host. Each is refused with exit 2 (or 3) and one clear error line, and
nothing is created, deleted or run.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import Aido, Result
from tests.helpers.files import write
from tests.helpers.hostile import GVISOR, ISOLATION, assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import record, run_dir, sandbox_root, summary

pytestmark = pytest.mark.docker


def tree_state(root: Path) -> dict[str, tuple[str, int, str]]:
    """(kind, mode, content hash) of every entry under root, links not followed. aido's
    reaper files are left out: the background reaper may touch them at any time."""
    state: dict[str, tuple[str, int, str]] = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            if name.startswith("reaper."):
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                state[str(path.relative_to(root))] = ("link", 0, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[str(path.relative_to(root))] = ("file", stat.S_IMODE(st.st_mode), digest)
            else:
                state[str(path.relative_to(root))] = ("dir", stat.S_IMODE(st.st_mode), "")
    return state


def assert_clear_error(result: Result, code: int, *fragments: str) -> None:
    """Refused with ``code`` and one ``error:`` line (perhaps with a ``hint:`` line):
    no traceback, no raw control characters echoed back."""
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert all(line.startswith(("error:", "hint:")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], result.stderr


def refuse_spec(aido: Aido, project: Path, spec: str, *fragments: str, timeout: float = 30) -> None:
    """``sandbox up`` with this sandbox.yaml: exit 2, one clear error, nothing created."""
    write(project / "sandbox.yaml", spec)
    before = tree_state(project.parent)
    result = aido("sandbox", "up", "--isolation", ISOLATION, timeout=timeout)
    assert_clear_error(result, 2, *fragments)
    assert not (project / ".aido").exists()
    assert tree_state(project.parent) == before


BAD_IDS = [
    "../../etc",
    "..",
    ".",
    "a/b",
    "/etc/passwd",
    "a" * 300,
    "ABCDEFGHIJKL",  # the right length, but not aido's alphabet
    "\x1b]0;pwned\x07",  # an escape sequence aimed at the terminal showing the error
    "-rf",
]


def test_malformed_sandbox_and_run_ids_are_refused_and_touch_nothing(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    write(project / "t.py", "print('ran')\n")
    assert aido("run", "t.py").code == 0
    # What a traversal from .aido/sandboxes/ or runs/ would reach, if it were followed.
    write(project / "etc" / "passwd", "project file\n")
    write(project / ".aido" / "x" / "keep", "keep\n")
    write(project.parent / "x" / "keep", "keep\n")
    before = tree_state(project.parent)
    # Refused from argv before the engine is asked anything: the isolation changes nothing
    # here, so the gVisor pass (CI's second) leaves these 60 commands to the runc pass.
    for bad in BAD_IDS if not GVISOR else []:
        # An id that looks like an option is refused by the parser; any other by aido.
        sandbox_error = () if bad.startswith("-") else ("invalid sandbox id", repr(bad[:40]))
        assert_clear_error(aido("sandbox", "destroy", bad), 2, *sandbox_error)
        assert_clear_error(aido("sandbox", "destroy", sandbox_id, bad), 2, *sandbox_error)
        assert_clear_error(aido("run", "--sandbox", bad, "t.py"), 2, "invalid sandbox id", repr(bad[:40]))
        assert_clear_error(aido("logs", "--sandbox", bad), 2, "invalid sandbox id", repr(bad[:40]))
        assert_clear_error(aido("logs", "--run", bad), 2, "invalid run id", repr(bad[:40]))
        as_json = aido("--json", "logs", "--run", bad)
        assert as_json.code == 2
        assert as_json.json["status"] == "error"
        assert "invalid run id" in as_json.json["error"]["message"]
    for bad in ("../../x", "run-001/../../x", "run-0", "0", "-1", "run-1234567"):
        assert_clear_error(aido("logs", "--run", bad), 2, "invalid run id")
    assert tree_state(project.parent) == before
    # A NUL byte cannot travel in argv (the kernel ends the string there); one planted
    # in the active-sandbox pointer is refused, never used as a path, and never silently
    # replaced by another sandbox: an explicit --sandbox still works.
    write(project / ".aido" / "active", "../../etc\x00\n")
    before = tree_state(project.parent)
    shown = aido("logs")
    assert_clear_error(shown, 3, "does not hold a sandbox id")
    explicit = aido("logs", "--sandbox", sandbox_id)
    assert explicit.code == 0, explicit.stderr
    assert explicit.stdout == "ran\n"
    assert tree_state(project.parent) == before
    assert [r["run_id"] for r in record(project, sandbox_id)["runs"]] == ["run-001"]


@pytest.mark.parametrize(
    "spec",
    [
        'runtime: "docker://--privileged"',
        'runtime: "docker://-v=/:/h"',
        'runtime: "docker://python:3.11-slim --privileged"',
        'runtime: "docker://python:3.11-slim\\n--privileged"',
    ],
)
def test_option_injection_through_the_image_name_is_refused(aido: Aido, project: Path, spec: str) -> None:
    refuse_spec(aido, project, spec + "\n", "runtime", "invalid image reference")


@pytest.mark.parametrize("image", ["--privileged", "-v=/:/h", "--volume=/:/host", "python:3.11 -v /:/h"])
def test_option_injection_through_the_runtime_flag_is_refused(aido: Aido, project: Path, image: str) -> None:
    before = tree_state(project.parent)
    result = aido("sandbox", "up", "--isolation", ISOLATION, "--runtime", f"docker://{image}")
    assert_clear_error(result, 2, "--runtime", "invalid image reference")
    assert not (project / ".aido").exists()
    assert tree_state(project.parent) == before


def test_task_arguments_reach_the_task_verbatim_and_never_the_engine(aido: Aido, project: Path) -> None:
    sandbox_id = hostile_sandbox(aido)
    args = [
        "--privileged",
        "-v",
        "/:/host",
        "--volume=/:/host2",
        "--network=host",
        "--user=0",
        "--cap-add=ALL",
        "--pid=host",
        "$(touch /tmp/pwned)",
        "; id",
        "",
        "--",
        "--json",
    ]
    write(
        project / "args.py",
        "import json, os, sys\n"
        "status = open('/proc/self/status').read()\n"
        "print(json.dumps({\n"
        "    'argv': sys.argv[1:],\n"
        "    'uid': os.getuid(),\n"
        "    'cap_eff': [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')][0],\n"
        "    'host': [p for p in ('/host', '/host2') if os.path.exists(p)],\n"
        "    'interfaces': sorted(os.listdir('/sys/class/net')),\n"
        "}))\n",
    )
    result = aido("run", "args.py", "--", *args)
    assert result.code == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == args
    assert seen["uid"] != 0
    assert int(seen["cap_eff"], 16) == 0
    assert seen["host"] == []
    assert seen["interfaces"] == ["lo"]

    run_summary = summary(project, sandbox_id)
    assert_ran_isolated(run_summary)
    assert run_summary["args"] == args
    assert run_summary["command"][-len(args) :] == args
    applied = run_summary["security"]["applied"]
    assert applied["privileged"] is False
    assert applied["network_mode"] == "none"
    assert applied["cap_add"] == []
    assert applied["cap_drop"] == ["ALL"]
    assert applied["pid_mode"] == "private"
    assert applied["user"] == record(project, sandbox_id)["task_user"]
    assert {m["target"] for m in applied["mounts"]} == {"/inputs", "/work", "/outputs", "/work/args.py"}
    assert all(m["source"].startswith(str(sandbox_root(project, sandbox_id))) for m in applied["mounts"])
    assert not Path("/tmp/pwned").exists()
    assert (run_dir(project, sandbox_id) / "stdout.log").read_text() == result.stdout


@pytest.mark.parametrize(
    "template",
    [
        'x: !!python/object/apply:os.system ["touch {path}"]',
        'name: !!python/object/apply:os.system ["touch {path}"]',
        'env:\n  X: !!python/object/apply:subprocess.call [["touch", "{path}"]]',
        'name: !!python/object/new:os.system ["touch {path}"]',
        "runtime: !!python/name:os.system\nname: ok",
    ],
)
def test_python_tags_in_yaml_never_run(aido: Aido, project: Path, template: str) -> None:
    pwned = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    try:
        refuse_spec(aido, project, template.format(path=pwned) + "\n", "sandbox.yaml")
        assert not pwned.exists(), "the YAML ran a command"
    finally:
        if pwned.exists():
            pwned.unlink()


def test_a_billion_laughs_alias_bomb_is_refused_quickly(aido: Aido, project: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines.append("env: {BOMB: *a9}")
    started = time.monotonic()
    refuse_spec(aido, project, "\n".join(lines) + "\n", "alias", timeout=20)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("resources: {timeout: -1}", "resources.timeout"),
        ('resources: {timeout: "-1s"}', "resources.timeout"),
        ("resources: {timeout: .nan}", "resources.timeout"),
        ("resources: {timeout: 1e309}", "resources.timeout"),
        ('resources: {timeout: "1e309s"}', "resources.timeout"),
        ('resources: {memory: "0"}', "resources.memory"),
        ("resources: {memory: 1e309}", "resources.memory"),
        ("resources: {cpu: .inf}", "resources.cpu"),
        ("resources: {cpu: .nan}", "resources.cpu"),
        ("resources: {cpu: -1}", "resources.cpu"),
        ("resources: {disk: -5G}", "resources.disk"),
        ("resources: {files: 0}", "resources.files"),
        ("ttl: -1", "ttl"),
        ('ttl: "99999d"', "ttl"),
    ],
)
def test_absurd_numbers_are_refused_and_nothing_is_created(
    aido: Aido, project: Path, spec: str, field: str
) -> None:
    refuse_spec(aido, project, spec + "\n", field)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("privileged: true", "privileged: unknown key"),
        ("network_mode: host", "network_mode: unknown key"),
        ("devices: [/dev/sda]", "devices: unknown key"),
        ("cap_add: [ALL]", "cap_add: unknown key"),
        ("volumes: ['/:/host']", "volumes: unknown key"),
        ("user: '0'", "user: unknown key"),
        ("workdir: /proc/self/fd/7", "workdir: unknown key"),
        ("permissions: {network: host}", "permissions.network"),
        ("permissions: {network: 'yes'}", "permissions.network"),
        ("permissions: {privileged: true}", "permissions.privileged: unknown key"),
        ("permissions: {filesystem: host}", "permissions.filesystem"),
        ("resources: {privileged: true}", "resources.privileged: unknown key"),
    ],
)
def test_a_spec_asking_for_the_host_is_refused(aido: Aido, project: Path, spec: str, field: str) -> None:
    refuse_spec(aido, project, spec + "\n", field)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ('name: "a\\0b"', "name"),
        ('env: {X: "a\\0b"}', "env.X"),
        ('env: {"X\\0Y": "b"}', "env"),
        ('outputs: ["a\\0b"]', "outputs[0]"),
        ('outputs: ["../../etc/passwd"]', "outputs[0]"),
        ('ttl: "1\\0m"', "ttl"),
        ('runtime: "python:3.11\\0"', "runtime"),
        ('inputs: ["../*"]', "inputs[0]"),
        ('inputs: ["/etc/passwd"]', "inputs[0]"),
    ],
)
def test_nul_bytes_and_paths_out_of_the_project_in_the_spec_are_refused(
    aido: Aido, project: Path, spec: str, field: str
) -> None:
    refuse_spec(aido, project, spec + "\n", field)


def test_inputs_never_follow_a_link_out_of_the_project(aido: Aido, project: Path, tmp_path: Path) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    host = tmp_path / "host"
    write(host / "id_rsa", canary)
    write(project / "data" / "real.csv", "a,b\n")
    (project / "data" / "key").symlink_to(host / "id_rsa")
    (project / "data" / "home").symlink_to(host)
    (project / "linked").symlink_to(host)
    # A pattern that reaches only links copies nothing, and says so rather than silently.
    write(project / "sandbox.yaml", "inputs:\n  - data/*\n  - data/**\n  - linked/*\n")
    refused = aido("sandbox", "up", "--isolation", ISOLATION)
    assert refused.code == 2
    assert "sandbox.yaml:4: inputs[2]: 'linked/*' matched no regular files" in refused.stderr
    assert not (project / ".aido").exists()
    write(project / "sandbox.yaml", "inputs:\n  - data/*\n  - data/**\n")
    sandbox_id = hostile_sandbox(aido)
    inputs = sandbox_root(project, sandbox_id) / "inputs"
    copied = sorted(str(p.relative_to(inputs)) for p in inputs.rglob("*") if not p.is_dir())
    assert copied == ["data/real.csv"]
    for path in (sandbox_root(project, sandbox_id)).rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert canary not in path.read_text(errors="replace"), path
    assert (host / "id_rsa").read_text() == canary
