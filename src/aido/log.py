"""``log``: aido's logger, ``logging.getLogger("aido")``, with ``logging`` imported when
something is first logged.

Why: ``import logging`` imports traceback, tokenize, linecache, textwrap, string and
weakref, ~4 ms of the start of every ``aido run``, and a run that goes well logs nothing.
``log`` answers every attribute with the real logger's, so ``log.warning(...)`` (and
``caplog``, ``setLevel``) work as they would on the logger itself.

The CLI's configuration (the ``aido: warning: ...`` format on stderr) is registered with
``configure`` and applied just before the first use, or at once if ``logging`` is already
imported. Code that brings in a library which configures logging itself calls ``logger()``
first, so that aido's configuration still comes first.

``log.debug`` is dropped, without importing ``logging``, while ``logging`` is not imported:
until then no level can have been set but the root's WARNING, or the INFO of a pending
configuration (``aido --verbose`` sets DEBUG through ``log``, which imports it). A setup
that enables DEBUG must then be applied at once, with ``logger()``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging

__all__ = ["configure", "log", "logger"]

_pending: list[Callable[[], None]] = []


def configure(setup: Callable[[], None]) -> None:
    """Runs ``setup`` (which configures ``logging``) before aido first logs; now if
    ``logging`` is already imported (by someone else, who may log too)."""
    _pending.append(setup)
    if "logging" in sys.modules:
        logger()


def logger() -> logging.Logger:
    """The ``aido`` logger, configured by what ``configure`` registered."""
    import logging

    while _pending:
        _pending.pop(0)()
    return logging.getLogger("aido")


class _Log:
    def __getattr__(self, name: str) -> Any:
        return getattr(logger(), name)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        # Every run logs a few debug lines (its container, limits, mounts): filtered out
        # unless asked for, which needs logging imported (see above).
        if "logging" in sys.modules:
            logger().debug(msg, *args, **kwargs)

    def __repr__(self) -> str:
        return "<aido logger, imported on first use>"


log = cast("logging.Logger", _Log())
