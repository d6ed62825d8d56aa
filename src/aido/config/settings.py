"""aido's own settings: ``--config PATH``, else ``.aido/config.json`` when it exists.

JSON or YAML (JSON is read by the same safe YAML loader), strict like sandbox.yaml.
Loaded only when a file exists, so a plain ``aido run`` never imports pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aido.config.units import parse_size
from aido.errors import ConfigError

DEFAULT_OUTPUT_LIMIT = 16 << 20


@dataclass(frozen=True)
class Settings:
    output_limit: int = DEFAULT_OUTPUT_LIMIT  # bytes kept per stream per run
    source: str | None = None


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    from aido.config.loader import parse_yaml_text, validation_problems

    class _File(BaseModel):
        model_config = ConfigDict(extra="forbid")
        output_limit: str | int = Field(default="16M")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such config file"], hint="check the --config path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    data, lines = parse_yaml_text(text, source=path.name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path.name}:1: (top level): expected a mapping of keys"])
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, source=path.name, lines=lines)) from None
    try:
        limit = parse_size(parsed.output_limit, minimum=1024, maximum=1 << 34)
    except ValueError as exc:
        raise ConfigError([f"{path.name}:{lines.get(('output_limit',), 1)}: output_limit: {exc}"]) from None
    return Settings(output_limit=limit, source=str(path))
