"""aido.log: aido's logger, with ``logging`` imported only when something is shown."""

from __future__ import annotations

import subprocess
import sys

# Each case runs in a fresh interpreter: whether ``logging`` is imported is the point.
_PROBE = """
import sys
from aido.log import configure, log

def setup():
    import logging
    logging.basicConfig(format="aido: %(levelname)s: %(message)s", stream=sys.stderr, level=logging.INFO)
    print("setup", file=sys.stderr)

configure(setup)
log.debug("not shown %s", 1)
print("logging imported:", "logging" in sys.modules, file=sys.stderr)
log.info("shown %s", 2)
log.warning("shown %s", 3)
"""


def _stderr(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stderr.splitlines()


def test_the_configuration_is_applied_once_before_the_first_message_shown() -> None:
    assert _stderr(_PROBE) == [
        "logging imported: False",
        "setup",
        "aido: INFO: shown 2",
        "aido: WARNING: shown 3",
    ]


def test_with_logging_already_imported_it_is_configured_at_once_and_debug_goes_through() -> None:
    probe = "import logging\nlogging.basicConfig(level=logging.DEBUG)\n" + _PROBE
    lines = _stderr(probe)
    assert lines[0] == "setup"  # at configure(): someone else may log before aido does
    assert "DEBUG:aido:not shown 1" in lines  # the first basicConfig (DEBUG) stays in force
