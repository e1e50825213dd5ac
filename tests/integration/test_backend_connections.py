"""Backend connections, on real servers: a failed handshake hands no reply to the wrong
request, and a connection aborted while connecting writes nothing."""

from __future__ import annotations

import asyncio

import pytest

from config.model import Address
from proxy.backend.connection import DISCARD, start_connection
from proxy.backend.handshake import Handshake
from proxy.errors import BackendUnavailable
from proxy.resp.requests import pack
from tests.helpers.proxyrun import ProxyThread, fast_config
from tests.helpers.raw import Raw
from tests.helpers.topology import RedisTopology


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
        with ProxyThread(fast_config(topo)) as p:
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
