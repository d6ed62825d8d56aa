"""From a runtime name (``python:3.11``, ``node:18``, ``docker://IMAGE``) or a task's
file extension to the image to run and the interpreter to run the task with.

Pure logic: no engine is consulted here. Besides the built-in families, plugins may add
families (``aido_register_runtimes``); config sits below the plugins layer, so it only
keeps them in a small registry that the plugins layer fills (aido.plugins.runtimes) and
checks what it is given (``check_family``) so that a family here is always a sound one.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

from aido.values import dataclass

DEFAULT_IMAGES = {
    "python": "python:{version}-slim",
    "node": "node:{version}-alpine",
}
DEFAULT_VERSIONS = {"python": "3.11", "node": "18"}
SH_IMAGE = "debian:bookworm-slim"
BUILTIN_FAMILIES = ("python", "node", "sh", "docker")

EXTENSIONS = {
    ".py": "python",
    ".js": "node",
    ".mjs": "node",
    ".cjs": "node",
    ".sh": "sh",
}
# A code string's task name (snippet-<digest><ext>) by interpreter, for the built-ins.
CODE_EXTENSIONS = {"python": ".py", "node": ".js", "sh": ".sh"}

# Docker's reference grammar, simplified: lowercase path components, an optional
# registry host[:port], an optional :tag and @digest. Anything that starts with
# '-' or holds spaces can never reach the engine as an option.
_IMAGE = re.compile(
    r"(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
_VERSION = re.compile(r"[0-9][A-Za-z0-9_.-]{0,40}")
FAMILY_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# argv[0] inside the container, found on the image's PATH: a plain command name, never a
# path (a plugin cannot point at a file it planted) nor a shell string (no spaces).
INTERPRETER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")
EXTENSION = re.compile(r"\.[a-z0-9][a-z0-9_+-]{0,15}")
MAX_EXTENSIONS = 16


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str  # normalised name as recorded in evidence, e.g. "python:3.11"
    image: str
    interpreter: str | None  # "python", "node", "sh", or None (run the file itself)
    plugin: str | None = None  # the plugin that added the family, for a plugin's runtime


@dataclass(frozen=True)
class Runtime:
    """A runtime family a plugin adds (``aido_register_runtimes``), named by its key:
    ``{"ruby": Runtime("ruby:{version}-slim", "ruby", (".rb",), "3.3")}`` makes
    ``runtime: ruby:3.3`` (and ``ruby``, the default version) run ``ruby TASK`` in
    ``ruby:3.3-slim``, and a ``.rb`` task in a sandbox without a runtime run that way.
    ``image`` may hold ``{version}`` (then ``default_version`` is due) or no field at
    all (a family without versions, like ``sh``)."""

    image: str
    interpreter: str
    extensions: tuple[str, ...]
    default_version: str | None = None


@dataclass(frozen=True)
class Family:
    """A checked plugin family, as the registry keeps it."""

    name: str
    image: str  # the template
    interpreter: str
    extensions: tuple[str, ...]
    default_version: str | None
    plugin: str

    @property
    def versioned(self) -> bool:
        return self.default_version is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "default_version": self.default_version,
            "interpreter": self.interpreter,
            "extensions": list(self.extensions),
        }


_plugin_families: Mapping[str, Family] = MappingProxyType({})


def validate_image(image: str) -> str:
    if len(image) > 255 or not _IMAGE.fullmatch(image):
        raise ValueError(f"invalid image reference {image!r}: expected something like 'python:3.12-slim'")
    return image


def check_family(name: str, value: Runtime | Mapping[str, Any], plugin: str) -> Family:
    """A plugin's family, checked: raise ValueError saying what is wrong with it."""
    if not isinstance(name, str) or not FAMILY_NAME.fullmatch(name):
        raise ValueError(f"runtime name {name!r} is not usable (a-z, 0-9, '_', '-', at most 32)")
    if name in BUILTIN_FAMILIES:
        raise ValueError(f"runtime {name!r} is built in: not replaced")
    if isinstance(value, Mapping):
        known = [f.name for f in fields(Runtime)]
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise ValueError(f"runtime {name!r}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        missing = [k for k in ("image", "interpreter", "extensions") if k not in value]
        if missing:
            raise ValueError(f"runtime {name!r}: {missing[0]!r} is missing")
        value = Runtime(**value)
    elif not isinstance(value, Runtime):
        raise ValueError(f"runtime {name!r}: {type(value).__name__}, not a Runtime or a dict")
    template, interpreter, default = value.image, value.interpreter, value.default_version
    if not isinstance(interpreter, str) or not INTERPRETER.fullmatch(interpreter):
        raise ValueError(
            f"runtime {name!r}: interpreter {interpreter!r} is not a plain command name "
            "(no path, no spaces: it is looked up on the image's PATH)"
        )
    if default is not None and (not isinstance(default, str) or not _VERSION.fullmatch(default)):
        raise ValueError(f"runtime {name!r}: default_version {default!r} is not a version like '3.3'")
    versioned = _template_fields(name, template)
    if versioned and default is None:
        raise ValueError(f"runtime {name!r}: image {template!r} has {{version}}, so default_version is due")
    if not versioned and default is not None:
        raise ValueError(f"runtime {name!r}: image {template!r} has no {{version}} for default_version")
    try:
        validate_image(template.format(version=default) if versioned else template)
    except ValueError as exc:
        raise ValueError(f"runtime {name!r}: {exc}") from None
    return Family(name, template, interpreter, _extensions(name, value.extensions), default, plugin)


def _template_fields(name: str, template: object) -> bool:
    """Whether the image template holds {version}; any other field is refused."""
    if not isinstance(template, str):
        raise ValueError(f"runtime {name!r}: image is {type(template).__name__}, not str")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"runtime {name!r}: image {template!r}: {exc}") from None
    versioned = False
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field != "version" or spec or conversion:
            raise ValueError(f"runtime {name!r}: image {template!r} may hold {{version}} and no other field")
        versioned = True
    return versioned


