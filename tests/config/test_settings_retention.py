"""evidence_retention in aido's settings file: a duration, or never/0 to keep evidence forever."""

from __future__ import annotations

from pathlib import Path

import pytest

from aido.config.settings import DEFAULT_EVIDENCE_RETENTION, load_settings, parse_retention
from aido.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30d", 30 * 86400.0),
        ("12h", 43200.0),
        ("1s", 1.0),
        ("never", None),
        ("Never", None),
        ("0", None),
        (0, None),
    ],
)
def test_parse_retention(value: object, seconds: float | None) -> None:
    assert parse_retention(value) == seconds


@pytest.mark.parametrize("value", ["forever", "", "-1d", 30, True, "40000d"])
def test_invalid_retention(value: object) -> None:
    with pytest.raises(ValueError, match="never"):
        parse_retention(value)


def test_default_and_file(tmp_path: Path) -> None:
    assert load_settings(None).evidence_retention == DEFAULT_EVIDENCE_RETENTION == 30 * 86400.0
    path = tmp_path / "config.json"
    path.write_text('{"evidence_retention": "never"}')
    assert load_settings(path).evidence_retention is None
    path.write_text('{\n  "evidence_retention": "soon"\n}')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [
        "config.json:2: evidence_retention: expected a duration like 90s, 15m or 2h, got 'soon' "
        "(or never, to keep evidence forever)"
    ]
