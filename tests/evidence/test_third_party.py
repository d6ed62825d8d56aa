"""The README's third-party check, run exactly as documented: scripts/verify-bundle.sh
(tar, jq, openssl, base64, sha256sum; no aido) on an exported bundle and on tampered ones."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.evidence.conftest import Sealed

pytestmark = pytest.mark.docker
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "verify-bundle.sh"


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = [tool for tool in ("jq", "openssl", "sha256sum", "base64", "tar") if shutil.which(tool) is None]
    if missing:  # scripts/_env.sh installs them (CI always has them)
        pytest.skip(f"missing {', '.join(missing)}")


def check(bundle: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(bundle), str(key)], capture_output=True, text=True, check=False, timeout=60
    )


def rewrite(
    bundle: Path, out: Path, change: dict[str, bytes | None], add: tarfile.TarInfo | None = None
) -> Path:
    """A copy of the bundle with members replaced (or, for None, removed)."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name in change:
                if change[member.name] is None:
                    continue
                data = change[member.name]  # type: ignore[assignment]
                member.size = len(data)
            target.addfile(member, io.BytesIO(data))
        if add is not None:
            target.addfile(add)
    return out


def test_the_documented_check_passes_and_catches_tampering(
    sealed: Sealed, tmp_path: Path, signing_keys: Path
) -> None:
    bundle = tmp_path / "run.tar.gz"
    assert sealed.aido("export", "3", "-o", str(bundle)).code == 0
    key = signing_keys / "signing.pub"
    good = check(bundle, key)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Signature Verified Successfully" in good.stdout
    assert "verified: run-003" in good.stdout

    edited = rewrite(bundle, tmp_path / "edited.tar.gz", {"runs/run-003/stdout.log": b"forged\n"})
    result = check(edited, key)
    assert result.returncode != 0 and "runs/run-003/stdout.log: FAILED" in result.stdout

    with tarfile.open(bundle) as tar:
        envelope = tar.extractfile("attestation.intoto.json").read()  # type: ignore[union-attr]
    forged = envelope.replace(b'"payload":"', b'"payload":"IC', 1)
    assert (
        check(rewrite(bundle, tmp_path / "sig.tar.gz", {"attestation.intoto.json": forged}), key).returncode
        != 0
    )

    planted = tarfile.TarInfo("runs/run-003/planted.txt")
    assert check(rewrite(bundle, tmp_path / "extra.tar.gz", {}, planted), key).returncode != 0
    link = tarfile.TarInfo("runs/run-003/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    assert check(rewrite(bundle, tmp_path / "link.tar.gz", {}, link), key).returncode != 0
    dropped = rewrite(bundle, tmp_path / "dropped.tar.gz", {"runs/run-003/summary.json": None})
    assert check(dropped, key).returncode != 0

    stranger = tmp_path / "stranger.pub"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(tmp_path / "k.pem")], check=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(tmp_path / "k.pem"), "-pubout", "-out", str(stranger)], check=True
    )
    assert check(bundle, stranger).returncode != 0  # the bundle's own signer.pub is not the trust anchor


def test_the_readme_shows_the_scripts_commands() -> None:
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    script = SCRIPT.read_text()
    for command in (
        "openssl pkeyutl -verify -pubin -inkey",
        "sha256sum --strict -c -",
        "printf 'DSSEv1 %d %s %d '",
    ):
        assert command in script and command in readme
