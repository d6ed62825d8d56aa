"""Runtime families added by plugins (aido_register_runtimes), as aido.config.runtimes
checks and parses them: pure logic, in-process. The plugins themselves, installed and
run through the real engine, are in tests/plugins/test_plugin_runtimes.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from aido.config import runtimes as rt
from aido.config.runtimes import (
    Runtime,
    RuntimeChoice,
    check_family,
    code_extension,
    family_for_task,
    interpreter_for_task,
    parse_runtime,
    runtime_for_task,
    set_plugin_families,
    task_command,
)

RUBY = {
    "image": "ruby:{version}-slim",
    "default_version": "3.3",
    "interpreter": "ruby",
    "extensions": [".rb"],
}


@pytest.fixture(autouse=True)
def _no_families() -> Iterator[None]:
    set_plugin_families(())
    yield
    set_plugin_families(())


def _with(**entries: Any) -> None:
    set_plugin_families(check_family(name, value, "gems") for name, value in entries.items())


def test_a_plugin_family_parses_like_a_built_in_one() -> None:
    _with(ruby=RUBY)
    ruby = RuntimeChoice("ruby:3.3", "ruby:3.3-slim", "ruby", plugin="gems")
    assert parse_runtime("ruby") == ruby
    assert parse_runtime(" ruby:3.3 ") == ruby
    assert parse_runtime("ruby:3.2") == RuntimeChoice("ruby:3.2", "ruby:3.2-slim", "ruby", "gems")
    assert runtime_for_task("dir/a.RB") == ruby
    assert (family_for_task("a.rb"), interpreter_for_task("a.rb")) == ("ruby", "ruby")
    assert task_command(ruby, "/work/a.rb", ["; id", "$(x)"]) == ["ruby", "/work/a.rb", "; id", "$(x)"]
    assert code_extension(ruby) == ".rb"
    # A docker:// image still picks the interpreter of a .rb task by its extension.
    assert task_command(parse_runtime("docker://alpine"), "/work/a.rb", []) == ["ruby", "/work/a.rb"]
    assert "ruby" in rt.known_runtimes() and rt.known_extensions().endswith(".sh or .rb")


def test_the_value_type_and_a_mapping_are_the_same_family() -> None:
    typed = check_family("ruby", Runtime("ruby:{version}-slim", "ruby", (".rb",), "3.3"), "gems")
    assert typed == check_family("ruby", RUBY, "gems")
    with pytest.raises(AttributeError):
        typed.interpreter = "sh"  # type: ignore[misc]  # frozen


def test_a_family_without_versions() -> None:
    _with(tiny={"image": "busybox:1.36", "interpreter": "sh", "extensions": [".tiny", ".TINY", ".t2"]})
    assert parse_runtime("tiny") == RuntimeChoice("tiny", "busybox:1.36", "sh", "gems")
    assert rt.plugin_families()["tiny"].extensions == (".tiny", ".t2")
    with pytest.raises(ValueError, match="runtime tiny has no versions"):
        parse_runtime("tiny:1")


def test_without_plugins_the_built_ins_are_unchanged() -> None:
    with pytest.raises(ValueError, match="unknown runtime 'ruby'"):
        parse_runtime("ruby")
    assert runtime_for_task("a.rb") is None and interpreter_for_task("a.rb") is None
    assert parse_runtime("python") == RuntimeChoice("python:3.11", "python:3.11-slim", "python")
    assert code_extension(parse_runtime("node")) == ".js"


def test_a_versioned_family_checks_the_version_and_the_image() -> None:
    _with(ruby=RUBY)
    for bad in ("ruby:-x", "ruby:3 3", "ruby:$(id)", "ruby:" + "9" * 50):
        with pytest.raises(ValueError, match="invalid ruby version"):
            parse_runtime(bad)
    assert parse_runtime("ruby:") == parse_runtime("ruby")  # like python:, the default version


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("python", RUBY, "runtime 'python' is built in: not replaced"),
        ("docker", RUBY, "runtime 'docker' is built in"),
        ("Ruby", RUBY, "runtime name 'Ruby' is not usable"),
        ("ru:by", RUBY, "is not usable"),
        ("", RUBY, "is not usable"),
        ("ruby", {**RUBY, "interpreter": "ruby -e"}, "interpreter 'ruby -e' is not a plain command name"),
        ("ruby", {**RUBY, "interpreter": "/usr/bin/ruby"}, "not a plain command name"),
        ("ruby", {**RUBY, "interpreter": "../ruby"}, "not a plain command name"),
        ("ruby", {**RUBY, "interpreter": "-ruby"}, "not a plain command name"),
        ("ruby", {**RUBY, "interpreter": ""}, "not a plain command name"),
        ("ruby", {**RUBY, "interpreter": ["ruby"]}, "not a plain command name"),
        ("ruby", {**RUBY, "image": "Ruby:{version}"}, "invalid image reference 'Ruby:3.3'"),
        ("ruby", {**RUBY, "image": "ruby:{version} ; id"}, "invalid image reference"),
        ("ruby", {**RUBY, "image": "--privileged"}, "has no {version} for default_version"),
        ("ruby", {**RUBY, "image": "ruby:{tag}"}, "may hold {version} and no other field"),
        ("ruby", {**RUBY, "image": "ruby:{version!r}"}, "may hold {version} and no other field"),
        ("ruby", {**RUBY, "image": "ruby:{version.real}"}, "may hold {version} and no other field"),
        ("ruby", {**RUBY, "image": "ruby:{version"}, "image 'ruby:{version':"),
        ("ruby", {**RUBY, "image": 3}, "image is int, not str"),
        ("ruby", {**RUBY, "default_version": None}, "so default_version is due"),
        ("ruby", {**RUBY, "default_version": 3.3}, "default_version 3.3 is not a version"),
        ("ruby", {**RUBY, "default_version": "3;id"}, "is not a version"),
        ("ruby", {**RUBY, "extensions": ".rb"}, "extensions must be a list of strings"),
        ("ruby", {**RUBY, "extensions": []}, "give 1 to 16 extensions"),
        ("ruby", {**RUBY, "extensions": ["rb"]}, "extension 'rb' is not like '.rb'"),
        ("ruby", {**RUBY, "extensions": [".r/b"]}, "is not like"),
        ("ruby", {**RUBY, "extensions": [".PY"]}, "extension '.py' belongs to the built-in runtime 'python'"),
        ("ruby", {**RUBY, "extensions": [f".e{i}" for i in range(17)]}, "give 1 to 16"),
        ("ruby", {**RUBY, "imag": "x"}, "unknown key 'imag'"),
        ("ruby", {"image": "ruby:3"}, "'interpreter' is missing"),
        ("ruby", "ruby:3.3", "str, not a Runtime or a dict"),
    ],
)
def test_bad_families_are_refused_with_the_reason(name: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_family(name, value, "gems")
