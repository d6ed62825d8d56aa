"""Load ``sandbox.yaml`` into a SandboxSpec, or fail with one line per problem.

Each problem names the file, the line and the key path, e.g.
``sandbox.yaml:7: resources.memory: expected a size like 512M or 1G, got 'lots'``.
YAML is loaded with the safe loader only; anchors and aliases are refused
outright, which also rules out "billion laughs" expansion; a key given twice in
one mapping is refused too (safe_load alone would keep the last one silently).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aido.errors import ConfigError, Problem

if TYPE_CHECKING:
    import yaml

    from aido.config.schema import SandboxSpec

MAX_CONFIG_BYTES = 256 * 1024
MAX_NODES = 10_000
# No sandbox.yaml nests deeper than a few levels. PyYAML's scanner is quadratic in the nesting
# of flow collections (5,000 `[` took 6 s to refuse), so deeper files are refused while parsing.
MAX_DEPTH = 100
MERGE_TAG = "tag:yaml.org,2002:merge"

Loc = tuple[str | int, ...]


def _line_index(root: yaml.Node, *, source: str) -> tuple[dict[Loc, int], dict[int, Loc]]:
    """Map every key path to the 1-based line of its key (or item) in the file, and every
    mapping node (by id) to its key path."""
    import yaml

    lines: dict[Loc, int] = {(): root.start_mark.line + 1}
    mappings: dict[int, Loc] = {}
    stack: list[tuple[Loc, yaml.Node]] = [((), root)]
    count = 0
    while stack:
        loc, node = stack.pop()
        count += 1
        if count > MAX_NODES:
            line = node.start_mark.line + 1
            raise ConfigError([Problem(f"the file has more than {MAX_NODES} YAML nodes", source, line)])
        if isinstance(node, yaml.MappingNode):
            mappings[id(node)] = loc
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
                # A repeated key keeps its first line here; the loader reports the repeat.
                lines.setdefault((*loc, key), key_node.start_mark.line + 1)
                stack.append(((*loc, key), value_node))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*loc, index)] = item.start_mark.line + 1
                stack.append(((*loc, index), item))
    return lines, mappings


def _load_strict(
    text: str, *, source: str, duplicates: list[Problem] | None = None
) -> tuple[Any, dict[Loc, int]]:
    """yaml.safe_load, except that a key given twice in one mapping is a problem (plain
    safe_load keeps the last one silently, so a second `memory:` would override the first
    unseen) and merge keys (`<<`) are refused: with aliases refused they could only merge an
    inline mapping, whose keys the mapping's own keys would silently override.

    Repeated keys are raised as a ConfigError, or added to ``duplicates`` when the caller
    gives that list (to report them with the other problems of the file)."""
    import yaml

    mappings: dict[int, Loc] = {}
    found_duplicates: list[Problem] = []

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            loc = mappings.get(id(node), ())
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == MERGE_TAG:
                    message = "YAML merge keys (<<) are not supported: write the keys out"
                    raise ConfigError([Problem(message, source, line, _dotted((*loc, "<<")))])
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it below
                if first is None:
                    seen[key] = line
                    continue
                # By value, as the dict sees it: `1` and `1.0`, or `yes` and `true`, collide too.
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key)
                message = f"duplicate key (first at line {first})"
                found_duplicates.append(Problem(message, source, line, _dotted((*loc, name))))
            return super().construct_mapping(node, deep=deep)

    loader = StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}
        lines, found = _line_index(root, source=source)
        mappings.update(found)
        data = loader.construct_document(root)
    finally:
        loader.dispose()
    if found_duplicates and duplicates is None:
        found_duplicates.sort(key=_by_line)
        raise ConfigError(found_duplicates)
    if duplicates is not None:
        duplicates.extend(found_duplicates)
    return data, lines


def _by_line(problem: Problem) -> int:
    return problem.line or 0


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _pattern(loc: Loc, expected: dict[str, str]) -> str:
    """The EXPECTED key for a location: list items as `[]`, free-form mapping keys as `.*`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += "[]"
        elif part == "[key]":
            out += "[key]"
        else:
            named = f"{out}.{part}" if out else str(part)
            known = any(k == named or k.startswith((f"{named}.", f"{named}[")) for k in expected)
            out = named if known else f"{out}.*"
    return out


def _message(error: Any, fields: dict[str, list[str]], expected: dict[str, str]) -> str:
    kind = error["type"]
    loc: Loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        parent = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
        allowed = fields.get(parent, [])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key (allowed: {', '.join(allowed)}){suggestion}"
    if kind == "value_error":
        return str(error["ctx"]["error"])  # aido's own validators word their messages
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}, got {_shown(error['input'])}"
    if kind == "missing":
        return "required"
    if kind == "invalid_key":
        parent = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
        return f"expected a key name (allowed: {', '.join(fields.get(parent, []))}), got {loc[-1]!r}"
    wanted = expected.get(_pattern(loc, expected))
    if wanted is not None:
        return f"expected {wanted}, got {_shown(error['input'])}"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {_shown(error['input'])}"


