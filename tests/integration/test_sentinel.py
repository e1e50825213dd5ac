"""Sentinel mode against 3 real redis-sentinel processes (down-after-milliseconds 2000)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import redis

from tests.helpers.failover import WriteLoad, assert_clean, failover_under_load, missing_on
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml, wait_for
from tests.helpers.sentinel import sentinel_toml, sentinels
from tests.helpers.topology import RedisNode, RedisTopology, free_port


@contextmanager
def _proxies(topology: RedisTopology, ports: list[int], n: int) -> Iterator[list[ProxyThread]]:
    extra = FAST_HEALTH + "[backend]\ntimeout_ms = 2000\n" + sentinel_toml(ports)
    with ExitStack() as stack:
        configs = [config_from_toml(topology.config_toml(free_port(), extra=extra))
                   for _ in range(n)]  # fmt: skip
        proxies = [stack.enter_context(ProxyThread(c)) for c in configs]
        for p in proxies:
            wait_for(lambda p=p: p.call(lambda: bool(p.app and p.app.topo.primary)), 10,
                     "a primary")  # fmt: skip
        yield proxies


def _masters(topology: RedisTopology) -> list[RedisNode]:
    out = []
    for n in topology.nodes:
        try:
            if n.running and n.role() == "master":
                out.append(n)
        except redis.RedisError:
            pass
    return out


def test_writes_resume_after_sentinel_replaces_a_killed_primary(topology: RedisTopology) -> None:
    old = topology.primary
    with sentinels(topology) as ports, _proxies(topology, ports, 1) as (p,):
        load = WriteLoad(p, "s")
        load.start()
        time.sleep(0.5)
        old.kill()
        killed = time.monotonic()
        wait_for(lambda: any(n is not old for n in _masters(topology)), 20, "a promotion")
        promoted = time.monotonic()
        acked_at = len(load.acked)
        wait_for(lambda: len(load.acked) > acked_at + 20, 5, "writes again")
        resumed = time.monotonic()
        # The old primary back, empty, as a master: the sentinels name the new one, so
        # the old one gets no writes until Sentinel makes it a replica.
        old.restart()
        time.sleep(1.0)
        load.finish()
        new = next(n for n in _masters(topology) if n is not old)
        primary = p.call(lambda: p.app.topo.primary if p.app else None)
    assert load.read_errors == [], load.read_errors[:5]
    assert resumed - promoted < 2.0, (resumed - promoted, promoted - killed)
    assert resumed - killed < 2.0 + 10.0 + 2.0  # down-after + Sentinel's failover + 2 s
    # Every write acknowledged once writes resumed (also while the old primary was back
    # as a master) is on the new primary: none went to the old one.
    tail = WriteLoad.__new__(WriteLoad)
    tail.acked = load.acked[acked_at:]
    assert len(tail.acked) > 100
    assert missing_on(new, [tail]) == []
    assert primary is not None and primary.addr.port == new.port


def test_planned_failover_through_sentinel_loses_nothing(topology: RedisTopology) -> None:
    old = topology.primary
    with sentinels(topology) as ports, _proxies(topology, ports, 2) as (a, b):
        with pytest.raises(redis.ResponseError, match="TO is refused in Sentinel mode"):
            a.client().execute_command("PROXY", "FAILOVER", "TO", "eu-west-1")
        loads = [WriteLoad(a, "a"), WriteLoad(b, "b")]
        result = failover_under_load(a, loads)
        new = topology.by_port(int(str(result["new_primary"]).rsplit(":", 1)[1]))
        wait_for(lambda: old.role() == "slave", 10, "the old primary a replica")
    assert new is not old and new.role() == "master"
    assert_clean(loads)
    assert missing_on(new, loads) == []
