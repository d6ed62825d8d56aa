"""Hostile tasks that try to gain privilege: root, capabilities, setuid binaries, new
namespaces, mounts, kernel tunables, the root filesystem.

Each task reports what it saw as JSON on stdout; the test reads that report from the
run's evidence (stdout.log) and checks the host-side evidence (summary.json's settings
read back from the engine) agrees. Under gVisor the task talks to a user-space kernel,
so error numbers (and a few behaviours) differ: the tests assert the security property,
not the message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.hostile import GVISOR, assert_ran_isolated, hostile_sandbox
from tests.helpers.sandbox import TASK_GID, TASK_UID, events, run_dir, sandbox_root, summary

pytestmark = pytest.mark.docker


def run_probe(aido: Aido, project: Path, name: str, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a probe task that prints one JSON report; return (report, summary.json)."""
    sandbox_id = hostile_sandbox(aido)
    write(project / name, source)
    result = aido("run", name, "--timeout", "60s", "--json", timeout=90)
    assert result.code == 0, (result.stdout, result.stderr)
    assert result.json["status"] == "success"
    evidence = run_dir(project, sandbox_id)
    report = json.loads((evidence / "stdout.log").read_text())
    run_summary = summary(project, sandbox_id)
    assert run_summary["status"] == "success"
    assert run_summary["exit_code"] == 0
    assert_ran_isolated(run_summary)
    completed = [
        e for e in events(sandbox_root(project, sandbox_id) / "events.log") if e["event"] == "run_completed"
    ]
    assert [(e["run_id"], e["status"]) for e in completed] == [("run-001", "success")]
    return report, run_summary


IDENTITY = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
status = dict(
    line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
)
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
    "groups": os.getgroups(),
    "caps": {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb") if k in status},
    "no_new_privs_line": status.get("NoNewPrivs", "").strip() or None,
    "no_new_privs_prctl": libc.prctl(39, 0, 0, 0, 0),  # PR_GET_NO_NEW_PRIVS
}))
"""


def test_task_runs_as_an_unprivileged_user_with_no_capabilities(aido: Aido, project: Path) -> None:
    report, run_summary = run_probe(aido, project, "whoami.py", IDENTITY)
    assert report["uid"] == report["euid"] == TASK_UID != 0
    assert report["gid"] == report["egid"] == TASK_GID != 0
    assert 0 not in report["groups"]
    # Every capability set empty, including the bounding set (no way to regain one via exec).
    assert {"CapPrm", "CapEff", "CapBnd"} <= set(report["caps"])
    assert {k: v for k, v in report["caps"].items() if int(v, 16) != 0} == {}
    assert report["no_new_privs_prctl"] == 1
    if not GVISOR:  # gVisor's /proc/self/status has no NoNewPrivs line; prctl above covers it
        assert report["no_new_privs_line"] == "1"
    applied = run_summary["security"]["applied"]
    assert applied["user"] == f"{TASK_UID}:{TASK_GID}"
    assert applied["cap_drop"] == ["ALL"]
    assert applied["cap_add"] == []
    assert any(o.startswith("no-new-privileges") and not o.endswith("false") for o in applied["security_opt"])


SETUID = r"""
import ctypes, errno, json, os, stat, subprocess, time
out = {}
try:
    os.setuid(0)
    out["setuid"] = "succeeded"
except OSError as e:
    out["setuid"] = errno.errorcode.get(e.errno, e.errno)
try:
    os.setgid(0)
    out["setgid"] = "succeeded"
except OSError as e:
    out["setgid"] = errno.errorcode.get(e.errno, e.errno)
