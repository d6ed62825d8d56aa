"""The ``sandbox.yaml`` schema (spec v0.1), strict: unknown keys are errors.

Every field is optional; what is left out takes the defaults below, which are the
strictest that still run ordinary Python and Node tasks. Durations and sizes stay
strings in the model (as the user wrote them, normalised) so that ``sandbox.json``
reads like the file it came from; the ``*_seconds``/``*_bytes`` properties give
the numbers.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from aido.config.limits import (
    DEFAULT_CPU,
    DEFAULT_DISK,
    DEFAULT_FILES,
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    DEFAULT_TTL,
    MAX_CPU,
    MAX_DISK_BYTES,
    MAX_FILES,
    MAX_MEMORY_BYTES,
    MAX_TIMEOUT_SECONDS,
    MAX_TTL_SECONDS,
    MAX_WARM,
    MIN_DISK_BYTES,
    MIN_MEMORY_BYTES,
)
from aido.config.network import EXPECTED as NETWORK_EXPECTED
from aido.config.network import FIELD_NAMES as NETWORK_FIELD_NAMES
from aido.config.network import Network
from aido.config.units import parse_duration, parse_size

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}")
_DURATION = "a duration like 90s, 15m or 2h"
_SIZE = "a size like 512M or 1G"

# What each key expects, with an example: every problem pydantic finds with a value is
# reported as "expected <this>, got <the value>" (config/loader.py). `[]` stands for any list
# item, `.*` for any key of a mapping.
EXPECTED: dict[str, str] = {
    "name": "a name like nightly-report (1-63 letters, digits, spaces, '.', '_' or '-', "
    "starting with a letter or digit)",
    "runtime": "a runtime like python:3.12, node:18, sh or docker://IMAGE",
    "ttl": _DURATION,
    "inputs": "a list of file patterns like [data/*.csv]",
    "inputs[]": "a file pattern like data/*.csv (1-4096 characters)",
    "outputs": "a list of file paths like [report.json]",
    "outputs[]": "a path inside /outputs like report.json or out/plot.png (no leading '/', no '..')",
    "permissions": "a mapping like {filesystem: readonly, network: false}",
    "permissions.filesystem": "'readonly', 'readwrite' or 'none'",
    **NETWORK_EXPECTED,
    "permissions.aws": "a mapping like {role: readonly, services: [s3]}",
    "permissions.aws.role": "'readonly' or 'readwrite'",
    "permissions.aws.services": "a list of service names like [s3, dynamodb]",
    "permissions.aws.services[]": "a service name like s3 (1-64 characters)",
    "env": "a mapping of variable names to values like {MODE: fast}",
    "env.*": "a string like fast (quote values such as yes, no or on)",
    "env.*[key]": "a variable name like MODE or API_URL (letters, digits and '_', not starting with a digit)",
    "resources": "a mapping like {cpu: 1, memory: 512M, timeout: 10m}",
    "resources.cpu": f"a number of CPUs like 1 or 0.5 (more than 0, at most {MAX_CPU})",
    "resources.memory": _SIZE,
    "resources.timeout": _DURATION,
    "resources.disk": _SIZE,
    "resources.files": f"a whole number of files like {DEFAULT_FILES} (1 to {MAX_FILES})",
    "resources.disk_quota": "'soft' or 'hard'",
    "isolation": "'default' or 'gvisor'",
    "warm": f"a whole number of containers to keep started in advance, like 2 (0 to {MAX_WARM})",
}


def _expected(key: str, value: object) -> ValueError:
    return ValueError(f"expected {EXPECTED[key]}, got {value!r}")


def _duration(maximum: float) -> AfterValidator:
    def check(value: str) -> str:
        parse_duration(value, maximum=maximum)
        return value.strip().lower()

    return AfterValidator(check)


def _size(value: object) -> str:
    # Before pydantic's own coercion: `memory: true` or `memory: 1.5` must not become 1.
    parse_size(value, minimum=MIN_MEMORY_BYTES, maximum=MAX_MEMORY_BYTES)
    return str(value).strip()


def _number(key: str) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, bool):
            raise _expected(key, value)  # `cpu: true` must not silently mean one CPU
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return value  # pydantic reports it (as "expected ..., got 'lots'")
        if isinstance(number, float) and not math.isfinite(number):
            raise _expected(key, value)
        return value

    return BeforeValidator(check)


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise _expected("name", value)
    return value


def _runtime(value: str) -> str:
    from aido.config.runtimes import parse_runtime

    parse_runtime(value)
    return value.strip()


def _relative_path(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or "\0" in value or not value.strip():
        raise _expected("outputs[]", value)
    return value


def _env_value(value: object) -> str:
    # YAML turns `PORT: 8080` into an int and `DEBUG: yes` into a bool; the
    # first is harmless to stringify, the second is almost always a mistake.
    if isinstance(value, bool) or value is None:
        raise ValueError(f'expected a string (quote it in YAML, e.g. "yes"), got {value!r}')
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        kind = "mapping" if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"expected a string like fast, got a {kind}")
    if "\0" in value:
        raise ValueError("expected a string without NUL bytes")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise _expected("env.*[key]", value)
    return value


TTL = Annotated[str, _duration(MAX_TTL_SECONDS)]
Timeout = Annotated[str, _duration(MAX_TIMEOUT_SECONDS)]
Size = Annotated[str, BeforeValidator(_size)]


def _disk_size(value: object) -> str:
    parse_size(value, minimum=MIN_DISK_BYTES, maximum=MAX_DISK_BYTES)
    return str(value).strip()


DiskSize = Annotated[str, BeforeValidator(_disk_size)]
Cpu = Annotated[float, _number("resources.cpu"), Field(gt=0, le=MAX_CPU, allow_inf_nan=False)]
EnvName = Annotated[str, AfterValidator(_env_name)]
EnvValue = Annotated[str, BeforeValidator(_env_value)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class AwsPermissions(_Strict):
    """A stub, as in the spec: recorded as evidence, not enforced by the Docker runtime."""

    role: Literal["readonly", "readwrite"] = "readonly"
    services: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list)


class Permissions(_Strict):
    filesystem: Literal["readonly", "readwrite", "none"] = "readonly"
    # false: no network; true: full network; {allow: [...]}: only those hosts (config/network.py)
    network: Network = False
    aws: AwsPermissions | None = None


class Resources(_Strict):
    cpu: Cpu = DEFAULT_CPU
    memory: Size = DEFAULT_MEMORY
    timeout: Timeout = DEFAULT_TIMEOUT
    # What the task may keep in work/ and outputs/ together; also its largest single file.
    disk: DiskSize = DEFAULT_DISK
    files: Annotated[int, _number("resources.files"), Field(gt=0, le=MAX_FILES)] = DEFAULT_FILES
    # soft: measured while the task runs, killed past the limit. hard: a filesystem of exactly
    # that size (needs aido to run as root); writes past it fail with ENOSPC.
    disk_quota: Literal["soft", "hard"] = "soft"

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)

    @property
    def disk_bytes(self) -> int:
        return parse_size(self.disk, maximum=MAX_DISK_BYTES)

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout, maximum=MAX_TIMEOUT_SECONDS)


class SandboxSpec(_Strict):
    name: Annotated[str | None, AfterValidator(lambda v: v if v is None else _name(v))] = None
    runtime: Annotated[str | None, AfterValidator(lambda v: v if v is None else _runtime(v))] = None
    ttl: TTL = DEFAULT_TTL
    inputs: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(default_factory=list)
    outputs: list[Annotated[str, AfterValidator(_relative_path)]] = Field(default_factory=list)
    permissions: Permissions = Field(default_factory=Permissions)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    # "gvisor" runs tasks under gVisor's runsc: a user-space kernel between task and host.
    isolation: Literal["default", "gvisor"] = "default"
    # Containers kept created and started in advance with exactly these settings, each used
    # by one run (run/warm.py); needs `runtime`, since they start before any task is known.
    warm: Annotated[int, _number("warm"), Field(ge=0, le=MAX_WARM)] = 0

    @property
    def ttl_seconds(self) -> float:
        return parse_duration(self.ttl, maximum=MAX_TTL_SECONDS)


FIELD_NAMES: dict[str, list[str]] = {
    "": list(SandboxSpec.model_fields),
    "permissions": list(Permissions.model_fields),
    "permissions.aws": list(AwsPermissions.model_fields),
    **NETWORK_FIELD_NAMES,
    "resources": list(Resources.model_fields),
}
