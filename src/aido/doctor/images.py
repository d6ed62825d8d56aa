"""The image checks: whether each default image is available to the backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from aido.backends.base import Backend
from aido.doctor.check import OK, WARN, Check

DEFAULT_IMAGES: tuple[str, ...] = ("python:3.11-slim", "node:18-alpine", "debian:bookworm-slim")
IMAGE_FIX = "build or load it (scripts/bootstrap.sh builds local stand-ins), or `docker pull {image}`"


class ImageLookup:
    """``image_id`` through the adapter when it has one (Docker-specific), each image asked once."""

    def __init__(self, backend: Backend) -> None:
        found = getattr(backend, "image_id", None)
        self._image_id = cast("Callable[[str], str | None] | None", found if callable(found) else None)
        self.backend = backend.name or "runtime"
        self._cache: dict[str, str | None] = {}

    @property
    def supported(self) -> bool:
        return self._image_id is not None

    def get(self, image: str) -> str | None:
        """The image's id, or None when it is not available locally; errors propagate."""
        if self._image_id is None:
            return None
        if image not in self._cache:
            found = self._image_id(image)
            self._cache[image] = str(found) if found else None
        return self._cache[image]

    def present(self, image: str) -> bool | None:
        """True/False, or None when it cannot be told (no lookup, or the lookup failed)."""
        if self._image_id is None:
            return None
        try:
            return self.get(image) is not None
        except Exception:
            return None


def check_image(lookup: ImageLookup, image: str) -> Check:
    name = f"image:{image}"
    if not lookup.supported:
        return Check(
            name,
            WARN,
            f"not checked: the {lookup.backend} backend cannot look images up",
            "make sure the image is available to the backend before `aido run`",
        )
    image_id = lookup.get(image)
    if image_id is None:
        return Check(
            name,
            WARN,
            "not available locally: `aido run` will try to pull it",
            IMAGE_FIX.format(image=image),
        )
    return Check(name, OK, f"present ({short_id(image_id)})", None)


def short_id(image_id: str) -> str:
    algorithm, _, digest = image_id.partition(":")
    return f"{algorithm}:{digest[:12]}" if digest else image_id[:19]


def check_egress_proxy(lookup: ImageLookup, image: str) -> Check:
    """The egress proxy's image (Squid, built by scripts/bootstrap.sh): without it a sandbox
    with an allowlist cannot run a task (it fails closed, never without the proxy)."""
    name = "egress_proxy"
    if not lookup.supported:
        return Check(
            name,
            WARN,
            f"not checked: the {lookup.backend} backend cannot look images up",
            f"make sure {image} is available to the backend before running with an allowlist",
        )
    image_id = lookup.get(image)
    if image_id is None:
        return Check(
            name,
            WARN,
            f"{image} is missing: runs with an egress allowlist (--allow-host, "
            "permissions.network.allow) will refuse to start",
            "run scripts/bootstrap.sh (it builds the image offline from Debian's squid package)",
        )
    return Check(name, OK, f"{image} present ({short_id(image_id)})", None)
