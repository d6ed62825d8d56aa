"""A real Ray cluster for the cluster tests (tests/helpers/raycluster.py), shared by the package's tests.

Ray is imported lazily, only where a test connects: collecting these tests must not put ``ray`` in
``sys.modules`` of the test process (a test checks that a local run never imports it).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator

import pytest

from tests.helpers.raycluster import NodeSpec, RayCluster


@pytest.fixture(scope="package")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A head without the ``aido`` resource and two worker nodes ``w1`` and ``w2`` (2 CPUs,
    ``aido: 2`` each). Each worker has its own ``XDG_CONFIG_HOME``, hence its own aido signing key,
    as two machines would. Shared by every module of tests/cluster (starting one takes 8-30 s, and
    stopping it another second): a test using it must leave it as it found it, every node alive
    and no task running; a test that kills a node or needs other nodes starts a cluster of its
    own. Always stopped when the package's tests end, even when they fail."""
    if importlib.util.find_spec("ray") is None:
        pytest.fail("Ray is not installed: pip install -e '.[dev,ray]' (scripts/test.sh does)", pytrace=False)
    workers = [
        NodeSpec(
            name,
            num_cpus=2,
            resources={"aido": 2},
            env={"XDG_CONFIG_HOME": str(tmp_path_factory.mktemp(f"xdg-{name}"))},
        )
        for name in ("w1", "w2")
    ]
    with RayCluster(workers) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _driver_disconnected() -> Iterator[None]:
    """After each test the test process is no longer a Ray driver: the next test (or module, with
    another cluster) starts from a clean ``ray.init``, and no cluster is stopped under a connected
    driver."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
