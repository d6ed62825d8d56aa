"""aido-census: an aido plugin that adds a file-type census of outputs/ to each run's
evidence (the ``aido_post_run`` hook, aido's evidence-generator hook).

outputs/ is written by the task, which is untrusted: the walk never follows a symbolic
link (a link to /etc or to a huge host directory is counted as a link, nothing more),
reads no file's content, and stops after MAX_ENTRIES entries.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from aido.plugins import FinishedRun, hookimpl

MAX_ENTRIES = 100_000


def census(root: str) -> dict[str, Any]:
    by_extension: dict[str, dict[str, int]] = {}
    counts = {"files": 0, "bytes": 0, "directories": 0, "links": 0, "other": 0}
    seen = 0
    truncated = False
    pending = [root]
    while pending and not truncated:
        directory = pending.pop()
        try:
            listing = os.scandir(directory)
        except OSError:
            counts["other"] += 1
            continue
        with listing:
            for entry in listing:
                seen += 1
                if seen > MAX_ENTRIES:
                    truncated = True
                    break
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode  # lstat: never through a link
                except OSError:
                    counts["other"] += 1
                    continue
                if stat.S_ISLNK(mode):
                    counts["links"] += 1
                elif stat.S_ISDIR(mode):
                    counts["directories"] += 1
                    pending.append(entry.path)
                elif stat.S_ISREG(mode):
                    size = entry.stat(follow_symlinks=False).st_size
                    extension = os.path.splitext(entry.name)[1].lower() or "(none)"
                    slot = by_extension.setdefault(extension, {"files": 0, "bytes": 0})
                    slot["files"] += 1
                    slot["bytes"] += size
                    counts["files"] += 1
                    counts["bytes"] += size
                else:
                    counts["other"] += 1
    return {**counts, "by_extension": dict(sorted(by_extension.items())), "truncated": truncated}


@hookimpl
def aido_post_run(run: FinishedRun) -> dict[str, bytes]:
    document = {"run_id": run.run_id, "outputs": census(str(run.outputs_dir))}
    return {"census.json": json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"}
