"""aido's own settings file (config/settings.py): strict like sandbox.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from aido.config.settings import DEFAULT_OUTPUT_LIMIT, Settings, load_settings
from aido.errors import ConfigError


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.json"
    path.write_text(text)
    return path


def test_no_file_gives_defaults() -> None:
    assert load_settings(None) == Settings(output_limit=DEFAULT_OUTPUT_LIMIT, source=None)
    assert DEFAULT_OUTPUT_LIMIT == 16 << 20


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ('{"output_limit": "1M"}', 1 << 20),
        ('{"output_limit": 2048}', 2048),
        ("output_limit: 64K\n", 64 << 10),  # YAML works too
        ("", DEFAULT_OUTPUT_LIMIT),
        ("{}", DEFAULT_OUTPUT_LIMIT),
    ],
)
def test_valid_settings(tmp_path: Path, text: str, limit: int) -> None:
    path = _config(tmp_path, text)
    assert load_settings(path) == Settings(output_limit=limit, source=str(path))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '{"output_limit": "lots"}',
            "config.json:1: output_limit: expected a size like 512M or 1G, got 'lots'",
        ),
        (
            '{"output_limit": "100"}',
            "config.json:1: output_limit: size '100' is too small: the minimum is 1K",
        ),
        (
            '{"output_limit": "32G"}',
            "config.json:1: output_limit: size '32G' is too large: the maximum is 16G",
        ),
        ("[1]", "config.json:1: (top level): expected a mapping of keys, got list"),
        (
            '{"output_limit": ',
            "config.json:1: invalid YAML: expected the node content, but found '<stream end>'",
        ),
    ],
)
def test_invalid_settings(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_config(tmp_path, text))
    assert caught.value.problems == [problem]


def test_unknown_key_suggests_a_settings_key(tmp_path: Path) -> None:
    # The suggestion and the allowed list must come from the settings file's own keys,
    # not from sandbox.yaml's (which would suggest 'outputs' here).
    with pytest.raises(ConfigError) as caught:
        load_settings(_config(tmp_path, '{"outptu_limit": "1M"}'))
    assert caught.value.problems == [
        "config.json:1: outptu_limit: unknown key (allowed: output_limit, evidence_retention, cluster, mcp); "
        "did you mean 'output_limit'?"
    ]


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "missing.json")
    assert caught.value.problems == [f"{tmp_path / 'missing.json'}: no such file"]
    assert caught.value.hint == "check the --config path"


def test_cluster_setting(tmp_path: Path) -> None:
    """`cluster:` is where `aido run` sends runs when neither --cluster nor AIDO_CLUSTER says."""
    assert load_settings(_config(tmp_path, '{"cluster": " 10.0.0.5:6379 "}')).cluster == "10.0.0.5:6379"
    assert load_settings(_config(tmp_path, '{"cluster": ""}')).cluster is None
    assert load_settings(None).cluster is None
