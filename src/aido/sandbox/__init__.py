"""Kept for compatibility: ``aido.sandbox.manager`` (the old home of the facade) and
``python -m aido.sandbox.reaper`` (reapers started by an older aido)."""
