"""CLIENT TRACKING through georedis: a client caching what it read from a replica hears
that a key changed once the write reaches that replica, over RESP3 pushes and over
RESP2 REDIRECT (with redis-cli as the redirect target), with Redis' own options
(BCAST and prefixes, OPTIN and CACHING, NOLOOP) and a flush as Redis sends it."""

from __future__ import annotations

import subprocess
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


def _resp3(port: int) -> Raw:
    c = Raw(port, timeout=5)
    c.call("HELLO", "3")
    return c


def _served_by_replica(c: Raw, topology: RedisTopology, key: str) -> None:
    """The read of `key` went to a replica (not the primary): the case this is about."""
    info = c.call("CLIENT", "INFO")
    assert isinstance(info, bytes)
    served = dict(f.split("=", 1) for f in info.decode().split())["served-by"]
    assert served != f"127.0.0.1:{topology.primary.port}", served


def _written(topology: RedisTopology, proxy: ProxyThread, key: str, value: str) -> float:
    """SET through georedis, then wait until every node has it (read directly): a read
    through georedis served the old value meanwhile would rightly be invalidated, and
    that push would stand in the way of the one a test waits for."""
    w = Raw(proxy.port)
    t0 = time.monotonic()
    assert w.call("SET", key, value) == b"OK"
    w.close()
    want = value.encode()
    wait_for(lambda: all(n.client().get(key) == want for n in topology.nodes), 3, "applied")
    return t0


def test_resp3_push_when_a_key_read_from_a_replica_changes(
    topology: RedisTopology, open_proxy: ProxyThread
) -> None:
    _written(topology, open_proxy, "cached", "v1")
    c = _resp3(open_proxy.port)
    assert c.call("CLIENT", "TRACKING", "ON") == b"OK"
    assert c.call("GET", "cached") == b"v1"
    _served_by_replica(c, topology, "cached")
    t0 = _written(topology, open_proxy, "cached", "v2")
    assert c.read(1) == [[b"invalidate", [b"cached"]]]
    took = time.monotonic() - t0
    print(f"invalidation {took * 1000:.1f} ms after the write was sent")
    assert took < 1.0, took  # the replica's lag (~1 ms here) plus the hop, not seconds
    assert open_proxy.app is not None
    heard = open_proxy.call(lambda: list(open_proxy.app.tracking.trackers))  # type: ignore[union-attr]
    assert heard and f"127.0.0.1:{topology.primary.port}" not in heard  # from the replica
    # Once announced, the key is not tracked until read again (as Redis).
    _written(topology, open_proxy, "cached", "v3")
    assert c.call("PING") == b"PONG"  # no push before it
    assert c.call("GET", "cached") == b"v3"
    _written(topology, open_proxy, "cached", "v4")
    assert c.read(1) == [[b"invalidate", [b"cached"]]]


