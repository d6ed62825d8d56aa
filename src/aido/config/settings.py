"""aido's own settings: ``--config PATH``, else ``.aido/config.json`` when it exists.

JSON or YAML (JSON is read by the same safe YAML loader), strict like sandbox.yaml.
Loaded only when a file exists, so a plain ``aido run`` never imports pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aido.config.units import parse_duration, parse_size
from aido.errors import ConfigError, Problem

DEFAULT_OUTPUT_LIMIT = 16 << 20
DEFAULT_EVIDENCE_RETENTION = 30 * 86400.0
MAX_EVIDENCE_RETENTION = 100 * 365 * 86400.0


@dataclass(frozen=True)
class Settings:
    output_limit: int = DEFAULT_OUTPUT_LIMIT  # bytes kept per stream per run
    source: str | None = None
    # How long a destroyed sandbox's archived evidence is kept, in seconds; None: forever.
    evidence_retention: float | None = DEFAULT_EVIDENCE_RETENTION
    # The Ray cluster `aido run` sends runs to (`--cluster` and AIDO_CLUSTER win); None: local.
    cluster: str | None = None


def parse_retention(value: object) -> float | None:
    """``evidence_retention``: a duration (30d, 12h), or ``never`` / 0 to keep evidence forever."""
    if (isinstance(value, int) and not isinstance(value, bool) and value == 0) or (
        isinstance(value, str) and value.strip().lower() in ("never", "0")
    ):
        return None
    try:
        return parse_duration(value, maximum=MAX_EVIDENCE_RETENTION)
    except ValueError as exc:
        raise ValueError(f"{exc} (or never, to keep evidence forever)") from None


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    from aido.config.loader import load_mapping, validation_problems

    class _File(BaseModel):
        model_config = ConfigDict(extra="forbid")
        output_limit: str | int = Field(default="16M")
        evidence_retention: str | int = Field(default="30d")
        cluster: str | None = None

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
    try:
        retention = parse_retention(parsed.evidence_retention)
    except ValueError as exc:
        line = lines.get(("evidence_retention",), 1)
        raise ConfigError([Problem(str(exc), path.name, line, "evidence_retention")]) from None
    cluster = parsed.cluster.strip() if parsed.cluster else None
    return Settings(
        output_limit=limit, source=str(path), evidence_retention=retention, cluster=cluster or None
    )
