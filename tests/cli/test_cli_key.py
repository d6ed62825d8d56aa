"""`aido key`: show, list, trust (confirmed), forget."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import Aido


@pytest.fixture
def keyring(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}


def test_show_makes_the_key_once_and_prints_it(aido: Aido, keyring: dict[str, str]) -> None:
    first = aido("key", "show", "--json", env=keyring)
    assert first.code == 0, first.stderr
    assert first.json["created"] is True and len(first.json["keyid"]) == 64
    again = aido("key", "show", "--json", env=keyring)
    assert again.json["created"] is False and again.json["keyid"] == first.json["keyid"]
    pem = aido("key", "show", "--pem", env=keyring)
    assert pem.stdout == first.json["public_key"]


def test_trust_needs_confirmation_then_lists_and_forgets(
    aido: Aido, keyring: dict[str, str], tmp_path: Path
) -> None:
    other = {"XDG_CONFIG_HOME": str(tmp_path / "other")}
    theirs = aido("key", "show", "--json", env=other).json
    pub = tmp_path / "theirs.pub"
    pub.write_text(theirs["public_key"])
    refused = aido("key", "trust", str(pub), env=keyring)
    assert refused.code == 2 and "not trusted" in refused.stderr and theirs["keyid"] in refused.stderr
    trusted = aido("key", "trust", str(pub), "--yes", "--json", env=keyring)
    assert trusted.code == 0 and trusted.json["keyid"] == theirs["keyid"]
    listed = aido("key", "list", "--json", env=keyring).json["keys"]
    assert theirs["keyid"] in [k["keyid"] for k in listed]
    gone = aido("key", "forget", theirs["keyid"][:16], env=keyring)
    assert gone.code == 0, gone.stderr
    assert theirs["keyid"] not in [
        k["keyid"] for k in aido("key", "list", "--json", env=keyring).json["keys"]
    ]


def test_bad_key_files_are_one_line_errors(aido: Aido, keyring: dict[str, str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pub"
    junk.write_text("hello")
    result = aido("key", "trust", str(junk), "--yes", env=keyring)
    assert result.code == 2 and "not a PEM public key" in result.stderr
    missing = aido("key", "trust", str(tmp_path / "nope.pub"), "--yes", env=keyring)
    assert missing.code == 2 and "cannot read" in missing.stderr
    unknown = aido("key", "forget", "0123456789abcdef", env=keyring)
    assert unknown.code == 2 and "no trusted key" in unknown.stderr