su = "/usr/bin/su"
st = os.stat(su)
out["su_setuid_root"] = bool(st.st_mode & stat.S_ISUID) and st.st_uid == 0
# su blocks at its password prompt: read what the kernel gave it while it waits.
proc = subprocess.Popen([su, "root", "-c", "id -u > /tmp/pwned"], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
deadline = time.monotonic() + 10
seen = None
while time.monotonic() < deadline:
    try:
        lines = open(f"/proc/{proc.pid}/status").read().splitlines()
        fields = dict(l.split(":", 1) for l in lines if ":" in l)
    except OSError:
        break
    if fields.get("Name", "").strip() == "su":
        seen = {"uid": [int(x) for x in fields["Uid"].split()], "cap_eff": int(fields["CapEff"], 16)}
        break
    time.sleep(0.02)
proc.kill()
proc.wait()
out["su"] = seen
out["pwned"] = os.path.exists("/tmp/pwned")
print(json.dumps(out))
"""


def test_setuid_calls_and_setuid_root_binaries_do_not_give_root(aido: Aido, project: Path) -> None:
    report, run_summary = run_probe(aido, project, "climb.py", SETUID)
    assert report["setuid"] == "EPERM"
    assert report["setgid"] == "EPERM"
    # The image really ships a setuid-root su; no-new-privileges makes exec ignore the bit.
    assert report["su_setuid_root"] is True
    assert report["su"] is not None, "su never started"
    assert report["su"]["uid"] == [TASK_UID] * 4  # real, effective, saved, filesystem
    assert report["su"]["cap_eff"] == 0
    assert report["pwned"] is False
    assert run_summary["security"]["applied"]["privileged"] is False


NAMESPACES = r"""
import ctypes, errno, json, os, platform
libc = ctypes.CDLL(None, use_errno=True)
KEYCTL = {"x86_64": 250, "aarch64": 219}[platform.machine()]
def call(fn, *args):
    ctypes.set_errno(0)
    rc = fn(*args)
    return {"rc": rc, "errno": errno.errorcode.get(ctypes.get_errno())}
out = {
    "mount": call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None),
    "mount_proc": call(libc.mount, b"proc", b"/tmp", b"proc", 0, None),
    "keyctl": call(libc.syscall, KEYCTL, 0, 0, 0, 0),  # keyctl(KEYCTL_GET_KEYRING_ID, ...)
    "unshare_mnt": call(libc.unshare, 0x00020000),  # CLONE_NEWNS
    "unshare_user": call(libc.unshare, 0x10000000),  # CLONE_NEWUSER
}
# Whatever the unshares did, the task must still be unable to mount or write the root.
out["mount_after_unshare"] = call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None)
try:
    open("/etc/escalated", "w").close()
    out["write_etc_after_unshare"] = "succeeded"
except OSError as e:
    out["write_etc_after_unshare"] = errno.errorcode.get(e.errno, e.errno)
print(json.dumps(out))
"""


def test_namespaces_mounts_and_keyrings_are_refused(aido: Aido, project: Path) -> None:
    report, run_summary = run_probe(aido, project, "ns.py", NAMESPACES)
    for name in ("mount", "mount_proc", "keyctl", "mount_after_unshare"):
        assert report[name]["rc"] == -1, (name, report[name])
    assert report["write_etc_after_unshare"] != "succeeded"
    if GVISOR:
        # gVisor implements namespaces inside its own user-space kernel: unshare() may
        # succeed there, and gives nothing on the host (the checks above still hold).
        assert report["unshare_user"]["rc"] in (0, -1)
    else:
        assert report["unshare_mnt"] == {"rc": -1, "errno": "EPERM"}
        assert report["unshare_user"] == {"rc": -1, "errno": "EPERM"}
        assert report["mount"]["errno"] == "EPERM"
    applied = run_summary["security"]["applied"]
    assert applied["seccomp"] not in ("unconfined", "")
    assert applied["userns_mode"] != "host"


KERNEL = r"""
import errno, json, os
def attempt(action, path):
    try:
        action(path)
        return "succeeded"
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
def write(path):
    with open(path, "w") as f:
        f.write("|/tmp/pwn %p\n")