def test_resp2_redirect_to_redis_cli(topology: RedisTopology, open_proxy: ProxyThread) -> None:
    """redis-cli subscribed to __redis__:invalidate through georedis is the redirect
    target; the tracking client is RESP2, as with Redis."""
    cli = subprocess.Popen(
        ["redis-cli", "-p", str(open_proxy.port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )  # fmt: skip
    try:
        assert cli.stdin is not None and cli.stdout is not None
        cli.stdin.write("CLIENT ID\nSUBSCRIBE __redis__:invalidate\n")
        cli.stdin.flush()
        redirect_id = cli.stdout.readline().strip()
        assert redirect_id.isdigit(), redirect_id
        for _ in range(3):  # subscribe, the channel, 1
            cli.stdout.readline()
        _written(topology, open_proxy, "k2", "a")
        c = Raw(open_proxy.port)
        assert c.call("CLIENT", "TRACKING", "ON", "REDIRECT", redirect_id) == b"OK"
        assert c.call("CLIENT", "GETREDIR") == int(redirect_id)
        assert c.call("GET", "k2") == b"a"
        _written(topology, open_proxy, "k2", "b")
        got = [cli.stdout.readline().strip() for _ in range(3)]
        assert got == ["message", "__redis__:invalidate", "k2"], got
    finally:
        cli.kill()


def test_bcast_with_prefixes(topology: RedisTopology, open_proxy: ProxyThread) -> None:
    c = _resp3(open_proxy.port)
    assert c.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:") == b"OK"
    c.call("GET", "warm-up")  # its reads' node is now heard
    _written(topology, open_proxy, "other:1", "x")
    _written(topology, open_proxy, "user:1", "x")
    assert c.read(1) == [[b"invalidate", [b"user:1"]]]


def test_optin_records_only_after_caching_yes(
    topology: RedisTopology, open_proxy: ProxyThread
) -> None:
    _written(topology, open_proxy, "a", "1")
    _written(topology, open_proxy, "b", "1")
    c = _resp3(open_proxy.port)
    assert c.call("CLIENT", "TRACKING", "ON", "OPTIN") == b"OK"
    assert c.call("GET", "a") == b"1"  # not recorded
    assert c.call("CLIENT", "CACHING", "YES") == b"OK"
    assert c.call("GET", "b") == b"1"  # recorded
    _written(topology, open_proxy, "a", "2")
    _written(topology, open_proxy, "b", "2")
    assert c.read(1) == [[b"invalidate", [b"b"]]]


def test_noloop_and_flush(topology: RedisTopology, open_proxy: ProxyThread) -> None:
    """NOLOOP: the client's own write of a key it read is not announced to it; a flush
    is announced to every tracking client whose reads go to that node (a null)."""
    _written(topology, open_proxy, "mine", "1")
    c = _resp3(open_proxy.port)
    assert c.call("CLIENT", "TRACKING", "ON", "NOLOOP") == b"OK"
    assert c.call("GET", "mine") == b"1"
    assert c.call("SET", "mine", "2") == b"OK"  # its own write: not announced
    # Once every replica has it (read directly: a read through georedis could be served
    # the old value before it arrives, and that read would rightly be invalidated).
    wait_for(lambda: all(n.client().get("mine") == b"2" for n in topology.nodes), 3, "applied")
    assert c.call("PING") == b"PONG"  # no push came before it
    w = Raw(open_proxy.port)
    assert w.call("FLUSHALL") == b"OK"
    assert c.read(1) == [[b"invalidate", None]]


def test_tracking_words_are_redis_own(topology: RedisTopology, open_proxy: ProxyThread) -> None:
    script = [
        ["CLIENT", "TRACKINGINFO"],
        ["CLIENT", "GETREDIR"],
        ["CLIENT", "TRACKING"],
        ["CLIENT", "TRACKING", "on", "optin", "optout"],
        ["CLIENT", "TRACKING", "on", "prefix", "a"],
        ["CLIENT", "TRACKING", "on", "redirect", "999999"],
        ["CLIENT", "TRACKING", "on", "redirect", "x"],
        ["CLIENT", "TRACKING", "on", "bogus"],
        ["CLIENT", "TRACKING", "maybe"],
        ["CLIENT", "CACHING", "yes"],
        ["CLIENT", "TRACKING", "on", "bcast", "prefix", "a", "prefix", "ab"],
        ["CLIENT", "TRACKING", "on", "optin"],
        ["CLIENT", "CACHING", "maybe"],
        ["CLIENT", "CACHING", "yes"],
        ["CLIENT", "TRACKINGINFO"],
        ["CLIENT", "GETREDIR"],
        ["CLIENT", "TRACKING", "on", "bcast"],
        ["CLIENT", "TRACKING", "off"],
        ["CLIENT", "TRACKINGINFO"],
        ["CLIENT", "TRACKING", "off", "redirect", "999999"],
        ["CLIENT", "TRACKING", "off", "bcast", "prefix", "a"],
        ["CLIENT", "TRACKING", "off", "bogus"],
    ]
    replies = []
    for port in (topology.primary.port, open_proxy.port):
        c = Raw(port)
        replies.append([repr(c.call(*cmd)) for cmd in script])
        c.close()
    assert replies[1] == replies[0]


def test_redirect_to_a_resp3_client_is_a_push(
    topology: RedisTopology, open_proxy: ProxyThread
) -> None:
    """A RESP3 redirect target gets `invalidate` pushes, as from Redis (the pub/sub
    message form is for RESP2 targets)."""
    target = _resp3(open_proxy.port)
    tid = target.call("CLIENT", "ID")
    _written(topology, open_proxy, "k3", "a")
    c = Raw(open_proxy.port)
    assert c.call("CLIENT", "TRACKING", "ON", "REDIRECT", str(tid)) == b"OK"
    assert c.call("GET", "k3") == b"a"
    _written(topology, open_proxy, "k3", "b")
    assert target.read(1) == [[b"invalidate", [b"k3"]]]


def test_nobody_tracking_closes_the_node_connections(open_proxy: ProxyThread) -> None:
    c = _resp3(open_proxy.port)
    assert c.call("CLIENT", "TRACKING", "ON") == b"OK"
    c.call("GET", "x")
    assert open_proxy.app is not None
    assert open_proxy.call(lambda: len(open_proxy.app.tracking.trackers)) >= 1  # type: ignore[union-attr]
    assert c.call("CLIENT", "TRACKING", "OFF") == b"OK"
    assert open_proxy.call(lambda: len(open_proxy.app.tracking.trackers)) == 0  # type: ignore[union-attr]
