"""Plain helpers the tests import (``from tests.helpers.cli import Result``).

Fixtures stay in the conftest.py files; everything else shared lives here, in an
ordinary package, so a test imports what it uses by name instead of relying on
which ``conftest`` module happens to be on ``sys.path``.
"""