def _shown(value: object, limit: int = 80) -> str:
    """The given value as in the file, cut short: `env: [...]` of 200 KB stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def parse_yaml_text(
    text: str, *, source: str, duplicates: list[Problem] | None = None
) -> tuple[Any, dict[Loc, int]]:
    """Safe-load YAML text; return the data and a key-path -> line index (for
    ``duplicates``, see _load_strict)."""
    import yaml

    if len(text.encode("utf-8", "surrogateescape")) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem(f"file is larger than {MAX_CONFIG_BYTES // 1024} KiB", source)])
    try:
        # Aliases are refused before anything is built: "billion laughs" never expands.
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else 1
                raise ConfigError(
                    [Problem(f"YAML aliases (*{event.anchor}) are not supported", source, line)]
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    deep = event.start_mark.line + 1 if event.start_mark else None
                    raise ConfigError([Problem("invalid YAML: nested too deeply", source, deep)])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        data, lines = _load_strict(text, source=source, duplicates=duplicates)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark else None
        problem = exc.problem or exc.context
        if exc.context == "while scanning an alias":  # `- *.example.com`, unquoted
            problem = (
                "a value starting with '*' must be quoted, like \"*.example.com\" ('*' starts a YAML alias)"
            )
        raise ConfigError([Problem(f"invalid YAML: {problem}", source, at)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(f"invalid YAML: {exc}", source)]) from None
    except RecursionError:
        raise ConfigError([Problem("invalid YAML: nested too deeply", source)]) from None
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
    expected: dict[str, str] | None = None,
) -> list[Problem]:
    """One problem per error: command-line flags first (``--ttl: ...``), then the file's
    problems in line order (``sandbox.yaml:7: resources.memory: ...``)."""
    from pydantic import ValidationError

    assert isinstance(exc, ValidationError)
    if fields is None or expected is None:
        from aido.config import schema

        fields = schema.FIELD_NAMES if fields is None else fields
        expected = schema.EXPECTED if expected is None else expected
    flags = set(flags)
    flagged: list[Problem] = []
    located: list[Problem] = []
    for error in exc.errors(include_url=False):
        # Left out: pydantic's names for validator functions and a tagged union's branches.
        loc: Loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tag-")))
        )
        error["loc"] = loc
        message = _message(error, fields, expected)
        shown = tuple(p for p in loc if p != "[key]")  # a bad mapping key: reported at the key
        if shown and shown[0] in flags:
            flagged.append(Problem(message, key=f"--{shown[0]}"))
            continue
        # A key that is not in the file (a missing one) takes its parent's line.
        line_loc = shown
        while line_loc and line_loc not in lines:
            line_loc = line_loc[:-1]
        located.append(Problem(message, source, lines.get(line_loc), _dotted(shown)))
    return flagged + sorted(located, key=_by_line)


def load_mapping(
    path: Path, *, missing_hint: str, duplicates: list[Problem] | None = None
) -> tuple[dict[str, Any], dict[Loc, int]]:
    """Read a YAML (or JSON) file whose top level must be a mapping; data and line index."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("no such file", str(path))], hint=missing_hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(f"cannot read: {exc}", str(path))]) from None
    data, lines = parse_yaml_text(text, source=path.name, duplicates=duplicates)
    if not isinstance(data, dict):
        message = f"expected a mapping of keys, got {type(data).__name__}"
        raise ConfigError([Problem(message, path.name, 1, "(top level)")])
    return data, lines


def load_spec(path: Path | None, *, overrides: dict[str, Any] | None = None) -> SandboxSpec:
    """Validate a sandbox.yaml (or the defaults, when ``path`` is None) with flag overrides.

    Flags win over the file; a bad flag value is reported under the flag's name
    (``--ttl: ...``), a bad file value under its file and line.
    """
    return load_spec_and_lines(path, overrides=overrides)[0]


def load_spec_and_lines(
    path: Path | None,
    *,
    overrides: dict[str, Any] | None = None,
    given: tuple[str, dict[str, Any]] | None = None,
) -> tuple[SandboxSpec, dict[Loc, int]]:
    """load_spec, and the line of every key path in the file, for problems found later
    (an `inputs` pattern that matches nothing). ``given`` is (source, mapping): a spec
    given as data instead of a file (the Python API's keywords), checked the same way and
    reported as ``source: key: ...``."""
    from pydantic import ValidationError

    from aido.config.schema import SandboxSpec

    overrides = overrides or {}
    data: Any = {}
    lines: dict[Loc, int] = {}
    source = path.name if path is not None else "defaults"
    duplicates: list[Problem] = []
    if given is not None:
        source, data = given
    elif path is not None:
        data, lines = load_mapping(path, missing_hint="pass an existing file with -f", duplicates=duplicates)
    problems: list[Problem] = []
    try:
        spec = SandboxSpec.model_validate({**data, **overrides})
    except ValidationError as exc:
        problems = validation_problems(exc, source=source, lines=lines, flags=overrides)
    if not problems and not duplicates:
        return spec, lines
    # Repeated keys are reported with every other problem, at once. What validation says
    # under a repeated key is left out: it judged the last value but would name the first line.
    repeated = [p.key for p in duplicates if p.key]
    problems = [p for p in problems if p.file is None or not _under(p.key, repeated)]
    flagged = [p for p in problems if p.file is None]
    located = sorted([p for p in problems if p.file is not None] + duplicates, key=_by_line)
    raise ConfigError(flagged + located)


def _under(key: str | None, parents: list[str]) -> bool:
    return key is not None and any(
        key == parent or key.startswith((f"{parent}.", f"{parent}[")) for parent in parents
    )