def read(path):
    try:
        with open(path, "rb") as f:
            return "read data" if f.read(4096) else "empty"  # masked paths read as empty
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
writes = [
    "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches",
    "/sys/kernel/uevent_helper", "/sys/fs/cgroup/release_agent",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
    "/sys/fs/cgroup/memory/release_agent", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max",
]
out = {"write": {p: attempt(write, p) for p in writes}}
out["mkdir_cgroup"] = {p: attempt(os.mkdir, p) for p in ("/sys/fs/cgroup/memory/x", "/sys/fs/cgroup/x")}
out["read"] = {p: read(p) for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/dev/mem", "/dev/kmsg")}
print(json.dumps(out))
"""


def test_kernel_tunables_cgroups_and_kernel_memory_are_out_of_reach(aido: Aido, project: Path) -> None:
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    report, run_summary = run_probe(aido, project, "kernel.py", KERNEL)
    assert {p: r for p, r in report["write"].items() if r == "succeeded"} == {}
    assert {p: r for p, r in report["mkdir_cgroup"].items() if r == "succeeded"} == {}
    assert {p: r for p, r in report["read"].items() if r == "read data"} == {}
    # The host's own value is untouched.
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern
    applied = run_summary["security"]["applied"]
    assert applied["privileged"] is False
    assert applied["devices"] == []


ROOTFS = r"""
import errno, json, os
def attempt(path):
    try:
        with open(path, "a") as f:
            f.write("x")
        return "succeeded"
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
targets = ["/escalated", "/etc/escalated", "/usr/escalated", "/usr/bin/python3", "/etc/passwd",
           "/usr/local/lib/sitecustomize.py", "/work/../escalated"]
out = {p: attempt(p) for p in targets}
try:
    os.mkdir("/usr/lib/escalated")
    out["mkdir /usr/lib"] = "succeeded"
except OSError as e:
    out["mkdir /usr/lib"] = errno.errorcode.get(e.errno, e.errno)
print(json.dumps(out))
"""


def test_root_filesystem_is_read_only(aido: Aido, project: Path) -> None:
    report, run_summary = run_probe(aido, project, "rootfs.py", ROOTFS)
    # EROFS under runc, EACCES under gVisor: either way an error, never a write.
    assert {p: r for p, r in report.items() if r == "succeeded"} == {}
    assert report["/escalated"] in ("EROFS", "EACCES")
    assert run_summary["security"]["applied"]["readonly_rootfs"] is True
    assert run_summary["changes"] == []


def test_summary_records_the_hardening_as_the_engine_applied_it(aido: Aido, project: Path) -> None:
    _, run_summary = run_probe(aido, project, "noop.py", "print('{}')\n")
    applied = run_summary["security"]["applied"]
    assert applied["network_mode"] == "none"
    assert applied["cap_drop"] == ["ALL"]
    assert applied["cap_add"] == []
    assert applied["privileged"] is False
    assert applied["readonly_rootfs"] is True
    assert "no-new-privileges:true" in applied["security_opt"]
    assert not any("unconfined" in o for o in applied["security_opt"])
    assert applied["pid_mode"] not in ("host", "") and not applied["pid_mode"].startswith("container:")
    assert applied["ipc_mode"] not in ("host", "shareable") and not applied["ipc_mode"].startswith(
        "container:"
    )
    assert applied["userns_mode"] != "host"
    assert applied["devices"] == []
    assert applied["init"] is True
    assert applied["restart_policy"] == "no"
    assert applied["log_driver"] == "none"
    assert applied["user"] == f"{TASK_UID}:{TASK_GID}"
    assert applied["workdir"] == "/work"
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in applied["ulimits"]}
    assert ulimits["nofile"] == (1024, 1024)
    assert ulimits["fsize"] == (1 << 30, 1 << 30)  # the default disk limit (1G)
    assert applied["memory_bytes"] == applied["memory_swap_bytes"] == 512 << 20
    assert applied["pids_limit"] == (1024 if GVISOR else 256)
    # Only the sandbox's own directories are mounted: no docker socket, nothing else of the host.
    root = str(sandbox_root(project, run_summary["sandbox_id"]).resolve())
    assert {m["target"] for m in applied["mounts"]} == {"/inputs", "/work", "/outputs", "/work/noop.py"}
    assert all(m["source"].startswith(root + "/") for m in applied["mounts"])
    assert {m["target"]: m["read_only"] for m in applied["mounts"]}["/inputs"] is True
    assert_ran_isolated(run_summary)
