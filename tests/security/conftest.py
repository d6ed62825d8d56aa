"""The hostile-task suite: every test runs a real hostile task through the real CLI,
in a real container, under the isolation named by ``AIDO_TEST_ISOLATION`` (see
tests/helpers/hostile.py). After each test no container of its sandboxes may be
left, and every sandbox is destroyed.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _every_sandbox_destroyed(destroy_every_sandbox: None) -> None:
    """Makes tests/conftest.py's ``destroy_every_sandbox`` apply to each test here."""
