"""Compatibility only: ``aido.backends.base`` under its pre-rename name."""

from __future__ import annotations

from aido.backends.base import Backend as RuntimeAdapter
from aido.backends.base import (
    ExecOutcome,
    ExecRequest,
    Limits,
    Mount,
    RuntimeInfo,
    StopReason,
)

__all__ = ["ExecOutcome", "ExecRequest", "Limits", "Mount", "RuntimeAdapter", "RuntimeInfo", "StopReason"]
