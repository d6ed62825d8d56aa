"""aido-bash: an aido plugin adding a ``bash`` runtime (the ``aido_register_runtimes``
hook): ``runtime: bash`` in sandbox.yaml, ``aido sandbox up --runtime bash``, a ``.bash``
task in a sandbox without a runtime, and ``aido run -c CODE --runtime bash`` all run
``bash TASK ARGS...`` in debian:bookworm-slim, the image of aido's own ``sh`` runtime.
"""

from __future__ import annotations

from aido.plugins import Runtime, hookimpl


@hookimpl
def aido_register_runtimes() -> dict[str, Runtime]:
    # No {version} in the image: a family without versions, named just "bash" (like sh).
    return {"bash": Runtime(image="debian:bookworm-slim", interpreter="bash", extensions=(".bash",))}
