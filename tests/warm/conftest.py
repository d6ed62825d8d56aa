"""Every warm-pool test leaves no container and no sandbox behind."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _every_sandbox_destroyed(destroy_every_sandbox: None) -> None:
    """Makes tests/conftest.py's ``destroy_every_sandbox`` apply to each test here."""
