"""Helpers for the lag / read-your-writes / failover tests (tests/integration/test_lag_ryw.py).

They drive the real proxy (`proxyrun.ProxyThread`) in front of a real topology and read
what it believes through its own admin command (`PROXY BACKENDS`) or, where only the
proxy knows the answer (which node a read was routed to), through its stats on its own
loop (`ProxyThread.call`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import redis

from config.model import Address
from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.relay import DelayRelay
from tests.helpers.topology import RedisNode, RedisTopology, free_port, wait_until

# The fast settings of the issue: a node that stops answering is out within
# interval + probe timeout (~0.4 s); a request on a silent connection fails after 0.5 s.
FAST = """
[health]
interval_ms = 100
probe_timeout_ms = 300
[backend]
timeout_ms = 500
"""

Row = dict[str, Any]


def node_addr(node: RedisNode) -> Address:
    return Address(node.host, node.port)


def start_proxy(
    topology: RedisTopology,
    *,
    max_lag_ms: int = 1000,
    read_your_writes: bool = False,
    lag_recovery_ms: int = 1000,
) -> ProxyThread:
    """A started proxy in the primary's region with the fast health/backend settings."""
    routing = (
        "[routing]\n"
        f"max_lag_ms = {max_lag_ms}\n"
        f"lag_recovery_ms = {lag_recovery_ms}\n"
        f"read_your_writes = {'true' if read_your_writes else 'false'}\n"
    )
    cfg = config_from_toml(topology.config_toml(free_port(), extra=FAST + routing))
    return ProxyThread(cfg).start()


@contextlib.contextmanager
def delayed_replica(
    topology: RedisTopology, node: RedisNode, delay_ms: float
) -> Iterator[DelayRelay]:
    """`node` replicates through a relay that delays its link by `delay_ms` each way.

    The replica keeps its own address (the proxy talks to it directly); only its
    replication stream from the primary is late. The relay is stopped on exit.
    """
    primary = topology.primary
    relay = DelayRelay(primary.host, primary.port, delay_ms).start()
    try:
        topology.replicate_through(node, relay.host, relay.port)
        yield relay
    finally:
        relay.stop()


# --- PROXY BACKENDS ----------------------------------------------------------------------


