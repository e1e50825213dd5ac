"""Pub/sub through the proxy, on real servers: a subscriber's dedicated connection is
released when it leaves, and RESET ends subscribed mode."""

from __future__ import annotations

from tests.helpers.proxyrun import ProxyThread, wait_for
from tests.helpers.raw import Raw


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
