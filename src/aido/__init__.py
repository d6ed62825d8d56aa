"""aido: run untrusted tasks in container sandboxes and keep evidence of what ran.

The public Python API lives here; the ``aido`` command is a thin layer over it.
Heavy modules are imported on first use so that ``import aido`` and ``aido --version``
stay fast. This module and ``__main__`` deliberately import nothing but modules the
interpreter has already loaded (no ``from __future__``): under ``python -m aido`` the
current directory is first on sys.path until ``__main__`` removes it, and a task's
directory may hold a hostile ``__future__.py``.
"""

# Not typing's: importing typing (with re and the rest) costs ~5 ms that `aido --version`
# and a delegated `aido run` (cli/client.py) would pay for nothing. Type checkers read
# any constant of this name as typing's.
TYPE_CHECKING = False

__version__ = "0.1.0"

__all__ = [
    "AidoError",
    "AsyncSandbox",
    "Change",
    "Code",
    "FileInfo",
    "RunHooks",
    "RunInfo",
    "RunLogs",
    "RunOutcome",
    "RunResult",
    "Sandbox",
    "SandboxManager",
    "Verification",
    "Widening",
    "Workspace",
    "__version__",
]

if TYPE_CHECKING:
    from typing import Any

    from aido.api import (
        AsyncSandbox,
        Change,
        Code,
        FileInfo,
        RunInfo,
        RunLogs,
        RunOutcome,
        Sandbox,
        Verification,
    )
    from aido.errors import AidoError
    from aido.manager import SandboxManager
    from aido.run.request import RunHooks, Widening
    from aido.run.result import RunResult
    from aido.store.workspace import Workspace

_LAZY = {
    "AidoError": "aido.errors",
    "AsyncSandbox": "aido.api",
    "Change": "aido.api",
    "Code": "aido.api",
    "FileInfo": "aido.api",
    "RunInfo": "aido.api",
    "RunLogs": "aido.api",
    "RunOutcome": "aido.api",
    "Sandbox": "aido.api",
    "Verification": "aido.api",
    "RunHooks": "aido.run.request",
    "RunResult": "aido.run.result",
    "SandboxManager": "aido.manager",
    "Widening": "aido.run.request",
    "Workspace": "aido.store.workspace",
}


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aido' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
