"""sandbox.yaml validation: one line per problem, naming file, line and key path
(config/loader.py and config/schema.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from aido.config.loader import MAX_CONFIG_BYTES, MAX_DEPTH, load_spec
from aido.config.schema import (
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    DEFAULT_TTL,
    SandboxSpec,
)
from aido.errors import ConfigError
from aido.exit_codes import ExitCode


def _spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sandbox.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(_spec_file(tmp_path, text), **kwargs)  # type: ignore[arg-type]
    error = caught.value
    assert error.exit_code == ExitCode.USAGE
    assert error.code == "config_invalid"
    for line in error.problems:
        assert "\n" not in line, f"a problem must be one line: {line!r}"
    return error.problems


def one_problem(tmp_path: Path, text: str, **kwargs: object) -> str:
    found = problems(tmp_path, text, **kwargs)
    assert len(found) == 1, found
    return found[0]


# -- valid files ---------------------------------------------------------------------------


def test_defaults_without_a_file() -> None:
    spec = load_spec(None)
    assert spec.ttl == DEFAULT_TTL
    assert spec.resources.memory == DEFAULT_MEMORY
    assert spec.resources.timeout == DEFAULT_TIMEOUT
    assert spec.resources.cpu == 1.0
    assert spec.permissions.network is False
    assert spec.permissions.filesystem == "readonly"
    assert spec.permissions.aws is None
    assert spec.env == {}
    assert spec.outputs == []
    assert spec.ttl_seconds == 900
    assert spec.resources.memory_bytes == 512 << 20
    assert spec.resources.timeout_seconds == 600


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "---\n# only a comment\n"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    assert load_spec(_spec_file(tmp_path, text)) == SandboxSpec()


def test_full_valid_file(tmp_path: Path) -> None:
    text = """\
