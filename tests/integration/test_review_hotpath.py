"""Review of the hot path: each test pins down one bug found by reading the code.

Every test runs against real redis-server processes; the raw-socket client (`Raw`) lets
a test choose exactly which bytes arrive together (pipelines, held commands).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import hiredis
import pytest
import redis

from config.model import Address
from proxy.backend.connection import DISCARD, Handshake, start_connection
from proxy.errors import BackendUnavailable
from proxy.resp.requests import pack
from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisTopology, free_port

HEALTH = """
[health]
interval_ms = 100
probe_timeout_ms = 300
"""


def _cfg(topology: RedisTopology, backend: str = "", routing: str = "") -> str:
    extra = HEALTH + "[backend]\ntimeout_ms = 1000\n" + backend
    if routing:
        extra += "[routing]\n" + routing
    return topology.config_toml(free_port(), extra=extra)


@pytest.fixture
def proxy(topology: RedisTopology) -> Iterator[ProxyThread]:
    with ProxyThread(config_from_toml(_cfg(topology))) as p:
        yield p


class Raw:
    """A client that sends exact bytes and reads exact replies."""

    def __init__(self, port: int, timeout: float = 4.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = hiredis.Reader()

    def send(self, *cmds: list[bytes | str]) -> None:
        data = b"".join(pack([a.encode() if isinstance(a, str) else a for a in c]) for c in cmds)
        self.sock.sendall(data)

    def read(self, n: int = 1) -> list[object]:
        out: list[object] = []
        while len(out) < n:
            r = self.reader.gets()
            if r is not False:
                out.append(r)
                continue
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"closed after {out!r}")
            self.reader.feed(data)
        return out

    def call(self, *args: bytes | str) -> object:
        self.send(list(args))
        return self.read(1)[0]

    def close(self) -> None:
        self.sock.close()


def _local_replica(topology: RedisTopology) -> redis.Redis:
    return topology.node("ap-southeast-1", 1).client()


# ------------------------------------------------------------------ dedicated connections


def test_exec_reply_survives_a_full_idle_list(topology: RedisTopology) -> None:
    """Releasing a pinned connection after EXEC must not close it while the EXEC
    reply is still in flight (it used to when the idle list was full)."""
    cfg = config_from_toml(_cfg(topology, backend="dedicated_idle = 1\n"))
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
    selected = a.call("SELECT", "1")
    a.call("SET", "where", "x")
    a.call("UNWATCH")
    # SELECT may be refused while pinned; if it said OK, the write belongs in db 1.
    db = 1 if selected == b"OK" else 0
    primary = topology.primary
    assert primary.client(db=db).get("where") == b"x"
    assert primary.client(db=1 - db).get("where") is None
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


# ------------------------------------------------------------------ ordering


def test_held_commands_keep_order_after_unblock(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """Commands that arrive between a blocking reply and the resume of the commands
    held behind it must wait for the held ones."""
    c = Raw(proxy.port)
    c.send(["BLPOP", "bq", "0"], ["ECHO", "held"])
    time.sleep(0.3)  # BLPOP is blocked on its dedicated connection, ECHO held
    frozen = threading.Thread(target=lambda: proxy.call(lambda: time.sleep(0.6)))
    frozen.start()
    time.sleep(0.1)  # the proxy loop is asleep now
    topology.primary.client().lpush("bq", "job")  # BLPOP's reply waits in the socket
    time.sleep(0.1)
    c.send(["ECHO", "later"])  # arrives in the same loop turn as BLPOP's reply
    frozen.join()
    assert c.read(3) == [[b"bq", b"job"], b"held", b"later"]


def test_wait_after_pipeline_when_its_connection_died(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """A WAIT deferred behind earlier replies, whose dedicated connection dies meanwhile,
    must still get an answer (it used to be sent into the dead connection: a hang)."""
    c = proxy.client()
    c.set("k", "v")
    topology.wait_synced()
    replica = topology.node("ap-southeast-1", 1)
    sleeper = threading.Thread(
        target=lambda: replica.client().execute_command("DEBUG", "SLEEP", "0.7")
    )
    sleeper.start()
    time.sleep(0.1)
    raw = Raw(proxy.port)
    raw.send(["GET", "k"], ["WAIT", "0", "100"])  # GET waits on the sleeping replica
    time.sleep(0.15)
    topology.primary.client().client_kill_filter(_type="normal", skipme=True)
    sleeper.join()
    replies = raw.read(2)
    assert replies[0] == b"v"


# ------------------------------------------------------------------ read-your-writes


def test_ryw_counter_survives_a_consistency_switch(topology: RedisTopology) -> None:
    with ProxyThread(config_from_toml(_cfg(topology, routing="read_your_writes = false\n"))) as p:
        c = Raw(p.port)
        c.send(["SET", "rk", "1"], ["PROXY", "CONSISTENCY", "session"])
        assert c.read(2) == [b"OK", b"OK"]
        assert p.app is not None
        app = p.app
        assert p.call(lambda: [s.writes_inflight for s in app.sessions.values()]) == [0]
        topology.wait_synced()
        time.sleep(0.5)  # health sees the replica caught up with the write
        p.refresh()
        where = c.call("PROXY", "WHEREAMI")
        assert isinstance(where, list)
        served = dict(zip(where[::2], where[1::2], strict=True))[b"reads_served_by"]
        assert b"ap-southeast-1" in served
        assert str(topology.primary.port).encode() not in served, served


# ------------------------------------------------------------------ QUIT


def test_quit_after_a_read_whose_backend_fails(topology: RedisTopology, proxy: ProxyThread) -> None:
    c = proxy.client()
    c.set("qk", "v")
    topology.wait_synced()
    replica = topology.node("ap-southeast-1", 1)
    raw = Raw(proxy.port, timeout=5)
    replica.freeze()
    try:
        raw.send(["GET", "qk"], ["QUIT"])
        assert raw.read(2) == [b"v", b"OK"]  # retried elsewhere, then QUIT's reply
    finally:
        replica.thaw()


# ------------------------------------------------------------------ backend connection


def test_handshake_failure_does_not_hand_out_the_wrong_reply(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A handshake error (SELECT of a db the backend lacks) aborts the connection; the
    replies after it in the same read must not reach the already-failed waiters."""
    with RedisTopology.start(
        tmp=tmp_path_factory.mktemp("redis"), extra_args=("--databases", "4")
    ) as topo:
        topo.primary.client().set("dbk", "from-db0")
        topo.wait_synced()
        with ProxyThread(config_from_toml(_cfg(topo))) as p:
            c = Raw(p.port)
            c.send(["SELECT", "5"], ["GET", "dbk"])
            ok, got = c.read(2)
            assert ok == b"OK"
            assert got != b"from-db0", "a db 5 read answered with db 0's value"
            # Every shared connection still pairs replies with the right requests.
            other = p.client()
            for i in range(20):
                assert other.echo(f"e{i}") == f"e{i}".encode()
                assert other.get("dbk") == b"from-db0"