def cmd(client: redis.Redis, *args: str | int) -> Any:
    """Any command through redis-py (its `execute_command` is untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def as_map(reply: object) -> Row:
    """A map reply as {str: value}: a dict in RESP3, a flat [k, v, ...] array in RESP2."""
    if isinstance(reply, dict):
        pairs = list(reply.items())
    else:
        assert isinstance(reply, list), reply
        pairs = list(zip(reply[::2], reply[1::2], strict=True))
    return {_text(k): _text(v) for k, v in pairs}


def backends(client: redis.Redis) -> list[Row]:
    """`PROXY BACKENDS` as a list of {field: value}, whichever protocol `client` speaks."""
    return [as_map(row) for row in cmd(client, "PROXY", "BACKENDS")]


def backend(client: redis.Redis, node: RedisNode) -> Row:
    for row in backends(client):
        if row["node"] == node.address:
            return row
    raise AssertionError(f"{node.address} not in PROXY BACKENDS")


def lag_ms(row: Row) -> float | None:
    return None if row["lag_ms"] is None else float(row["lag_ms"])


def wait_all_eligible(
    proxy: ProxyThread, topology: RedisTopology, timeout: float = 10.0
) -> list[Row]:
    """Wait until the proxy sees `topology.primary` as primary and every replica eligible.

    Right after start a replica may lag ~1 s (first sync); measuring before this
    returns would measure start-up, not the fault under test.
    """
    c = proxy.client()
    rows: list[Row] = []

    def ready() -> bool:
        nonlocal rows
        rows = backends(c)
        by_node = {r["node"]: r for r in rows}
        p = by_node.get(topology.primary.address)
        if p is None or p["role"] != "primary":
            return False
        return all(by_node[n.address]["eligible"] == 1 for n in topology.replicas())

    try:
        wait_for(ready, timeout, "every replica eligible in PROXY BACKENDS")
    except AssertionError as e:
        raise AssertionError(f"{e}: {rows}") from None
    finally:
        c.close()
    return rows


# --- what the proxy routed ---------------------------------------------------------------


def served(proxy: ProxyThread, node: RedisNode) -> int:
    """Replies the proxy got back from `node` for clients (its per-node latency count).

    A request that failed on `node` and was retried elsewhere counts for the other node,
    so this is "reads answered by", not "reads sent to" (see `routed_to_local_replicas`).
    """
    app = proxy.app
    assert app is not None
    name = node.address
    return proxy.call(lambda: app.stats.node_hist(name).count)


def routed_to_local_replicas(proxy: ProxyThread) -> int:
    """Reads the proxy *sent* to a replica of the primary's region, retries excluded.

    The proxy counts each routed read by (client region, served region) at the moment it
    picks the node, and counts reads sent to the primary apart (fallbacks). With one
    client in the primary's region, (that region, that region) minus the primary
    fallbacks is what went to the region's replicas, whether or not they answered.
    """
    app = proxy.app
    assert app is not None

    def count() -> int:
        primary = app.topo.primary
        assert primary is not None
        stats = app.stats
        here = stats.reads_by_region.get((primary.region, primary.region), 0)
        return here - stats.fallbacks_primary

    return proxy.call(count)


def retries(proxy: ProxyThread) -> int:
    app = proxy.app
    assert app is not None
    return proxy.call(lambda: app.stats.retries)


def outstanding(proxy: ProxyThread, node: RedisNode) -> int:
    """Requests the proxy has in flight on `node` (all its backend connections)."""
    app = proxy.app
    assert app is not None
    addr = node_addr(node)
    return proxy.call(lambda: app.outstanding(addr))


def proxy_primary(proxy: ProxyThread) -> str | None:
    app = proxy.app
    assert app is not None
    return proxy.call(lambda: None if app.topo.primary is None else str(app.topo.primary.addr))


# --- on the nodes ------------------------------------------------------------------------


def calls(node: RedisNode, command: str) -> int:
    """INFO commandstats calls of `command` on `node` (0 when never called)."""
    entry = node.info("commandstats").get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


def write_read_pairs(
    client: redis.Redis, key: str, n: int, *, pipelined: bool
) -> tuple[int, list[tuple[int, object]]]:
    """SET key i then GET key, n times on one connection; (stale count, first stale ones).

    Plain: each command is one request/response. Pipelined: one pipeline per pair, so
    the GET reaches the proxy in the same packet as its SET.
    """
    stale: list[tuple[int, object]] = []
    for i in range(n):
        value = str(i).encode()
        if pipelined:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, value)
            pipe.get(key)
            ok, got = pipe.execute()
            assert ok is True
        else:
            assert client.set(key, value) is True
            got = client.get(key)
        if got != value:
            stale.append((i, got))
    return len(stale), stale[:5]


def wait_visible(nodes: list[RedisNode], key: str, value: bytes, timeout: float = 5.0) -> None:
    """Wait until `key` reads `value` on every node (`wait_synced` compares offsets, which
    a replica behind a delay never equals: the proxy's heartbeats keep the primary ahead).
    """
    for n in nodes:
        c = n.client()

        def visible(c: redis.Redis = c) -> bool:
            return c.get(key) == value

        wait_until(visible, timeout, f"{key} on {n}")


def failover_done(old: RedisNode, new: RedisNode) -> bool:
    """FAILOVER finished: `new` is a master and `old` replicates from it, link up."""
    info = old.info("replication")
    return (
        new.role() == "master"
        and info.get("role") == "slave"
        and info.get("master_failover_state") == "no-failover"
        and int(info.get("master_port", 0)) == new.port
        and info.get("master_link_status") == "up"
    )


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _text(v: object) -> Any:
    return v.decode() if isinstance(v, bytes) else v
