"""Secret-looking environment values are masked before anything is persisted (evidence/redact.py)."""

from __future__ import annotations

import pytest

from aido.evidence.redact import REDACTED, is_secret_name, redact_env


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "DB_PASSWORD",
        "MYSQL_PASSWD",
        "API_KEY",
        "OPENAI_API_KEY",
        "SSH_PRIVATE_KEY",
        "GPG_PASSPHRASE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "HTTP_AUTH",
        "AUTHORIZATION",
        "SESSION_COOKIE",
        "WEBHOOK_SIGNATURE",
        "SENTRY_DSN",
        "client_secret",
        "github_token",
        "ApiKey",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)
    assert redact_env({name: "hunter2"}) == {name: REDACTED}


@pytest.mark.parametrize(
    "name",
    ["PATH", "HOME", "LANG", "MODE", "PORT", "DEBUG", "USER", "TMPDIR", "APP_MODE", "PYTHONUNBUFFERED", "TZ"],
)
def test_ordinary_names_are_kept(name: str) -> None:
    assert not is_secret_name(name)
    assert redact_env({name: "value"}) == {name: "value"}


def test_redact_env_mixed() -> None:
    env = {"MODE": "fast", "GITHUB_TOKEN": "ghp_x", "PORT": "80", "DB_PASSWORD": "pw", "EMPTY_TOKEN": ""}
    assert redact_env(env) == {
        "MODE": "fast",
        "GITHUB_TOKEN": REDACTED,
        "PORT": "80",
        "DB_PASSWORD": REDACTED,
        "EMPTY_TOKEN": REDACTED,
    }
    assert list(redact_env(env)) == list(env)  # order kept
    assert env["GITHUB_TOKEN"] == "ghp_x"  # input untouched


def test_redacted_marker() -> None:
    assert REDACTED == "***REDACTED***"
    assert redact_env({}) == {}
