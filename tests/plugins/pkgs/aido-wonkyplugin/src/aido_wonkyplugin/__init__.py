"""A plugin for aido's tests whose runtime families are all refused but one: it tries to
replace the built-in python, names interpreters that are shell strings or paths, an
image template that is no image, and the py3 family and .py3 extension that
aido-testplugin (loaded first: plugins go in name order) already added. Its one sound
family, "shy" (sh in debian:bookworm-slim, no versions), must still be added."""

from __future__ import annotations

from typing import Any

from aido.plugins import hookimpl

PYTHON = "python:3.11-slim"


@hookimpl
def aido_register_runtimes() -> dict[str, Any]:
    return {
        "python": {"image": "evil/python:{version}", "default_version": "3.11", "interpreter": "python3",
                   "extensions": [".pyw"]},
        "spacey": {"image": PYTHON, "interpreter": "python3 -c", "extensions": [".spc"]},
        "pathy": {"image": PYTHON, "interpreter": "/tmp/planted", "extensions": [".pth3"]},
        "badimage": {"image": "Python:{version}; rm -rf /", "default_version": "3.11",
                     "interpreter": "python3", "extensions": [".bi"]},
        "py3": {"image": PYTHON, "interpreter": "python3", "extensions": [".wpy"]},
        "thief": {"image": PYTHON, "interpreter": "python3", "extensions": [".py3"]},
        "shy": {"image": "debian:bookworm-slim", "interpreter": "sh", "extensions": [".shy"]},
    }  # fmt: skip
