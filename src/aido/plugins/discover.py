"""Whether any installed distribution declares an ``aido.plugins`` entry point, found
without importing ``importlib.metadata`` (about 30 ms of imports: email, zipfile, csv)
or pluggy.

Every ``aido run`` asks this (its pre-run hooks may refuse the run), so the common case,
no plugin at all, must cost almost nothing: the directories of ``sys.path`` are listed
and the ``entry_points.txt`` of each ``*.dist-info`` / ``*.egg-info`` in them searched
for the group's section header. The answer is only a gate: when it is yes, the plugins
are loaded through ``importlib.metadata`` as usual, which decides what is really there.
"""

from __future__ import annotations

import os
import re
import sys

GROUP = "aido.plugins"
_SECTION = re.compile(rb"^\s*\[\s*aido\.plugins\s*\]\s*$", re.MULTILINE)
_META_SUFFIXES = (".dist-info", ".egg-info")


def declared(paths: list[str] | None = None) -> bool:
    """True if a distribution on ``paths`` (default: ``sys.path``) declares the group."""
    for entry in sys.path if paths is None else paths:
        directory = entry or "."
        try:
            with os.scandir(directory) as listing:
                metas = [e.name for e in listing if e.name.endswith(_META_SUFFIXES)]
        except OSError:  # missing, not a directory (a zip file on sys.path), unreadable
            continue
        for meta in metas:
            try:
                with open(os.path.join(directory, meta, "entry_points.txt"), "rb") as handle:
                    text = handle.read(1 << 20)
            except OSError:
                continue
            if b"aido.plugins" in text and _SECTION.search(text):
                return True
    return False
