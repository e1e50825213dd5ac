"""`PROXY FAILOVER` in cluster mode, its pure parts: the SHARD word, and which shard and
replica a request names, from plain cluster snapshots."""

from __future__ import annotations

import pytest

from config.model import Address
from proxy.admin.clusterfailover import ShardRequest, choose, parse
from proxy.admin.failover import Request
from proxy.errors import FailoverError
from routing.topology import NodeState, Reason, Role, Snapshot


def node(port: int, region: str, role: Role = Role.REPLICA, *, lag_ms: float | None = 5.0,
         offset: int = 100, eligible: bool = True, up: bool = True) -> NodeState:  # fmt: skip
    return NodeState(Address("10.0.0.1", port), region, up=up, role=role, offset=offset,
                     link_up=up, lag_ms=lag_ms, eligible=eligible and role is Role.REPLICA,
                     reason=Reason.OK if eligible else Reason.LAGGING)  # fmt: skip


def shard(master: NodeState, *replicas: NodeState, error: str = "") -> Snapshot:
    return Snapshot(version=1, nodes=(master, *replicas), primary=master, primary_error=error)


M0, M1 = node(7000, "sg", Role.PRIMARY), node(7001, "sg", Role.PRIMARY)
R0US, R0EU = node(7100, "us", lag_ms=9.0), node(7200, "eu", lag_ms=3.0)
R1US, R1EU = node(7101, "us", lag_ms=2.0), node(7201, "eu", lag_ms=None, eligible=False)
CLUSTER = Snapshot(
    version=1, nodes=(M0, R0US, R0EU, M1, R1US, R1EU), primary=M0,
    shards=(shard(M0, R0US, R0EU), shard(M1, R1US, R1EU)),
)  # fmt: skip


# ---------------------------------------------------------------- parse


@pytest.mark.parametrize(
    ("words", "request_"),
    [
        ([], Request()),  # no SHARD: the standalone request, unchanged
        ([b"TO", b"10.0.0.1:7100"], Request(to="10.0.0.1:7100")),
        ([b"SHARD", b"2"], ShardRequest(shard=2)),
        ([b"shard", b"0", b"FORCE"], ShardRequest(force=True, shard=0)),
        ([b"FORCE", b"SHARD", b"1", b"TO", b"us"], ShardRequest(True, "us", None, 1)),
        ([b"TO", b"eu", b"SHARD", b"1", b"TIMEOUT", b"300"], ShardRequest(False, "eu", 300, 1)),
        ([b"TO", b"shard", b"SHARD", b"3"], ShardRequest(to="shard", shard=3)),  # a region
    ],
)
def test_parse(words: list[bytes], request_: Request) -> None:
    got = parse(words)
    assert got == request_ and type(got) is type(request_)


@pytest.mark.parametrize(
    "words",
    [
        [b"SHARD"],
        [b"SHARD", b"x"],
        [b"SHARD", b"-1"],
        [b"SHARD", b"1", b"SHARD", b"2"],
        [b"SHARD", b"1", b"now"],
        [b"SHARD", b"1", b"TIMEOUT", b"0"],
    ],
)
def test_parse_bad_words(words: list[bytes]) -> None:
    with pytest.raises(ValueError):
        parse(words)


# ---------------------------------------------------------------- choosing


def test_shard_picks_its_least_lagging_eligible_replica() -> None:
    assert choose(CLUSTER, ShardRequest(shard=0)) == (0, CLUSTER.shards[0], R0EU)
    assert choose(CLUSTER, ShardRequest(shard=1))[2] == R1US  # R1EU: not eligible


def test_shard_in_a_region() -> None:
    assert choose(CLUSTER, ShardRequest(to="us", shard=0))[2] == R0US
    with pytest.raises(FailoverError, match="no eligible replica in region 'eu'"):
        choose(CLUSTER, ShardRequest(to="eu", shard=1))
    # FORCE takes any reachable replica.
    assert choose(CLUSTER, ShardRequest(force=True, to="eu", shard=1))[2] == R1EU


def test_to_a_replica_finds_its_shard() -> None:
    assert choose(CLUSTER, Request(to="10.0.0.1:7201")) == (1, CLUSTER.shards[1], R1EU)
    assert choose(CLUSTER, ShardRequest(to="10.0.0.1:7100", shard=0))[2] == R0US


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (Request(to="10.0.0.1:7000"), "not a replica of shard 0"),
        (ShardRequest(to="10.0.0.1:7001", shard=1), "not a replica of shard 1"),
        (ShardRequest(to="10.0.0.1:7100", shard=1), "not a node of shard 1"),
        (Request(to="10.0.0.1:9999"), "not a node of the cluster map"),
        (ShardRequest(shard=99), "unknown shard 99"),
        (Request(), "takes SHARD <index>"),
        (Request(to="us"), "takes SHARD <index>"),
        (ShardRequest(to="10.0.0.1:x", shard=0), "not host:port"),
    ],
)
def test_requests_that_name_no_replica(req: Request, error: str) -> None:
    with pytest.raises(FailoverError, match=error):
        choose(CLUSTER, req)


def test_no_map_yet() -> None:
    no_map = Snapshot(version=1, nodes=(), primary=None)
    with pytest.raises(FailoverError, match="slot map is not read yet"):
        choose(no_map, ShardRequest(shard=0))
