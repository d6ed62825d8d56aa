"""permissions.network in sandbox.yaml: false, true or an egress allowlist ({allow: [...],
allow_ip_ranges}); a bad entry is reported at its own line, naming it (config/network.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aido.config.loader import load_spec
from aido.errors import ConfigError
from aido.exit_codes import ExitCode
from aido.run.request import widened_permissions
from aido.store.records import RunSettings


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "sandbox.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    assert caught.value.exit_code == ExitCode.USAGE
    return caught.value.problems


def loaded(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "sandbox.yaml"
    path.write_text(text, encoding="utf-8")
    return load_spec(path).model_dump(mode="json")


def test_each_bad_entry_is_reported_at_its_own_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "runtime: python\n"
        "permissions:\n"
        "  network:\n"
        "    allow:\n"
        "      - pypi.org\n"
        '      - "*"\n'
        "      - http://x\n"
        '      - ""\n'
        "      - 10.0.0.0/8\n"
        '      - "*.com"\n',
    )
    assert found == [
        "sandbox.yaml:6: permissions.network.allow[1]: '*' would allow every host: name each host, "
        "like pypi.org or *.pythonhosted.org (network: true gives full network)",
        "sandbox.yaml:7: permissions.network.allow[2]: 'http://x' is a URL: write the host alone, like x "
        "(the proxy allows HTTP and HTTPS to it)",
        "sandbox.yaml:8: permissions.network.allow[3]: '' is empty: name a host like pypi.org, "
        "*.pythonhosted.org or api.example.com:443",
        "sandbox.yaml:9: permissions.network.allow[4]: '10.0.0.0/8' is an IP range: IP addresses and "
        "ranges need the sandbox's opt-in, allow_ip_ranges: true under permissions.network in "
        "sandbox.yaml (or name the host instead)",
        "sandbox.yaml:10: permissions.network.allow[5]: '*.com' would allow a whole top-level domain: "
        "name the domain below it, like *.example.com",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "permissions:\n  network:\n    allow: []\n",
            "sandbox.yaml:3: permissions.network.allow: expected a non-empty list of hosts like "
            "[pypi.org, '*.pythonhosted.org'], got []",
        ),
        ("permissions:\n  network: {}\n", "sandbox.yaml:2: permissions.network.allow: required"),
        (
            "permissions:\n  network:\n    allow: pypi.org\n",
            "sandbox.yaml:3: permissions.network.allow: expected a non-empty list of hosts like "
            "[pypi.org, '*.pythonhosted.org'], got 'pypi.org'",
        ),
        (
            "permissions:\n  network: pypi.org\n",
            "sandbox.yaml:2: permissions.network: expected true, false or an allowlist like "
            "{allow: [pypi.org]}, got 'pypi.org'",
        ),
        (
            "permissions:\n  network:\n    allow: [a.org]\n    alow_ip_ranges: true\n",
            "sandbox.yaml:4: permissions.network.alow_ip_ranges: unknown key (allowed: allow_ip_ranges, "
            "allow); did you mean 'allow_ip_ranges'?",
        ),
        (
            "permissions:\n  network:\n    allow: [a.org]\n    allow_ip_ranges: sure\n",
            "sandbox.yaml:4: permissions.network.allow_ip_ranges: expected true or false, got 'sure'",
        ),
        (
            "permissions:\n  network:\n    allow:\n      - 443\n",
            "sandbox.yaml:4: permissions.network.allow[0]: expected a host like pypi.org, "
            "'*.pythonhosted.org' or api.example.com:443, got 443",
        ),
        (
            # Unquoted, `*` starts a YAML alias: the file does not even parse.
            "permissions:\n  network:\n    allow:\n      - *.pythonhosted.org\n",
            "sandbox.yaml:4: invalid YAML: a value starting with '*' must be quoted, like "
            "\"*.example.com\" ('*' starts a YAML alias)",
        ),
    ],
)
def test_the_shape_of_permissions_network(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_an_allowlist_is_stored_canonical_without_repeats(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        "permissions:\n"
        "  network:\n"
        '    allow: [PyPI.org., "*.PythonHosted.org", pypi.org, "api.example.com:443"]\n',
    )
    network = {"allow": ["pypi.org", "*.pythonhosted.org", "api.example.com:443"], "allow_ip_ranges": False}
    assert config["permissions"]["network"] == network  # type: ignore[index]
    settings = RunSettings.from_config(config)
    assert settings.network is False  # not full network
    assert settings.egress == ("pypi.org", "*.pythonhosted.org", "api.example.com:443")
    assert widened_permissions(config) == [
        "permissions.network.allow: every task can reach pypi.org, *.pythonhosted.org, "
        "api.example.com:443 (through aido's egress proxy; everything else is refused)"
    ]


def test_ip_ranges_with_the_opt_in(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        "permissions:\n  network:\n    allow: [10.0.0.0/8, 10.1.2.3, '192.168.0.0/16:5432', pypi.org]\n"
        "    allow_ip_ranges: true\n",
    )
    assert RunSettings.from_config(config).egress == (
        "10.0.0.0/8",
        "10.1.2.3/32",
        "192.168.0.0/16:5432",
        "pypi.org",
    )
    # The opt-in does not open everything.
    found = problems(
        tmp_path, "permissions:\n  network:\n    allow_ip_ranges: true\n    allow:\n      - 0.0.0.0/0\n"
    )
    assert found == [
        "sandbox.yaml:5: permissions.network.allow[0]: '0.0.0.0/0' would allow every address: "
        "network: true gives full network"
    ]


@pytest.mark.parametrize(("value", "network"), [("false", False), ("true", True)])
def test_true_and_false_keep_their_meaning(tmp_path: Path, value: str, network: bool) -> None:
    config = loaded(tmp_path, f"permissions:\n  network: {value}\n")
    settings = RunSettings.from_config(config)
    assert (settings.network, settings.egress) == (network, ())
    assert bool(widened_permissions(config)) is network


def test_a_stored_allowlist_is_checked_again_when_read(tmp_path: Path) -> None:
    from aido.errors import MetadataError

    config = loaded(tmp_path, "permissions:\n  network:\n    allow: [pypi.org]\n")
    config["permissions"]["network"]["allow"] = ["*"]  # type: ignore[index]
    with pytest.raises(MetadataError, match="every host"):
        RunSettings.from_config(config)
    config["permissions"]["network"]["allow"] = []  # type: ignore[index]
    with pytest.raises(MetadataError, match="empty"):
        RunSettings.from_config(config)
