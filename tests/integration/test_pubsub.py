"""Pub/sub through the proxy, on real servers: a subscriber's dedicated connection is
released when it leaves, and RESET ends subscribed mode."""

from __future__ import annotations

from tests.helpers.proxyrun import ProxyThread, wait_for
from tests.helpers.raw import Raw
from tests.helpers.topology import RedisTopology


def test_pubsub_connections_are_not_leaked(proxy: ProxyThread) -> None:
    for _ in range(5):
        c = Raw(proxy.port)
        c.send(["SUBSCRIBE", "ch"])
        c.read(1)
        c.close()
    assert proxy.app is not None
    app = proxy.app

    def dedicated() -> int:
        return sum(len(p._dedicated) for p in app.pools.values())

    wait_for(lambda: proxy.call(dedicated) == 0, timeout=3, what="pub/sub connections released")


def test_reset_while_subscribed(proxy: ProxyThread) -> None:
    c = Raw(proxy.port)
    c.send(["SUBSCRIBE", "rs"])
    assert c.read(1) == [[b"subscribe", b"rs", 1]]
    assert c.call("RESET") == b"RESET"
    assert c.call("PING") == b"PONG"  # still connected, no longer subscribed


def _keyspace_events(topology: RedisTopology) -> None:
    for node in topology.nodes:
        node.client().config_set("notify-keyspace-events", "KEA")


def test_keyspace_notifications_come_from_the_primary(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """An expiry is an event on the primary only (a replica deletes the key when the
    primary says so, as a `del`): a keyevent subscriber through georedis gets the
    `expired` event, as it would subscribed to the primary directly."""
    _keyspace_events(topology)
    c = Raw(proxy.port)
    c.send(["PSUBSCRIBE", "__keyevent@0__:expired"])
    assert c.read(1) == [[b"psubscribe", b"__keyevent@0__:expired", 1]]
    proxy.client().set("soon-gone", "v", px=50)
    assert c.read(1) == [[b"pmessage", b"__keyevent@0__:expired", b"__keyevent@0__:expired",
                          b"soon-gone"]]  # fmt: skip


def test_keyspace_and_plain_channels_on_one_client(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """Plain channels stay on the nearest replica, keyspace ones go to the primary; the
    client sees one connection's counts and both kinds of message."""
    _keyspace_events(topology)
    c = Raw(proxy.port)
    c.send(["SUBSCRIBE", "news"])
    assert c.read(1) == [[b"subscribe", b"news", 1]]
    c.send(["PSUBSCRIBE", "__keyevent@0__:expired", "plain*"])
    got = c.read(2)
    assert sorted(got, key=repr) == sorted(
        [[b"psubscribe", b"plain*", 2], [b"psubscribe", b"__keyevent@0__:expired", 3]], key=repr
    ) or sorted(got, key=repr) == sorted(
        [[b"psubscribe", b"plain*", 3], [b"psubscribe", b"__keyevent@0__:expired", 2]], key=repr
    ), got
    proxy.client().set("gone", "v", px=50)
    assert c.read(1) == [[b"pmessage", b"__keyevent@0__:expired", b"__keyevent@0__:expired",
                          b"gone"]]  # fmt: skip
    proxy.client().publish("news", "hi")
    assert c.read(1) == [[b"message", b"news", b"hi"]]
    info = c.call("CLIENT", "INFO")
    assert isinstance(info, bytes) and b" sub=1 psub=2 " in info, info
    c.send(["PUNSUBSCRIBE"])
    got = c.read(2)
    assert sorted(r[1] for r in got) == [b"__keyevent@0__:expired", b"plain*"]  # type: ignore[index]
    assert sorted(r[2] for r in got) == [1, 2], got  # type: ignore[index]
    c.send(["UNSUBSCRIBE"])
    assert c.read(1) == [[b"unsubscribe", b"news", 0]]


def test_publish_counts_subscribers_through_georedis(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """PUBLISH answers how many clients got the message: subscribers through georedis
    (served by replicas) count, as they would subscribed to the primary directly; they
    stop counting when they unsubscribe or leave."""
    a, b = Raw(proxy.port), Raw(proxy.port)
    a.send(["SUBSCRIBE", "counted", "other"])
    assert len(a.read(2)) == 2
    b.send(["PSUBSCRIBE", "count*", "nomatch*"])
    assert len(b.read(2)) == 2
    pub = Raw(proxy.port)
    assert pub.call("PUBLISH", "counted", "x") == 2  # a's channel and b's pattern
    assert pub.call("PUBLISH", "other", "x") == 1
    assert pub.call("PUBLISH", "nobody", "x") == 0
    direct = topology.primary.client().pubsub()
    direct.subscribe("counted")
    wait_for(lambda: pub.call("PUBLISH", "counted", "y") == 3, timeout=3, what="direct one")
    a.send(["UNSUBSCRIBE", "counted"])
    a.read(1)
    assert pub.call("PUBLISH", "counted", "z") == 2
    b.close()
    wait_for(lambda: pub.call("PUBLISH", "counted", "w") == 1, timeout=3, what="b gone")
    direct.close()


def test_pubsub_is_merged_over_the_nodes(topology: RedisTopology, proxy: ProxyThread) -> None:
    """PUBSUB CHANNELS/NUMSUB/NUMPAT see the subscribers on every node: those through
    georedis (on replicas) and those of the primary."""
    a = Raw(proxy.port)
    a.send(["SUBSCRIBE", "m1", "m2"], ["PSUBSCRIBE", "p*"])
    assert len(a.read(3)) == 3
    direct = topology.primary.client().pubsub()
    direct.subscribe("m1", "m3")
    direct.psubscribe("q*")
    c = Raw(proxy.port)

    def merged() -> bool:
        chans = c.call("PUBSUB", "CHANNELS", "m*")
        return isinstance(chans, list) and sorted(chans) == [b"m1", b"m2", b"m3"]

    wait_for(merged, timeout=3, what="channels of every node")
    assert c.call("PUBSUB", "NUMSUB", "m1", "m2", "none") == [b"m1", 2, b"m2", 1, b"none", 0]
    c3 = Raw(proxy.port)
    c3.call("HELLO", "3")  # a flat array in RESP3 too, in the order asked, as Redis
    assert c3.call("PUBSUB", "NUMSUB", "m2", "m1", "m2") == [b"m2", 1, b"m1", 2, b"m2", 1]
    assert c.call("PUBSUB", "NUMPAT") == 2
    assert "wrong number of arguments" in str(c.call("PUBSUB"))
    direct.close()
