"""Images: a reference's name and tag, and pulling one through the engine."""

from __future__ import annotations

from aido.backends.base import ProgressSink
from aido.backends.docker.engine import Engine, EngineError
from aido.errors import ImageUnavailable


def split_image(image: str) -> tuple[str, str]:
    """'python:3.11-slim' -> ('python', '3.11-slim'); 'host:5000/x' -> ('host:5000/x', 'latest')."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, digest
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


def unavailable(image: str, why: str) -> ImageUnavailable:
    """The error for an image that is neither local nor pullable, with the ways to provide it."""
    # Which aido option picks another image depends on the command: its caller adds that.
    fix = (
        f"provide it locally (`docker load -i image.tar`, `docker build -t {image} .`, or "
        "`docker tag` an image you have; scripts/bootstrap.sh builds stand-ins for the default images)"
    )
    return ImageUnavailable(
        f"image {image} is not available locally and could not be pulled: {why}", hint=fix
    )


def pull(engine: Engine, image: str, progress: ProgressSink | None = None) -> None:
    """Pull ``image``, reporting the engine's progress lines; ImageUnavailable if it fails."""
    name, tag = split_image(image)
    if progress is not None:
        progress(f"{image} ...")  # a pull that fails at once still shows it was tried
    try:
        for message in engine.stream_json("POST", "/images/create", query={"fromImage": name, "tag": tag}):
            if not isinstance(message, dict):
                continue
            if message.get("error"):
                raise unavailable(image, str(message["error"])[:300])
            if progress is not None and message.get("status"):
                layer = f"{message['id']}: " if message.get("id") else ""
                bar = f" {message['progress']}" if message.get("progress") else ""
                progress(f"{layer}{message['status']}{bar}")
    except EngineError as exc:
        raise unavailable(image, exc.message) from None
