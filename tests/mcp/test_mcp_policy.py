"""The operator's policy for `aido mcp`: flags over the settings' `mcp:` mapping over the
defaults, checked strictly, printed at start; the SDK loaded only by `aido mcp` itself;
without the extra, one line saying how to install it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aido.config.mcp import McpPolicy, policy_from
from aido.config.settings import load_settings
from aido.errors import ConfigError
from tests.helpers.cli import Aido, aido_env, loaded_modules


def test_defaults_are_closed() -> None:
    policy = policy_from({})
    assert policy == McpPolicy()
    assert not (policy.allow_network or policy.allow_host_filesystem or policy.allow_mutations)
    assert (policy.max_ttl, policy.max_memory, policy.max_cpus, policy.max_timeout) == (3600, 1 << 30, 2, 300)
    assert (policy.max_sandboxes, policy.max_code_bytes, policy.keep_sandboxes) == (4, 256 << 10, False)
    assert (policy.allow_images, policy.require_gvisor) == ((), False)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "mcp: {allow_network: 'yes'}",
            "config.yaml:1: mcp.allow_network: expected true or false, got 'yes'",
        ),
        (
            "mcp: {max_sandboxes: 4.5}",
            "config.yaml:1: mcp.max_sandboxes: expected a whole number like 4, got 4.5",
        ),
        (
            "mcp:\n  max_ttl: forever\n",
            "config.yaml:2: mcp.max_ttl: expected a duration like 90s, 15m or 2h, got 'forever'",
        ),
        (
            "mcp:\n  max_sandboxes: 0\n",
            "config.yaml:2: mcp.max_sandboxes: expected a whole number from 1 to 1000, got 0",
        ),
        ("mcp: {allow_netwrok: true}", "config.yaml:1: mcp.allow_netwrok: unknown key"),
        ("mcp:\n  allow_images: ['*']\n", "config.yaml:2: mcp.allow_images: invalid image pattern '*'"),
        ("mcp:\n  allow_images: ghcr.io/x\n", "config.yaml:2: mcp.allow_images: expected a list of image"),
        ("mcp: {require_gvisor: 1}", "config.yaml:1: mcp.require_gvisor: expected true or false"),
    ],
)
def test_settings_are_strict(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_flags_override_settings_and_the_policy_is_printed(aido: Aido, project: Path) -> None:
    config = project / "aido.yaml"
    config.write_text("mcp:\n  allow_network: true\n  allow_mutations: true\n  max_sandboxes: 9\n")
    # stdin closed at once: the server prints its policy, finds no client and stops.
    result = aido("--config", str(config), "mcp", "--no-allow-mutations", "--max-ttl", "2h", input="")
    assert result.code == 0, result.stderr
    assert result.stdout == ""  # stdout is the protocol's: nothing else is ever written there
    assert "escape hatches an agent may ask for: network\n" in result.stderr
    assert "limits: ttl 2h, memory 1G, cpus 2, run timeout 5m, 9 sandboxes" in result.stderr
    bad = aido("mcp", "--max-memory", "lots", input="")
    assert bad.code == 2 and "--max-memory: expected a size like 512M or 1G, got 'lots'" in bad.stderr


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["mcp", "--help"], ["run", "--help"]])
def test_the_sdk_is_loaded_only_to_serve(argv: list[str]) -> None:
    """The SDK costs ~0.8 s to import: no other command, nor `aido mcp --help`, may load it."""
    done = loaded_modules(*argv, watch=["mcp", "aido.mcp"])
    assert done.modules == [], done.stderr


def test_aido_run_never_loads_the_sdk(aido: Aido, project: Path, engine: None) -> None:
    assert aido("sandbox", "up").code == 0
    (project / "t.py").write_text("print(1)\n")
    done = loaded_modules("run", "t.py", watch=["mcp", "aido.mcp"], cwd=project, timeout=120)
    assert done.modules == [] and done.stdout == "1\n", done.stderr
    aido("sandbox", "destroy", "--all")


def test_without_the_extra_it_says_how_to_install_it(project: Path) -> None:
    # sys.modules["mcp"] = None is how Python spells "not installed" to find_spec.
    probe = "import sys\nsys.modules['mcp'] = None\nfrom aido.cli.app import main\nmain(['mcp'])\n"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=project,
        capture_output=True,
        text=True,
        env=aido_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "pip install 'aido[mcp]'" in done.stderr.splitlines()[0]
