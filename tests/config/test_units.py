"""Durations and sizes: parsing, bounds and formatting (config/units.py)."""

from __future__ import annotations

import pytest

from aido.config.units import format_duration, format_size, parse_duration, parse_size

# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d", 86400),
        ("1d2h3m4s", 93784),
        ("1500ms", 1.5),
        ("1s500ms", 1.5),
        ("  10M  ", 600),  # trimmed, case-insensitive
        ("2H", 7200),
    ],
)
def test_parse_duration_accepts_unit_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "value",
    ["90", 90, 90.0, "", "m", "15 m", "1h 30m", "-5s", "+5s", "1.5h", "10x", "15min", "1w", "s15", None, []],
)
def test_parse_duration_rejects_bare_numbers_and_junk(value: object) -> None:
    with pytest.raises(ValueError, match=r"expected a duration like 90s, 15m or 2h, got "):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_duration_rejects_bools(value: bool) -> None:
    # bool is an int subclass; `timeout: yes` in YAML must not mean one second.
    with pytest.raises(ValueError, match=r"expected a duration"):
        parse_duration(value)


def test_parse_duration_minimum() -> None:
    with pytest.raises(ValueError, match=r"^duration '0s' is too short: the minimum is 1s$"):
        parse_duration("0s")
    with pytest.raises(ValueError, match=r"too short"):
        parse_duration("500ms")
    assert parse_duration("500ms", minimum=0.5) == 0.5


def test_parse_duration_maximum() -> None:
    assert parse_duration("30d") == 30 * 86400
    with pytest.raises(ValueError, match=r"^duration '31d' is too long: the maximum is 30d$"):
        parse_duration("31d")
    with pytest.raises(ValueError, match=r"^duration '2h' is too long: the maximum is 1h30m$"):
        parse_duration("2h", maximum=5400)
    # A huge number of units is still just "too long", never an overflow.
    with pytest.raises(ValueError, match=r"too long"):
        parse_duration("9" * 400 + "d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "500ms"),
        (1, "1s"),
        (90, "1m30s"),
        (900, "15m"),
        (5400, "1h30m"),
        (86400, "1d"),
        (93784, "1d2h3m4s"),
        (30 * 86400, "30d"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600, 5400, 86399, 86400, 93784, 30 * 86400])
def test_duration_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# -- sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512M", 512 << 20),
        ("512m", 512 << 20),
        ("1G", 1 << 30),
        ("1g", 1 << 30),
        ("1GB", 1 << 30),  # binary multiples, like docker
        ("1GiB", 1 << 30),
        ("1.5G", 3 << 29),
        ("64K", 64 << 10),
        ("1T", 1 << 40),
        ("100", 100),
        ("100b", 100),
        (" 512 M ", 512 << 20),
        (536870912, 512 << 20),
    ],
)
def test_parse_size_accepts(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value",
    [
        "lots",
        "",
        "1Gi",  # 'i' without 'B' is not a unit
        "1P",
        "-1G",
        "1e3",
        "1,5G",
        "G",
        "nan",
        "NaN",
        "inf",
        "Infinity",
        "nanM",
        "infG",
        1.5,  # a float is ambiguous in YAML: refuse it
        float("nan"),
        float("inf"),
        None,
        [],
    ],
)
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a size like 512M or 1G, got "):
        parse_size(value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_size_rejects_bools(value: bool) -> None:
    with pytest.raises(ValueError, match=r"expected a size like 512M or 1G, got"):
        parse_size(value)


def test_parse_size_bounds() -> None:
    with pytest.raises(ValueError, match=r"^size '0' is too small: the minimum is 1B$"):
        parse_size("0")
    with pytest.raises(ValueError, match=r"^size '8M' is too small: the minimum is 16M$"):
        parse_size("8M", minimum=16 << 20)
    with pytest.raises(ValueError, match=r"^size '2T' is too large: the maximum is 1T$"):
        parse_size("2T")
    assert parse_size("16M", minimum=16 << 20) == 16 << 20


def test_parse_size_huge_decimal_text_is_a_clean_error() -> None:
    # float("1000...0") is inf: caught by the finite check, not an overflow.
    with pytest.raises(ValueError, match=r"expected a size|too large"):
        parse_size("1" + "0" * 400 + "G")


def test_parse_size_huge_int_is_a_clean_error() -> None:
    # YAML turns `memory: 1000...0` (400 digits) into a Python int. float() of that
    # raises OverflowError, which pydantic does not turn into a validation error.
    with pytest.raises(ValueError, match=r"too large|expected a size"):
        parse_size(10**400)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (1 << 40, "1T"),
        (1 << 30, "1G"),
        (512 << 20, "512M"),
        (64 << 10, "64K"),
        (100, "100B"),
        (1023, "1023B"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize("size", [1, 100, 1024, 64 << 10, 16 << 20, 512 << 20, 3 << 30, 1 << 40])
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size
