"""aido's own settings: ``--config PATH``, else ``.aido/config.json`` when it exists.

JSON or YAML (JSON is read by the same safe YAML loader), strict like sandbox.yaml.
Loaded only when a file exists, so a plain ``aido run`` never imports pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aido.config.units import parse_size
from aido.errors import ConfigError, Problem

DEFAULT_OUTPUT_LIMIT = 16 << 20


@dataclass(frozen=True)
class Settings:
    output_limit: int = DEFAULT_OUTPUT_LIMIT  # bytes kept per stream per run
    source: str | None = None


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    from aido.config.loader import load_mapping, validation_problems

    class _File(BaseModel):
        model_config = ConfigDict(extra="forbid")
        output_limit: str | int = Field(default="16M")

    data, lines = load_mapping(path, missing_hint="check the --config path")
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            validation_problems(
                exc,
                source=path.name,
                lines=lines,
                fields={"": list(_File.model_fields)},
                expected={"output_limit": "a size like 16M or 1G"},
            )
        ) from None
    try:
        limit = parse_size(parsed.output_limit, minimum=1024, maximum=1 << 34)
    except ValueError as exc:
        line = lines.get(("output_limit",), 1)
        raise ConfigError([Problem(str(exc), path.name, line, "output_limit")]) from None
    return Settings(output_limit=limit, source=str(path))
