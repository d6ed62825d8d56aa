"""Compatibility only: ``aido.backends.registry`` under its pre-rename name."""

from __future__ import annotations

from aido.backends.registry import available
from aido.backends.registry import get_backend as get_runtime

__all__ = ["available", "get_runtime"]
