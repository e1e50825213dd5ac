"""PROXY FAILOVER against real redis-server processes, under load, on two proxies at once.

Each proxy carries a steady load of numbered writes (unique keys) and reads from a thread
of its own. Every write either proxy acknowledged must be on the new primary afterwards;
the planned switchover must cost no failed command on either proxy (the one that ran it
held its writes; the other got -READONLY from the demoted primary and re-sent them).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis

from tests.helpers.failover import (
    WriteLoad,
    assert_clean,
    failover_under_load,
    missing_on,
    proxy_failover,
)
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisTopology, free_port


def _pairs(reply: object) -> dict[str, object]:
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list), reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _config(topology: RedisTopology) -> str:
    extra = FAST_HEALTH + "[backend]\ntimeout_ms = 2000\n"
    return topology.config_toml(free_port(), extra=extra)


@contextmanager
def _two_proxies(topology: RedisTopology) -> Iterator[tuple[ProxyThread, ProxyThread]]:
    with ExitStack() as stack:
        a = stack.enter_context(ProxyThread(config_from_toml(_config(topology))))
        b = stack.enter_context(ProxyThread(config_from_toml(_config(topology))))
        for p in (a, b):
            wait_for(lambda p=p: p.call(lambda: bool(p.app and p.app.topo.primary)), 10,
                     "a primary")  # fmt: skip
        yield a, b


def test_planned_failover_loses_nothing_on_either_proxy(topology: RedisTopology) -> None:
    eu = topology.node("eu-west-1")
    with _two_proxies(topology) as (a, b):
        loads = [WriteLoad(a, "a"), WriteLoad(b, "b")]
        result = failover_under_load(a, loads, "TO", "eu-west-1")
        status = _pairs(a.client(decode_responses=True).execute_command(
            "PROXY", "FAILOVER", "STATUS"))  # fmt: skip
        backends = b.client(decode_responses=True).execute_command("PROXY", "BACKENDS")
    assert status["epoch"] == 1 and status["primary"] == eu.address, status
    assert _pairs(status["last"])["result"] == "ok"
    eu_row = next(_pairs(r) for r in backends if _pairs(r)["node"] == eu.address)
    assert eu_row["epoch"] == 1 and eu_row["role"] == "primary", eu_row
    assert result["new_primary"] == eu.address, result
    assert eu.role() == "master"
    for n in topology.nodes:
        if n is not eu:
            wait_for(lambda n=n: n.info()["master_port"] == eu.port, 5, f"{n} following eu")
    assert_clean(loads)
    assert missing_on(eu, loads) == []
    assert int(result["epoch"]) == 1  # type: ignore[call-overload]
    assert eu.client().get("georedis:epoch") == f"1 {eu.address}".encode()


def test_planned_failover_with_two_workers(topology: RedisTopology, tmp_path: Path) -> None:
    """The supervisor runs it and holds both workers' writes; clients spread over both."""
    eu = topology.node("eu-west-1")
    port = free_port()
    cfg = tmp_path / "g.toml"
    extra = FAST_HEALTH + "[backend]\ntimeout_ms = 2000\n"
    cfg.write_text(topology.config_toml(port, proxy_options={"workers": 2}, extra=extra))
    log = (tmp_path / "proxy.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(lambda: _pings(port), 20, "the proxy up")
        loads = [WriteLoad(port, f"w{i}") for i in range(4)]
        result = failover_under_load(port, loads, "TO", "eu-west-1")
    finally:
        proc.terminate()
        proc.wait(15)
    assert result["new_primary"] == eu.address, result
    assert_clean(loads, 50)
    assert missing_on(eu, loads) == []


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def test_forced_failover_after_the_primary_dies(topology: RedisTopology) -> None:
    old = topology.primary
    with _two_proxies(topology) as (a, b):
        loads = [WriteLoad(a, "a"), WriteLoad(b, "b")]
        for load in loads:
            load.start()
        time.sleep(0.5)
        old.kill()
        for p in (a, b):
            wait_for(lambda p=p: p.call(lambda: p.app is not None and p.app.topo.primary is None),
                     5, "the primary seen gone")  # fmt: skip
        reads_before = [load.reads for load in loads]
        time.sleep(0.5)
        result = proxy_failover(a, "FORCE")
        promoted = time.monotonic()
        writes_at = [len(load.acked) for load in loads]
        pairs = list(zip(loads, writes_at, strict=True))
        wait_for(lambda: all(len(ld.acked) > n + 10 for ld, n in pairs), 2, "writes on both")
        resumed_s = time.monotonic() - promoted
        new = topology.by_port(int(str(result["new_primary"]).rsplit(":", 1)[1]))
        # The old primary comes back empty, as a master: fenced, made a replica.
        old.restart()
        wait_for(lambda: old.role() == "slave" and old.info()["master_port"] == new.port, 5,
                 "the old primary made a replica of the new one")  # fmt: skip
        time.sleep(0.5)
        for load in loads:
            load.finish()
    assert new.role() == "master" and new is not old
    assert result["kind"] == "force" and result["lost_bytes_at_most"] is not None, result
    for load, before in zip(loads, reads_before, strict=True):
        assert load.reads > before + 50
        assert load.read_errors == [], (load.prefix, load.read_errors[:5])
    assert resumed_s < 2.0
    # Every write acknowledged after the promotion is on the new primary (those before
    # the kill may be lost: that is what FORCE reports).
    after = [WriteLoad.__new__(WriteLoad) for _ in loads]
    for fake, load, n in zip(after, loads, writes_at, strict=True):
        fake.acked = load.acked[n:]
    assert missing_on(new, after) == []


def test_failover_refusals(topology: RedisTopology) -> None:
    with ProxyThread(config_from_toml(_config(topology))) as p:
        wait_for(lambda: p.call(lambda: bool(p.app and p.app.topo.primary)), 10, "a primary")
        c = p.client(decode_responses=True)
        with pytest.raises(redis.ResponseError, match="is up; PROXY FAILOVER switches"):
            c.execute_command("PROXY", "FAILOVER", "FORCE")
        with pytest.raises(redis.ResponseError, match="unknown region 'mars'"):
            c.execute_command("PROXY", "FAILOVER", "TO", "mars")
        with pytest.raises(redis.ResponseError, match="not an eligible, in-sync replica"):
            c.execute_command("PROXY", "FAILOVER", "TO", topology.primary.address)
        with pytest.raises(redis.ResponseError, match="usage: PROXY FAILOVER"):
            c.execute_command("PROXY", "FAILOVER", "SIDEWAYS")
        status = c.execute_command("PROXY", "FAILOVER", "STATUS")
        assert "running" in status


def test_blocked_client_and_open_transaction_across_a_planned_failover(
    topology: RedisTopology,
) -> None:
    """BLPOP on the old primary is woken by an LPUSH after the switch; a MULTI begun on
    the old primary and EXECed after it gets the reply of a failed WATCH (nothing ran)."""
    eu = topology.node("eu-west-1")
    with ProxyThread(config_from_toml(_config(topology))) as p:
        wait_for(lambda: p.call(lambda: bool(p.app and p.app.topo.primary)), 10, "a primary")
        popped: list[object] = []
        blocked = threading.Thread(
            target=lambda: popped.append(p.client(socket_timeout=10).blpop(["q"], 0)),
            daemon=True,
        )
        blocked.start()
        tx = p.client(single_connection_client=True)
        tx.execute_command("MULTI")
        tx.execute_command("SET", "tx-key", "1")  # +QUEUED (redis-py reads it as False)
        time.sleep(0.3)
        assert proxy_failover(p, "TO", "eu-west-1")["new_primary"] == eu.address
        assert tx.execute_command("EXEC") is None
        assert eu.client().get("tx-key") is None
        p.client().lpush("q", "after")
        blocked.join(5)
        assert popped == [(b"q", b"after")]
        assert eu.client().llen("q") == 0
        # A FLUSHALL takes the epoch key with it; the proxy writes it back (it is what
        # fences the next old primary that comes back).
        eu.client().flushall()
        epoch = f"1 {eu.address}".encode()
        wait_for(lambda: eu.client().get("georedis:epoch") == epoch, 5, "the epoch back")


def test_planned_failover_with_min_replicas_to_write(tmp_path: Path) -> None:
    """A just-promoted primary has no replica yet, and min-replicas-to-write refuses the
    epoch write (NOREPLICAS): the old primary follows it first, the epoch is written then,
    and no write is released to the old primary meanwhile."""
    extra = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "10"]
    with RedisTopology.start(tmp=tmp_path, extra_args=extra) as topo:
        eu = topo.node("eu-west-1")
        with ProxyThread(config_from_toml(_config(topo))) as p:
            wait_for(lambda: p.call(lambda: bool(p.app and p.app.topo.primary)), 10, "a primary")
            loads = [WriteLoad(p, "m")]
            result = failover_under_load(p, loads, "TO", "eu-west-1")
        assert result["new_primary"] == eu.address and result["epoch"] == 1, result
        assert eu.client().get("georedis:epoch") == f"1 {eu.address}".encode()
        assert_clean(loads)
        assert missing_on(eu, loads) == []