async def test_aborted_while_connecting_sends_nothing(topology: RedisTopology) -> None:
    """A connection aborted before its connect completed must not write its queue."""
    primary = topology.primary
    addr = Address(primary.host, primary.port)
    conn = start_connection(addr, Handshake(None, None, 2, 0), lambda: None, 1.0)
    conn.send(pack([b"INCR", b"stale-incr"]), DISCARD)
    conn.abort(BackendUnavailable(conn.name, "test"))
    await asyncio.sleep(0.3)
    assert primary.client().get("stale-incr") is None


# ------------------------------------------------------------------ deadlines


def test_pinned_connection_has_a_deadline(topology: RedisTopology) -> None:
    """A WATCH-pinned client's request to a node that stopped answering gets an error
    after backend.timeout_ms (DESIGN.md invariant 6), even while health keeps the node
    in (failures_to_down is huge here, so only the deadline can help)."""
    health = HEALTH + "failures_to_down = 1000000\n"
    text = topology.config_toml(free_port(), extra=health + "[backend]\ntimeout_ms = 500\n")
    with ProxyThread(config_from_toml(text)) as p:
        a = Raw(p.port, timeout=8)
        blocker = Raw(p.port, timeout=8)
        assert a.call("WATCH", "dk") == b"OK"
        blocker.send(["BLPOP", "never", "3"])  # a blocking wait is not a deadline
        time.sleep(0.2)
        topology.primary.freeze()
        try:
            t0 = time.monotonic()
            reply = a.call("GET", "dk")
            assert isinstance(reply, hiredis.ReplyError), reply
            assert time.monotonic() - t0 < 3
        finally:
            topology.primary.thaw()
        assert blocker.read(1) == [None]  # BLPOP timed out by itself, not by the proxy


# ------------------------------------------------------------------ RESET


def test_reset_while_subscribed(proxy: ProxyThread) -> None:
    c = Raw(proxy.port)
    c.send(["SUBSCRIBE", "rs"])
    assert c.read(1) == [[b"subscribe", b"rs", 1]]
    assert c.call("RESET") == b"RESET"
    assert c.call("PING") == b"PONG"  # still connected, no longer subscribed


def test_reset_after_pipelined_multi(proxy: ProxyThread) -> None:
    c = Raw(proxy.port)
    c.send(["MULTI"], ["SET", "rx", "1"], ["RESET"])
    assert c.read(3) == [b"OK", b"QUEUED", b"RESET"]
    assert c.call("GET", "rx") is None  # the transaction was discarded


def test_ryw_counter_survives_eventual_and_back(topology: RedisTopology) -> None:
    with ProxyThread(config_from_toml(_cfg(topology, routing="read_your_writes = true\n"))) as p:
        c = Raw(p.port)
        c.send(
            ["SET", "rk", "1"],
            ["PROXY", "CONSISTENCY", "eventual"],
            ["PROXY", "CONSISTENCY", "session"],
        )
        assert c.read(3) == [b"OK", b"OK", b"OK"]
        assert p.app is not None
        app = p.app
        assert p.call(lambda: [s.writes_inflight for s in app.sessions.values()]) == [0]
