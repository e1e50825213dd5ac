"""Fixtures for integration tests: real redis-server topologies.

`topology` is fresh per test (~0.1 s to start and ~0.1 s to stop); `topology_module` is
shared by a module's tests, which then must leave it as they found it (thaw what they
froze, restart what they killed, point replicas back at the primary).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.cluster import RedisCluster
from tests.helpers.proxyrun import ProxyThread, fast_config
from tests.helpers.topology import RedisTopology


@pytest.fixture
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTopology]:
    """Primary + replica in ap-southeast-1, one replica each in us-east-1 and eu-west-1."""
    with RedisTopology.start(tmp=tmp_path_factory.mktemp("redis")) as topo:
        yield topo


@pytest.fixture(scope="module")
def topology_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTopology]:
    """The same topology as `topology`, started once per test module."""
    with RedisTopology.start(tmp=tmp_path_factory.mktemp("redis")) as topo:
        yield topo


@pytest.fixture
def proxy(topology: RedisTopology) -> Iterator[ProxyThread]:
    """The real proxy (in a thread) in front of `topology`, probing every 100 ms."""
    with ProxyThread(fast_config(topology)) as p:
        yield p


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real Redis Cluster of 3 masters x 2 replicas, one per test module that asks
    (tests/helpers/cluster.py); a module wanting another shape defines its own."""
    with RedisCluster.start(3, 2, tmp=tmp_path_factory.mktemp("cluster")) as c:
        yield c
