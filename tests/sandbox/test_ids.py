"""Sandbox and run identifiers (sandbox/ids.py)."""

from __future__ import annotations

import re

import pytest

from aido.errors import UsageError
from aido.exit_codes import ExitCode
from aido.store.ids import (
    SANDBOX_ID_LENGTH,
    check_run_id,
    check_sandbox_id,
    is_sandbox_id,
    new_sandbox_id,
    run_id,
    run_number,
)


def test_new_sandbox_id_shape() -> None:
    for _ in range(200):
        value = new_sandbox_id()
        assert len(value) == SANDBOX_ID_LENGTH == 12
        assert re.fullmatch(r"[a-z0-9]{12}", value), value
        assert value.isascii()
        assert is_sandbox_id(value)
        assert check_sandbox_id(value) == value


def test_new_sandbox_ids_are_unique_and_spread() -> None:
    draws = [new_sandbox_id() for _ in range(5000)]
    assert len(set(draws)) == len(draws)
    # Every character class shows up somewhere: not a constant, not digits only.
    joined = "".join(draws)
    assert len(set(joined)) == 36


@pytest.mark.parametrize(
    "value",
    [
        "",
        "..",
        "../../etc",
        "abc/def/ghij",
        "abcdefabcde/",
        "/abcdefabcde",
        "abcdef.bcdef",
        "abcdefabcdef\x00",
        "abcde\x00abcdef",
        "ABCDEFABCDEF",
        "Abcdefabcdef",
        "abcdefabcde",  # 11
        "abcdefabcdefa",  # 13
        "a" * 1000,
        "abcdef abcde",
        "abcdef-abcde",
        "abcdef_abcde",
        "abcdefabcde\n",
        "abcdéfabcdef",
        "abcdef١٢٣٤٥٦",  # non-ASCII digits
    ],
)
def test_check_sandbox_id_rejects(value: str) -> None:
    assert not is_sandbox_id(value)
    with pytest.raises(UsageError) as caught:
        check_sandbox_id(value)
    error = caught.value
    assert error.exit_code == ExitCode.USAGE == 2
    assert error.message.startswith("invalid sandbox id ")
    assert error.message.endswith(": expected 12 lowercase letters or digits")
    # One printable line, whatever the input held.
    assert "\n" not in error.message
    assert "\x00" not in error.message
    assert error.message.isprintable()
    assert len(error.message) < 200
    assert error.hint == "list sandboxes with `aido sandbox list`"


def test_check_sandbox_id_message_quotes_the_value() -> None:
    with pytest.raises(UsageError, match=r"^invalid sandbox id '\.\./\.\./etc': expected 12 lowercase"):
        check_sandbox_id("../../etc")


@pytest.mark.parametrize(
    ("number", "text"), [(1, "run-001"), (42, "run-042"), (999, "run-999"), (1000, "run-1000")]
)
def test_run_id_formatting(number: int, text: str) -> None:
    assert run_id(number) == text
    assert run_number(text) == number


@pytest.mark.parametrize(
    "value", ["run-1", "run-01", "run-", "run-abc", "RUN-001", "run-0000001", "001", "x"]
)
def test_run_number_rejects(value: str) -> None:
    assert run_number(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", "run-001"),
        ("2", "run-002"),
        ("002", "run-002"),
        ("42", "run-042"),
        ("999999", "run-999999"),
        ("run-001", "run-001"),
        ("run-123456", "run-123456"),
    ],
)
def test_check_run_id_accepts(value: str, expected: str) -> None:
    assert check_run_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "1000000",
        "-1",
        "run-1",
        "run-",
        "../run-001",
        "run-001/..",
        "run-001\x00",
        "",
        " 1",
        "1.0",
        "a" * 100,
    ],
)
def test_check_run_id_rejects(value: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_run_id(value)
    assert caught.value.message.startswith("invalid run id ")
    assert caught.value.message.endswith(": expected run-001, run-002, ... (or just 2)")
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("value", ["²", "³", "①"])
def test_check_run_id_unicode_digit_lookalikes_are_usage_errors(value: str) -> None:
    # str.isdigit() is True for '²', but int('²') raises ValueError: that must be a
    # clean usage error (exit 2), not an internal error.
    with pytest.raises(UsageError):
        check_run_id(value)
