"""CONFIG SET through georedis reaches every node that is up, so a read served by any
replica sees the same encodings and limits as the primary; settings of one node only
(its files, its address) stay on the primary; a refusal is Redis' own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml, wait_for
from tests.helpers.raw import Raw
from tests.helpers.topology import RedisTopology, free_port


@pytest.fixture
def open_proxy(topology: RedisTopology) -> Iterator[ProxyThread]:
    extra = FAST_HEALTH + "[policy]\nrefuse = []\n"
    with ProxyThread(config_from_toml(topology.config_toml(free_port(), extra=extra))) as p:
        yield p


def test_config_set_reaches_every_node(topology: RedisTopology, open_proxy: ProxyThread) -> None:
    c = Raw(open_proxy.port)
    assert c.call("CONFIG", "SET", "hash-max-listpack-entries", "1", "maxmemory-samples", "7") == (
        b"OK"
    )
    for node in topology.nodes:
        got = node.client().config_get("hash-max-listpack-entries")
        assert got == {"hash-max-listpack-entries": "1"}, node
        assert node.client().config_get("maxmemory-samples") == {"maxmemory-samples": "7"}
    c.call("HSET", "h", "a", "1", "b", "2")
    primary_encoding = topology.primary.client().object("encoding", "h")
    assert primary_encoding == b"hashtable"
    # Wherever the read lands, the encoding is the primary's.
    wait_for(lambda: c.call("OBJECT", "ENCODING", "h") == primary_encoding, 3, "replicated")


def test_node_local_settings_stay_on_the_primary(
    topology: RedisTopology, open_proxy: ProxyThread
) -> None:
    key = "replica-priority"  # a failover's choice of node: one node's own
    before = {n.port: n.client().config_get(key)[key] for n in topology.nodes}
    c = Raw(open_proxy.port)
    assert c.call("CONFIG", "SET", key, "42") == b"OK"
    for node in topology.nodes:
        got = node.client().config_get(key)[key]
        want = "42" if node is topology.primary else before[node.port]
        assert got == want, node


def test_config_set_refusal_is_redis_own(topology: RedisTopology, open_proxy: ProxyThread) -> None:
    direct = Raw(topology.primary.port)
    c = Raw(open_proxy.port)
    for cmd in (
        ["CONFIG", "SET", "no-such-parameter", "1"],
        ["CONFIG", "SET", "maxmemory", "lots"],
        ["CONFIG", "SET", "maxmemory"],
    ):
        assert repr(c.call(*cmd)) == repr(direct.call(*cmd))


def test_debug_when_allowed_passes_its_reply_as_it_is(open_proxy: ProxyThread) -> None:
    """DEBUG ERROR makes any error, one that reads as a demoted primary's too: it is the
    primary's reply, passed on at once, with no write hold or second try."""
    c = Raw(open_proxy.port)
    t0 = time.monotonic()
    assert str(c.call("DEBUG", "ERROR", "READONLY not really")) == "READONLY not really"
    assert str(c.call("DEBUG", "ERROR", "LOADING not really")) == "LOADING not really"
    assert time.monotonic() - t0 < 0.5
    assert c.call("DEBUG", "SLEEP", "0") == b"OK"
    assert c.call("SET", "after", "1") == b"OK"  # no hold was started
