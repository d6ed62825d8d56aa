"""Runtime names and task extensions to images and argv (runtimes/resolve.py). Pure logic."""

from __future__ import annotations

import pytest

from aido.config.runtimes import (
    SH_IMAGE,
    RuntimeChoice,
    interpreter_for_task,
    parse_runtime,
    runtime_for_task,
    task_command,
    validate_image,
)


@pytest.mark.parametrize(
    ("value", "runtime", "image", "interpreter"),
    [
        ("python:3.11", "python:3.11", "python:3.11-slim", "python"),
        ("python:3.12", "python:3.12", "python:3.12-slim", "python"),
        ("python", "python:3.11", "python:3.11-slim", "python"),
        ("node:18", "node:18", "node:18-alpine", "node"),
        ("node:20", "node:20", "node:20-alpine", "node"),
        ("node", "node:18", "node:18-alpine", "node"),
        ("sh", "sh", "debian:bookworm-slim", "sh"),
        ("  python:3.12  ", "python:3.12", "python:3.12-slim", "python"),
    ],
)
def test_named_runtimes(value: str, runtime: str, image: str, interpreter: str) -> None:
    assert parse_runtime(value) == RuntimeChoice(runtime=runtime, image=image, interpreter=interpreter)


def test_sh_image_constant() -> None:
    assert SH_IMAGE == "debian:bookworm-slim"


@pytest.mark.parametrize(
    "image",
    [
        "alpine",
        "alpine:3.19",
        "library/ubuntu:22.04",
        "ghcr.io/org/team/tool:v1.2.3",
        "registry.example.com:5000/team/img:1.0",
        "my_image__x:Latest_TAG",
        "python@sha256:" + "a" * 64,
        "python:3.12-slim@sha256:" + "0123456789abcdef" * 4,
    ],
)
def test_docker_images_accepted(image: str) -> None:
    choice = parse_runtime(f"docker://{image}")
    assert choice == RuntimeChoice(runtime=f"docker://{image}", image=image, interpreter=None)


@pytest.mark.parametrize(
    "image",
    [
        "",
        "--privileged",
        "-v",
        "-it",
        "Ubuntu",
        "UBUNTU:latest",
        "ubuntu latest",
        "ubuntu --privileged",
        "ubuntu;id",
        "ubuntu&&id",
        "$(id)",
        "`id`",
        "ubuntu\nid",
        "ubuntu\x00",
        "../ubuntu",
        "/ubuntu",
        "ubuntu:",
        "ubuntu:-x",
        "ubuntu@sha256:xyz",
        "a" * 256,
    ],
)
def test_docker_image_injection_attempts_rejected(image: str) -> None:
    with pytest.raises(
        ValueError, match=r"^invalid image reference .*: expected something like 'python:3.12-slim'$"
    ):
        parse_runtime(f"docker://{image}")


def test_validate_image_length_limit() -> None:
    assert validate_image("a" * 255) == "a" * 255
    with pytest.raises(ValueError, match="invalid image reference"):
        validate_image("a" * 256)


@pytest.mark.parametrize(
    "value",
    [
        "ruby:3",
        "Python:3.11",
        "PYTHON",
        "sh:5",
        "bash",
        "docker:alpine",
        "",
        "python3.11",
        "docker//alpine",
    ],
)
def test_unknown_runtimes_rejected(value: str) -> None:
    with pytest.raises(
        ValueError, match=r"^unknown runtime .*: expected python:VERSION, node:VERSION, sh or docker://IMAGE$"
    ):
        parse_runtime(value)


@pytest.mark.parametrize(
    "value",
    [
        "python:--privileged",
        "python:3.11 --privileged",
        "python:3.11;id",
        "node:x",
        "node:18\nid",
        "python:" + "1" * 42,
    ],
)
def test_bad_versions_rejected(value: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid (python|node) version "):
        parse_runtime(value)


@pytest.mark.parametrize(
    ("task", "family"),
    [
        ("task.py", "python"),
        ("dir/task.PY", "python"),
        ("a.js", "node"),
        ("a.mjs", "node"),
        ("a.cjs", "node"),
        ("run.sh", "sh"),
        ("Makefile", None),
        ("a.rb", None),
        ("a.tar.gz", None),
        ("a.py.txt", None),
        (".py", None),  # a dotfile named .py has no suffix
    ],
)
def test_extension_mapping(task: str, family: str | None) -> None:
    assert interpreter_for_task(task) == family
    choice = runtime_for_task(task)
    if family is None:
        assert choice is None
    else:
        assert choice is not None
        assert choice.interpreter == family
        assert choice == parse_runtime(family)


def test_runtime_for_task_uses_default_versions() -> None:
    assert runtime_for_task("x.py") == RuntimeChoice("python:3.11", "python:3.11-slim", "python")
    assert runtime_for_task("x.js") == RuntimeChoice("node:18", "node:18-alpine", "node")
    assert runtime_for_task("x.sh") == RuntimeChoice("sh", "debian:bookworm-slim", "sh")


def test_task_command_named_runtime() -> None:
    argv = task_command(parse_runtime("python:3.12"), "/sandbox/task.py", ["--n", "3"])
    assert argv == ["python", "/sandbox/task.py", "--n", "3"]


def test_task_command_never_builds_a_shell_string() -> None:
    hostile = ["; rm -rf /", "$(id)", "`id`", "a b", "'quoted'", "x\ny", "*", "&&", "|", ">out"]
    argv = task_command(parse_runtime("sh"), "/sandbox/t.sh", hostile)
    assert isinstance(argv, list)
    assert argv == ["sh", "/sandbox/t.sh", *hostile]
    assert all(isinstance(part, str) for part in argv)


def test_task_command_custom_image_uses_extension() -> None:
    choice = parse_runtime("docker://alpine:3.19")
    assert task_command(choice, "/sandbox/t.py", ["a"]) == ["python", "/sandbox/t.py", "a"]
    assert task_command(choice, "/sandbox/t.mjs", []) == ["node", "/sandbox/t.mjs"]
    assert task_command(choice, "/sandbox/t.sh", []) == ["sh", "/sandbox/t.sh"]


def test_task_command_custom_image_without_extension_runs_the_file() -> None:
    choice = parse_runtime("docker://alpine")
    assert task_command(choice, "/sandbox/tool", ["-x", "y z"]) == ["/sandbox/tool", "-x", "y z"]


def test_task_command_named_runtime_wins_over_extension() -> None:
    # python runtime, .js file: the sandbox's runtime decides.
    assert task_command(parse_runtime("python:3.11"), "/sandbox/t.js", []) == ["python", "/sandbox/t.js"]


def test_task_command_empty_args() -> None:
    assert task_command(parse_runtime("node:20"), "/sandbox/t.js", []) == ["node", "/sandbox/t.js"]
