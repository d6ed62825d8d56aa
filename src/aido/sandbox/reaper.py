"""Kept so that a reaper started by an older aido (``python -m aido.sandbox.reaper ROOT``)
and any script that starts one that way keep working: the reaper lives in
``aido.lifecycle.reaper`` now."""

from __future__ import annotations

import sys

from aido.lifecycle.reaper import main

if __name__ == "__main__":
    sys.exit(main())
