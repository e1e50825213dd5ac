"""MULTI/EXEC and WATCH through the proxy, on real servers: a transaction's pinned
connection answers EXEC whatever the idle list holds, and what a client leaves on it
(a WATCH, a database, a subscription, a discarded MULTI) never reaches another client."""

from __future__ import annotations

import time

import hiredis

from tests.helpers.proxyrun import ProxyThread, fast_config
from tests.helpers.raw import Raw
from tests.helpers.topology import RedisTopology


def test_exec_reply_survives_a_full_idle_list(topology: RedisTopology) -> None:
    """Releasing a pinned connection after EXEC must not close it while the EXEC
    reply is still in flight (it used to when the idle list was full)."""
    cfg = fast_config(topology, backend="dedicated_idle = 1\n")
    with ProxyThread(cfg) as p:
        clients = [Raw(p.port) for _ in range(3)]
        for c in clients:
            c.send(["MULTI"], ["INCR", "txcount"])
            assert c.read(2) == [b"OK", b"QUEUED"]
        for c in clients:
            c.send(["EXEC"])
        results = [c.read(1)[0] for c in clients]
        assert sorted(r[0] for r in results if isinstance(r, list)) == [1, 2, 3], results
        assert topology.primary.client().get("txcount") == b"3"


def test_exec_without_multi_keeps_the_watch_off_the_pool(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """EXEC without MULTI fails in Redis but keeps the WATCH: the connection must not
    go back to the pool, where another client's transaction would inherit the WATCH."""
    a = Raw(proxy.port)
    assert a.call("WATCH", "wk") == b"OK"
    assert isinstance(a.call("EXEC"), hiredis.ReplyError)
    proxy.client().set("wk", "changed")  # breaks a's WATCH, which must stay a's alone
    b = Raw(proxy.port)  # RESP2 like `a`: the same idle list
    b.send(["MULTI"], ["SET", "other", "1"], ["EXEC"])
    assert b.read(3) == [b"OK", b"QUEUED", [b"OK"]]


def test_select_while_watching_uses_the_right_database(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    a = Raw(proxy.port)
    assert a.call("WATCH", "sk") == b"OK"
    assert a.call("SELECT", "1") == b"OK"  # as Redis: it runs on the pinned connection
    a.call("SET", "where", "x")
    a.call("UNWATCH")
    primary = topology.primary
    assert primary.client(db=1).get("where") == b"x"
    assert primary.client(db=0).get("where") is None
    # The pooled connection for db 1 must be a db 1 connection.
    b = proxy.client(db=1)
    with b.pipeline() as pipe:
        pipe.set("tx-db", "1")
        pipe.execute()
    assert primary.client(db=1).get("tx-db") == b"1"
    assert primary.client(db=0).get("tx-db") is None


def test_subscribe_while_watching_does_not_poison_the_pool(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    a = Raw(proxy.port)
    assert a.call("WATCH", "pk") == b"OK"
    a.send(["SUBSCRIBE", "leak"])
    a.read(1)
    a.send(["UNWATCH"])
    a.read(1)
    time.sleep(0.1)
    b = Raw(proxy.port)  # RESP2 like `a`: the same idle list
    b.send(["MULTI"], ["SET", "tx-ok", "1"], ["EXEC"])
    assert b.read(3) == [b"OK", b"QUEUED", [b"OK"]]
    assert b.call("GET", "tx-ok") == b"1"


def test_ping_and_echo_inside_multi(proxy: ProxyThread) -> None:
    c = proxy.client()
    with c.pipeline() as pipe:
        pipe.set("m1", "1").ping().echo("hi").get("m1")
        assert pipe.execute() == [True, True, b"hi", b"1"]


def test_reset_after_pipelined_multi(proxy: ProxyThread) -> None:
    c = Raw(proxy.port)
    c.send(["MULTI"], ["SET", "rx", "1"], ["RESET"])
    assert c.read(3) == [b"OK", b"QUEUED", b"RESET"]
    assert c.call("GET", "rx") is None  # the transaction was discarded
