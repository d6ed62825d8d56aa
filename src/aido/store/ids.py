"""Sandbox and run identifiers.

Sandbox ids are 12 characters from a cryptographic source, lowercase letters and
digits only: safe as container names, as directory names on case-insensitive
filesystems, and never mistaken for a path (no '.', '/', '..').
"""

from __future__ import annotations

import re
import string

from aido.errors import UsageError

ALPHABET = string.ascii_lowercase + string.digits
SANDBOX_ID_LENGTH = 12
_SANDBOX_ID = re.compile(rf"[a-z0-9]{{{SANDBOX_ID_LENGTH}}}")
_RUN_ID = re.compile(r"run-([0-9]{3,6})")


def new_sandbox_id() -> str:
    import secrets  # only `sandbox up` makes ids; every command reads them (hashlib, random: ~4 ms)

    return "".join(secrets.choice(ALPHABET) for _ in range(SANDBOX_ID_LENGTH))


def is_sandbox_id(value: str) -> bool:
    return bool(_SANDBOX_ID.fullmatch(value))


def _shown(value: str) -> str:
    """A user's bad input, quoted once, control characters escaped, cut at 40 characters."""
    cut = value[:40]
    return repr(cut) + ("..." if len(value) > 40 else "")


def check_sandbox_id(value: str) -> str:
    if not is_sandbox_id(value):
        raise UsageError(
            f"invalid sandbox id {_shown(value)}: expected 12 lowercase letters or digits",
            hint="list sandboxes with `aido sandbox list`",
        )
    return value


def run_id(number: int) -> str:
    return f"run-{number:03d}"


def run_number(value: str) -> int | None:
    match = _RUN_ID.fullmatch(value)
    return int(match.group(1)) if match else None


def check_run_id(value: str) -> str:
    # Accept the bare number too: `aido logs --run 2` means run-002.
    if re.fullmatch(r"[0-9]{1,6}", value) and int(value) > 0:
        return run_id(int(value))
    if run_number(value) is None:
        raise UsageError(f"invalid run id {_shown(value)}: expected run-001, run-002, ... (or just 2)")
    return value
