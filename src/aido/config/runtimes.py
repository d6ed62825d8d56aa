"""From a runtime name (``python:3.11``, ``node:18``, ``docker://IMAGE``) or a task's
file extension to the image to run and the interpreter to run the task with.

Pure logic: no engine is consulted here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

DEFAULT_IMAGES = {
    "python": "python:{version}-slim",
    "node": "node:{version}-alpine",
}
DEFAULT_VERSIONS = {"python": "3.11", "node": "18"}
SH_IMAGE = "debian:bookworm-slim"

EXTENSIONS = {
    ".py": "python",
    ".js": "node",
    ".mjs": "node",
    ".cjs": "node",
    ".sh": "sh",
}

# Docker's reference grammar, simplified: lowercase path components, an optional
# registry host[:port], an optional :tag and @digest. Anything that starts with
# '-' or holds spaces can never reach the engine as an option.
_IMAGE = re.compile(
    r"(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
_VERSION = re.compile(r"[0-9][A-Za-z0-9_.-]{0,40}")


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str  # normalised name as recorded in evidence, e.g. "python:3.11"
    image: str
    interpreter: str | None  # "python", "node", "sh", or None (run the file itself)


def validate_image(image: str) -> str:
    if len(image) > 255 or not _IMAGE.fullmatch(image):
        raise ValueError(f"invalid image reference {image!r}: expected something like 'python:3.12-slim'")
    return image


def parse_runtime(value: str) -> RuntimeChoice:
    """Raise ValueError with a user-facing message on anything unknown."""
    text = value.strip()
    if text.startswith("docker://"):
        image = validate_image(text.removeprefix("docker://"))
        return RuntimeChoice(runtime=text, image=image, interpreter=None)
    family, _, version = text.partition(":")
    if family == "sh" and not version:
        return RuntimeChoice(runtime="sh", image=SH_IMAGE, interpreter="sh")
    if family in DEFAULT_IMAGES:
        version = version or DEFAULT_VERSIONS[family]
        if not _VERSION.fullmatch(version):
            raise ValueError(f"invalid {family} version {version!r}: expected something like {family}:3.12")
        image = DEFAULT_IMAGES[family].format(version=version)
        return RuntimeChoice(runtime=f"{family}:{version}", image=image, interpreter=family)
    raise ValueError(
        f"unknown runtime {value!r}: expected python:VERSION, node:VERSION, sh or docker://IMAGE"
    )


def runtime_for_task(task: str) -> RuntimeChoice | None:
    family = EXTENSIONS.get(PurePosixPath(task).suffix.lower())
    return parse_runtime(family) if family else None


def interpreter_for_task(task: str) -> str | None:
    return EXTENSIONS.get(PurePosixPath(task).suffix.lower())


def task_command(choice: RuntimeChoice, task_in_container: str, args: list[str]) -> list[str]:
    """argv for the container. A list, never a shell string: arguments cannot inject."""
    interpreter = choice.interpreter
    if interpreter is None:
        # A custom image: still pick the interpreter by extension when there is one.
        interpreter = interpreter_for_task(task_in_container)
    if interpreter is None:
        return [task_in_container, *args]
    return [interpreter, task_in_container, *args]
