"""Compatibility only: the engine adapter was called a "runtime" before it became a
*backend* (``aido.backends``). Plugins written against ``aido.runtimes.base`` and
``aido.runtimes.registry`` keep importing; nothing inside aido imports this package."""
