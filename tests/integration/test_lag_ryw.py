"""Health, replication lag in milliseconds, and read-your-writes, end to end.

Real redis-servers (tests/helpers/topology.py), the real proxy in a thread
(proxyrun.ProxyThread) and real faults: a replica whose replication link goes through a
200 ms `DelayRelay`, SIGSTOP/SIGKILL of nodes, REPLICAOF and FAILOVER done on the nodes
behind the proxy's back. The proxy runs in ap-southeast-1, whose replica
(`node("ap-southeast-1", 1)`) takes that region's reads.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Iterator
from functools import partial

import pytest
import redis

from tests.helpers.lagtools import (
    as_map,
    backend,
    backends,
    calls,
    cmd,
    delayed_replica,
    failover_done,
    lag_ms,
    outstanding,
    proxy_primary,
    retries,
    routed_to_local_replicas,
    served,
    start_proxy,
    wait_all_eligible,
    wait_visible,
    write_read_pairs,
)
from tests.helpers.proxyrun import ProxyThread, fast_config, wait_for
from tests.helpers.raw import Raw
from tests.helpers.relay import DelayRelay
from tests.helpers.topology import RedisNode, RedisTopology, wait_until

DELAY_MS = 200
PAIRS = 300
# The proxy's fast settings (lagtools.FAST): a frozen node is out after at most one
# interval plus one probe timeout, ~0.4 s; the tests allow 1.5 s.
OUT_AFTER_S = 1.5


def local_replica(topology: RedisTopology) -> RedisNode:
    return topology.node("ap-southeast-1", 1)


@pytest.fixture
def late(topology: RedisTopology) -> Iterator[DelayRelay]:
    """The region's replica replicates 200 ms late."""
    with delayed_replica(topology, local_replica(topology), DELAY_MS) as relay:
        yield relay


@pytest.fixture
def proxy(topology: RedisTopology, late: DelayRelay) -> Iterator[ProxyThread]:
    p = start_proxy(topology, max_lag_ms=1000)
    try:
        wait_all_eligible(p, topology)
        yield p
    finally:
        p.stop()


# --- 1. a late replica keeps its reads; read-your-writes hides its lag -----------------


@pytest.mark.parametrize("switch", ["config", "command"])
def test_late_replica_keeps_reads_and_ryw_hides_lag(
    topology: RedisTopology, late: DelayRelay, switch: str
) -> None:
    """RYW on: 0 stale of 300 pairs (plain and pipelined); off: stale reads do happen.

    `switch` says how read-your-writes is turned on: `[routing] read_your_writes = true`
    (then a connection turns it off with PROXY CONSISTENCY eventual), or config off and a
    connection turns it on with PROXY CONSISTENCY session.
    """
    replica = local_replica(topology)
    proxy = start_proxy(topology, max_lag_ms=1000, read_your_writes=switch == "config")
    try:
        wait_all_eligible(proxy, topology)
        on, off = proxy.client(), proxy.client()
        if switch == "config":
            cmd(off, "PROXY", "CONSISTENCY", "eventual")
        else:
            cmd(on, "PROXY", "CONSISTENCY", "session")

        # The late replica (200 ms < max_lag_ms 1000) takes its region's reads.
        on.set("seed", "x")
        wait_visible(topology.replicas(), "seed", b"x")
        before = served(proxy, replica)
        reader = proxy.client()
        for _ in range(50):
            assert reader.get("seed") == b"x"
        assert served(proxy, replica) - before == 50

        for pipelined in (False, True):
            stale, first = write_read_pairs(on, f"ryw:{pipelined}", PAIRS, pipelined=pipelined)
            assert stale == 0, f"pipelined={pipelined}: {stale} stale reads, e.g. {first}"

        # Without read-your-writes the same pattern reads the late replica's old value:
        # this is what makes the assertions above able to fail.
        before = served(proxy, replica)
        for pipelined in (False, True):
            stale, _ = write_read_pairs(off, f"eventual:{pipelined}", PAIRS, pipelined=pipelined)
            assert stale > 0, f"pipelined={pipelined}: no stale read without read-your-writes"
        assert served(proxy, replica) - before > 0
        # It stayed eligible all along.
        row = backend(on, replica)
        assert row["eligible"] == 1, row
    finally:
        proxy.stop()


# --- 2. a frozen replica is taken out, and back in when thawed --------------------------


