"""`pip install` through the allowlist, as a user's task would run it: the proxy variables
aido sets are all pip needs, over HTTP and through an HTTPS tunnel, and an index the
allowlist does not name is refused. The index is a container of this test's own
(tests/helpers/internet.py), serving a wheel built here; pip is the one the tests run
with, shipped to the task as a zipapp in its inputs (the stand-in images have none).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Aido
from tests.helpers.files import write
from tests.helpers.internet import Internet, internet
from tests.helpers.sandbox import run_dir, sandbox_up, summary

pytestmark = pytest.mark.usefixtures("engine")

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
MAIN = "import runpy\nrunpy.run_module('pip', run_name='__main__', alter_sys=True)\n"
GREETING = "installed through the allowlist"

# pip's own options only: where to install, no cache, no retries (a refused index fails at
# once), the test origin's self-signed certificate for HTTPS (and, over plain HTTP, the
# --trusted-host pip asks for). The proxy comes from the environment aido gives the task.
TASK = r"""
import json, subprocess, sys
def pip_install(index, target, *extra):
    done = subprocess.run(
        [sys.executable, "/inputs/pip.pyz", "install", "--no-cache-dir", "--disable-pip-version-check",
         "--retries", "0", "--timeout", "10", "--cert", "/inputs/cert.pem",
         "--target", target, "--index-url", index, *extra, "demo-pkg"],
        capture_output=True, text=True, timeout=120,
    )
    if done.returncode:
        return {"code": done.returncode, "error": (done.stderr.strip().splitlines() or [""])[-1],
                "stderr": done.stderr[-3000:]}
    found = subprocess.run(
        [sys.executable, "-c", "import demo_pkg; print(demo_pkg.GREETING)"],
        env={"PYTHONPATH": target}, capture_output=True, text=True,
    )
    return {"code": 0, "imported": found.stdout.strip() or found.stderr.strip()[-300:]}
print(json.dumps({
    "http": pip_install("http://allowed.test/simple/", "/work/site-http", "--trusted-host", "allowed.test"),
    "https": pip_install("https://allowed.test/simple/", "/work/site-https"),
    "denied": pip_install("https://denied.test/simple/", "/work/site-denied"),
}))
"""


def _wheel(path: Path) -> str:
    """A pure-Python wheel with a correct RECORD; returns its sha256 (hex)."""
    files = {
        "demo_pkg/__init__.py": f"GREETING = {GREETING!r}\n",
        "demo_pkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n",
        "demo_pkg-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: aido-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("demo_pkg-1.0.dist-info/RECORD,,")
    files["demo_pkg-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _publish(net: Internet) -> None:
    """A PEP 503 simple index on the test's origins: /simple/demo-pkg/ and the wheel."""
    files = net.root / "www" / "files"
    files.mkdir(parents=True)
    digest = _wheel(files / WHEEL)
    write(
        net.root / "www" / "simple" / "demo-pkg" / "index.html",
        f'<!DOCTYPE html><html><body><a href="/files/{WHEEL}#sha256={digest}">{WHEEL}</a></body></html>\n',
    )
    for path in (net.root / "www").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (net.root / "www").chmod(0o755)


def _pip_zipapp(path: Path) -> None:
    """The pip this test runs with, as a zipapp (pip supports running as one)."""
    import pip

    source = Path(pip.__file__).parent
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as app:
        app.writestr(
            "__main__.py", "import runpy\nrunpy.run_module('pip', run_name='__main__', alter_sys=True)\n"
        )
        for file in sorted(source.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                app.write(file, f"pip/{file.relative_to(source)}")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Internet]:
    with internet(tmp_path_factory.mktemp("internet")) as made:
        _publish(made)
        yield made


def test_pip_installs_from_an_allowed_index_only(aido: Aido, project: Path, net: Internet) -> None:
    _pip_zipapp(project / "pip.pyz")
    (project / "cert.pem").write_bytes((net.root / "cert.pem").read_bytes())
    write(
        project / "sandbox.yaml",
        "runtime: python:3.11\n"
        "inputs: [pip.pyz, cert.pem]\n"
        "permissions:\n"
        "  network:\n"
        "    allow: [allowed.test, " + net.allowed_ip + "/32]\n"
        "    allow_ip_ranges: true\n",  # the origin lives at a Docker network's private address
    )
    sandbox_id = sandbox_up(aido, "--yes", env=net.env)
    write(project / "task.py", TASK)
    ran = aido("run", "task.py", env=net.env)
    assert ran.code == 0, ran.stderr
    seen: dict[str, Any] = json.loads(ran.stdout)

    assert seen["http"] == {"code": 0, "imported": GREETING}, seen["http"].get("stderr")
    assert seen["https"] == {"code": 0, "imported": GREETING}, seen["https"].get("stderr")
    # pip reports a refused index as one with nothing on it; the network log says why.
    assert seen["denied"]["error"] == "ERROR: No matching distribution found for demo-pkg", seen["denied"]

    # The origin served pip the index page and the wheel, twice (HTTP, then HTTPS), and saw
    # only the proxy; the denied origin saw nothing.
    hits = net.hits("allowed")
    assert len(hits) >= 4 and len({h.split()[1] for h in hits}) == 1, hits
    assert net.hits("denied") == []

    log = [
        json.loads(line) for line in (run_dir(project, sandbox_id) / "network.jsonl").read_text().splitlines()
    ]
    plain = [e for e in log if (e["method"], e["host"], e["port"]) == ("GET", "allowed.test", 80)]
    assert len(plain) >= 2 and {e["status"] for e in plain} == {200}, plain  # the index, the wheel
    decided = {(e["method"], e["host"], e["port"], e["decision"]) for e in log}
    assert ("CONNECT", "allowed.test", 443, "allowed") in decided
    assert ("CONNECT", "denied.test", 443, "denied") in decided
    requests = summary(project, sandbox_id)["network"]["requests"]
    assert requests["allowed"] == sum(e["decision"] == "allowed" for e in log) >= 3, requests
    assert requests["denied"] == sum(e["decision"] == "denied" for e in log) >= 1, requests
