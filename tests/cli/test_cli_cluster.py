"""`aido cluster` without a cluster: an address that does not answer, no address at all, and
the start-up path that must never import Ray."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.helpers.cli import Aido, loaded_modules


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port this test holds (bound, never listening): nothing else can answer on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_an_unreachable_cluster_is_one_error_and_exit_125(aido: Aido, dead_port: int) -> None:
    address = f"127.0.0.1:{dead_port}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        # The flag wins over the environment: the other address is never tried.
        env = {"AIDO_CLUSTER": f"127.0.0.1:{other.getsockname()[1]}", "RAY_ADDRESS": "127.0.0.1:1"}
        started = time.monotonic()
        result = aido("cluster", "status", "--cluster", address, env=env)
        assert time.monotonic() - started < 30  # a refused connection is not waited on
    assert result.code == 125 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: cannot reach the Ray cluster at {address}: Connection refused"
    assert lines[1].startswith("hint: ") and len(lines) == 2
    assert "127.0.0.1:1" not in result.stderr and str(env["AIDO_CLUSTER"]) not in result.stderr

    as_json = aido("cluster", "trust", "--cluster", address, "--yes", "--json")
    assert as_json.code == 125
    document = json.loads(as_json.stdout)
    assert document["command"] == "cluster trust" and document["exit_code"] == 125
    assert document["error"]["code"] == "cluster_unavailable" and address in document["error"]["message"]


def test_the_address_comes_from_aido_cluster_when_no_flag(aido: Aido, dead_port: int) -> None:
    result = aido("cluster", "status", env={"AIDO_CLUSTER": f"127.0.0.1:{dead_port}"})
    assert result.code == 125 and f"127.0.0.1:{dead_port}" in result.stderr.splitlines()[0]


def test_no_address_at_all_is_a_usage_error(aido: Aido) -> None:
    result = aido("cluster", "status")
    assert result.code == 2 and "no cluster given" in result.stderr and "AIDO_CLUSTER" in result.stderr


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["cluster", "--help"], ["cluster", "status", "--help"]]
)
def test_start_up_and_help_never_import_ray(argv: list[str]) -> None:
    """Ray costs ~0.5 s and 60 MB to import: only a command that talks to a cluster may load it."""
    done = loaded_modules(*argv, watch=["ray", "aido.cluster"])
    assert done.code == 0, done.stderr
    assert done.modules == [], done.stderr


def test_the_help_teaches_how_to_start_nodes() -> None:
    from click.testing import CliRunner

    from aido.cli.app import cli

    shown = CliRunner().invoke(cli, ["cluster", "--help"]).output
    assert "RAY_AUTH_MODE=token ray start --head --port=6379" in shown
    assert "RAY_AUTH_MODE=token ray start --address=HEAD:6379 --resources='{\"aido\": 2}'" in shown
    assert "ray get-auth-token --generate" in shown


def test_the_cli_default_timeout_is_the_probes() -> None:
    from aido.cli.commands import cluster
    from aido.cluster import probe

    assert cluster.PROBE_TIMEOUT == probe.PROBE_TIMEOUT