def test_frozen_replica_out_within_1_5s_and_back_after_thaw(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """Reads in a loop while the region's replica is SIGSTOPped: no error, no read routed
    to it from 1.5 s after the freeze; after SIGCONT it takes reads again within 5 s.

    What is measured, and why. Reads that were in flight on the replica when it froze sit
    in its socket buffer: the proxy fails them over (node down / backend timeout) and
    retries them elsewhere, but the replica still executes them after SIGCONT. So the
    loop changes its read command by phase: GET until freeze + 1.5 s, STRLEN from then
    until the thaw, EXISTS after it. Two independent witnesses then say "nothing was
    sent to it in the STRLEN phase":
    - the proxy's routing count (reads routed to that region's replicas, counted when
      the node is chosen, before anything is sent) does not move during the phase;
    - the replica's own INFO commandstats after the thaw shows 0 STRLEN calls, although
      anything that had reached its socket would have been executed by then.
    The proxy's per-node reply count alone could not show it: a read sent to the frozen
    node and retried elsewhere counts as answered by the other node.
    """
    replica = local_replica(topology)
    c = proxy.client()
    c.set("k", "v")
    wait_visible(topology.replicas(), "k", b"v")
    expected = {"get": b"v", "strlen": 1, "exists": 1}
    errors: list[str] = []

    def read(verb: str) -> None:
        try:
            got = cmd(c, verb.upper(), "k")
        except redis.RedisError as e:
            errors.append(f"{verb}: {e!r}")
            return
        if got != expected[verb]:
            errors.append(f"{verb}: {got!r}")

    def read_until(verb: str, t: float) -> int:
        n = 0
        while time.monotonic() < t:
            read(verb)
            n += 1
        return n

    before = served(proxy, replica)
    read_until("get", time.monotonic() + 0.5)
    assert served(proxy, replica) > before, "the region's replica took no reads before"

    replica.freeze()
    frozen_at = time.monotonic()
    try:
        read_until("get", frozen_at + OUT_AFTER_S)
        routed = routed_to_local_replicas(proxy)
        n = read_until("strlen", frozen_at + OUT_AFTER_S + 1.5)
        assert routed_to_local_replicas(proxy) == routed, "reads routed to the frozen replica"
        # Each read answered at once by another node (none waited for a timeout).
        assert n > 50, f"only {n} reads in the STRLEN phase"
        row = backend(c, replica)
        assert row["up"] == 0 and row["eligible"] == 0, row
    finally:
        replica.thaw()
    thawed_at = time.monotonic()

    routed = routed_to_local_replicas(proxy)
    answered = served(proxy, replica)
    while routed_to_local_replicas(proxy) == routed or served(proxy, replica) == answered:
        assert time.monotonic() - thawed_at < 5.0, "thawed replica took no read within 5 s"
        read("exists")
    back_after = time.monotonic() - thawed_at
    assert errors == [], f"{len(errors)} read errors, back {back_after:.2f} s after thaw"
    # The node's own account: everything queued in its socket has run by the time it
    # answers reads again; none of it was a STRLEN.
    wait_until(lambda: calls(replica, "exists") > 0, 2.0, "EXISTS executed on the replica")
    assert calls(replica, "strlen") == 0
    assert calls(replica, "get") > 0


# --- 3. PROXY BACKENDS shows the lag in milliseconds ---------------------------------------


def test_backends_shows_injected_lag(topology: RedisTopology, proxy: ProxyThread) -> None:
    """PROXY BACKENDS shows the late replica ~200 ms behind, the direct ones ~0.

    One reading is t - v - heartbeat_ms/2, where v is the newest heartbeat the replica
    holds: exact to +-heartbeat_ms/2 (+-50 ms by default) plus scheduling jitter of the
    probe. The probe and heartbeat loops run at the same period, so that error does not
    average out between readings (it is locked to their phase, anywhere in +-50 ms).
    Hence: the median within 100 ms, and nearly every single reading too; a reading
    further off must be a rare scheduling hiccup (the proxy shares this test process,
    its GIL, with the relay threads), not the rule.
    """
    c = proxy.client()
    replica = local_replica(topology)
    samples: list[float] = []
    others: list[float] = []
    for _ in range(20):
        time.sleep(0.1)
        rows = {r["node"]: r for r in backends(c)}
        lag = lag_ms(rows[replica.address])
        assert lag is not None, rows[replica.address]
        samples.append(lag)
        for n in topology.replicas():
            if n is not replica:
                others.append(lag_ms(rows[n.address]) or 0.0)
    assert abs(statistics.median(samples) - DELAY_MS) <= 100, samples
    within = [s for s in samples if abs(s - DELAY_MS) <= 100]
    assert len(within) >= 18, samples
    # The direct replicas are not behind: the lag shown is the relay's, not noise.
    assert statistics.median(others) < 50, others
    assert sum(1 for x in others if x >= 100) <= 2, others


# --- 4. primary changes made on the nodes are followed ------------------------------------

# Errors a write may get while the primary changes: the proxy's own ("2 masters ...;
# writes refused", backend unavailable/timed out) or Redis' READONLY from a demoted
# primary. Anything else (a dropped connection, a wrong value) is a failure.
_CLEAR_WRITE_ERROR = re.compile(r"^(ResponseError: georedis: |ReadOnlyError: )")


class Writer(threading.Thread):
    """SETs w:<i> = i through the proxy in a loop; records (sent, i, error or None)."""

    def __init__(self, proxy: ProxyThread) -> None:
        super().__init__(daemon=True, name="writer")
        self.client = proxy.client(socket_timeout=5)
        self.stop = threading.Event()
        self.log: list[tuple[float, int, str | None]] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    self.client.set(f"w:{i}", i)
                    self.log.append((sent, i, None))
                except redis.ResponseError as e:
                    # redis-py strips the code it maps to a class (READONLY -> ReadOnlyError)
                    self.log.append((sent, i, f"{type(e).__name__}: {e}"))
                    time.sleep(0.002)
                i += 1
        except BaseException as e:  # reported by check()
            self.failure = e

    def finish(self) -> None:
        self.stop.set()
        self.join(10)
        assert not self.is_alive()
        if self.failure is not None:
            raise AssertionError(f"writer failed: {self.failure!r}") from self.failure


def _check_writes(writer: Writer, new: RedisNode, switched_at: float) -> None:
    log = writer.log
    # (seconds after the switch it was sent, error) of every failed write
    errors = [(round(t - switched_at, 3), e) for t, _, e in log if e is not None]
    assert all(_CLEAR_WRITE_ERROR.search(e) for _, e in errors), errors[:10]
    # Within a couple of seconds every write succeeds again...
    late = [(i, e) for t, i, e in log if t >= switched_at + 2.0]
    assert len(late) > 50, f"only {len(late)} writes after the switch settled"
    assert [x for x in late if x[1] is not None] == [], errors
    # ...and every write acknowledged after the switch is on the new primary (one sent
    # after the old primary was demoted cannot have landed anywhere else: replicas
    # refuse writes, and the new primary is the only master).
    acked = [i for t, i, e in log if e is None and t >= switched_at]
    values = new.client().mget([f"w:{i}" for i in acked])
    missing = [i for i, v in zip(acked, values, strict=True) if v != str(i).encode()]
    assert missing == [], f"{len(missing)} acknowledged writes not on the new primary"


def test_replicaof_promotion_followed_without_restart(topology: RedisTopology) -> None:
    proxy = start_proxy(topology)
    try:
        wait_all_eligible(proxy, topology)
        old, new = topology.primary, topology.node("us-east-1")
        writer = Writer(proxy)
        writer.start()
        try:
            time.sleep(0.3)
            topology.promote(new)  # REPLICAOF NO ONE, then every other node REPLICAOF it
            switched_at = time.monotonic()
            wait_for(lambda: proxy_primary(proxy) == new.address, 2.0, "proxy follows")
            time.sleep(2.5)
        finally:
            writer.finish()
        _check_writes(writer, new, switched_at)
        assert old.role() == "slave"
        wait_all_eligible(proxy, topology)
    finally:
        proxy.stop()


def test_failover_command_followed_without_restart(topology: RedisTopology) -> None:
    proxy = start_proxy(topology)
    try:
        wait_all_eligible(proxy, topology)
        old, new = topology.primary, local_replica(topology)
        writer = Writer(proxy)
        writer.start()
        try:
            time.sleep(0.3)
            cmd(old.admin, "FAILOVER", "TO", new.host, new.port)
            wait_until(lambda: failover_done(old, new), 5.0, "FAILOVER to finish")
            switched_at = time.monotonic()
            topology.primary, new.master, old.master = new, None, (new.host, new.port)
            wait_for(lambda: proxy_primary(proxy) == new.address, 2.0, "proxy follows")
            time.sleep(2.5)
        finally:
            writer.finish()
        _check_writes(writer, new, switched_at)
        # The other replicas still follow the old primary (chained), with the new
        # replication ID: they stay eligible.
        wait_all_eligible(proxy, topology)
    finally:
        proxy.stop()


# --- 5. PROXY MAXLAG is per connection -----------------------------------------------------


def test_maxlag_moves_only_that_connections_reads(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    replica = local_replica(topology)
    others = [n for n in topology.nodes if n is not replica]
    strict, normal = proxy.client(), proxy.client()
    strict.set("k", "v")
    wait_visible(topology.replicas(), "k", b"v")
    assert cmd(strict, "PROXY", "MAXLAG", "50") in (b"OK", True)

    def reads(client: redis.Redis, n: int) -> tuple[int, int]:
        """(answered by the late replica, answered by the others) for n reads."""
        r0, o0 = served(proxy, replica), sum(served(proxy, x) for x in others)
        for _ in range(n):
            assert client.get("k") == b"v"
        return served(proxy, replica) - r0, sum(served(proxy, x) for x in others) - o0

    for _ in range(3):  # interleaved, so one setting cannot leak into the other
        assert reads(strict, 40) == (0, 40)
        assert reads(normal, 40) == (40, 0)
    where = as_map(cmd(strict, "PROXY", "WHEREAMI"))
    assert replica.address not in where["reads_served_by"], where
    assert cmd(strict, "PROXY", "MAXLAG", "OFF") in (b"OK", True)
    assert reads(strict, 40) == (40, 0)


# --- 6. retries: a read once elsewhere, a write never --------------------------------------


def test_read_retried_once_when_replica_killed_mid_request(topology: RedisTopology) -> None:
    proxy = start_proxy(topology)
    try:
        wait_all_eligible(proxy, topology)
        replica = local_replica(topology)
        c = proxy.client()
        c.set("k", "v")
        topology.wait_synced()
        for _ in range(5):  # the connection to the replica exists and serves
            assert c.get("k") == b"v"
        retried, answered = retries(proxy), served(proxy, replica)

        conn = c.connection_pool.get_connection()
        replica.freeze()  # the read below stays in flight on it...
        conn.send_command("GET", "k")  # type: ignore[no-untyped-call]
        wait_for(lambda: outstanding(proxy, replica) > 0, 1.0, "the GET in flight")
        replica.kill()  # ...until it dies mid-request
        assert conn.read_response() == b"v"
        c.connection_pool.release(conn)
        assert retries(proxy) - retried == 1
        assert served(proxy, replica) == answered
        assert c.get("k") == b"v"
    finally:
        proxy.stop()


def test_write_not_retried_when_primary_killed_mid_request(topology: RedisTopology) -> None:
    proxy = start_proxy(topology)
    try:
        wait_all_eligible(proxy, topology)
        primary = topology.primary
        c = proxy.client()
        assert c.set("before", "1") is True
        retried = retries(proxy)

        def in_flight(n: int) -> bool:
            return outstanding(proxy, primary) >= n

        conn = c.connection_pool.get_connection()
        primary.freeze()
        # Writes in flight on the primary when it dies: two sent one by one, two more
        # pipelined in one packet (the proxy may send those as one run).
        for i in range(2):
            conn.send_command("SET", f"lost:{i}", "x")  # type: ignore[no-untyped-call]
            wait_for(partial(in_flight, i + 1), 1.0, f"SET {i} in flight")
        both = conn.pack_commands([("SET", f"lost:{i}", "x") for i in (2, 3)])  # type: ignore[no-untyped-call]
        conn.send_packed_command(both)  # type: ignore[no-untyped-call]
        wait_for(partial(in_flight, 3), 1.0, "the pipelined SETs in flight")
        primary.kill()
        replies = []
        for _ in range(4):
            with pytest.raises(redis.ResponseError) as err:
                conn.read_response()
            replies.append(str(err.value))
        pattern = rf"^georedis: backend {re.escape(primary.address)} (unavailable|timed out)$"
        assert all(re.match(pattern, r) for r in replies), replies
        c.connection_pool.release(conn)
        assert retries(proxy) == retried
        # Exactly one reply per write: the connection is in step (PING is answered by the
        # proxy itself) and the writes are nowhere.
        assert c.ping() is True
        for n in topology.replicas():
            assert n.client().exists(*(f"lost:{i}" for i in range(4))) == 0
    finally:
        proxy.stop()


# --- the read-your-writes counter across consistency switches ---------------------


def test_ryw_counter_survives_a_consistency_switch(topology: RedisTopology) -> None:
    with ProxyThread(fast_config(topology, routing="read_your_writes = false\n")) as p:
        c = Raw(p.port)
        c.send(["SET", "rk", "1"], ["PROXY", "CONSISTENCY", "session"])
        assert c.read(2) == [b"OK", b"OK"]
        assert p.app is not None
        app = p.app
        assert p.call(lambda: [s.state.writes_inflight for s in app.sessions.values()]) == [0]
        topology.wait_synced()
        time.sleep(0.5)  # health sees the replica caught up with the write
        p.refresh()
        where = c.call("PROXY", "WHEREAMI")
        assert isinstance(where, list)
        served = dict(zip(where[::2], where[1::2], strict=True))[b"reads_served_by"]
        assert b"ap-southeast-1" in served
        assert str(topology.primary.port).encode() not in served, served


def test_ryw_counter_survives_eventual_and_back(topology: RedisTopology) -> None:
    with ProxyThread(fast_config(topology, routing="read_your_writes = true\n")) as p:
        c = Raw(p.port)
        c.send(
            ["SET", "rk", "1"],
            ["PROXY", "CONSISTENCY", "eventual"],
            ["PROXY", "CONSISTENCY", "session"],
        )
        assert c.read(3) == [b"OK", b"OK", b"OK"]
        assert p.app is not None
        app = p.app
        assert p.call(lambda: [s.state.writes_inflight for s in app.sessions.values()]) == [0]
