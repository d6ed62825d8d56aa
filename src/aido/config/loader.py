"""Load ``sandbox.yaml`` into a SandboxSpec, or fail with one line per problem.

Each problem names the file, the line and the key path, e.g.
``sandbox.yaml:7: resources.memory: expected a size like 512M or 1G, got 'lots'``.
YAML is loaded with the safe loader only; anchors and aliases are refused
outright, which also rules out "billion laughs" expansion.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido.errors import ConfigError

if TYPE_CHECKING:
    import yaml

    from aido.config.schema import SandboxSpec

MAX_CONFIG_BYTES = 256 * 1024
MAX_NODES = 10_000

Loc = tuple[str | int, ...]


def _line_index(root: yaml.Node) -> dict[Loc, int]:
    """Map every key path to the 1-based line of its key (or item) in the file."""
    import yaml

    lines: dict[Loc, int] = {(): root.start_mark.line + 1}
    stack: list[tuple[Loc, yaml.Node]] = [((), root)]
    count = 0
    while stack:
        loc, node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError([f"{node.start_mark.line + 1}: the file has more than {MAX_NODES} YAML nodes"])
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
                lines[(*loc, key)] = key_node.start_mark.line + 1
                stack.append(((*loc, key), value_node))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*loc, index)] = item.start_mark.line + 1
                stack.append(((*loc, index), item))
    return lines


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(error: Any, fields: dict[str, list[str]] | None = None) -> str:
    kind = error["type"]
    loc: Loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        if fields is None:
            from aido.config.schema import FIELD_NAMES

            fields = FIELD_NAMES
        parent = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
        allowed = fields.get(parent, [])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key (allowed: {', '.join(allowed)}){suggestion}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}, got {error['input']!r}"
    if kind == "missing":
        return "required"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {error['input']!r}"


def parse_yaml_text(text: str, *, source: str) -> tuple[Any, dict[Loc, int]]:
    """Safe-load YAML text; return the data and a key-path -> line index."""
    import yaml

    if len(text.encode("utf-8", "surrogateescape")) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{source}: file is larger than {MAX_CONFIG_BYTES // 1024} KiB"])
    try:
        # Aliases are refused before anything is built: "billion laughs" never expands.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else 1
                raise ConfigError([f"{source}:{line}: YAML aliases (*{event.anchor}) are not supported"])
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return {}, {}
        lines = _line_index(root)
        data = yaml.safe_load(text)
    except ConfigError as exc:
        if exc.problems[0].startswith(source):
            raise
        raise ConfigError([f"{source}:{p}" for p in exc.problems]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: invalid YAML: nested too deeply"]) from None
    if data is None:  # a file of only comments or `---`: all defaults
        data = {}
    return data, lines


def validation_problems(
    exc: Exception,
    *,
    source: str,
    lines: dict[Loc, int],
    flags: Iterable[str] = (),
    fields: dict[str, list[str]] | None = None,
) -> list[str]:
    """One line per problem: command-line flags first (``--ttl: ...``), then the file's
    problems in line order (``sandbox.yaml:7: resources.memory: ...``)."""
    from pydantic import ValidationError

    assert isinstance(exc, ValidationError)
    flags = set(flags)
    flagged: list[str] = []
    located: list[tuple[int, str]] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        error["loc"] = loc
        if loc and loc[0] in flags:
            flagged.append(f"--{loc[0]}: {_message(error, fields)}")
            continue
        # A key that is not in the file (a missing one) takes its parent's line.
        line_loc = loc
        while line_loc and line_loc not in lines:
            line_loc = line_loc[:-1]
        line = lines.get(line_loc)
        where = f"{source}:{line}" if line else source
        located.append((line or 0, f"{where}: {_dotted(loc)}: {_message(error, fields)}"))
    return flagged + [text for _, text in sorted(located, key=lambda item: item[0])]


def load_mapping(path: Path, *, missing_hint: str) -> tuple[dict[str, Any], dict[Loc, int]]:
    """Read a YAML (or JSON) file whose top level must be a mapping; data and line index."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"], hint=missing_hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    data, lines = parse_yaml_text(text, source=path.name)
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path.name}:1: (top level): expected a mapping of keys, got {type(data).__name__}"]
        )
    return data, lines


def load_spec(path: Path | None, *, overrides: dict[str, Any] | None = None) -> SandboxSpec:
    """Validate a sandbox.yaml (or the defaults, when ``path`` is None) with flag overrides.

    Flags win over the file; a bad flag value is reported under the flag's name
    (``--ttl: ...``), a bad file value under its file and line.
    """
    from pydantic import ValidationError

    from aido.config.schema import SandboxSpec

    overrides = overrides or {}
    data: Any = {}
    lines: dict[Loc, int] = {}
    source = path.name if path is not None else "defaults"
    if path is not None:
        data, lines = load_mapping(path, missing_hint="pass an existing file with -f")
    try:
        return SandboxSpec.model_validate({**data, **overrides})
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, source=source, lines=lines, flags=overrides)) from None