name: demo run
runtime: python:3.12
ttl: 1h30m
inputs:
  - data/*.csv
outputs:
  - report.json
  - out/plot.png
permissions:
  filesystem: readwrite
  network: true
  aws:
    role: readonly
    services: [s3, dynamodb]
env:
  MODE: fast
  PORT: 8080
  RATIO: 0.5
resources:
  cpu: 0.5
  memory: 1G
  timeout: 90s
"""
    spec = load_spec(_spec_file(tmp_path, text))
    assert spec.name == "demo run"
    assert spec.runtime == "python:3.12"
    assert spec.ttl == "1h30m"
    assert spec.ttl_seconds == 5400
    assert spec.inputs == ["data/*.csv"]
    assert spec.outputs == ["report.json", "out/plot.png"]
    assert spec.permissions.filesystem == "readwrite"
    assert spec.permissions.network is True
    assert spec.permissions.aws is not None
    assert spec.permissions.aws.role == "readonly"
    assert spec.permissions.aws.services == ["s3", "dynamodb"]
    # Numbers are stringified (harmless); the task sees strings.
    assert spec.env == {"MODE": "fast", "PORT": "8080", "RATIO": "0.5"}
    assert spec.resources.cpu == 0.5
    assert spec.resources.memory_bytes == 1 << 30
    assert spec.resources.timeout_seconds == 90


def test_aws_stub_is_accepted_and_recorded(tmp_path: Path) -> None:
    spec = load_spec(_spec_file(tmp_path, "permissions:\n  aws:\n    role: readwrite\n    services: [s3]\n"))
    assert spec.model_dump(mode="json")["permissions"]["aws"] == {"role": "readwrite", "services": ["s3"]}


def test_durations_are_normalised(tmp_path: Path) -> None:
    spec = load_spec(_spec_file(tmp_path, "ttl: ' 2H '\nresources:\n  timeout: 15M\n"))
    assert spec.ttl == "2h"
    assert spec.resources.timeout == "15m"


# -- exact messages with line numbers ---------------------------------------------------------


def test_bad_size_names_file_line_and_key_path(tmp_path: Path) -> None:
    text = (
        "name: demo\nruntime: python:3.11\nttl: 15m\n"
        "permissions:\n  network: false\nresources:\n  memory: lots\n"
    )
    assert (
        one_problem(tmp_path, text)
        == "sandbox.yaml:7: resources.memory: expected a size like 512M or 1G, got 'lots'"
    )


def test_unknown_top_level_key_suggests_the_close_one(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "name: x\nnmae: y\n") == (
        "sandbox.yaml:2: nmae: unknown key (allowed: name, runtime, ttl, inputs, outputs, "
        "permissions, env, resources, isolation, warm); did you mean 'name'?"
    )


def test_unknown_top_level_key_without_a_close_match(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "zzzzzz: 1\n") == (
        "sandbox.yaml:1: zzzzzz: unknown key (allowed: name, runtime, ttl, inputs, outputs, "
        "permissions, env, resources, isolation, warm)"
    )


def test_unknown_nested_key(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "resources:\n  cpu: 1\n  memroy: 1G\n") == (
        "sandbox.yaml:3: resources.memroy: unknown key "
        "(allowed: cpu, memory, timeout, disk, files, disk_quota); did you mean 'memory'?"
    )
    assert one_problem(tmp_path, "permissions:\n  aws:\n    rol: readonly\n") == (
        "sandbox.yaml:3: permissions.aws.rol: unknown key (allowed: role, services); did you mean 'role'?"
    )
    assert one_problem(tmp_path, "permissions:\n  netwrok: true\n") == (
        "sandbox.yaml:2: permissions.netwrok: unknown key (allowed: filesystem, network, aws); "
        "did you mean 'network'?"
    )


def test_bad_duration(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "ttl: soon\n") == (
        "sandbox.yaml:1: ttl: expected a duration like 90s, 15m or 2h, got 'soon'"
    )


def test_bare_number_duration_is_a_type_error(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "resources:\n  timeout: 90\n") == (
        "sandbox.yaml:2: resources.timeout: expected a duration like 90s, 15m or 2h, got 90"
    )


def test_negative_timeout(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "resources:\n  timeout: -1\n") == (
        "sandbox.yaml:2: resources.timeout: expected a duration like 90s, 15m or 2h, got -1"
    )
    assert one_problem(tmp_path, "resources:\n  timeout: '-1s'\n") == (
        "sandbox.yaml:2: resources.timeout: expected a duration like 90s, 15m or 2h, got '-1s'"
    )


def test_timeout_too_long(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "resources:\n  timeout: 2d\n") == (
        "sandbox.yaml:2: resources.timeout: duration '2d' is too long: the maximum is 1d"
    )


def test_ttl_too_long(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "ttl: 31d\n") == (
        "sandbox.yaml:1: ttl: duration '31d' is too long: the maximum is 30d"
    )


def test_memory_zero(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "resources:\n  memory: '0'\n") == (
        "sandbox.yaml:2: resources.memory: size '0' is too small: the minimum is 16M"
    )
    assert one_problem(tmp_path, "resources:\n  memory: 0\n") == (
        "sandbox.yaml:2: resources.memory: size 0 is too small: the minimum is 16M"
    )


def test_memory_too_large(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "resources:\n  memory: 2T\n") == (
        "sandbox.yaml:2: resources.memory: size '2T' is too large: the maximum is 1T"
    )


def test_memory_huge_integer_is_a_config_error(tmp_path: Path) -> None:
    # A 400-digit integer must be a one-line config error, not an OverflowError crash.
    found = one_problem(tmp_path, "resources:\n  memory: " + "1" * 400 + "\n")
    assert found.startswith("sandbox.yaml:2: resources.memory: ")


def test_memory_float_is_one_problem_at_the_key_path(tmp_path: Path) -> None:
    # `memory: 1.5` is one mistake; the str|int union must not leak into the key path
    # as two problems ("resources.memory.str" and "resources.memory.int").
    found = one_problem(tmp_path, "resources:\n  memory: 1.5\n")
    assert found.startswith("sandbox.yaml:2: resources.memory: ")


def test_memory_bool_is_rejected_as_a_bool(tmp_path: Path) -> None:
    # parse_size refuses bools, but the lax str|int union turns `true` into 1 first.
    assert one_problem(tmp_path, "resources:\n  memory: true\n") == (
        "sandbox.yaml:2: resources.memory: expected a size like 512M or 1G, got True"
    )


@pytest.mark.parametrize("value", ["true", "yes", "false"])
def test_cpu_bool_is_rejected(tmp_path: Path, value: str) -> None:
    # `cpu: true` must not silently mean one CPU.
    found = one_problem(tmp_path, f"resources:\n  cpu: {value}\n")
    assert found.startswith("sandbox.yaml:2: resources.cpu: ")


CPU = "expected a number of CPUs like 1 or 0.5 (more than 0, at most 256)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", f"{CPU}, got -1"),
        ("0", f"{CPU}, got 0"),
        ("-0.5", f"{CPU}, got -0.5"),
        ("257", f"{CPU}, got 257"),
        (".nan", f"{CPU}, got nan"),
        (".inf", f"{CPU}, got inf"),
        ("-.inf", f"{CPU}, got -inf"),
        ("1e309", f"{CPU}, got '1e309'"),  # YAML 1.1: a string
        ("1.0e+309", f"{CPU}, got inf"),  # YAML float overflow
        ("lots", f"{CPU}, got 'lots'"),
    ],
)
def test_bad_cpu(tmp_path: Path, value: str, expected: str) -> None:
    assert (
        one_problem(tmp_path, f"resources:\n  cpu: {value}\n") == f"sandbox.yaml:2: resources.cpu: {expected}"
    )


def test_bad_runtime(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "runtime: ruby:3\n") == (
        "sandbox.yaml:1: runtime: unknown runtime 'ruby:3': "
        "expected python:VERSION, node:VERSION, sh or docker://IMAGE"
    )


@pytest.mark.parametrize(
    "image",
    ["--privileged", "Ubuntu", "ubuntu latest", "ubuntu;id", "-v/:/host", "$(id)", ""],
)
def test_bad_docker_image_reference(tmp_path: Path, image: str) -> None:
    assert one_problem(tmp_path, f"runtime: 'docker://{image}'\n") == (
        f"sandbox.yaml:1: runtime: invalid image reference {image!r}: "
        "expected something like 'python:3.12-slim'"
    )


def test_bad_name(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "name: ../etc\n") == (
        "sandbox.yaml:1: name: expected a name like nightly-report (1-63 letters, digits, spaces, "
        "'.', '_' or '-', starting with a letter or digit), got '../etc'"
    )


def test_env_bad_name(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "env:\n  1BAD: x\n") == (
        "sandbox.yaml:2: env.1BAD: expected a variable name like MODE or API_URL "
        "(letters, digits and '_', not starting with a digit), got '1BAD'"
    )
    assert one_problem(tmp_path, "env:\n  A-B: x\n").endswith("got 'A-B'")
    assert one_problem(tmp_path, "env:\n  'A B': x\n").endswith("got 'A B'")
    assert one_problem(tmp_path, "env:\n  'A=B': x\n").endswith("got 'A=B'")


def test_env_bool_none_and_nested_values(tmp_path: Path) -> None:
    text = "env:\n  DEBUG: yes\n  EMPTY:\n  NESTED:\n    a: b\n  LIST: [1]\n  OK: fine\n"
    assert problems(tmp_path, text) == [
        'sandbox.yaml:2: env.DEBUG: expected a string (quote it in YAML, e.g. "yes"), got True',
        'sandbox.yaml:3: env.EMPTY: expected a string (quote it in YAML, e.g. "yes"), got None',
        "sandbox.yaml:4: env.NESTED: expected a string like fast, got a mapping",
        "sandbox.yaml:6: env.LIST: expected a string like fast, got a list",
    ]


def test_env_not_a_mapping(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "env: [A=1]\n") == (
        "sandbox.yaml:1: env: expected a mapping of variable names to values like {MODE: fast}, got ['A=1']"
    )


OUTPUT_PATH = "expected a path inside /outputs like report.json or out/plot.png (no leading '/', no '..')"


@pytest.mark.parametrize("path", ["../escape", "a/../../b", "/etc/passwd", "a\\..\\b", "  "])
def test_outputs_outside_the_sandbox(tmp_path: Path, path: str) -> None:
    assert one_problem(tmp_path, f"outputs:\n  - ok.txt\n  - {path!r}\n".replace("'", '"')) == (
        f"sandbox.yaml:3: outputs[1]: {OUTPUT_PATH}, got {path!r}"
    )


def test_filesystem_permission_invalid(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "permissions:\n  filesystem: rw\n") == (
        "sandbox.yaml:2: permissions.filesystem: expected 'readonly', 'readwrite' or 'none', got 'rw'"
    )


@pytest.mark.parametrize(("value", "shown"), [("'yes'", "'yes'"), ("'true'", "'true'"), ("1", "1")])
def test_network_must_be_a_real_bool(tmp_path: Path, value: str, shown: str) -> None:
    assert one_problem(tmp_path, f"permissions:\n  network: {value}\n") == (
        "sandbox.yaml:2: permissions.network: expected true, false or "
        f"an allowlist like {{allow: [pypi.org]}}, got {shown}"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "resources: 5\n",
            "sandbox.yaml:1: resources: expected a mapping like {cpu: 1, memory: 512M, timeout: 10m}, got 5",
        ),
        (
            "outputs: report.json\n",
            "sandbox.yaml:1: outputs: expected a list of file paths like [report.json], got 'report.json'",
        ),
        (
            "name: 5\n",
            "sandbox.yaml:1: name: expected a name like nightly-report (1-63 letters, digits, spaces, "
            "'.', '_' or '-', starting with a letter or digit), got 5",
        ),
        (
            "permissions:\n  aws:\n    role: admin\n",
            "sandbox.yaml:3: permissions.aws.role: expected 'readonly' or 'readwrite', got 'admin'",
        ),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, expected: str) -> None:
    assert one_problem(tmp_path, text) == expected


def test_multiple_problems_are_reported_together(tmp_path: Path) -> None:
    text = """\
name: demo
nmae: typo
ttl: forever
resources:
  cpu: -1
  memory: lots
permissions:
  network: "yes"
outputs:
  - ../x
"""
    # In line order, so the first line a user reads is the first one to fix.
    assert problems(tmp_path, text) == [
        "sandbox.yaml:2: nmae: unknown key (allowed: name, runtime, ttl, inputs, outputs, "
        "permissions, env, resources, isolation, warm); did you mean 'name'?",
        "sandbox.yaml:3: ttl: expected a duration like 90s, 15m or 2h, got 'forever'",
        f"sandbox.yaml:5: resources.cpu: {CPU}, got -1",
        "sandbox.yaml:6: resources.memory: expected a size like 512M or 1G, got 'lots'",
        "sandbox.yaml:8: permissions.network: expected true, false or "
        "an allowlist like {allow: [pypi.org]}, got 'yes'",
        f"sandbox.yaml:10: outputs[0]: {OUTPUT_PATH}, got '../x'",
    ]
    with pytest.raises(ConfigError) as caught:
        load_spec(tmp_path / "sandbox.yaml")
    assert str(caught.value).splitlines()[0] == "6 problems:"
    assert str(caught.value).splitlines()[1:] == caught.value.problems


def test_single_problem_message_is_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_spec(_spec_file(tmp_path, "ttl: soon\n"))
    assert caught.value.message == caught.value.problems[0]
    assert str(caught.value) == caught.value.problems[0]


def test_source_is_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "custom-spec.yml"
    path.write_text("ttl: soon\n")
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    assert caught.value.problems == [
        "custom-spec.yml:1: ttl: expected a duration like 90s, 15m or 2h, got 'soon'"
    ]


# -- YAML-level problems ------------------------------------------------------------------


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "name: ok\nresources:\n  memory: [1G\n") == (
        "sandbox.yaml:4: invalid YAML: expected ',' or ']', but got '<stream end>'"
    )
    found = one_problem(tmp_path, "name: ok\n  bad: indent\n")
    assert found.startswith("sandbox.yaml:2: invalid YAML: ")


def test_tabs_are_a_yaml_error(tmp_path: Path) -> None:
    found = one_problem(tmp_path, "resources:\n\tcpu: 1\n")
    assert found.startswith("sandbox.yaml:2: invalid YAML: ")


@pytest.mark.parametrize(
    "text",
    [
        'name: !!python/object/apply:os.system ["id"]\n',
        "name: !!python/name:os.system\n",
        "name: !!python/object/new:subprocess.Popen [[touch, /tmp/aido-pwned]]\n",
    ],
)
def test_python_tags_are_rejected(tmp_path: Path, text: str) -> None:
    found = one_problem(tmp_path, text)
    assert found.startswith("sandbox.yaml:1: invalid YAML: could not determine a constructor for the tag ")
    assert "python/" in found


def test_aliases_are_rejected(tmp_path: Path) -> None:
    found = one_problem(tmp_path, "outputs: &x [a.txt]\ninputs: *x\n")
    assert found.startswith("sandbox.yaml")
    assert re.search(r"YAML aliases \(\*\w+\) are not supported", found)


def test_merge_keys_are_rejected(tmp_path: Path) -> None:
    found = one_problem(tmp_path, "base: &b {cpu: 1}\nresources:\n  <<: *b\n")
    assert re.search(r"YAML aliases \(\*\w+\) are not supported", found)


def test_billion_laughs_is_rejected_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    started = time.monotonic()
    found = one_problem(tmp_path, "\n".join(lines) + "\n")
    assert time.monotonic() - started < 2
    assert re.search(r"YAML aliases \(\*\w+\) are not supported", found)


def test_anchor_without_alias_is_harmless(tmp_path: Path) -> None:
    spec = load_spec(_spec_file(tmp_path, "ttl: &t 2h\n"))
    assert spec.ttl == "2h"


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "list"), ("hello\n", "str"), ("42\n", "int"), ("true\n", "bool")],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    assert (
        one_problem(tmp_path, text) == f"sandbox.yaml:1: (top level): expected a mapping of keys, got {kind}"
    )


def test_non_string_keys(tmp_path: Path) -> None:
    found = one_problem(tmp_path, "1: x\n")
    assert found.startswith("sandbox.yaml:1: ")
    assert found == (
        "sandbox.yaml:1: [1]: expected a key name (allowed: name, runtime, ttl, inputs, outputs, "
        "permissions, env, resources, isolation, warm), got 1"
    )


def test_file_too_large(tmp_path: Path) -> None:
    text = "name: x\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)
    assert one_problem(tmp_path, text) == f"sandbox.yaml: file is larger than {MAX_CONFIG_BYTES // 1024} KiB"


def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path) -> None:
    # 10 KB of brackets: small enough to pass the size check; must not crash with RecursionError,
    # nor take PyYAML's quadratic time over every level (6 s before the depth limit).
    started = time.monotonic()
    assert one_problem(tmp_path, "name: " + "[" * 5000 + "]" * 5000 + "\n") == (
        "sandbox.yaml:1: invalid YAML: nested too deeply"
    )
    assert time.monotonic() - started < 3
    # Block style (indentation) is refused the same way.
    block = "".join(f"{' ' * i}k{i}:\n" for i in range(MAX_DEPTH + 1)) + " " * (MAX_DEPTH + 1) + "x: 1\n"
    assert one_problem(tmp_path, block) == f"sandbox.yaml:{MAX_DEPTH + 1}: invalid YAML: nested too deeply"


def test_nesting_up_to_the_limit_is_parsed(tmp_path: Path) -> None:
    text = "env: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert "nested too deeply" not in one_problem(tmp_path, text)  # refused as a bad env, not for depth


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_spec(tmp_path / "nope.yaml")
    assert caught.value.problems == [f"{tmp_path / 'nope.yaml'}: no such file"]
    assert caught.value.hint == "pass an existing file with -f"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    assert caught.value.problems[0].startswith(f"{path}: cannot read: ")


# -- flag overrides -------------------------------------------------------------------------


def test_override_errors_name_the_flag(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "ttl: 15m\n", overrides={"ttl": "bogus"}) == (
        "--ttl: expected a duration like 90s, 15m or 2h, got 'bogus'"
    )


def test_override_errors_without_a_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_spec(None, overrides={"runtime": "docker://--privileged", "ttl": "0s"})
    assert sorted(caught.value.problems) == [
        "--runtime: invalid image reference '--privileged': expected something like 'python:3.12-slim'",
        "--ttl: duration '0s' is too short: the minimum is 1s",
    ]


def test_flag_problems_come_first_with_file_problems(tmp_path: Path) -> None:
    found = problems(tmp_path, "resources:\n  memory: lots\n", overrides={"ttl": "bogus"})
    assert found == [
        "--ttl: expected a duration like 90s, 15m or 2h, got 'bogus'",
        "sandbox.yaml:2: resources.memory: expected a size like 512M or 1G, got 'lots'",
    ]


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    spec = load_spec(
        _spec_file(tmp_path, "name: from-file\nttl: 15m\nruntime: node:18\n"),
        overrides={"ttl": "2h", "name": "from-flag", "runtime": "python:3.12"},
    )
    assert (spec.name, spec.ttl, spec.runtime) == ("from-flag", "2h", "python:3.12")


def test_override_fixes_a_bad_file_value(tmp_path: Path) -> None:
    # The flag replaces the bad value: nothing left to report.
    spec = load_spec(_spec_file(tmp_path, "ttl: bogus\n"), overrides={"ttl": "1h"})
    assert spec.ttl_seconds == 3600


def test_spec_is_frozen() -> None:
    spec = load_spec(None)
    with pytest.raises(Exception, match="frozen"):
        spec.ttl = "1h"  # type: ignore[misc]
