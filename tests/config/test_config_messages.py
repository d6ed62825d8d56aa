"""sandbox.yaml problems in aido's words: duplicate keys refused at any depth, every field's
message says what was expected (with an example) and what was given, `inputs` problems
carry their line, and each problem is also a structured Problem (file, line, key, message)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aido.config.loader import load_spec, load_spec_and_lines
from aido.config.settings import load_settings
from aido.errors import ConfigError, Problem
from aido.host.inputs import match_inputs


def _write(tmp_path: Path, text: str, name: str = "sandbox.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_spec(_write(tmp_path, text), **kwargs)  # type: ignore[arg-type]
    return caught.value


def _problems(tmp_path: Path, text: str, **kwargs: object) -> list[str]:
    return _error(tmp_path, text, **kwargs).problems


# -- duplicate keys ---------------------------------------------------------------------------


def test_duplicate_top_level_key_names_both_lines(tmp_path: Path) -> None:
    error = _error(tmp_path, "ttl: 1h\nname: demo\nttl: 2h\n")
    assert error.problems == ["sandbox.yaml:3: ttl: duplicate key (first at line 1)"]
    assert error.details == [Problem("duplicate key (first at line 1)", "sandbox.yaml", 3, "ttl")]


def test_duplicate_nested_key(tmp_path: Path) -> None:
    text = "name: demo\nresources:\n  memory: 1G\n  cpu: 1\n  timeout: 1m\n  disk: 1G\n  memory: 2G\n"
    assert _problems(tmp_path, text) == ["sandbox.yaml:7: resources.memory: duplicate key (first at line 3)"]


def test_every_duplicate_at_every_depth_is_reported_in_line_order(tmp_path: Path) -> None:
    text = (
        "env:\n  A: '1'\n  A: '2'\n"
        "permissions:\n  aws:\n    role: readonly\n    role: readwrite\n"
        "resources: {cpu: 1, cpu: 2}\n"
        "env:\n  B: x\n"
    )
    assert _problems(tmp_path, text) == [
        "sandbox.yaml:3: env.A: duplicate key (first at line 2)",
        "sandbox.yaml:7: permissions.aws.role: duplicate key (first at line 6)",
        "sandbox.yaml:8: resources.cpu: duplicate key (first at line 8)",
        "sandbox.yaml:9: env: duplicate key (first at line 1)",
    ]


def test_keys_that_are_equal_as_values_are_duplicates(tmp_path: Path) -> None:
    # "A" and A are one key once loaded; so are `yes` and `true` (both True in YAML 1.1).
    assert _problems(tmp_path, 'env:\n  A: x\n  "A": y\n') == [
        "sandbox.yaml:3: env.A: duplicate key (first at line 2)"
    ]
    assert "sandbox.yaml:2: yes: duplicate key (first at line 1)" in _problems(tmp_path, "true: 1\nyes: 2\n")


def test_duplicate_is_refused_even_when_both_values_agree(tmp_path: Path) -> None:
    assert _problems(tmp_path, "ttl: 1h\nttl: 1h\n") == [
        "sandbox.yaml:2: ttl: duplicate key (first at line 1)"
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [("resources:\n  cpu: 1\n  <<: {cpu: 2}\n", 3), ("resources:\n  <<: {memory: 1G}\n", 2)],
)
def test_merge_keys_are_refused_even_without_aliases(tmp_path: Path, text: str, line: int) -> None:
    # An inline `<<` mapping would be silently overridden by the mapping's own keys.
    assert _problems(tmp_path, text) == [
        f"sandbox.yaml:{line}: resources.<<: YAML merge keys (<<) are not supported: write the keys out"
    ]


def test_duplicates_in_the_settings_file_are_refused_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, '{"output_limit": "1M",\n "output_limit": "2M"}', "config.json"))
    assert caught.value.problems == ["config.json:2: output_limit: duplicate key (first at line 1)"]


def test_a_file_without_duplicates_still_loads(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, "env:\n  A: x\n  B: x\nresources:\n  cpu: 2\n"))
    assert spec.env == {"A": "x", "B": "x"}
    assert spec.resources.cpu == 2


# -- every field: expected (with an example), got -------------------------------------------

DURATION = "expected a duration like 90s, 15m or 2h"
SIZE = "expected a size like 512M or 1G"
CPU = "expected a number of CPUs like 1 or 0.5 (more than 0, at most 256)"
NAME = (
    "expected a name like nightly-report (1-63 letters, digits, spaces, '.', '_' or '-', "
    "starting with a letter or digit)"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ttl: 15\n", f"sandbox.yaml:1: ttl: {DURATION}, got 15"),
        ("ttl: true\n", f"sandbox.yaml:1: ttl: {DURATION}, got True"),
        ("resources:\n  timeout: 90\n", f"sandbox.yaml:2: resources.timeout: {DURATION}, got 90"),
        ("resources:\n  timeout:\n", f"sandbox.yaml:2: resources.timeout: {DURATION}, got None"),
        ("name: 5\n", f"sandbox.yaml:1: name: {NAME}, got 5"),
        ("name: ../etc\n", f"sandbox.yaml:1: name: {NAME}, got '../etc'"),
        (
            "runtime: 3\n",
            "sandbox.yaml:1: runtime: expected a runtime like python:3.12, node:18, sh or docker://IMAGE, "
            "got 3",
        ),
        (
            "inputs: data/*.csv\n",
            "sandbox.yaml:1: inputs: expected a list of file patterns like [data/*.csv], got 'data/*.csv'",
        ),
        (
            "inputs:\n  - ok.csv\n  - 5\n",
            "sandbox.yaml:3: inputs[1]: expected a file pattern like data/*.csv (1-4096 characters), got 5",
        ),
        (
            "inputs:\n  - ''\n",
            "sandbox.yaml:2: inputs[0]: expected a file pattern like data/*.csv (1-4096 characters), got ''",
        ),
        (
            "outputs: report.json\n",
            "sandbox.yaml:1: outputs: expected a list of file paths like [report.json], got 'report.json'",
        ),
        (
            "outputs:\n  - /etc/passwd\n",
            "sandbox.yaml:2: outputs[0]: expected a path inside /outputs like report.json or out/plot.png "
            "(no leading '/', no '..'), got '/etc/passwd'",
        ),
        (
            "permissions: yes\n",
            "sandbox.yaml:1: permissions: expected a mapping like {filesystem: readonly, network: false}, "
            "got True",
        ),
        (
            "permissions:\n  filesystem: rw\n",
            "sandbox.yaml:2: permissions.filesystem: expected 'readonly', 'readwrite' or 'none', got 'rw'",
        ),
        (
            "permissions:\n  network: 'yes'\n",
            "sandbox.yaml:2: permissions.network: expected true, false or "
            "an allowlist like {allow: [pypi.org]}, got 'yes'",
        ),
        (
            "permissions:\n  aws: s3\n",
            "sandbox.yaml:2: permissions.aws: expected a mapping like {role: readonly, services: [s3]}, "
            "got 's3'",
        ),
        (
            "permissions:\n  aws:\n    role: admin\n",
            "sandbox.yaml:3: permissions.aws.role: expected 'readonly' or 'readwrite', got 'admin'",
        ),
        (
            "permissions:\n  aws:\n    services: s3\n",
            "sandbox.yaml:3: permissions.aws.services: expected a list of service names like [s3, dynamodb], "
            "got 's3'",
        ),
        (
            "permissions:\n  aws:\n    services: [s3, '']\n",
            "sandbox.yaml:3: permissions.aws.services[1]: expected a service name like s3 (1-64 characters), "
            "got ''",
        ),
        (
            "env: [A=1]\n",
            "sandbox.yaml:1: env: expected a mapping of variable names to values like {MODE: fast}, "
            "got ['A=1']",
        ),
        (
            "env:\n  OK: x\n  1BAD: x\n",
            "sandbox.yaml:3: env.1BAD: expected a variable name like MODE or API_URL "
            "(letters, digits and '_', not starting with a digit), got '1BAD'",
        ),
        (
            "env:\n  DEBUG: yes\n",
            'sandbox.yaml:2: env.DEBUG: expected a string (quote it in YAML, e.g. "yes"), got True',
        ),
        ("env:\n  L: [1]\n", "sandbox.yaml:2: env.L: expected a string like fast, got a list"),
        (
            "resources: 5\n",
            "sandbox.yaml:1: resources: expected a mapping like {cpu: 1, memory: 512M, timeout: 10m}, got 5",
        ),
        (
            "resources:\n  cpu: lots\n",
            f"sandbox.yaml:2: resources.cpu: {CPU}, got 'lots'",
        ),
        (
            "resources:\n  cpu: 0\n",
            f"sandbox.yaml:2: resources.cpu: {CPU}, got 0",
        ),
        (
            "resources:\n  cpu: true\n",
            f"sandbox.yaml:2: resources.cpu: {CPU}, got True",
        ),
        ("resources:\n  memory: lots\n", f"sandbox.yaml:2: resources.memory: {SIZE}, got 'lots'"),
        ("resources:\n  disk: [1G]\n", f"sandbox.yaml:2: resources.disk: {SIZE}, got ['1G']"),
        (
            "resources:\n  files: 1.5\n",
            "sandbox.yaml:2: resources.files: expected a whole number of files like 100000 (1 to 10000000), "
            "got 1.5",
        ),
        (
            "resources:\n  files: 0\n",
            "sandbox.yaml:2: resources.files: expected a whole number of files like 100000 (1 to 10000000), "
            "got 0",
        ),
        (
            "resources:\n  files: many\n",
            "sandbox.yaml:2: resources.files: expected a whole number of files like 100000 (1 to 10000000), "
            "got 'many'",
        ),
        (
            "resources:\n  disk_quota: strict\n",
            "sandbox.yaml:2: resources.disk_quota: expected 'soft' or 'hard', got 'strict'",
        ),
        ("isolation: vm\n", "sandbox.yaml:1: isolation: expected 'default' or 'gvisor', got 'vm'"),
    ],
)
def test_each_field_says_what_it_expected_and_what_it_got(tmp_path: Path, text: str, expected: str) -> None:
    assert _problems(tmp_path, text) == [expected]


def test_no_message_is_pydantic_s(tmp_path: Path) -> None:
    text = (
        "name: 5\nruntime: 3\nttl: 15\ninputs: x\noutputs: [5]\npermissions: {network: 1, aws: 2}\n"
        "env: {A: {}}\nresources: {cpu: x, memory: x, timeout: 5, disk: x, files: x, disk_quota: x}\n"
        "isolation: 1\n"
    )
    found = _problems(tmp_path, text)
    assert len(found) == 15
    for line in found:
        assert "input should" not in line.lower(), line
        assert "expected " in line, line


def test_flag_problems_use_the_same_words(tmp_path: Path) -> None:
    assert _problems(tmp_path, "", overrides={"ttl": "15"}) == [f"--ttl: {DURATION}, got '15'"]


def test_problems_are_structured(tmp_path: Path) -> None:
    error = _error(tmp_path, "name: ok\nresources:\n  memory: lots\n", overrides={"ttl": "x"})
    assert [p.as_json() for p in error.details] == [
        {"file": None, "line": None, "key": "--ttl", "message": f"{DURATION}, got 'x'"},
        {"file": "sandbox.yaml", "line": 3, "key": "resources.memory", "message": f"{SIZE}, got 'lots'"},
    ]


def test_problem_renders_as_one_line() -> None:
    assert str(Problem("m", "f.yaml", 7, "a.b")) == "f.yaml:7: a.b: m"
    assert str(Problem("m", "f.yaml")) == "f.yaml: m"
    assert str(Problem("m", key="--ttl")) == "--ttl: m"
    assert ConfigError(["plain"]).details == [Problem("plain")]


# -- inputs problems carry their line --------------------------------------------------------


def _inputs_problem(tmp_path: Path, text: str) -> ConfigError:
    spec_file = _write(tmp_path, text)
    spec, lines = load_spec_and_lines(spec_file)
    with pytest.raises(ConfigError) as caught:
        match_inputs(spec.inputs, tmp_path, source=spec_file.name, lines=lines)
    return caught.value


def test_an_input_that_matches_nothing_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x")
    error = _inputs_problem(tmp_path, "name: demo\ninputs:\n  - data/*.csv\n  - missing/*.json\n")
    assert error.problems == [
        f"sandbox.yaml:4: inputs[1]: 'missing/*.json' matched no files under {tmp_path.resolve()}"
    ]
    assert error.details[0].line == 4
    assert error.details[0].key == "inputs[1]"


def test_an_input_outside_the_project_names_its_line(tmp_path: Path) -> None:
    error = _inputs_problem(tmp_path, "inputs:\n\n  - ../secrets/*\n")
    assert error.problems == [
        f"sandbox.yaml:3: inputs[0]: expected a file pattern inside {tmp_path.resolve()} like data/*.csv "
        "(no '..'), got '../secrets/*'"
    ]


def test_an_input_that_names_only_links_is_refused_not_silently_empty(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link.csv").symlink_to("/etc/passwd")
    (tmp_path / "data" / "real.txt").write_text("x")
    error = _inputs_problem(tmp_path, "inputs:\n  - data/*.txt\n  - data/*.csv\n")
    assert error.problems == [
        f"sandbox.yaml:3: inputs[1]: 'data/*.csv' matched no regular files under {tmp_path.resolve()} "
        "(links, special files and empty folders are not copied)"
    ]


def test_inputs_keep_their_folders_and_a_folder_is_copied_whole(tmp_path: Path) -> None:
    for name in ("data/a.csv", "data/sub/b.csv", "data/.hidden.csv", "data/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    def matched(*patterns: str) -> list[str]:
        return sorted(str(rel) for _, rel in match_inputs(list(patterns), tmp_path, source="sandbox.yaml"))

    assert matched("data/*.csv") == ["data/a.csv"]  # globs skip hidden names
    assert matched("data/**/*.csv") == ["data/a.csv", "data/sub/b.csv"]
    assert matched("data") == ["data/.hidden.csv", "data/a.csv", "data/notes.txt", "data/sub/b.csv"]


def test_a_huge_wrong_value_is_shown_cut_short(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, "outputs: '" + "x" * 10_000 + "'\n")
    assert problem.startswith(
        "sandbox.yaml:1: outputs: expected a list of file paths like [report.json], got 'xxx"
    )
    assert problem.endswith("...")
    assert len(problem) < 200


def test_duplicates_are_reported_with_the_other_problems_at_once(tmp_path: Path) -> None:
    text = "runtme: python:3.12\nttl: 15\nresources:\n  memory: 1G\n  cpu: lots\n  memory: lots\n"
    assert _problems(tmp_path, text, overrides={"name": "../x"}) == [
        f"--name: {NAME}, got '../x'",
        "sandbox.yaml:1: runtme: unknown key (allowed: name, runtime, ttl, inputs, outputs, permissions, "
        "env, resources, isolation, warm); did you mean 'runtime'?",
        f"sandbox.yaml:2: ttl: {DURATION}, got 15",
        f"sandbox.yaml:5: resources.cpu: {CPU}, got 'lots'",
        # Not also "sandbox.yaml:4: resources.memory: expected a size ..., got 'lots'" (the last
        # value at the first line): the repeat is the problem to fix.
        "sandbox.yaml:6: resources.memory: duplicate key (first at line 4)",
    ]
