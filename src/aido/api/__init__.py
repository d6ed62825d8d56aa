"""aido's typed Python API: ``aido.Sandbox`` (sync) and ``aido.AsyncSandbox`` (asyncio),
returning frozen result types (``RunOutcome``, ``Change``, ``FileInfo``, ``RunLogs``,
``RunInfo``, ``Verification``). Errors are aido.errors exceptions with the CLI's messages
and hints."""

from aido.api.aio import AsyncSandbox
from aido.api.results import Change, Code, FileInfo, RunInfo, RunLogs, RunOutcome, Verification
from aido.api.sandbox import Sandbox

__all__ = [
    "AsyncSandbox",
    "Change",
    "Code",
    "FileInfo",
    "RunInfo",
    "RunLogs",
    "RunOutcome",
    "Sandbox",
    "Verification",
]
