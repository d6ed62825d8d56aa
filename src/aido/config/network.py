"""``permissions.network`` in sandbox.yaml: ``false`` (the default: no network), ``true``
(full network) or an egress allowlist::

    permissions:
      network:
        allow: [pypi.org, "*.pythonhosted.org", "api.example.com:443"]
        allow_ip_ranges: false   # true: entries may be IPv4 addresses or ranges (10.0.0.0/8)

Each entry is checked by aido.egress.allowlist and stored in its canonical form; a bad one
is reported at its own line. (In YAML a ``*`` that starts a value must be quoted.)
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationInfo,
)

# The tags of the union's branches: config/loader.py leaves "tag-" parts out of the key
# paths it reports, so a problem reads `permissions.network.allow[1]: ...`.
TAG_BOOL = "tag-bool"
TAG_ALLOW = "tag-allow"

EXPECTED: dict[str, str] = {
    "permissions.network": "true, false or an allowlist like {allow: [pypi.org]}",
    "permissions.network.allow": "a non-empty list of hosts like [pypi.org, '*.pythonhosted.org']",
    "permissions.network.allow[]": "a host like pypi.org, '*.pythonhosted.org' or api.example.com:443",
    "permissions.network.allow_ip_ranges": "true or false",
}


def _entry(value: object, info: ValidationInfo) -> str:
    from aido.egress.allowlist import parse_entry

    # allow_ip_ranges is declared first, so it is validated (and in info.data) by now.
    return str(parse_entry(value, allow_ip_ranges=info.data.get("allow_ip_ranges") is True))


def _dedupe(entries: list[str]) -> list[str]:
    from aido.egress.allowlist import dedupe

    return list(dedupe(entries))


class NetworkAllow(BaseModel):
    """An egress allowlist: tasks reach exactly these hosts, through aido's egress proxy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_ip_ranges: StrictBool = False
    allow: Annotated[
        list[Annotated[str, AfterValidator(_entry)]], Field(min_length=1), AfterValidator(_dedupe)
    ]


def _branch(value: Any) -> str:
    return TAG_ALLOW if isinstance(value, dict | NetworkAllow) else TAG_BOOL


Network = Annotated[
    Annotated[StrictBool, Tag(TAG_BOOL)] | Annotated[NetworkAllow, Tag(TAG_ALLOW)],
    Discriminator(_branch),
]
FIELD_NAMES = {"permissions.network": list(NetworkAllow.model_fields)}