def _extensions(name: str, given: object) -> tuple[str, ...]:
    if isinstance(given, str) or not isinstance(given, Iterable):
        raise ValueError(f"runtime {name!r}: extensions must be a list of strings like ['.rb']")
    found: list[str] = []
    for ext in given:
        if not isinstance(ext, str) or not EXTENSION.fullmatch(ext.lower()):
            raise ValueError(f"runtime {name!r}: extension {ext!r} is not like '.rb'")
        if ext.lower() in EXTENSIONS:
            raise ValueError(
                f"runtime {name!r}: extension {ext.lower()!r} belongs to the built-in runtime "
                f"{EXTENSIONS[ext.lower()]!r}"
            )
        if ext.lower() not in found:
            found.append(ext.lower())
    if not found or len(found) > MAX_EXTENSIONS:
        raise ValueError(f"runtime {name!r}: give 1 to {MAX_EXTENSIONS} extensions (a code string needs one)")
    return tuple(found)


def set_plugin_families(families: Iterable[Family]) -> None:
    """Replace the plugins' families (the plugins layer checks clashes between plugins)."""
    global _plugin_families
    _plugin_families = MappingProxyType({f.name: f for f in families})


def plugin_families() -> Mapping[str, Family]:
    return _plugin_families


def known_runtimes() -> str:
    """The runtime names accepted, for messages."""
    extra = "".join(f", {name}" for name in sorted(_plugin_families))
    return f"python:VERSION, node:VERSION, sh{extra} or docker://IMAGE"


def known_extensions() -> str:
    """The task extensions that pick a runtime, for messages: ".py, .js, ... or .sh"."""
    names = [*EXTENSIONS, *(e for f in _plugin_families.values() for e in f.extensions)]
    return f"{', '.join(names[:-1])} or {names[-1]}"


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
    found = _plugin_families.get(family) if family not in BUILTIN_FAMILIES else None
    if found is not None:
        return _plugin_choice(found, version)
    raise ValueError(f"unknown runtime {value!r}: expected {known_runtimes()}")


def _plugin_choice(family: Family, version: str) -> RuntimeChoice:
    if not family.versioned:
        if version:
            raise ValueError(f"runtime {family.name} has no versions: use {family.name!r}")
        return RuntimeChoice(family.name, family.image, family.interpreter, family.plugin)
    version = version or str(family.default_version)
    if not _VERSION.fullmatch(version):
        raise ValueError(
            f"invalid {family.name} version {version!r}: expected something like "
            f"{family.name}:{family.default_version}"
        )
    image = validate_image(family.image.format(version=version))
    return RuntimeChoice(f"{family.name}:{version}", image, family.interpreter, family.plugin)


def family_for_task(task: str) -> str | None:
    """The family a task's extension names (``python`` for ``a.py``), or None."""
    suffix = PurePosixPath(task).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    return next((f.name for f in _plugin_families.values() if suffix in f.extensions), None)


def runtime_for_task(task: str) -> RuntimeChoice | None:
    family = family_for_task(task)
    return parse_runtime(family) if family else None


def interpreter_for_task(task: str) -> str | None:
    """The interpreter a task's extension names (``python`` for ``a.py``), or None."""
    choice = runtime_for_task(task)
    return choice.interpreter if choice else None


def code_extension(choice: RuntimeChoice) -> str:
    """The extension of a code string's task name under ``choice`` (which has an interpreter)."""
    if choice.plugin is None:
        return CODE_EXTENSIONS[str(choice.interpreter)]
    return _plugin_families[choice.runtime.partition(":")[0]].extensions[0]


def task_command(choice: RuntimeChoice, task_in_container: str, args: list[str]) -> list[str]:
    """argv for the container. A list, never a shell string: arguments cannot inject."""
    interpreter = choice.interpreter
    if interpreter is None:
        # A custom image: still pick the interpreter by extension when there is one.
        interpreter = interpreter_for_task(task_in_container)
    if interpreter is None:
        return [task_in_container, *args]
    return [interpreter, task_in_container, *args]
